"""The job engine against real databases (SQLite and PostgreSQL) and a real Dask cluster."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import ferry_toy_tasks
from _rig import Rig, running_rig
from neuroferry.db import make_engine, orchestrators, tasks, upgrade
from neuroferry.engine import (
    METRICS,
    cancel_job,
    get_job,
    read_log,
    read_log_part,
    register_kind,
    retry_job,
    submit_job,
)
from neuroferry.engine._advance import now_utc
from neuroferry.engine._claims import claim_tasks, heartbeat
from neuroferry.errors import InvalidInput, NotFound

register_kind(ferry_toy_tasks.KIND)


@pytest.fixture
def rig(database_url: str) -> Iterator[Rig]:
    with running_rig(database_url) as r:
        yield r


def markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("go", "slow-started"))


def test_a_job_runs_its_dag_with_mapped_and_skipped_tasks(rig: Rig, tmp_path: Path) -> None:
    rig.start()
    job_id = rig.submit_toy(tmp_path / "j", skip_items=["b"], nbytes=1000)
    job = rig.wait(job_id)
    assert job["state"] == "succeeded", rig.tasks(job_id)
    assert job["started"] is not None and job["finished"] >= job["started"]
    got = rig.tasks(job_id)
    assert {k: v["state"] for k, v in got.items()} == {
        "begin": "succeeded",
        "fan": "succeeded",
        "each": "succeeded",
        "each[a]": "succeeded",
        "each[b]": "skipped",
        "each[c]": "succeeded",
        "flaky": "succeeded",
        "wait": "skipped",
        "slow": "skipped",
        "end": "succeeded",
    }
    # each step ran once, in its first attempt; the skipped instance never ran
    assert markers(tmp_path / "j") == [
        "begin-1",
        "each-a-1",
        "each-c-1",
        "end-1",
        "fan-1",
        "flaky-1",
    ]
    # a mapped task's result gathers its instances'; downstream sees every ancestor
    assert got["each"]["result"] == {
        "a": {"letter": "A", "bytes_copied": 1000, "fan": ["owner"]},  # not fan's "items"
        "b": None,
        "c": {"letter": "C", "bytes_copied": 1000, "fan": ["owner"]},
    }
    assert got["end"]["result"]["upstream"] == ["begin", "each", "fan", "flaky", "slow", "wait"]
    log = read_log(rig.engine, rig.log_store, job_id, "each", 0)
    assert "each [a] of toy job" in log and "finished in" in log
    # a part of a log: only the bytes asked for, and the size to page on with
    whole = log.encode()
    part, size = read_log_part(rig.engine, rig.log_store, job_id, "each", 0, offset=5, limit=20)
    assert (part, size) == (whole[5:25], len(whole))
    assert read_log_part(rig.engine, rig.log_store, job_id, "each", 0, offset=len(whole)) == (
        b"",
        len(whole),
    )
    assert "recorded end" in read_log(rig.engine, rig.log_store, job_id, "end")
    metrics = METRICS.render(rig.engine)
    assert 'ferry_jobs{state="succeeded"}' in metrics
    assert "ferry_bytes_transferred_total" in metrics


def test_retries_back_off_then_retry_job_resumes_from_the_failed_task(
    rig: Rig, tmp_path: Path
) -> None:
    rig.start()
    ok = rig.submit_toy(tmp_path / "ok", fail_times=2, retries=2)
    assert rig.wait(ok)["state"] == "succeeded"
    flaky = rig.tasks(ok)["flaky"]
    assert flaky["attempt"] == 3 and flaky["retries_left"] == 0
    assert [m for m in markers(tmp_path / "ok") if m.startswith("flaky")] == [
        "flaky-1",
        "flaky-2",
        "flaky-3",
    ]
    assert "fails on purpose" in read_log(rig.engine, rig.log_store, ok, "flaky", attempt=1)

    bad = rig.submit_toy(tmp_path / "bad", fail_times=3, retries=1)
    job = rig.wait(bad)
    assert job["state"] == "failed"
    assert job["error"] == "flaky failed: attempt 2 fails on purpose"
    assert rig.tasks(bad)["end"]["state"] == "pending"
    with pytest.raises(InvalidInput, match="only unfinished jobs"):
        cancel_job(rig.engine, rig.log_store, bad)

    retry_job(rig.engine, rig.log_store, bad)
    rig.wake()
    assert rig.wait(bad)["state"] == "succeeded"
    # the steps that had succeeded did not run again
    assert markers(tmp_path / "bad") == [
        "begin-1",
        "each-a-1",
        "each-b-1",
        "each-c-1",
        "end-1",
        "fan-1",
        "flaky-1",
        "flaky-2",
        "flaky-3",
        "flaky-4",
    ]


def test_a_waiting_task_reschedules_without_using_attempts(rig: Rig, tmp_path: Path) -> None:
    rig.start()
    job_id = rig.submit_toy(tmp_path / "w", wait=True)
    deadline = time.monotonic() + 30
    while rig.tasks(job_id)["wait"]["state"] != "up_for_reschedule":
        assert time.monotonic() < deadline, rig.tasks(job_id)
        time.sleep(0.01)
    time.sleep(0.5)  # several looks, each giving the worker back
    assert rig.tasks(job_id)["wait"]["attempt"] == 1
    (tmp_path / "w" / "go").touch()
    assert rig.wait(job_id)["state"] == "succeeded"
    wait = rig.tasks(job_id)["wait"]
    assert wait["attempt"] == 1 and wait["result"]["polls"] >= 2


def test_cancel_stops_a_running_task_and_the_rest(rig: Rig, tmp_path: Path) -> None:
    rig.start()
    job_id = rig.submit_toy(tmp_path / "c", slow=60)
    deadline = time.monotonic() + 30
    while not (tmp_path / "c" / "slow-started").exists():
        assert time.monotonic() < deadline, rig.tasks(job_id)
        time.sleep(0.05)
    cancel_job(rig.engine, rig.log_store, job_id)
    job = rig.wait(job_id, timeout=20)
    assert job["state"] == "cancelled"
    got = rig.tasks(job_id)
    assert got["slow"]["state"] == "cancelled"
    assert got["slow"]["result"]["steps"] >= 0  # what it had done is kept
    assert got["end"]["state"] == "cancelled"
    assert "end-1" not in markers(tmp_path / "c")
    # a cancelled job can be run again; it starts from the cancelled task
    retry_job(rig.engine, rig.log_store, job_id)
    rig.wake()
    assert get_job(rig.engine, job_id)["cancel_requested"] is None
    cancel_job(rig.engine, rig.log_store, job_id)
    assert rig.wait(job_id, timeout=20)["state"] == "cancelled"


def test_tasks_of_a_dead_orchestrator_run_again_in_a_new_attempt(rig: Rig, tmp_path: Path) -> None:
    job_id = rig.submit_toy(tmp_path / "o")
    # an orchestrator claims the first task and dies without a word
    assert heartbeat(rig.engine, "dead", "elsewhere", 1, exclusive=False, lease=3)
    [claim] = claim_tasks(rig.engine, "dead", 1, now_utc())
    assert claim.instance.task == "begin" and claim.instance.attempt == 1
    with rig.engine.begin() as conn:
        conn.execute(update(orchestrators).values(heartbeat=now_utc().replace(year=2000)))
    rig.start()
    assert rig.wait(job_id)["state"] == "succeeded"
    assert rig.tasks(job_id)["begin"]["attempt"] == 2
    assert "begin-2" in markers(tmp_path / "o")


def test_jobs_touch_only_what_their_owner_was_granted(database_url: str, tmp_path: Path) -> None:
    from neuroferry.auth import create_user
    from neuroferry.errors import Forbidden

    granted, other, home = tmp_path / "granted", tmp_path / "other", tmp_path / "home"
    name = f"ana-{secrets.token_hex(4)}"
    grants = {name: {"source_roots": [granted]}}
    with running_rig(database_url, home=home, grants=grants) as rig:
        ana = create_user(rig.engine, name)
        with pytest.raises(Forbidden, match=r"^reads: .*other is not under a folder user"):
            rig.submit("toy", {"dir": str(tmp_path), "reads": [str(other)]}, owner_id=ana.id)
        with pytest.raises(Forbidden, match=r"^reads: .*the service's own home folder"):
            rig.submit("toy", {"dir": str(tmp_path), "reads": [str(home)]})
        rig.start()
        job_id = rig.submit("toy", {"dir": str(tmp_path), "reads": [str(granted)]}, ana.id)
        assert rig.wait(job_id)["state"] == "succeeded", rig.states(job_id)
        tasks = rig.tasks(job_id)
        assert tasks["begin"]["result"]["owner"] == name  # in the orchestrator
        assert tasks["begin"]["result"]["readable"] == [str(granted)]
        assert tasks["fan"]["result"]["owner"] == name  # on a Dask worker


@pytest.mark.postgres
def test_several_orchestrators_never_run_a_task_twice(
    fresh_postgres_database: Callable[[], Any], tmp_path: Path
) -> None:
    with fresh_postgres_database() as url, running_rig(url, orchestrator_poll=0.01) as rig:
        ids = [rig.submit_toy(tmp_path / f"j{i}") for i in range(30)]
        for _ in range(3):
            rig.start()
        for job_id in ids:
            assert rig.wait(job_id)["state"] == "succeeded"
        with rig.engine.connect() as conn:
            attempts = conn.execute(
                select(tasks.c.attempt).where(
                    tasks.c.placement != "map", tasks.c.state != "skipped"
                )
            )
            assert {a for (a,) in attempts} == {1}
        for i in range(30):  # a second run of any task would have failed on its marker
            assert len(markers(tmp_path / f"j{i}")) == 7


def test_on_sqlite_one_orchestrator_holds_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    engine = make_engine(url)
    upgrade(engine)
    assert heartbeat(engine, "one", "h", 1, exclusive=True, lease=60)
    assert not heartbeat(engine, "two", "h", 2, exclusive=True, lease=60)
    assert heartbeat(engine, "one", "h", 1, exclusive=True, lease=60)
    with engine.begin() as conn:  # "one" stops beating
        conn.execute(
            update(orchestrators)
            .where(orchestrators.c.id == "one")
            .values(heartbeat=now_utc().replace(year=2000))
        )
    assert heartbeat(engine, "two", "h", 2, exclusive=True, lease=60)
    engine.dispose()


def test_bad_specs_and_other_peoples_jobs(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"invalid toy job: fail_times: Input should be"):
        submit_job(
            rig.engine,
            "toy",
            {"dir": "x", "fail_times": "many"},
            owner_id=None,
            settings=rig.settings,
        )
    with pytest.raises(InvalidInput, match=r"unknown job kind 'nope'; known kinds: .*toy"):
        submit_job(rig.engine, "nope", {}, owner_id=None, settings=rig.settings)
    with pytest.raises(NotFound):
        get_job(rig.engine, 12345)

    class Someone:
        def __init__(self, uid: int, admin: bool) -> None:
            self.id, self.is_admin = uid, admin

    from neuroferry.auth import create_user

    owner = create_user(rig.engine, "owner")
    job_id = submit_job(
        rig.engine, "toy", {"dir": str(tmp_path)}, owner_id=owner.id, settings=rig.settings
    )
    assert get_job(rig.engine, job_id, owner)["id"] == job_id
    assert get_job(rig.engine, job_id, Someone(999, True))["id"] == job_id
    with pytest.raises(NotFound):
        get_job(rig.engine, job_id, Someone(999, False))
    with pytest.raises(NotFound):
        cancel_job(rig.engine, rig.log_store, job_id, Someone(999, False))


@pytest.mark.postgres
def test_a_database_outage_while_a_task_runs_loses_nothing(
    fresh_postgres_database: Callable[[], Any],
    pg_admin_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    def allow(name: str, yes: bool) -> None:
        admin = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(name), sql.SQL("true" if yes else "false")
                )
            )
            if not yes:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    with fresh_postgres_database() as url, running_rig(url) as rig:
        name = make_url(url).database
        assert name
        rig.start()
        job_id = rig.submit_toy(tmp_path / "db", slow=1.5)
        deadline = time.monotonic() + 30
        while not (tmp_path / "db" / "slow-started").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        allow(name, False)  # the task finishes while the database is away
        try:
            time.sleep(3)
        finally:
            allow(name, True)
        assert rig.wait(job_id)["state"] == "succeeded", rig.states(job_id)
        assert rig.tasks(job_id)["slow"]["attempt"] == 1
        assert markers(tmp_path / "db").count("slow-1") == 1
    assert "orchestrator step failed (database error" in caplog.text


def test_a_claim_takes_at_most_its_limit(database_url: str, tmp_path: Path) -> None:
    """Also with planner statistics in place (the claim's locking sub-select must not run
    once per row, which with SKIP LOCKED would take more tasks than asked)."""
    with running_rig(database_url) as rig:
        for i in range(200):
            rig.submit_toy(tmp_path / f"j{i}")
        with rig.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        assert heartbeat(rig.engine, "one", "h", 1, exclusive=False, lease=60)
        sizes = [len(claim_tasks(rig.engine, "one", 3, now_utc())) for _ in range(5)]
        assert sizes == [3] * 5


def test_an_orchestrator_whose_guard_objects_claims_nothing(rig: Rig, tmp_path: Path) -> None:
    from neuroferry.engine import Orchestrator

    problem: list[str] = ["the database file was removed or replaced"]
    orch = Orchestrator(
        rig.settings,
        rig.engine,
        rig.executor,
        catalog=rig.catalog,
        guard=lambda: problem[0] or None,
    )
    rig.orchestrators.append(orch)
    orch.start()
    job_id = rig.submit_toy(tmp_path / "j")
    time.sleep(1.0)  # twenty polls
    assert orch.active and get_job(rig.engine, job_id)["state"] == "queued"
    assert set(rig.states(job_id).values()) <= {"pending", "queued"}
    problem[0] = ""  # the guard is satisfied again: the job runs
    orch.wake()
    assert rig.wait(job_id)["state"] == "succeeded"
