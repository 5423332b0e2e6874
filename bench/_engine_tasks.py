"""The job kinds of ``bench/engine.py`` and ``bench/mapped.py``, and the same steps as
plain Dask functions.

A ``bench`` job is three chained no-op cluster tasks and one local task. Every step
returns when it began and ended by the wall clock (workers are processes of this
machine, so their clocks agree with the orchestrator's). Dask worker processes import
this module by the name ``_engine_tasks``: they inherit the parent's ``sys.path``, which
holds the ``bench`` folder when the benchmark runs as ``python bench/engine.py``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from neuroferry.config import Settings
from neuroferry.engine import JobKind, PreparedJob, TaskContext, TaskDef

HERE = "_engine_tasks"
STEPS = ("a", "b", "c", "d")
"""The tasks of one job in chain order; ``d`` runs in the orchestrator (local)."""


class BenchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 0


def step(ctx: TaskContext) -> dict[str, float]:
    """A no-op task: when it began and ended."""
    began = time.time()
    return {"began": began, "ended": time.time()}


def prepare(spec: BaseModel, settings: Settings) -> PreparedJob:
    assert isinstance(spec, BenchSpec)
    return PreparedJob(name=f"bench-{spec.n}")


KIND = JobKind(
    name="bench",
    spec_model=BenchSpec,
    prepare=prepare,
    description="Three chained no-op cluster tasks and one local task (bench/engine.py).",
    tasks=(
        TaskDef("a", f"{HERE}:step"),
        TaskDef("b", f"{HERE}:step", upstream=("a",)),
        TaskDef("c", f"{HERE}:step", upstream=("b",)),
        TaskDef("d", f"{HERE}:step", upstream=("c",), placement="local"),
    ),
)


class MappedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: int


def items(ctx: TaskContext) -> dict[str, dict[str, int]]:
    """The items the mapped task runs over: ``items`` of them."""
    return {f"item-{i:06}": {"i": i} for i in range(int(ctx.spec["items"]))}


def noop(ctx: TaskContext) -> None:
    """An instance of the mapped task: nothing."""


def prepare_mapped(spec: BaseModel, settings: Settings) -> PreparedJob:
    assert isinstance(spec, MappedSpec)
    return PreparedJob(name=f"mapped-{spec.items}")


MAPPED = JobKind(
    name="bench-mapped",
    spec_model=MappedSpec,
    prepare=prepare_mapped,
    description="One task mapped over N items of no-op instances (bench/mapped.py).",
    tasks=(
        TaskDef("items", f"{HERE}:items", placement="local"),
        TaskDef("each", f"{HERE}:noop", upstream=("items",), map_over="items"),
        TaskDef("end", f"{HERE}:noop", upstream=("each",), placement="local"),
    ),
)


def plain_step(upstream: dict[str, float] | None, submitted: float) -> dict[str, float]:
    """The same no-op for plain Dask: ``runnable`` is when its upstream ended (or, for
    the first step, when the client submitted the chain)."""
    began = time.time()
    runnable = upstream["ended"] if upstream is not None else submitted
    return {"began": began, "ended": time.time(), "runnable": runnable}
