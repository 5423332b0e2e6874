"""What a task's command gets: a scrubbed environment, and a log without secrets."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import obstore
import pytest

from neuroferry.config import Settings
from neuroferry.engine import TaskContext, TaskFailed, TaskInstance
from neuroferry.engine._context import TaskLog
from neuroferry.engine._environment import command_environment
from neuroferry.redaction import secret_values
from neuroferry.stores import open_store

TOKEN = "nf_" + "Zz9_-q" * 7


def test_the_environment_is_an_allow_list(tmp_path: Path) -> None:
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": "/root",
        "TMPDIR": "/tmp",
        "FERRY_HOME": "/var/lib/ferry",
        "FERRY_DATABASE_URL": "postgresql://ferry:pw@db/ferry",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "DATABASE_URL": "postgresql://ferry:pw@db/ferry",
        "GITHUB_TOKEN": "ghp_x",
        "DOCKER_HOST": "unix:///run/docker.sock",
    }
    env = command_environment(tmp_path, environ=environ)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    allowed = command_environment(tmp_path, ["DOCKER_HOST", "NOT_SET"], environ=environ)
    assert allowed["DOCKER_HOST"] == "unix:///run/docker.sock" and "NOT_SET" not in allowed
    assert command_environment(tmp_path, environ={})["PATH"]  # a PATH even without one


def test_command_environment_setting_takes_variable_names(tmp_path: Path) -> None:
    assert Settings(home=tmp_path, command_environment=["DOCKER_HOST"]).command_environment
    with pytest.raises(ValueError, match="not an environment variable name"):
        Settings(home=tmp_path, command_environment=["DOCKER HOST=x"])


PRINT_ENV = "import os, sys; [print(f'{k}={v}') for k, v in sorted(os.environ.items())]"


def _context(tmp_path: Path, settings: Settings) -> tuple[TaskContext, TaskLog]:
    store = open_store((tmp_path / "logs").as_uri(), create=True)
    handler = TaskLog(store, "jobs/1/t/attempt-1.log", secrets=secret_values(settings))
    log = logging.getLogger(f"neuroferry.task.test.{tmp_path.name}")
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    ctx = TaskContext(
        TaskInstance(job_id=1, kind="upload", job_name="asset", task="t"),
        config=settings,
        log_store=store,
        log=log,
    )
    return ctx, handler


def test_a_command_gets_no_secrets_and_its_output_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-session-token-value")
    monkeypatch.setenv("LAB_LICENSE", "license-server:27000")
    settings = Settings(
        home=tmp_path / "home",
        s3_secret_access_key="s3-secret-value",
        command_environment=["LAB_LICENSE"],
    )
    ctx, handler = _context(tmp_path, settings)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ctx.run([sys.executable, "-c", PRINT_ENV], scratch=scratch)
    printed = f"key s3-secret-value, token {TOKEN}, aws-secret-value"
    ctx.run([sys.executable, "-c", f"print({printed!r})"])
    handler.close()
    text = handler.text()
    assert text == obstore.get(handler.store.raw, handler.key).bytes().to_bytes().decode()
    assert "FERRY_" not in text and "AWS_" not in text
    assert f"HOME={scratch}\n" in text and f"TMPDIR={scratch}\n" in text
    assert "LAB_LICENSE=license-server:27000" in text  # an admin named it
    for secret in ("s3-secret-value", TOKEN, "aws-secret-value"):
        assert secret not in text
    # the command line and its output, both
    assert text.count("key [redacted], token [redacted], [redacted]") == 2


def test_a_failing_command_still_fails(tmp_path: Path) -> None:
    ctx, handler = _context(tmp_path, Settings(home=tmp_path / "home"))
    with pytest.raises(TaskFailed, match="status 4"):
        ctx.run([sys.executable, "-c", "raise SystemExit(4)"])
    handler.close()


def _stored(store: object, key: str) -> str | None:
    try:
        return bytes(obstore.get(store.raw, key).bytes()).decode()  # type: ignore[attr-defined]
    except FileNotFoundError:
        return None


def test_a_running_task_s_log_is_written_while_it_runs_and_whole_at_the_end(
    tmp_path: Path,
) -> None:
    store = open_store((tmp_path / "logs").as_uri(), create=True)
    running = TaskLog(store, "jobs/1/long/attempt-1.log", flush_every=0.05)
    short = TaskLog(store, "jobs/1/short/attempt-1.log", flush_every=0.05)
    log = logging.Logger("neuroferry.task.test.flusher", logging.INFO)
    log.handlers = [running, short]
    log.info("first line")
    running.start()
    short.start()
    short.close()  # a short task: its log is written once, whole, when it ends
    assert _stored(store, short.key) == short.text()
    deadline = time.monotonic() + 30
    while _stored(store, running.key) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "first line" in (_stored(store, running.key) or "")  # written while it runs
    log.info("last line")
    running.close()
    assert _stored(store, running.key) == running.text()
    assert "last line" in running.text()
