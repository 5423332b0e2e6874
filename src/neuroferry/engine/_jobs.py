"""Jobs and tasks in the database: submit, advance, claim, finish, cancel, retry, read.

The database is the single source of truth. Every change to a job's tasks happens in one
transaction that first touches the job's row, which serialises changes to one job across
threads and service processes (a row lock on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, case, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from neuroferry.config import Settings
from neuroferry.db import jobs, orchestrators, tasks, users
from neuroferry.engine._assets import (
    SUMMARY_KEY,
    check_distinct,
    claim_assets,
    claims_of,
    claims_to_summary,
    release_locks,
)
from neuroferry.engine._context import cancel_key, log_key
from neuroferry.engine._kinds import JobKind, PreparedJob, get_kind
from neuroferry.engine._states import (
    CANCELLED,
    DONE_OK,
    FAILED,
    JOB_STATES,
    MAP,
    PENDING,
    QUEUED,
    RUNNING,
    SKIPPED,
    TERMINAL,
    UP_FOR_RESCHEDULE,
    UP_FOR_RETRY,
    WAITING,
    job_state,
)
from neuroferry.errors import DatabaseError, Forbidden, InvalidInput, NotFound, StoreNotFound
from neuroferry.grants import Access, access_for, internal_access
from neuroferry.stores import Store

MAX_RETRY_DELAY = 3600.0


class Viewer(Protocol):
    """Who asks: a user with an id and whether they are an admin."""

    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time in neuroferry is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _validation_message(kind: str, exc: ValidationError, where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        problems.append(f"{loc}: {err['msg']}")
    return f"{where}invalid {kind} job: " + "; ".join(problems)


# -- submit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    """One job to submit: its kind, spec and, when it came from a preset, the job type."""

    kind: str
    spec: Mapping[str, Any] | BaseModel
    job_type: str | None = None
    job_type_version: int | None = None


def owner_access(engine: Engine, owner_id: int | None, settings: Settings) -> Access:
    """What the jobs of the user ``owner_id`` may touch, by their name and role now; jobs
    without an owner are the service's own (admin-like, its own files still refused)."""
    if owner_id is None:
        return internal_access(settings)
    with _transaction(engine) as conn:
        row = conn.execute(select(users.c.name, users.c.role).where(users.c.id == owner_id)).first()
    if row is None:  # no such user: nothing is granted
        return access_for(settings, f"#{owner_id} (no such user)", "user")
    return access_for(settings, row.name, row.role)


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
) -> list[int]:
    """Validate every job, check that its owner may touch what it reads, writes and
    removes (``access``; by default the owner's grants), then create them all (or none)
    and queue their first tasks."""
    if access is None:
        access = owner_access(engine, owner_id, settings)
    prepared = []
    for i, job in enumerate(new):
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
            raise InvalidInput(_validation_message(kind.name, exc, where)) from exc
        try:
            plan = kind.prepare(spec, settings)
            check_access(plan, access)
        except (InvalidInput, Forbidden) as exc:
            raise type(exc)(f"{where}{exc}") from exc
        prepared.append((kind, job, spec.model_dump(mode="json"), plan))
    check_distinct([plan.assets for *_, plan in prepared])

    ids = []
    now = now_utc()
    with _transaction(engine) as conn:
        for kind, job, spec_json, plan in prepared:
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
                        "retries_left": _retries(params, t.retries),
                        "params": params,
                        "created": now,
                    }
                )
            conn.execute(insert(tasks), rows)
            claim_assets(conn, job_id, plan.assets, owner_id, now)
            _advance(conn, kind, job_id, now)
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


def _retries(params: Mapping[str, Any], default: int) -> int:
    value = params.get("retries", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"retries must be a whole number of at least 0, got {value!r}")
    return value


