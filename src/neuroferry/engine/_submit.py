"""Submitting jobs: validate each spec, prepare it with its kind, check the owner's
grants, create the rows and queue the first tasks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, insert, null, select

from neuroferry.config import Settings
from neuroferry.db import jobs, tasks, transaction, users
from neuroferry.engine._advance import advance, now_utc, retries_setting
from neuroferry.engine._assets import SUMMARY_KEY, check_distinct, claim_assets, claims_to_summary
from neuroferry.engine._kinds import PreparedJob, get_kind
from neuroferry.engine._states import MAP, PENDING, QUEUED
from neuroferry.errors import Forbidden, InvalidInput, validation_problems
from neuroferry.grants import Access, access_for, internal_access


@dataclass(frozen=True)
class NewJob:
    """One job to submit: its kind, spec and, when it came from a preset, the job type."""

    kind: str
    spec: Mapping[str, Any] | BaseModel
    job_type: str | None = None
    job_type_version: int | None = None
    access: Access | None = None
    """What this job is checked against (and, with ``confine``, runs with) instead of
    the ``access`` given for all."""


def owner_access(engine: Engine, owner_id: int | None, settings: Settings) -> Access:
    """What the jobs of the user ``owner_id`` may touch, by their name and role now; jobs
    without an owner are the service's own (admin-like, its own files still refused)."""
    if owner_id is None:
        return internal_access(settings)
    with transaction(engine) as conn:
        row = conn.execute(select(users.c.name, users.c.role).where(users.c.id == owner_id)).first()
    if row is None:  # no such user: nothing is granted
        return access_for(settings, f"#{owner_id} (no such user)", "user")
    return access_for(settings, row.name, row.role)


def job_access(engine: Engine, job_ids: Iterable[int]) -> dict[int, Access]:
    """The access each of ``job_ids`` was submitted to run with (see ``submit_jobs``'s
    ``confine``), for the jobs that have one; the others run with their owner's."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.access).where(jobs.c.id.in_(ids), jobs.c.access.is_not(None))
        ).all()
    return {job_id: Access.from_json(data) for job_id, data in rows if data is not None}


def check_access(plan: PreparedJob, access: Access) -> None:
    """Refuse a prepared job that reads, writes or removes what ``access`` does not allow
    (:class:`Forbidden` or :class:`InvalidInput` naming the field)."""
    for label, value in plan.reads:
        access.check_read(label, value)
    for label, value in plan.writes:
        access.check_write_url(label, value)
    for label, value in plan.removes:
        access.check_removal(label, value)


def submit_jobs(
    engine: Engine,
    new: Sequence[NewJob],
    *,
    owner_id: int | None,
    settings: Settings,
    access: Access | None = None,
    confine: bool = False,
) -> list[int]:
    """Validate every job, check that its owner may touch what it reads, writes and
    removes (``access``; by default the owner's grants), then create them all (or none)
    and queue their first tasks. With ``confine``, ``access`` is kept with each job and
    its tasks run with it instead of their owner's grants. A job's own ``access``
    (:class:`NewJob`) replaces the one given for all."""
    if access is None and any(job.access is None for job in new):
        if confine:
            raise ValueError("confine: give the access the jobs are confined to")
        access = owner_access(engine, owner_id, settings)
    prepared = []
    for i, job in enumerate(new):
        allowed = job.access or access
        assert allowed is not None
        kind = get_kind(job.kind)
        where = f"job {i + 1}: " if len(new) > 1 else ""
        try:
            spec = (
                job.spec
                if isinstance(job.spec, kind.spec_model)
                else kind.spec_model.model_validate(
                    job.spec.model_dump() if isinstance(job.spec, BaseModel) else job.spec
                )
            )
        except ValidationError as exc:
            problems = "; ".join(validation_problems(exc, "spec"))
            raise InvalidInput(f"{where}invalid {kind.name} job: {problems}") from exc
        try:
            if kind.check is not None:
                kind.check(spec, engine)
            plan = kind.prepare(spec, settings)
            check_access(plan, allowed)
        except (InvalidInput, Forbidden) as exc:
            raise type(exc)(f"{where}{exc}") from exc
        kept = allowed.to_json() if confine else None
        prepared.append((kind, job, spec.model_dump(mode="json"), plan, kept))
    check_distinct([plan.assets for *_, plan, _kept in prepared])

    ids = []
    now = now_utc()
    with transaction(engine) as conn:
        for kind, job, spec_json, plan, kept in prepared:
            job_id = conn.execute(
                insert(jobs)
                .values(
                    kind=kind.name,
                    name=plan.name,
                    owner_id=owner_id,
                    state=QUEUED,
                    spec=spec_json,
                    summary=_summary(plan),
                    job_type=job.job_type,
                    job_type_version=job.job_type_version,
                    access=kept if kept is not None else null(),
                    created=now,
                    updated=now,
                )
                .returning(jobs.c.id)
            ).scalar_one()
            rows = []
            for t in kind.tasks:
                params = dict(plan.task_settings.get(t.name, {}))
                rows.append(
                    {
                        "job_id": job_id,
                        "name": t.name,
                        "map_index": -1,
                        "item": None,
                        "placement": MAP if t.map_over else t.placement,
                        "state": PENDING,
                        "attempt": 0,
                        "retries_left": retries_setting(params, t.retries),
                        "params": params,
                        "created": now,
                    }
                )
            conn.execute(insert(tasks), rows)
            claim_assets(conn, job_id, plan.assets, owner_id, now)
            advance(conn, kind, job_id, now)
            ids.append(job_id)
    return ids


def _summary(plan: PreparedJob) -> dict[str, Any]:
    """The job's summary, with the assets it writes (taken again by a retry)."""
    summary = dict(plan.summary)
    if plan.assets:
        summary[SUMMARY_KEY] = claims_to_summary(plan.assets)
    return summary


def submit_job(
    engine: Engine,
    kind: str,
    spec: Mapping[str, Any] | BaseModel,
    *,
    owner_id: int | None,
    settings: Settings,
    job_type: str | None = None,
) -> int:
    """Validate and create one job; its first tasks are queued at once."""
    new = NewJob(kind, spec, job_type)
    return submit_jobs(engine, [new], owner_id=owner_id, settings=settings)[0]
