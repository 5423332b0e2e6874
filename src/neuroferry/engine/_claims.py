"""Claiming and finishing tasks, and the orchestrators' heartbeats and leases."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Select,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)

from neuroferry.db import jobs, orchestrators, tasks, transaction, utc
from neuroferry.engine._advance import (
    Transition,
    advance,
    instances_unfinished,
    lock_job,
    now_utc,
)
from neuroferry.engine._context import TaskInstance
from neuroferry.engine._kinds import get_kind
from neuroferry.engine._states import (
    CANCELLED,
    FAILED,
    MAP,
    QUEUED,
    RUNNING,
    TERMINAL,
    UP_FOR_RESCHEDULE,
    UP_FOR_RETRY,
    WAITING,
)
from neuroferry.errors import FerryError

MAX_RETRY_DELAY = 3600.0

# -- claiming and finishing -----------------------------------------------------------


@dataclass
class Claim:
    """A task this orchestrator has marked running, with what running it needs."""

    task_id: int
    instance: TaskInstance
    placement: str
    owner_id: int | None
    cancel_requested: bool = False
    created: datetime | None = None


def claim_tasks(engine: Engine, orchestrator_id: str, limit: int, now: datetime) -> list[Claim]:
    """Mark up to ``limit`` runnable tasks as running by this orchestrator and return them.

    The candidates are the ``limit`` runnable tasks that came first (lowest id). On
    PostgreSQL they are first locked with ``FOR UPDATE SKIP LOCKED``, so service processes
    that claim at the same moment never get the same task. (Locking them inside the
    UPDATE's own sub-select is not enough: PostgreSQL may run that sub-select again for
    every row, and with SKIP LOCKED each run finds new rows, past the limit.)"""
    if limit <= 0:
        return []

    def waiting(state: str) -> Select[tuple[int]]:
        """The first runnable tasks in one waiting state: an index walk over (state, id),
        however many tasks wait (one query over every waiting state sorts them all)."""
        return (
            select(tasks.c.id)
            .where(
                tasks.c.state == state,
                tasks.c.placement != MAP,
                or_(tasks.c.not_before.is_(None), tasks.c.not_before <= now),
            )
            .order_by(tasks.c.id)
            .limit(limit)
        )

    with transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            locked = sorted(
                task_id
                for state in sorted(WAITING)
                for task_id in conn.execute(waiting(state).with_for_update(skip_locked=True))
                .scalars()
                .all()
            )[:limit]
            if not locked:
                return []
            chosen = tasks.c.id.in_(locked)
        else:  # one writer at a time: the UPDATE takes the write lock before it reads
            each = union_all(*(select(waiting(s).subquery().c.id) for s in sorted(WAITING)))
            first = each.subquery()
            candidates = select(first.c.id).order_by(first.c.id).limit(limit)
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
        task_rows = (
            conn.execute(select(tasks).where(tasks.c.id.in_(ids)).order_by(tasks.c.id))
            .mappings()
            .all()
        )
        # each job's row once, however many of its tasks were claimed: its spec (which
        # may list 10,000 assets) is decoded once per claim, not once per task
        job_rows = {
            j["id"]: j
            for j in conn.execute(
                select(
                    jobs.c.id,
                    jobs.c.kind,
                    jobs.c.name,
                    jobs.c.owner_id,
                    jobs.c.summary,
                    jobs.c.spec,
                    jobs.c.cancel_requested,
                ).where(jobs.c.id.in_({r["job_id"] for r in task_rows}))
            ).mappings()
        }
        rows = [{**r, "kind": job_rows[r["job_id"]]["kind"]} for r in task_rows]
        upstreams = _upstreams(conn, rows)
    claims = []
    for r in rows:
        job = job_rows[r["job_id"]]
        instance = TaskInstance(
            job_id=r["job_id"],
            kind=job["kind"],
            job_name=job["name"],
            task=r["name"],
            map_index=r["map_index"],
            item=r["item"],
            attempt=r["attempt"],
            spec=dict(job["spec"] or {}),
            params=dict(r["params"] or {}),
            upstream=upstreams.get(r["id"], {}),
            summary=dict(job["summary"] or {}),
            saved_state=dict(r["saved_state"] or {}),
        )
        claims.append(
            Claim(
                task_id=r["id"],
                instance=instance,
                placement=r["placement"],
                owner_id=job["owner_id"],
                cancel_requested=job["cancel_requested"] is not None,
                created=utc(r["created"]),
            )
        )
    return claims


_SOURCES_KEPT = 64
_MISSING = object()
_sources: dict[tuple[int, int, Any, str], Any] = {}
"""The results of mapped tasks' sources without their mapping (what each instance sees),
by the source's row, attempt, end and the mapping's key: read from the database and
decoded once, not at every claim (the mapping may hold 100,000 items)."""


def _upstreams(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The results of the claimed tasks' ended ancestors (a task that runs after failures
    sees them too), by claimed task id. A mapped instance's upstream leaves out the mapping
    its task was made from: it has its own item's settings in ``params``, and the whole
    mapping (one entry per instance) would make each instance cost as much as all of
    them."""
    # per claimed task: (ancestor, None for its whole result or the mapping's key to leave
    # out, "" when the whole result is the mapping)
    wants: dict[int, list[tuple[str, str | None]]] = {}
    for r in rows:
        try:  # a kind or task that cannot be had fails later, once the claim is recorded
            kind = get_kind(r["kind"])
            map_over = kind.task(r["name"]).map_over if r["map_index"] >= 0 else None
            ancestors = kind.ancestors(r["name"])
        except FerryError:
            continue
        source, _, mapping = (map_over or "").partition(".")
        wants[r["id"]] = [(a, mapping if a == source else None) for a in ancestors]
    ended = {
        (e.job_id, e.name): e
        for e in conn.execute(
            # by job and level only: a filter on state would let the planner scan every
            # finished task of every job
            select(
                tasks.c.id,
                tasks.c.job_id,
                tasks.c.name,
                tasks.c.state,
                tasks.c.attempt,
                tasks.c.finished,
            ).where(
                tasks.c.job_id.in_({r["job_id"] for r in rows}),
                tasks.c.map_index == -1,
                tasks.c.name.in_({a for want in wants.values() for a, _ in want}),
            )
        )
        if e.state in TERMINAL
    }
    job_of = {r["id"]: r["job_id"] for r in rows}
    needed = [
        (task_id, name, e, key, (e.id, e.attempt, e.finished, key or ""))
        for task_id, want in wants.items()
        for name, key in want
        if (e := ended.get((job_of[task_id], name))) is not None and key != ""
    ]
    known = {
        c: value
        for *_, key, c in needed
        if key is not None and (value := _sources.get(c, _MISSING)) is not _MISSING
    }
    fetch = {e.id for _, _, e, key, c in needed if key is None or c not in known}
    results = dict(
        conn.execute(select(tasks.c.id, tasks.c.result).where(tasks.c.id.in_(fetch))).all()
        if fetch
        else []
    )
    out: dict[int, dict[str, Any]] = {task_id: {} for task_id in wants}
    for task_id, name, e, key, c in needed:
        if key is None:
            out[task_id][name] = results[e.id]
            continue
        if c not in known:
            value = results[e.id]
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if k != key}
            if len(_sources) >= _SOURCES_KEPT:
                _sources.clear()
            _sources[c] = known[c] = value
        out[task_id][name] = dict(known[c]) if isinstance(known[c], dict) else known[c]
    return out


