"""A small job kind for engine tests: every step leaves a marker file per attempt, so a
test can tell exactly which task ran how often. Importable by Dask worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from neuroferry.config import Settings
from neuroferry.engine import (
    JobKind,
    PreparedJob,
    Reschedule,
    Skipped,
    TaskContext,
    TaskDef,
    TaskFailed,
)

HERE = "ferry_toy_tasks"


class ToySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: str
    items: list[str] = ["a", "b", "c"]
    skip_items: list[str] = []
    fail_times: int = 0
    retries: int = 0
    wait: bool = False
    slow: float = 0.0
    nbytes: int = 0
    reads: list[str] = []
    """Folders the job declares it reads (checked against its owner's grants)."""


def _mark(ctx: TaskContext) -> Path:
    name = ctx.task + (f"-{ctx.item}" if ctx.item else "") + f"-{ctx.attempt}"
    path = Path(ctx.spec["dir"]) / name
    path.touch(exist_ok=False)  # a second run of the same attempt would fail here
    return path


def record(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    ctx.log.info("recorded %s", ctx.task)
    return {
        "task": ctx.task,
        "item": ctx.item,
        "upstream": sorted(ctx.upstream),
        "owner": ctx.grants.user,
        "readable": [str(r) for r in ctx.grants.roots],
    }


def fan(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    skip = set(ctx.spec["skip_items"])
    return {
        "items": {i: {"letter": i, "skip_task": i in skip} for i in ctx.spec["items"]},
        "owner": ctx.grants.user,  # the owner's grants reach the workers
    }


def each(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    # an instance sees its upstream's result without the mapping it was made from
    fan_result = sorted(ctx.upstream["fan"])
    return {
        "letter": ctx.params["letter"].upper(),
        "bytes_copied": ctx.spec["nbytes"],
        "fan": fan_result,
    }


def flaky(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    if ctx.attempt <= ctx.spec["fail_times"]:
        raise TaskFailed(f"attempt {ctx.attempt} fails on purpose")
    return {"attempt": ctx.attempt}


def wait(ctx: TaskContext) -> Any:
    polls = int(ctx.state.get("polls", 0)) + 1
    if not (Path(ctx.spec["dir"]) / "go").exists():
        return Reschedule(after=0.1, state={"polls": polls})
    _mark(ctx)
    return {"polls": polls}


def slow(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    (Path(ctx.spec["dir"]) / "slow-started").touch()
    end = time.monotonic() + ctx.spec["slow"]
    done = 0
    while time.monotonic() < end:
        ctx.check_cancelled(result={"steps": done})
        time.sleep(0.05)
        done += 1
    return {"steps": done}


def prepare(spec: BaseModel, settings: Settings) -> PreparedJob:
    assert isinstance(spec, ToySpec)
    return PreparedJob(
        name=f"toy-{Path(spec.dir).name}",
        task_settings={
            "flaky": {"retries": spec.retries, "retry_delay": 0.05},
            "wait": {"skip_task": not spec.wait},
            "slow": {"skip_task": spec.slow == 0},
        },
        summary={"dir": spec.dir},
        reads=tuple(("reads", r) for r in spec.reads),
    )


KIND = JobKind(
    name="toy",
    spec_model=ToySpec,
    prepare=prepare,
    tasks=(
        TaskDef("begin", f"{HERE}:record", placement="local"),
        TaskDef("fan", f"{HERE}:fan", upstream=("begin",)),
        TaskDef("each", f"{HERE}:each", upstream=("fan",), map_over="fan.items"),
        TaskDef("flaky", f"{HERE}:flaky", upstream=("each",)),
        TaskDef("wait", f"{HERE}:wait", upstream=("flaky",)),
        TaskDef("slow", f"{HERE}:slow", upstream=("wait",)),
        TaskDef("end", f"{HERE}:record", upstream=("slow",), placement="local"),
    ),
)


def not_json(ctx: TaskContext) -> dict[str, Any]:
    """A task with a bug: a set in its result."""
    return {"files": {"a", "b"}}


def nothing_to_do(ctx: TaskContext) -> Skipped:
    """A task that finds it cannot act here."""
    return Skipped("no SMTP server is configured", {"sent": False})


def reads_catalog(ctx: TaskContext) -> dict[str, Any]:
    """A task that needs the catalog (so it must be declared local)."""
    return {"catalog": type(ctx.catalog).__name__}


class GreeterSettings(BaseModel):
    """The ``greeter`` kind's own settings (``[kinds.greeter]``)."""

    model_config = ConfigDict(extra="forbid")

    greeting: str = "hello"
    times: int = 1


def greet(ctx: TaskContext) -> dict[str, Any]:
    settings = ctx.kind_settings
    assert isinstance(settings, GreeterSettings)
    return {"said": " ".join([settings.greeting] * settings.times), "where": ctx.task}


def _prepare_greeter(spec: ToySpec, settings: Settings) -> PreparedJob:
    own = GREETER.settings_of(settings)
    return PreparedJob(name=f"greet-{Path(spec.dir).name}", summary={"greeting": own.greeting})


GREETER = JobKind(
    name="greeter",
    spec_model=ToySpec,
    prepare=_prepare_greeter,
    settings_model=GreeterSettings,
    tasks=(
        TaskDef("here", f"{HERE}:greet", placement="local"),
        TaskDef("there", f"{HERE}:greet", upstream=("here",)),
    ),
)
"""A kind with settings of its own."""
