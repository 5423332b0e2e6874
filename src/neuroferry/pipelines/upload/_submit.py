"""Checking and submitting upload requests (``SubmitJobRequestV2``): every job validated,
its preset applied, duplicates refused, then all created at once or none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.engine import (
    NewJob,
    apply_job_type,
    check_access,
    check_asset_owners,
    owner_access,
    submit_jobs,
    unfinished_jobs,
)
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.grants import Access, access_for
from neuroferry.pipelines.upload._kind import prepare
from neuroferry.pipelines.upload._models import UploadJobSpec, UploadTasks
from neuroferry.pipelines.upload._presets import ADMIN_DEFINED, commands_not_from_preset
from neuroferry.pipelines.upload._terms import AllowedTerms, allowed_terms
from neuroferry.pipelines.upload._vocab import vocabulary

KIND = "upload"


@dataclass(frozen=True)
class CheckedJob:
    """One job of a request that passed every check."""

    index: int
    row: int | None
    spec: UploadJobSpec
    name: str
    job_type: str | None
    job_type_version: int | None

    def as_new_job(self) -> NewJob:
        return NewJob(KIND, self.spec, self.job_type, self.job_type_version)


def _where(index: int, row: int | None) -> str:
    return f"job {index + 1}" + (f" (row {row})" if row is not None else "")


def _problems(index: int, row: int | None, exc: Exception) -> list[dict[str, Any]]:
    """One problem per field of a validation error, or one for the whole job."""
    if isinstance(exc, ValidationError):
        return [
            {
                "job": index + 1,
                "row": row,
                "field": ".".join(str(p) for p in err["loc"]) or None,
                "message": err["msg"].removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
    field, sep, message = str(exc).partition(": ")
    if not sep or " " in field:
        field, message = "", str(exc)
    return [{"job": index + 1, "row": row, "field": field or None, "message": message}]


def _foreign_commands(
    engine: Engine, request: Mapping[str, Any], merged: Mapping[str, Any]
) -> list[str]:
    """The command and image fields of a job (``merged``: the ``request`` with its job
    type applied) that its job type's preset does not give, as dotted paths."""
    try:
        tasks = UploadTasks.model_validate(merged.get("tasks") or {})
    except ValidationError:
        return []  # the spec's validation names what is wrong
    preset_job, _name, _version = apply_job_type(engine, KIND, {**request, "tasks": {}})
    try:
        preset = UploadTasks.model_validate(preset_job.get("tasks") or {})
    except ValidationError:
        preset = UploadTasks()
    return commands_not_from_preset(tasks, preset)


def _check_one(
    engine: Engine,
    settings: Settings,
    allowed: AllowedTerms,
    job: dict[str, Any],
    index: int,
    row: int | None,
    user: User | None,
    access: Access | None,
    busy: bool,
) -> CheckedJob | list[dict[str, Any]]:
    """One job of a request, checked (against ``access`` if given); or its problems."""
    try:
        merged, _name, version = apply_job_type(engine, KIND, job)
        if user is not None and not user.is_admin:
            refused = _foreign_commands(engine, job, merged)
            if refused:
                return [
                    {"job": index + 1, "row": row, "field": where, "message": ADMIN_DEFINED}
                    for where in refused
                ]
        spec = UploadJobSpec.model_validate(merged)
        allowed.check_project(spec.project_name)
        plan = prepare(spec, settings)
        if access is not None:
            check_access(plan, access)
        if busy and user is not None:
            check_asset_owners(engine, plan.assets, user.id)
        name = plan.name
    except (ValidationError, InvalidInput, Forbidden) as exc:
        return _problems(index, row, exc)
    job_type = spec.job_type if version is not None else None
    return CheckedJob(index, row, spec, name, job_type, version)