@dataclass(frozen=True)
class Outcome:
    """How one run of a task ended."""

    state: str  # succeeded | skipped | failed | cancelled | up_for_reschedule
    result: Any = None
    error: str | None = None
    after: float = 0.0
    saved_state: Mapping[str, Any] | None = None
    worker: str | None = None
    seconds: float | None = None
    """How long the task's function ran, where it ran."""


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
    return finish_tasks(engine, [(claim, outcome)], orchestrator_id, now)[0]


def finish_tasks(
    engine: Engine,
    ended: Sequence[tuple[Claim, Outcome]],
    orchestrator_id: str,
    now: datetime,
) -> list[Finished | None]:
    """Record the outcomes of tasks that ended together in one transaction: each as
    :func:`finish_task` would, with what it did (or ``None``) for each. Each job advances
    once, after all its outcomes are in; its transition goes with its last outcome."""
    with transaction(engine) as conn:
        # the jobs' rows in one order, so that two writers never wait for each other
        locked = {
            job_id: lock_job(conn, job_id, now)
            for job_id in sorted({claim.instance.job_id for claim, _ in ended})
        }
        rows = {
            r["id"]: r
            for r in conn.execute(
                select(
                    tasks.c.id,
                    tasks.c.state,
                    tasks.c.claimed_by,
                    tasks.c.attempt,
                    tasks.c.retries_left,
                ).where(tasks.c.id.in_({claim.task_id for claim, _ in ended}))
            ).mappings()
        }
        changes = [
            _finish(
                claim,
                rows.pop(claim.task_id, None),  # a second outcome of a task: not again
                orchestrator_id,
                outcome,
                now,
                locked[claim.instance.job_id],
            )
            for claim, outcome in ended
        ]
        # one UPDATE per set of columns changed, run for all its rows at once
        same: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for (claim, _), values in zip(ended, changes, strict=True):
            if values is not None:
                same.setdefault(tuple(sorted(values)), []).append({"_id": claim.task_id, **values})
        for columns, rows_values in same.items():
            conn.execute(
                update(tasks)
                .where(tasks.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in columns}),
                rows_values,
            )
        states = [None if values is None else values["state"] for values in changes]
        last = {
            claim.instance.job_id: i
            for i, ((claim, _), state) in enumerate(zip(ended, states, strict=True))
            if state is not None
        }
        transitions = {
            i: advance(conn, get_kind(ended[i][0].instance.kind), job_id, now, locked[job_id])
            for job_id, i in last.items()
            if not _only_instances_before_the_end(conn, job_id, ended, states)
        }
    return [
        None if state is None else Finished(state, transitions.get(i))
        for i, state in enumerate(states)
    ]


