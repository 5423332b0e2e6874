"""Advancing a job: the state machine over a job's task rows, shared by submit, claims
and control.

The database is the single source of truth. Every change to a job's tasks happens in one
transaction that first touches the job's row (:func:`lock_job`), which serialises changes
to one job across threads and service processes (a row lock on PostgreSQL, the write lock
on SQLite).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from neuroferry.db import jobs, tasks, utc
from neuroferry.engine._assets import release_locks
from neuroferry.engine._kinds import JobKind
from neuroferry.engine._states import (
    DONE_OK,
    FAILED,
    MAP,
    PENDING,
    QUEUED,
    RUNNING,
    SKIPPED,
    TASK_STATES,
    TERMINAL,
    job_state,
)
from neuroferry.errors import InvalidInput, NotFound


class Viewer(Protocol):
    """Who asks: a user with an id and whether they are an admin."""

    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def retries_setting(params: Mapping[str, Any], default: int) -> int:
    value = params.get("retries", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"retries must be a whole number of at least 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Transition:
    """A job whose state changed, for notifications and metrics."""

    job_id: int
    old: str
    new: str


def lock_job(conn: Connection, job_id: int, now: datetime) -> Mapping[str, Any]:
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


#: Every column of a task row but its result and saved state, which can be large (a
#: settled mapped task's result gathers all its instances'): read only where needed.
_ROW = [c for c in tasks.c if c.name not in ("result", "saved_state")]

_UNFINISHED = frozenset(TASK_STATES) - TERMINAL


def advance(
    conn: Connection,
    kind: JobKind[Any],
    job_id: int,
    now: datetime,
    job: Mapping[str, Any] | None = None,
) -> Transition | None:
    """Queue the tasks whose upstream is done, expand mapped tasks, settle finished mapped
    tasks, and derive the job's state. ``job`` is the row if the caller already locked it.

    It reads the job's top-level task rows only: a mapped task's instances are read when
    it settles (their last one ended), so finishing one instance of a big mapped task
    costs the same as finishing a task of a small job."""
    if job is None:
        job = lock_job(conn, job_id, now)
    rows = {
        r["name"]: dict(r)
        for r in conn.execute(
            select(*_ROW).where(tasks.c.job_id == job_id, tasks.c.map_index == -1)
        ).mappings()
    }
    changed: dict[int, dict[str, Any]] = {}

    def set_row(row: dict[str, Any], **values: Any) -> None:
        row.update(values)
        changed.setdefault(row["id"], {}).update(values)

    cancelling = job["cancel_requested"] is not None
    for t in kind.tasks:
        row = rows.get(t.name)
        if row is None:  # a task its kind gained after the job was created: not run
            continue
        if row["state"] == PENDING and not cancelling:
            ups = [rows[u]["state"] if u in rows else SKIPPED for u in t.upstream]
            if not all(s in (DONE_OK if t.trigger == "all_succeeded" else TERMINAL) for s in ups):
                continue
            if row["params"].get("skip_task"):
                set_row(row, state=SKIPPED, finished=now)
            elif t.map_over is None:
                set_row(row, state=QUEUED, not_before=None)
            else:
                source = rows[t.map_over.split(".")[0]]
                if "result" not in source:  # else it settled just now, in this loop
                    by_id = select(tasks.c.result).where(tasks.c.id == source["id"])
                    source["result"] = conn.execute(by_id).scalar()
                items = _map_items(source["result"], t.map_over)
                if isinstance(items, str):
                    set_row(row, state=FAILED, error=items, finished=now)
                elif not items:
                    set_row(row, state=SKIPPED, result={}, finished=now)
                else:
                    _expand(conn, job_id, t.name, t.placement, items, row["retries_left"], now)
                    set_row(row, state=RUNNING, started=now)
        if row["placement"] == MAP and row["state"] == RUNNING:
            settled = _settled(conn, job_id, t.name, cancelling)
            if settled is not None:
                set_row(row, state=settled[0], result=settled[1], finished=now)

    for task_id, values in changed.items():
        conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))

    # an instance starts after its mapped task's row, which is top-level
    started = any(r["started"] is not None for r in rows.values())
    new_state = job_state(
        (r["state"] for r in rows.values()), started=started, cancel_requested=cancelling
    )
    job_values: dict[str, Any] = {}
    if new_state != job["state"]:
        job_values["state"] = new_state
    if started and job["started"] is None:
        job_values["started"] = now
    if new_state in TERMINAL:
        release_locks(conn, job_id)
        job_values["finished"] = job["finished"] or now
        if new_state == FAILED:
            job_values["error"] = _job_error(conn, job_id)
    if job_values:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**job_values))
    if new_state != job["state"]:
        return Transition(job_id, job["state"], new_state)
    return None


def _expand(
    conn: Connection,
    job_id: int,
    name: str,
    placement: str,
    items: Mapping[str, dict[str, Any]],
    retries: int,
    now: datetime,
) -> None:
    """Insert one instance row per item of a mapped task."""
    conn.execute(
        insert(tasks),
        [
            {
                "job_id": job_id,
                "name": name,
                "map_index": index,
                "item": item,
                "placement": placement,
                "state": SKIPPED if params.get("skip_task") else QUEUED,
                "attempt": 0,
                "retries_left": retries_setting(params, retries),
                "params": params,
                "created": now,
                "finished": now if params.get("skip_task") else None,
            }
            for index, (item, params) in enumerate(items.items())
        ],
    )


def instances_unfinished(conn: Connection, job_id: int, name: str) -> bool:
    """Whether an instance of the job's mapped task ``name`` has not ended: one indexed
    look-up, however many instances there are."""
    # by (job, name, state) alone: with map_index >= 0 too the planner would walk the
    # instances in order, past every finished one. The mapped task's own row is one more.
    unfinished = select(tasks.c.map_index).where(
        tasks.c.job_id == job_id, tasks.c.name == name, tasks.c.state.in_(sorted(_UNFINISHED))
    )
    return any(i >= 0 for i in conn.execute(unfinished.limit(2)).scalars())


def _settled(
    conn: Connection, job_id: int, name: str, cancelling: bool
) -> tuple[str, dict[str, Any]] | None:
    """A running mapped task's state and result ``{item: result}`` once every instance
    has ended, else ``None``. Whether one has not is one indexed look-up; the instances
    are read only when none is left."""
    if instances_unfinished(conn, job_id, name):
        return None
    task = (tasks.c.job_id == job_id, tasks.c.name == name)
    ended = conn.execute(
        select(tasks.c.item, tasks.c.state, tasks.c.result)
        .where(*task, tasks.c.map_index >= 0)
        .order_by(tasks.c.map_index)
    ).all()
    states = [r.state for r in ended]
    settled = job_state(states, started=True, cancel_requested=cancelling)
    if all(s == SKIPPED for s in states):
        settled = SKIPPED
    return settled, {r.item: r.result for r in ended}


def _job_error(conn: Connection, job_id: int) -> str:
    failed = conn.execute(
        select(tasks.c.name, tasks.c.item, tasks.c.map_index, tasks.c.error, tasks.c.finished)
        .where(tasks.c.job_id == job_id, tasks.c.state == FAILED, tasks.c.placement != MAP)
        .order_by(tasks.c.id)
    ).all()
    if not failed:
        return "a task failed"
    never = datetime.max.replace(tzinfo=UTC)
    first = min(failed, key=lambda r: utc(r.finished) or never)
    where = first.name + (f" [{first.item}]" if first.map_index >= 0 else "")
    more = f" (and {len(failed) - 1} more tasks)" if len(failed) > 1 else ""
    return f"{where} failed: {first.error}{more}"