def check_upload_jobs(
    engine: Engine,
    settings: Settings,
    request: Mapping[str, Any],
    rows: Sequence[int | None] | None = None,
    *,
    user: User | None,
    busy: bool = True,
    access: Access | None = None,
) -> list[CheckedJob]:
    """Check every job of a ``SubmitJobRequestV2`` body, sent by ``user``, without
    creating anything; also that the folders and stores each job names are granted to
    ``user`` (or to ``access``, when given).

    The request's own ``user_email`` and ``email_notification_types`` apply to jobs that
    do not set them. Only admins may give a command or image (``command_script``,
    ``image``, ``image_version``) other than what the job type's preset gives for that
    task; ``user`` None is the service itself (as trusted as an admin). Raises
    :class:`InvalidInput` listing every problem (``problems``: job number, spreadsheet
    row if given, field and message). ``busy``: also name the assets that a queued or
    running job is uploading, and those that belong to another user, by name or location
    (a look, for the validating pages; submitting relies on the database's asset locks and
    owner check instead, which answer 409 and 403)."""
    if access is None and user is not None:
        access = access_for(settings, user.name, user.role)
    upload_jobs = request.get("upload_jobs")
    if not isinstance(upload_jobs, list) or not upload_jobs:
        raise InvalidInput("upload_jobs: give a list of at least one upload job")
    limit = settings.max_jobs_per_request
    if len(upload_jobs) > limit:
        raise InvalidInput(
            f"upload_jobs: {len(upload_jobs)} jobs in one request; at most {limit} are allowed "
            "(FERRY_MAX_JOBS_PER_REQUEST); split the request"
        )
    defaults = {
        k: request[k]
        for k in ("user_email", "email_notification_types")
        if request.get(k) is not None
    }
    rows = list(rows) if rows is not None else [None] * len(upload_jobs)
    problems: list[dict[str, Any]] = []
    checked: list[CheckedJob] = []
    allowed = allowed_terms(engine)
    terms = vocabulary(
        [(t.name, t.abbreviation, t.legacy_names) for t in allowed.modalities],
        [(t.name, t.abbreviation, t.legacy_names) for t in allowed.platforms],
    )
    with terms:
        for index, raw in enumerate(upload_jobs):
            if not isinstance(raw, Mapping):
                problems.extend(_problems(index, rows[index], InvalidInput("must be an object")))
                continue
            job = {**defaults, **{k: v for k, v in raw.items() if v is not None}}
            outcome = _check_one(
                engine, settings, allowed, job, index, rows[index], user, access, busy
            )
            if isinstance(outcome, CheckedJob):
                checked.append(outcome)
            else:
                problems.extend(outcome)

    seen: dict[str, CheckedJob] = {}
    for c in checked:
        if c.name in seen:
            first = _where(seen[c.name].index, seen[c.name].row)
            problems.append(
                {
                    "job": c.index + 1,
                    "row": c.row,
                    "field": "subject_id",
                    "message": f"the same asset {c.name} as {first}; each asset once",
                }
            )
        seen.setdefault(c.name, c)
    for name in sorted(unfinished_jobs(engine, KIND, seen) if busy else ()):
        c = seen[name]
        problems.append(
            {
                "job": c.index + 1,
                "row": c.row,
                "field": "subject_id",
                "message": f"asset {name} is already being uploaded by a queued or running job",
            }
        )
    if problems:
        problems.sort(key=lambda p: p["job"])
        lines = [
            f"{_where(p['job'] - 1, p['row'])}: "
            + (f"{p['field']}: " if p["field"] else "")
            + p["message"]
            for p in problems
        ]
        raise InvalidInput("; ".join(lines), problems)
    return checked


def submit_upload_jobs(
    engine: Engine,
    settings: Settings,
    request: Mapping[str, Any],
    user: User | None,
    rows: Sequence[int | None] | None = None,
) -> list[tuple[int, str]]:
    """Check a ``SubmitJobRequestV2`` body sent by ``user`` (see
    :func:`check_upload_jobs`) and create all its jobs (or none), owned by ``user``; the
    new jobs' ids and asset names. ``user`` None: the service itself, no owner. Each job
    may touch only what its owner was granted."""
    owner_id = user.id if user is not None else None
    access = owner_access(engine, owner_id, settings)
    checked = check_upload_jobs(
        engine, settings, request, rows, user=user, busy=False, access=access
    )
    ids = submit_jobs(
        engine,
        [c.as_new_job() for c in checked],
        owner_id=owner_id,
        settings=settings,
        access=access,
    )
    return [(job_id, c.name) for job_id, c in zip(ids, checked, strict=True)]
