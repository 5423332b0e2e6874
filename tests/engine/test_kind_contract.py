"""The contract between the engine and a job kind: what a kind declares, what its tasks
get and what the engine refuses, saying why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry_toy_tasks import KIND
from neuroferry.config import Settings
from neuroferry.engine import (
    DESTINATION_KEY,
    EMAIL_KEY,
    EVENTS_KEY,
    PreparedJob,
    TaskDef,
    TaskInstance,
    named_destination,
    task_maker,
)
from neuroferry.engine._runner import TaskCall, run_task
from neuroferry.errors import ConfigError, InvalidInput


def _run(settings: Settings, fn: str, *, task: str = "t", **call: Any) -> dict[str, Any]:
    instance = TaskInstance(job_id=7, kind="toy", job_name="toy-x", task=task)
    return run_task(TaskCall(instance, fn=f"ferry_toy_tasks:{fn}", settings=settings, **call))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_an_unknown_task_names_the_kind_and_its_tasks() -> None:
    with pytest.raises(ConfigError) as caught:
        KIND.task("nope")
    assert str(caught.value) == (
        "job kind 'toy' has no task 'nope'; its tasks: begin, fan, each, flaky, wait, slow, end"
    )


def test_a_result_that_is_not_json_fails_its_task_saying_what_and_where(
    settings: Settings,
) -> None:
    outcome = _run(settings, "not_json", task="gather")
    assert outcome["state"] == "failed"
    assert outcome["error"] == (
        "gather returned a set as its result['files'], which cannot be stored; a task "
        "returns None or JSON values: dicts with str keys, lists, str, int, float, bool "
        "and None (convert others: a set or tuple to a list, a Path or datetime to str)"
    )


def test_a_cluster_task_gets_no_catalog(settings: Settings) -> None:
    outcome = _run(settings, "reads_catalog", task="register")
    assert outcome["state"] == "failed"
    assert outcome["error"] == (
        "register must run in the service (placement local): ctx.catalog is given only to "
        "local tasks; declare the toy kind's task 'register' with placement=\"local\""
    )
    local = _run(settings, "reads_catalog", local={"catalog": object(), "db": object()})
    assert local == {**local, "state": "succeeded", "result": {"catalog": "object"}}


def test_task_maker_names_the_functions_of_one_module() -> None:
    task = task_maker("ferry_toy_tasks")
    assert task("fan", "begin", retries=2) == TaskDef(
        "fan", "ferry_toy_tasks:fan", upstream=("begin",), retries=2
    )
    assert task("fan", "begin") == KIND.task("fan")


def test_a_destination_is_looked_up_by_name(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, destinations={"open": "s3://open-data/raw/", "bad": "ftp://host/x"}
    )
    assert named_destination("s3_bucket", "open", settings) == "s3://open-data/raw"
    with pytest.raises(InvalidInput) as caught:
        named_destination("destination", "nope", settings, or_url=True)
    assert str(caught.value) == (
        "destination: 'nope' is not a destination of this service; "
        "give one of bad, default, open or a store URL"
    )
    assert caught.value.problems == [
        {"field": "destination", "message": "'nope' is not a destination"}
    ]
    with pytest.raises(ConfigError, match="'bad' is 'ftp://host/x', whose scheme 'ftp' is not"):
        named_destination("s3_bucket", "bad", settings)


def test_a_prepared_jobs_destination_and_e_mail_are_summary_facts() -> None:
    plan = PreparedJob(
        name="n",
        summary={"volume": "s3://b/v.ome.zarr"},
        destination="s3://b",
        notify_email="me@example.org",
        notify_events=("begin", "end"),
    )
    assert plan.summary == {
        "volume": "s3://b/v.ome.zarr",
        DESTINATION_KEY: "s3://b",
        EMAIL_KEY: "me@example.org",
        EVENTS_KEY: ["begin", "end"],
    }
    assert PreparedJob(name="n", summary={"a": 1}).summary == {"a": 1}
