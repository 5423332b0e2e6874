"""The contract between the engine and a job kind: what a kind declares, what its tasks
get and what the engine refuses, saying why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _rig import running_rig
from ferry_toy_tasks import GREETER, KIND, GreeterSettings
from neuroferry.config import Settings, get_settings
from neuroferry.engine import (
    DESTINATION_KEY,
    EMAIL_KEY,
    EVENTS_KEY,
    PreparedJob,
    TaskDef,
    TaskInstance,
    check_kind_settings,
    named_destination,
    register_kind,
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


def test_a_task_may_end_skipped_with_its_reason(settings: Settings) -> None:
    outcome = _run(settings, "nothing_to_do", task="send_job_end_email")
    assert outcome["state"] == "skipped"
    assert outcome["result"] == {"sent": False, "reason": "no SMTP server is configured"}


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


# -- a kind's own settings -----------------------------------------------------------


def test_a_kinds_settings_come_from_its_table_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert GREETER.settings_of(get_settings(home=tmp_path)) == GreeterSettings()
    config = tmp_path / "ferry.toml"
    config.write_text('[kinds.greeter]\ngreeting = "hi"\n')
    monkeypatch.setenv("FERRY_CONFIG", str(config))
    monkeypatch.setenv("FERRY_KINDS__GREETER__TIMES", "2")
    settings = get_settings(home=tmp_path)
    assert settings.kinds == {"greeter": {"greeting": "hi", "times": "2"}}
    assert GREETER.settings_of(settings) == GreeterSettings(greeting="hi", times=2)
    assert KIND.settings_of(settings) is None


def test_wrong_kind_settings_stop_the_start_naming_the_field(tmp_path: Path) -> None:
    register_kind(GREETER)
    check_kind_settings(Settings(home=tmp_path, kinds={"greeter": {"times": 3}}))
    wrong = Settings(home=tmp_path, kinds={"greeter": {"times": "many", "loud": True}})
    with pytest.raises(ConfigError) as caught:
        check_kind_settings(wrong)
    assert str(caught.value) == (
        "invalid settings of job kind 'greeter' (kinds.greeter.times: Input should be a "
        "valid integer, unable to parse string as an integer; kinds.greeter.loud: Extra "
        "inputs are not permitted); check [kinds.greeter] in the config file and "
        "FERRY_KINDS__* variables"
    )
    with pytest.raises(ConfigError, match=r"^kinds\.nosuch: no job kind 'nosuch' is installed"):
        check_kind_settings(Settings(home=tmp_path, kinds={"nosuch": {"a": 1}}))
    register_kind(KIND)
    with pytest.raises(ConfigError, match=r"^kinds\.toy: job kind 'toy' takes no settings"):
        check_kind_settings(Settings(home=tmp_path, kinds={"toy": {"a": 1}}))


def test_a_kinds_settings_reach_prepare_and_its_tasks(database_url: str, tmp_path: Path) -> None:
    register_kind(GREETER)
    with running_rig(database_url, kinds={"greeter": {"greeting": "hi", "times": 2}}) as rig:
        rig.start()
        job_id = rig.submit("greeter", {"dir": str(tmp_path)})
        job = rig.wait(job_id)
        assert job["state"] == "succeeded", rig.states(job_id)
        assert job["summary"] == {"greeting": "hi"}
        results = {name: task["result"] for name, task in rig.tasks(job_id).items()}
        assert results == {
            "here": {"said": "hi hi", "where": "here"},
            "there": {"said": "hi hi", "where": "there"},
        }
