"""Cancelling and retrying jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, select, update

from neuroferry.db import jobs, tasks, transaction
from neuroferry.engine._advance import Viewer, advance, lock_job, now_utc, retries_setting
from neuroferry.engine._assets import claim_assets, claims_of
from neuroferry.engine._context import cancel_key
from neuroferry.engine._kinds import JobKind, get_kind
from neuroferry.engine._queries import check_visible, get_job
from neuroferry.engine._states import (
    CANCELLED,
    FAILED,
    MAP,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINAL,
    WAITING,
)
from neuroferry.errors import InvalidInput
from neuroferry.stores import Store


def cancel_job(
    engine: Engine, log_store: Store, job_id: int, viewer: Viewer | None = None
) -> dict[str, Any]:
    """Stop a job: tasks not started are cancelled, running tasks are told to stop (they
    end as cancelled and report what they had done)."""
    job = get_job(engine, job_id, viewer)
    check_visible(job, viewer, "cancel")
    if job["state"] in TERMINAL:
        raise InvalidInput(
            f"job {job_id} is already {job['state']}; only unfinished jobs can be cancelled"
        )
    log_store.put(cancel_key(job_id), b"cancelled\n")
    now = now_utc()
    kind = get_kind(job["kind"])
    with transaction(engine) as conn:
        lock_job(conn, job_id, now)
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
        advance(conn, kind, job_id, now)
    return get_job(engine, job_id)


def _runs_again(kind: JobKind[Any], row: Mapping[Any, Any], retried: set[str]) -> bool:
    """Whether a finished ``all_done`` task runs again because tasks above it are retried."""
    if row["map_index"] >= 0 or row["state"] in (FAILED, CANCELLED):
        return False
    task = kind.task(row["name"])
    return task.trigger == "all_done" and bool(kind.ancestors(task.name) & retried)


def retry_job(
    engine: Engine, log_store: Store, job_id: int, viewer: Viewer | None = None
) -> dict[str, Any]:
    """Run a failed or cancelled job again from the tasks that did not succeed."""
    job = get_job(engine, job_id, viewer)
    check_visible(job, viewer, "retry")
    if job["state"] not in (FAILED, CANCELLED):
        raise InvalidInput(
            f"job {job_id} is {job['state']}; only failed or cancelled jobs can be retried"
        )
    kind = get_kind(job["kind"])
    log_store.delete(cancel_key(job_id))
    now = now_utc()
    with transaction(engine) as conn:
        lock_job(conn, job_id, now)
        claim_assets(conn, job_id, claims_of(job["summary"]), job["owner_id"], now)
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(cancel_requested=None, finished=None, error=None)
        )
        rows = conn.execute(select(tasks).where(tasks.c.job_id == job_id)).mappings().all()
        retried = {r["name"] for r in rows if r["state"] in (FAILED, CANCELLED)}
        values: dict[str, Any]
        for r in rows:
            if _runs_again(kind, r, retried):  # it ran after failures: run it after these
                conn.execute(
                    update(tasks)
                    .where(tasks.c.id == r["id"])
                    .values(state=PENDING, finished=None, result=None, error=None)
                )
            if r["state"] not in (FAILED, CANCELLED):
                continue
            default = kind.task(r["name"]).retries
            retries = retries_setting(r["params"], default)
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
        advance(conn, kind, job_id, now)
    return get_job(engine, job_id)
