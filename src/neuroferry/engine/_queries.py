"""Reading jobs, tasks and logs, as their owner or an admin may see them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, or_, select

from neuroferry.db import jobs, tasks, transaction, users, utc
from neuroferry.engine._advance import Viewer, now_utc
from neuroferry.engine._context import log_key
from neuroferry.engine._kinds import get_kind
from neuroferry.engine._states import ACTIVE, JOB_STATES, MAP, PENDING, WAITING
from neuroferry.errors import Forbidden, InvalidInput, NotFound, StoreNotFound
from neuroferry.stores import Store


def _job_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("created", "updated", "started", "finished", "cancel_requested"):
        out[key] = utc(out[key])
    return out


Audience = Callable[[int], ColumnElement[bool]]
"""A condition on ``jobs``, given a user's id, true for the jobs they may see besides
their own."""

_AUDIENCES: list[Audience] = []


def register_audience(audience: Audience) -> None:
    """Show jobs to more users than their owner: ``audience(user_id)`` selects the jobs
    that user may also see (their state, tasks and logs). Only a job's owner or an admin
    cancels or retries it."""
    if audience not in _AUDIENCES:
        _AUDIENCES.append(audience)


def _visible(viewer: Viewer) -> ColumnElement[bool]:
    """The jobs ``viewer`` (not an admin) may see: their own and their audiences'."""
    return or_(jobs.c.owner_id == viewer.id, *(a(viewer.id) for a in _AUDIENCES))


def _shared(engine: Engine, job_id: int, viewer: Viewer) -> bool:
    """Whether job ``job_id`` is shown to ``viewer`` though not theirs."""
    if not _AUDIENCES:
        return False
    with engine.connect() as conn:
        found = conn.execute(
            select(jobs.c.id).where(jobs.c.id == job_id, or_(*(a(viewer.id) for a in _AUDIENCES)))
        ).first()
    return found is not None


def may_change(job: Mapping[str, Any], viewer: Viewer | None) -> bool:
    """Whether ``viewer`` may cancel or retry ``job``: its owner or an admin."""
    return viewer is None or viewer.is_admin or job["owner_id"] == viewer.id


def check_visible(job: Mapping[str, Any], viewer: Viewer | None, action: str) -> None:
    if viewer is None or viewer.is_admin or job["owner_id"] == viewer.id:
        return
    if action == "see":
        raise NotFound(f"job {job['id']} does not exist")
    raise Forbidden(
        f"job {job['id']} belongs to another user; only they or an admin may {action} it"
    )


def get_job(engine: Engine, job_id: int, viewer: Viewer | None = None) -> dict[str, Any]:
    """One job's row; users see their own jobs and those shown to them (see
    :func:`register_audience`), admins every job."""
    with engine.connect() as conn:
        row = conn.execute(_with_owner().where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    job = _job_dict(row)
    if may_change(job, viewer) or (viewer is not None and _shared(engine, job_id, viewer)):
        return job
    check_visible(job, viewer, "see")
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
            r[key] = utc(r[key])
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


_SHOWN = [c for c in jobs.c if c.name != "access"]  # what a job's tasks may touch: not shown


def _with_owner(*columns: Any) -> Any:
    return select(*(columns or _SHOWN), users.c.name.label("owner")).outerjoin(
        users, users.c.id == jobs.c.owner_id
    )


def list_jobs(
    engine: Engine, viewer: Viewer | None = None, query: JobQuery | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of the jobs that ``viewer`` may see (users their own and those shown to
    them, admins all) and how many match in all."""
    q = query or JobQuery()
    column = q.sort.removeprefix("-")
    if column not in SORTABLE:
        raise InvalidInput(f"sort: cannot sort by {column!r}; allowed: {', '.join(SORTABLE)}")
    conditions = []
    if viewer is not None and not viewer.is_admin:
        conditions.append(_visible(viewer))
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
    listed = [c for c in _SHOWN if c.name != "spec"]  # the list never shows the spec
    page = (
        _with_owner(*listed).where(*conditions).order_by(*ordering).limit(q.limit).offset(q.offset)
    )
    counted = select(func.count()).select_from(jobs).where(*conditions)
    with engine.connect() as conn:
        rows = [_job_dict(r) for r in conn.execute(page).mappings()]
        total = int(conn.execute(counted).scalar_one())
    return rows, total


def unfinished_jobs(engine: Engine, kind: str, names: Iterable[str]) -> dict[str, int]:
    """The jobs of ``kind`` named one of ``names`` that have not finished (pending, queued
    or running), by name: the id of the oldest such job of each name."""
    names = list(names)
    if not names:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.name, jobs.c.id)
            .where(
                jobs.c.kind == kind,
                jobs.c.name.in_(names),
                jobs.c.state.in_(ACTIVE | {PENDING}),
            )
            .order_by(jobs.c.id)
        ).all()
    found: dict[str, int] = {}
    for name, job_id in rows:
        found.setdefault(name, job_id)
    return found


def job_state_counts(engine: Engine, viewer: Viewer | None = None) -> dict[str, int]:
    """How many of the jobs ``viewer`` may see (as :func:`list_jobs`) are in each
    state, in the order of :data:`JOB_STATES`; states without jobs are left out."""
    query = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    if viewer is not None and not viewer.is_admin:
        query = query.where(_visible(viewer))
    with transaction(engine) as conn:
        found = {str(state): int(n) for state, n in conn.execute(query).all()}
    return {s: found[s] for s in JOB_STATES if found.get(s)}


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