@contextlib.contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` whose database errors become :class:`DatabaseError`."""
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database error: {str(exc).splitlines()[0]}") from exc


# -- advancing a job ------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """A job whose state changed, for notifications and metrics."""

    job_id: int
    old: str
    new: str


def _lock_job(conn: Connection, job_id: int, now: datetime) -> Mapping[str, Any]:
    """Touch the job's row first: the lock that serialises changes to this job."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated=now))
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return dict(row)


def _map_items(result: Any, source: str) -> dict[str, Any] | str:
    """The items a mapped task runs over, or why they cannot be had."""
    _, _, key = source.partition(".")
    value = result.get(key) if key and isinstance(result, Mapping) else result
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return f"{source} must give a mapping of item name to settings, got {type(value).__name__}"
    return {str(k): dict(v) if isinstance(v, Mapping) else {"value": v} for k, v in value.items()}


def _advance(
    conn: Connection,
    kind: JobKind,
    job_id: int,
    now: datetime,
    job: Mapping[str, Any] | None = None,
) -> Transition | None:
    """Queue the tasks whose upstream is done, expand mapped tasks, settle finished mapped
    tasks, and derive the job's state. ``job`` is the row if the caller already locked it."""
    if job is None:
        job = _lock_job(conn, job_id, now)
    rows = {
        (r["name"], r["map_index"]): dict(r)
        for r in conn.execute(select(tasks).where(tasks.c.job_id == job_id)).mappings()
    }
    changed: dict[int, dict[str, Any]] = {}

    def set_row(row: dict[str, Any], **values: Any) -> None:
        row.update(values)
        changed.setdefault(row["id"], {}).update(values)

    cancelling = job["cancel_requested"] is not None
    for t in kind.tasks:
        row = rows.get((t.name, -1))
        if row is None:  # a task its kind gained after the job was created: not run
            continue
        if row["state"] == PENDING and not cancelling:
            ups = [rows[(u, -1)]["state"] if (u, -1) in rows else SKIPPED for u in t.upstream]
            if not all(s in DONE_OK for s in ups):
                continue
            if row["params"].get("skip_task"):
                set_row(row, state=SKIPPED, finished=now)
            elif t.map_over is None:
                set_row(row, state=QUEUED, not_before=None)
            else:
                source = rows[(t.map_over.split(".")[0], -1)]
                items = _map_items(source["result"], t.map_over)
                if isinstance(items, str):
                    set_row(row, state=FAILED, error=items, finished=now)
                elif not items:
                    set_row(row, state=SKIPPED, result={}, finished=now)
                else:
                    new_rows = []
                    for index, (item, params) in enumerate(items.items()):
                        instance = {
                            "job_id": job_id,
                            "name": t.name,
                            "map_index": index,
                            "item": item,
                            "placement": t.placement,
                            "state": SKIPPED if params.get("skip_task") else QUEUED,
                            "attempt": 0,
                            "retries_left": _retries(params, row["retries_left"]),
                            "params": params,
                            "created": now,
                            "finished": now if params.get("skip_task") else None,
                        }
                        new_rows.append(instance)
                        rows[(t.name, index)] = instance
                    conn.execute(insert(tasks), new_rows)
                    set_row(row, state=RUNNING, started=now)
        if row["placement"] == MAP and row["state"] == RUNNING:
            instances = [r for (n, i), r in rows.items() if n == t.name and i >= 0]
            states = [r["state"] for r in instances]
            if all(s in TERMINAL for s in states):
                result = {r["item"]: r.get("result") for r in instances}
                settled = job_state(states, started=True, cancel_requested=cancelling)
                if all(s == SKIPPED for s in states):
                    settled = SKIPPED
                set_row(row, state=settled, result=result, finished=now)

    for task_id, values in changed.items():
        conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))

    top = [r for (_, i), r in rows.items() if i < 0]
    started = any(r.get("started") is not None for r in rows.values())
    new_state = job_state((r["state"] for r in top), started=started, cancel_requested=cancelling)
    job_values: dict[str, Any] = {}
    if new_state != job["state"]:
        job_values["state"] = new_state
    if started and job["started"] is None:
        job_values["started"] = now
    if new_state in TERMINAL:
        release_locks(conn, job_id)
        job_values["finished"] = job["finished"] or now
        if new_state == FAILED:
            job_values["error"] = _job_error(rows.values())
    if job_values:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**job_values))
    if new_state != job["state"]:
        return Transition(job_id, job["state"], new_state)
    return None


def _job_error(rows: Iterable[Mapping[str, Any]]) -> str:
    failed = [r for r in rows if r["state"] == FAILED and r["placement"] != MAP]
    failed.sort(key=lambda r: r["finished"] or datetime.max.replace(tzinfo=UTC))
    if not failed:
        return "a task failed"
    first = failed[0]
    where = first["name"] + (f" [{first['item']}]" if first["map_index"] >= 0 else "")
    more = f" (and {len(failed) - 1} more tasks)" if len(failed) > 1 else ""
    return f"{where} failed: {first['error']}{more}"


# -- claiming and finishing -----------------------------------------------------------


@dataclass
class Claim:
    """A task this orchestrator has marked running, with what running it needs."""

    task_id: int
    job_id: int
    kind: str
    job_name: str
    owner_id: int | None
    summary: dict[str, Any]
    spec: dict[str, Any]
    name: str
    map_index: int
    item: str | None
    placement: str
    attempt: int
    params: dict[str, Any]
    saved_state: dict[str, Any]
    upstream: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    created: datetime | None = None


def claim_tasks(engine: Engine, orchestrator_id: str, limit: int, now: datetime) -> list[Claim]:
    """Mark up to ``limit`` runnable tasks as running by this orchestrator and return them.

    On PostgreSQL the candidates are first locked with ``FOR UPDATE SKIP LOCKED``, so
    service processes that claim at the same moment never get the same task. (Locking them
    inside the UPDATE's own sub-select is not enough: PostgreSQL may run that sub-select
    again for every row, and with SKIP LOCKED each run finds new rows, past the limit.)"""
    if limit <= 0:
        return []
    candidates = (
        select(tasks.c.id)
        .where(
            tasks.c.state.in_(WAITING),
            tasks.c.placement != MAP,
            or_(tasks.c.not_before.is_(None), tasks.c.not_before <= now),
        )
        .order_by(tasks.c.id)
        .limit(limit)
    )
    with _transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            locked = conn.execute(candidates.with_for_update(skip_locked=True)).scalars().all()
            if not locked:
                return []
            chosen = tasks.c.id.in_(locked)
        else:  # one writer at a time: the UPDATE takes the write lock before it reads
            chosen = tasks.c.id.in_(candidates.scalar_subquery())
        ids = (
            conn.execute(
                update(tasks)
                .where(chosen, tasks.c.state.in_(WAITING))
                .values(
                    # a rescheduled task carries on in the same attempt
                    attempt=tasks.c.attempt
                    + case((tasks.c.state == UP_FOR_RESCHEDULE, 0), else_=1),
                    state=RUNNING,
                    claimed_by=orchestrator_id,
                    started=func.coalesce(tasks.c.started, now),
                    not_before=None,
                )
                .returning(tasks.c.id)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        rows = (
            conn.execute(
                select(
                    tasks,
                    jobs.c.kind,
                    jobs.c.name.label("job_name"),
                    jobs.c.owner_id,
                    jobs.c.summary,
                    jobs.c.spec,
                    jobs.c.cancel_requested,
                    jobs.c.created.label("job_created"),
                )
                .join(jobs, jobs.c.id == tasks.c.job_id)
                .where(tasks.c.id.in_(ids))
                .order_by(tasks.c.id)
            )
            .mappings()
            .all()
        )
        job_ids = {r["job_id"] for r in rows}
        done = (
            conn.execute(
                # by job only: a filter on state would let the planner scan every
                # finished task of every job
                select(tasks.c.job_id, tasks.c.name, tasks.c.state, tasks.c.result).where(
                    tasks.c.job_id.in_(job_ids), tasks.c.map_index == -1
                )
            )
            .mappings()
            .all()
        )
    results: dict[int, dict[str, Any]] = {}
    for r in done:
        if r["state"] in DONE_OK:
            results.setdefault(r["job_id"], {})[r["name"]] = r["result"]
    claims = []
    for r in rows:
        kind = get_kind(r["kind"])
        ancestors = _ancestors(kind, r["name"])
        upstream = {n: v for n, v in results.get(r["job_id"], {}).items() if n in ancestors}
        claims.append(
            Claim(
                task_id=r["id"],
                job_id=r["job_id"],
                kind=r["kind"],
                job_name=r["job_name"],
                owner_id=r["owner_id"],
                summary=dict(r["summary"] or {}),
                spec=dict(r["spec"] or {}),
                name=r["name"],
                map_index=r["map_index"],
                item=r["item"],
                placement=r["placement"],
                attempt=r["attempt"],
                params=dict(r["params"] or {}),
                saved_state=dict(r["saved_state"] or {}),
                upstream=upstream,
                cancel_requested=r["cancel_requested"] is not None,
                created=_aware(r["created"]),
            )
        )
    return claims


def _ancestors(kind: JobKind, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(kind.task(name).upstream)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(kind.task(n).upstream)
    return seen


@dataclass(frozen=True)
class Outcome:
    """How one run of a task ended."""

    state: str  # succeeded | failed | cancelled | up_for_reschedule
    result: Any = None
    error: str | None = None
    after: float = 0.0
    saved_state: Mapping[str, Any] | None = None
    worker: str | None = None


@dataclass(frozen=True)
class Finished:
    """What :func:`finish_task` did: the task's new state and any job transition."""

    state: str
    transition: Transition | None


def finish_task(
    engine: Engine, claim: Claim, orchestrator_id: str, outcome: Outcome, now: datetime
) -> Finished | None:
    """Record a task's outcome and advance its job. ``None`` if the task was no longer
    this orchestrator's (it was given to another after this one was thought dead)."""
    kind = get_kind(claim.kind)
    with _transaction(engine) as conn:
        job = _lock_job(conn, claim.job_id, now)
        row = (
            conn.execute(
                select(
                    tasks.c.state, tasks.c.claimed_by, tasks.c.attempt, tasks.c.retries_left
                ).where(tasks.c.id == claim.task_id)
            )
            .mappings()
            .first()
        )
        if (
            row is None
            or row["state"] != RUNNING
            or row["claimed_by"] != orchestrator_id
            or row["attempt"] != claim.attempt
        ):
            return None
        values: dict[str, Any] = {"worker": outcome.worker, "claimed_by": None}
        state = outcome.state
        if state == FAILED and job["cancel_requested"] is not None:
            state = CANCELLED
        if state == UP_FOR_RESCHEDULE:
            values.update(
                not_before=now + timedelta(seconds=max(outcome.after, 0.0)),
                saved_state=dict(outcome.saved_state or {}),
            )
        elif state == FAILED and row["retries_left"] > 0:
            state = UP_FOR_RETRY
            delay = float(claim.params.get("retry_delay", kind.task(claim.name).retry_delay))
            backoff = min(delay * 2 ** max(claim.attempt - 1, 0), MAX_RETRY_DELAY)
            values.update(
                retries_left=row["retries_left"] - 1,
                not_before=now + timedelta(seconds=backoff),
                error=outcome.error,
            )
        else:
            values.update(result=_json_safe(outcome.result), error=outcome.error, finished=now)
        values["state"] = state
        conn.execute(update(tasks).where(tasks.c.id == claim.task_id).values(**values))
        transition = _advance(conn, kind, claim.job_id, now, job)
    return Finished(state, transition)


def _json_safe(value: Any) -> Any:
    """Results are stored as JSON: NaN and infinities become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# -- orchestrators --------------------------------------------------------------------


def heartbeat(
    engine: Engine, orchestrator_id: str, host: str, pid: int, *, exclusive: bool, lease: float
) -> bool:
    """Record that this orchestrator lives; return whether it may claim tasks.

    With ``exclusive`` (SQLite) only one orchestrator is active at a time: it holds a lease
    that passes to another only when its heartbeat is older than ``lease`` seconds."""
    now = now_utc()
    stale = now - timedelta(seconds=lease)
    with _transaction(engine) as conn:
        done = conn.execute(
            update(orchestrators).where(orchestrators.c.id == orchestrator_id).values(heartbeat=now)
        ).rowcount
        if not done:
            conn.execute(
                insert(orchestrators).values(
                    id=orchestrator_id, host=host, pid=pid, started=now, heartbeat=now, active=0
                )
            )
        conn.execute(
            orchestrators.delete().where(
                orchestrators.c.heartbeat < stale, orchestrators.c.id != orchestrator_id
            )
        )
        if not exclusive:
            conn.execute(
                update(orchestrators).where(orchestrators.c.id == orchestrator_id).values(active=1)
            )
            return True
        holder = conn.execute(
            select(orchestrators.c.id).where(orchestrators.c.active == 1)
        ).scalar()
        if holder is None:
            conn.execute(
                update(orchestrators).where(orchestrators.c.id == orchestrator_id).values(active=1)
            )
            return True
        return bool(holder == orchestrator_id)


def forget_orchestrators(engine: Engine, ids: Iterable[str]) -> None:
    """Remove orchestrators known to be dead (a process of this host that is gone)."""
    ids = list(ids)
    if ids:
        with _transaction(engine) as conn:
            conn.execute(orchestrators.delete().where(orchestrators.c.id.in_(ids)))


def list_orchestrators(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(orchestrators)).mappings()]


def requeue_orphans(engine: Engine) -> list[int]:
    """Queue again every running task whose orchestrator is gone (attempt + 1 on claim)."""
    live = select(orchestrators.c.id)
    now = now_utc()
    with _transaction(engine) as conn:
        orphans = conn.execute(
            select(tasks.c.id, tasks.c.job_id).where(
                tasks.c.state == RUNNING,
                tasks.c.placement != MAP,
                or_(tasks.c.claimed_by.is_(None), tasks.c.claimed_by.not_in(live)),
            )
        ).all()
        for task_id, job_id in orphans:
            _lock_job(conn, job_id, now)
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.state == RUNNING)
                .values(state=QUEUED, claimed_by=None, not_before=None)
            )
    return [t for t, _ in orphans]


def release_tasks(engine: Engine, orchestrator_id: str) -> None:
    """On a clean stop: give this orchestrator's running tasks back to the queue and leave."""
    with _transaction(engine) as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.claimed_by == orchestrator_id, tasks.c.state == RUNNING)
            .values(state=QUEUED, claimed_by=None, not_before=None)
        )
        conn.execute(orchestrators.delete().where(orchestrators.c.id == orchestrator_id))


# -- reading --------------------------------------------------------------------------


def _job_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("created", "updated", "started", "finished", "cancel_requested"):
        out[key] = _aware(out[key])
    return out


def _visible(job: Mapping[str, Any], viewer: Viewer | None, action: str) -> None:
    if viewer is None or viewer.is_admin or job["owner_id"] == viewer.id:
        return
    if action == "see":
        raise NotFound(f"job {job['id']} does not exist")
    raise Forbidden(
        f"job {job['id']} belongs to another user; only they or an admin may {action} it"
    )


def get_job(engine: Engine, job_id: int, viewer: Viewer | None = None) -> dict[str, Any]:
    """One job's row; users see only their own jobs, admins every job."""
    with engine.connect() as conn:
        row = conn.execute(_with_owner().where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    job = _job_dict(row)
    _visible(job, viewer, "see")
    return job


def job_tasks(engine: Engine, job_id: int, viewer: Viewer | None = None) -> list[dict[str, Any]]:
    """A job's tasks in pipeline order, mapped instances after their task's row."""
    job = get_job(engine, job_id, viewer)
    kind = get_kind(job["kind"])
    order = {t.name: i for i, t in enumerate(kind.tasks)}
    with engine.connect() as conn:
        rows = [
            dict(r) for r in conn.execute(select(tasks).where(tasks.c.job_id == job_id)).mappings()
        ]
    for r in rows:
        for key in ("created", "started", "finished", "not_before"):
            r[key] = _aware(r[key])
    rows.sort(key=lambda r: (order.get(r["name"], len(order)), r["map_index"]))
    return rows


SORTABLE = (
    "id",
    "kind",
    "name",
    "state",
    "job_type",
    "owner",
    "created",
    "updated",
    "started",
    "finished",
)


@dataclass(frozen=True)
class JobQuery:
    """Which jobs to list, in which order, which page. ``sort`` is a column name, with a
    leading ``-`` for descending order."""

    states: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    job_types: tuple[str, ...] = ()
    owner: str | None = None
    name_contains: str | None = None
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    sort: str = "-created"
    limit: int = 50
    offset: int = 0


def _with_owner(*columns: Any) -> Any:
    return select(*(columns or (jobs,)), users.c.name.label("owner")).outerjoin(
        users, users.c.id == jobs.c.owner_id
    )


def list_jobs(
    engine: Engine, viewer: Viewer | None = None, query: JobQuery | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of the jobs that ``viewer`` may see (users their own, admins all) and how
    many match in all."""
    q = query or JobQuery()
    column = q.sort.removeprefix("-")
    if column not in SORTABLE:
        raise InvalidInput(f"sort: cannot sort by {column!r}; allowed: {', '.join(SORTABLE)}")
    conditions = []
    if viewer is not None and not viewer.is_admin:
        conditions.append(jobs.c.owner_id == viewer.id)
    if q.states:
        unknown = sorted(set(q.states) - set(JOB_STATES))
        if unknown:
            raise InvalidInput(f"state: {unknown} unknown; allowed: {', '.join(JOB_STATES)}")
        conditions.append(jobs.c.state.in_(q.states))
    if q.kinds:
        conditions.append(jobs.c.kind.in_(q.kinds))
    if q.job_types:
        conditions.append(jobs.c.job_type.in_(q.job_types))
    if q.owner:  # by id, so that counting needs no join
        owner_id = select(users.c.id).where(users.c.name == q.owner).scalar_subquery()
        conditions.append(jobs.c.owner_id == owner_id)
    if q.name_contains:
        conditions.append(jobs.c.name.icontains(q.name_contains, autoescape=True))
    if q.submitted_after is not None:
        conditions.append(jobs.c.created >= q.submitted_after)
    if q.submitted_before is not None:
        conditions.append(jobs.c.created < q.submitted_before)
    order = users.c.name if column == "owner" else jobs.c[column]
    ordering = [order.desc() if q.sort.startswith("-") else order.asc()]
    ordering.append(jobs.c.id.desc() if q.sort.startswith("-") else jobs.c.id.asc())
    listed = [c for c in jobs.c if c.name != "spec"]  # the list never shows the spec
    page = (
        _with_owner(*listed).where(*conditions).order_by(*ordering).limit(q.limit).offset(q.offset)
    )
    counted = select(func.count()).select_from(jobs).where(*conditions)
    with engine.connect() as conn:
        rows = [_job_dict(r) for r in conn.execute(page).mappings()]
        total = int(conn.execute(counted).scalar_one())
    return rows, total


def read_log(
    engine: Engine,
    log_store: Store,
    job_id: int,
    task: str,
    map_index: int = -1,
    attempt: int | None = None,
    viewer: Viewer | None = None,
) -> str:
    """A task's log for one attempt (the latest by default), also while it runs."""
    data, _size = read_log_part(engine, log_store, job_id, task, map_index, attempt, viewer)
    return data.decode(errors="replace")


def read_log_part(
    engine: Engine,
    log_store: Store,
    job_id: int,
    task: str,
    map_index: int = -1,
    attempt: int | None = None,
    viewer: Viewer | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[bytes, int]:
    """At most ``limit`` bytes of a task's log from byte ``offset`` on, and the log's
    size now (as :func:`read_log`); only those bytes are read from the log store."""
    get_job(engine, job_id, viewer)
    with engine.connect() as conn:
        row = conn.execute(
            select(tasks.c.attempt, tasks.c.state).where(
                tasks.c.job_id == job_id, tasks.c.name == task, tasks.c.map_index == map_index
            )
        ).first()
    if row is None:
        raise NotFound(
            f"job {job_id} has no task {task!r}" + (f" [{map_index}]" if map_index >= 0 else "")
        )
    attempt = row.attempt if attempt is None else attempt
    if attempt < 1:
        return b"", 0
    key = log_key(job_id, task, map_index, attempt)
    try:
        size = log_store.head(key).size
        end = size if limit is None else min(size, offset + limit)
        if offset >= end:
            return b"", size
        data = log_store.get_range(key, offset, end)
    except StoreNotFound:
        return b"", 0
    return data, size


# -- cancel and retry -----------------------------------------------------------------


def cancel_job(
    engine: Engine, log_store: Store, job_id: int, viewer: Viewer | None = None
) -> dict[str, Any]:
    """Stop a job: tasks not started are cancelled, running tasks are told to stop (they
    end as cancelled and report what they had done)."""
    job = get_job(engine, job_id, viewer)
    _visible(job, viewer, "cancel")
    if job["state"] in TERMINAL:
        raise InvalidInput(
            f"job {job_id} is already {job['state']}; only unfinished jobs can be cancelled"
        )
    log_store.put(cancel_key(job_id), b"cancelled\n")
    now = now_utc()
    kind = get_kind(job["kind"])
    with _transaction(engine) as conn:
        _lock_job(conn, job_id, now)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=now))
        conn.execute(
            update(tasks)
            .where(tasks.c.job_id == job_id, tasks.c.state.in_(WAITING | {PENDING}))
            .where(tasks.c.placement != MAP)
            .values(state=CANCELLED, finished=now, not_before=None)
        )
        conn.execute(
            update(tasks)
            .where(tasks.c.job_id == job_id, tasks.c.state == PENDING, tasks.c.placement == MAP)
            .values(state=CANCELLED, finished=now)
        )
        _advance(conn, kind, job_id, now)
    return get_job(engine, job_id)


def retry_job(
    engine: Engine, log_store: Store, job_id: int, viewer: Viewer | None = None
) -> dict[str, Any]:
    """Run a failed or cancelled job again from the tasks that did not succeed."""
    job = get_job(engine, job_id, viewer)
    _visible(job, viewer, "retry")
    if job["state"] not in (FAILED, CANCELLED):
        raise InvalidInput(
            f"job {job_id} is {job['state']}; only failed or cancelled jobs can be retried"
        )
    kind = get_kind(job["kind"])
    log_store.delete(cancel_key(job_id))
    now = now_utc()
    with _transaction(engine) as conn:
        _lock_job(conn, job_id, now)
        claim_assets(conn, job_id, claims_of(job["summary"]), job["owner_id"], now)
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(cancel_requested=None, finished=None, error=None)
        )
        rows = conn.execute(select(tasks).where(tasks.c.job_id == job_id)).mappings().all()
        values: dict[str, Any]
        for r in rows:
            if r["state"] not in (FAILED, CANCELLED):
                continue
            default = kind.task(r["name"]).retries
            retries = _retries(r["params"], default)
            if r["placement"] == MAP:
                # a mapped task that failed before its instances existed starts over;
                # otherwise it waits for its instances again
                has_instances = any(x["name"] == r["name"] and x["map_index"] >= 0 for x in rows)
                values = {"state": RUNNING if has_instances else PENDING, "finished": None}
            elif r["started"] is None:
                values = {"state": PENDING if r["map_index"] < 0 else QUEUED, "finished": None}
            else:
                values = {"state": QUEUED, "finished": None, "retries_left": retries}
            values.update(error=None, not_before=None)
            conn.execute(update(tasks).where(tasks.c.id == r["id"]).values(**values))
        _advance(conn, kind, job_id, now)
    return get_job(engine, job_id)


def counts_by_state(engine: Engine) -> tuple[dict[str, int], dict[str, int], int]:
    """Jobs by state, tasks by state (mapped instances, not their task's row) and the
    number of tasks ready to run now (the queue depth)."""
    now = now_utc()
    with engine.connect() as conn:
        job_counts: dict[str, int] = dict(
            conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        )
        task_counts: dict[str, int] = dict(
            conn.execute(
                select(tasks.c.state, func.count())
                .where(tasks.c.placement != MAP)
                .group_by(tasks.c.state)
            ).all()
        )
        depth = conn.execute(
            select(func.count())
            .where(
                tasks.c.state.in_(WAITING),
                tasks.c.placement != MAP,
                or_(tasks.c.not_before.is_(None), tasks.c.not_before <= now),
            )
            .select_from(tasks)
        ).scalar_one()
    return job_counts, task_counts, int(depth)
