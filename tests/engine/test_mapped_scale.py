"""A mapped task of thousands of instances, on both databases: finishing or claiming one
instance reads the same rows whatever the number of instances, the mapped task settles
with every instance's result, and outcomes that arrive together are recorded together."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, event, select

from neuroferry.config import Settings, get_settings
from neuroferry.db import tasks
from neuroferry.engine import JobKind, PreparedJob, TaskDef, get_job, register_kind, submit_job
from neuroferry.engine._advance import now_utc
from neuroferry.engine._claims import Claim, Outcome, claim_tasks, finish_task, finish_tasks

ME = "orchestrator-1"


class ScaleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int


def _prepare(spec: BaseModel, settings: Settings) -> PreparedJob:
    assert isinstance(spec, ScaleSpec)
    return PreparedJob(name=f"scale-{spec.n}", task_settings={"each": {"retries": 1}})


def _register(name: str, last: TaskDef) -> None:
    """A kind of three tasks: one that gives the items, one mapped over them, ``last``."""
    each = TaskDef("each", "ferry_toy_tasks:record", upstream=("items",), map_over="items")
    first = TaskDef("items", "ferry_toy_tasks:record")
    steps = (first, each, last)
    register_kind(JobKind(name=name, spec_model=ScaleSpec, prepare=_prepare, tasks=steps))


_register("mapscale", TaskDef("end", "ferry_toy_tasks:record", upstream=("each",)))
_register(
    "mapchain",
    TaskDef("again", "ferry_toy_tasks:record", upstream=("each",), map_over="each"),
)


@contextmanager
def rows_read(engine: Engine) -> Iterator[list[int]]:
    """The number of rows each SELECT run inside the block gives (counted again once the
    block has ended, by running it as a sub-select with the same parameters)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((re.sub(r"\s+FOR UPDATE.*$", "", statement, flags=re.S), params))

    counts: list[int] = []
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        for statement, params in seen:
            counted = f"SELECT count(*) FROM ({statement}) AS counted"
            counts.append(conn.exec_driver_sql(counted, params).scalar_one())


def claim(engine: Engine, limit: int) -> list[Claim]:
    return claim_tasks(engine, ME, limit, now_utc())


def run_big_job(engine: Engine, n: int) -> tuple[int, int, int]:
    """Run a job whose mapped task has ``n`` instances; the rows that claiming and that
    finishing one instance read, and the job's id."""
    job_id = submit_job(engine, "mapscale", {"n": n}, owner_id=None, settings=get_settings())
    [first] = claim(engine, 10)
    items = {f"d{i:05}": {"i": i} for i in range(n)}
    finish_task(engine, first, ME, Outcome("succeeded", result=items), now_utc())
    with rows_read(engine) as claimed:
        [one] = claim(engine, 1)
    assert one.instance.upstream == {}  # not the mapping of every instance: its own item only
    assert one.instance.params == items[one.instance.item]
    with rows_read(engine) as finished:
        done = finish_task(
            engine, one, ME, Outcome("succeeded", result=one.instance.params), now_utc()
        )
    assert done is not None and done.state == "succeeded" and done.transition is None
    while (batch := claim(engine, 500))[0].instance.task == "each":
        outcomes = [(c, Outcome("succeeded", result=c.instance.params)) for c in batch]
        assert all(f is not None for f in finish_tasks(engine, outcomes, ME, now_utc()))
    [end] = batch
    assert end.instance.task == "end"
    assert end.instance.upstream["each"] == items
    finish_task(engine, end, ME, Outcome("succeeded"), now_utc())
    return sum(claimed), sum(finished), job_id


def test_one_instance_of_a_big_mapped_task_costs_what_one_of_a_small_one_does(
    engine: Engine,
) -> None:
    small_claim, small_finish, _ = run_big_job(engine, 100)
    big_claim, big_finish, job_id = run_big_job(engine, 2000)
    assert (big_claim, big_finish) == (small_claim, small_finish)
    assert big_finish < 20  # the job's few top-level rows, not its instances
    job = get_job(engine, job_id)
    assert job["state"] == "succeeded" and job["finished"] is not None
    with engine.connect() as conn:
        got = conn.execute(
            select(tasks.c.name, tasks.c.map_index, tasks.c.state, tasks.c.result).where(
                tasks.c.job_id == job_id
            )
        ).all()
    assert len(got) == 3 + 2000
    assert {r.state for r in got} == {"succeeded"}
    [each] = [r for r in got if r.name == "each" and r.map_index == -1]
    assert each.result == {f"d{i:05}": {"i": i} for i in range(2000)}


def test_outcomes_recorded_together_keep_each_tasks_rules(engine: Engine) -> None:
    """A failure with retries left waits to be retried, a stale claim is refused, the last
    instance settles the mapped task, and a failure fails the job, in one transaction."""
    job_id = submit_job(engine, "mapscale", {"n": 3}, owner_id=None, settings=get_settings())
    [first] = claim(engine, 10)
    items = {"a": {}, "b": {}, "c": {}}
    finish_task(engine, first, ME, Outcome("succeeded", result=items), now_utc())
    a, b, c = claim(engine, 10)
    stale = Claim(a.task_id, a.instance, a.placement, a.owner_id)
    recorded = finish_tasks(
        engine,
        [
            (a, Outcome("succeeded", result=1)),
            (b, Outcome("failed", error="boom")),
            (c, Outcome("succeeded", result=3)),
            (stale, Outcome("succeeded", result=9)),
        ],
        ME,
        now_utc(),
    )
    assert [f.state if f else None for f in recorded] == [
        "succeeded",
        "up_for_retry",
        "succeeded",
        None,
    ]
    assert all(f is None or f.transition is None for f in recorded)
    [again] = claim_tasks(engine, ME, 10, now_utc() + timedelta(seconds=120))
    assert (again.instance.item, again.instance.attempt) == ("b", 2)
    [lost] = finish_tasks(engine, [(again, Outcome("failed", error="boom again"))], ME, now_utc())
    assert lost is not None and lost.state == "failed"
    assert lost.transition is not None
    assert (lost.transition.old, lost.transition.new) == ("running", "failed")
    job = get_job(engine, job_id)
    assert job["error"] == "each [b] failed: boom again"
    with engine.connect() as conn:
        each = conn.execute(
            select(tasks.c.state, tasks.c.result).where(
                tasks.c.job_id == job_id, tasks.c.name == "each", tasks.c.map_index == -1
            )
        ).one()
    assert (each.state, each.result) == ("failed", {"a": 1, "b": None, "c": 3})


def test_a_task_mapped_over_a_mapped_task_expands_as_that_one_settles(engine: Engine) -> None:
    job_id = submit_job(engine, "mapchain", {"n": 2}, owner_id=None, settings=get_settings())
    [first] = claim(engine, 10)
    finish_task(engine, first, ME, Outcome("succeeded", result={"a": {}, "b": {}}), now_utc())
    ended = [(c, Outcome("succeeded", result={"x": c.instance.item})) for c in claim(engine, 10)]
    finish_tasks(engine, ended, ME, now_utc())
    again = claim(engine, 10)
    assert [(c.instance.task, c.instance.item, c.instance.params) for c in again] == [
        ("again", "a", {"x": "a"}),
        ("again", "b", {"x": "b"}),
    ]
    finish_tasks(engine, [(c, Outcome("succeeded", result=1)) for c in again], ME, now_utc())
    assert get_job(engine, job_id)["state"] == "succeeded"