def _only_instances_before_the_end(
    conn: Connection,
    job_id: int,
    ended: Sequence[tuple[Claim, Outcome]],
    states: Sequence[str | None],
) -> bool:
    """Whether the outcomes recorded for the job are all of instances of mapped tasks
    that still have instances to end: then no task row of the job's top level changed,
    and advancing the job would change nothing (the mapped tasks settle with their last
    instance), so it is not advanced (a round of short tasks ends many instances)."""
    names = set()
    for (claim, _), state in zip(ended, states, strict=True):
        if state is None or claim.instance.job_id != job_id:
            continue
        if claim.instance.map_index < 0:
            return False
        names.add(claim.instance.task)
    return all(instances_unfinished(conn, job_id, name) for name in names)


def _finish(
    claim: Claim,
    row: RowMapping | None,
    orchestrator_id: str,
    outcome: Outcome,
    now: datetime,
    job: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The columns that record one outcome of the locked ``job``'s task (``row``: its
    state, claim, attempt and retries left), or ``None`` if the task is no longer this
    orchestrator's."""
    task = claim.instance
    if (
        row is None
        or row["state"] != RUNNING
        or row["claimed_by"] != orchestrator_id
        or row["attempt"] != task.attempt
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
        retry_delay = get_kind(task.kind).task(task.task).retry_delay
        delay = float(task.params.get("retry_delay", retry_delay))
        backoff = min(delay * 2 ** max(task.attempt - 1, 0), MAX_RETRY_DELAY)
        values.update(
            retries_left=row["retries_left"] - 1,
            not_before=now + timedelta(seconds=backoff),
            error=outcome.error,
        )
    else:
        values.update(result=_json_safe(outcome.result), error=outcome.error, finished=now)
    values["state"] = state
    return values


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
    with transaction(engine) as conn:
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
        with transaction(engine) as conn:
            conn.execute(orchestrators.delete().where(orchestrators.c.id.in_(ids)))


def list_orchestrators(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(orchestrators)).mappings()]


def requeue_orphans(engine: Engine) -> list[int]:
    """Queue again every running task whose orchestrator is gone (attempt + 1 on claim)."""
    live = select(orchestrators.c.id)
    now = now_utc()
    with transaction(engine) as conn:
        orphans = conn.execute(
            select(tasks.c.id, tasks.c.job_id)
            .where(
                tasks.c.state == RUNNING,
                tasks.c.placement != MAP,
                or_(tasks.c.claimed_by.is_(None), tasks.c.claimed_by.not_in(live)),
            )
            # the jobs' rows in the order finish_tasks locks them: neither waits for the other
            .order_by(tasks.c.job_id, tasks.c.id)
        ).all()
        for task_id, job_id in orphans:
            lock_job(conn, job_id, now)
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.state == RUNNING)
                .values(state=QUEUED, claimed_by=None, not_before=None)
            )
    return [t for t, _ in orphans]


def release_tasks(engine: Engine, orchestrator_id: str) -> None:
    """On a clean stop: give this orchestrator's running tasks back to the queue and leave."""
    with transaction(engine) as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.claimed_by == orchestrator_id, tasks.c.state == RUNNING)
            .values(state=QUEUED, claimed_by=None, not_before=None)
        )
        conn.execute(orchestrators.delete().where(orchestrators.c.id == orchestrator_id))
