"""The engine's queries that the front doors use instead of reading the jobs table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

import ferry_toy_tasks
from neuroferry.auth import create_user
from neuroferry.config import Settings, get_settings
from neuroferry.db import jobs, make_engine, upgrade
from neuroferry.engine import job_state_counts, register_kind, submit_job, unfinished_jobs

register_kind(ferry_toy_tasks.KIND)


@pytest.fixture
def db(database_url: str) -> Iterator[tuple[Engine, Settings]]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine, get_settings(database_url=database_url)
    finally:
        engine.dispose()


def _toy(engine: Engine, settings: Settings, folder: Path, owner_id: int | None = None) -> int:
    return submit_job(engine, "toy", {"dir": str(folder)}, owner_id=owner_id, settings=settings)


def _set_state(engine: Engine, job_id: int, state: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(state=state))


def test_unfinished_jobs_names_the_oldest_unfinished_job_of_each_name(
    db: tuple[Engine, Settings], tmp_path: Path
) -> None:
    engine, settings = db
    first = _toy(engine, settings, tmp_path / "a")
    second = _toy(engine, settings, tmp_path / "a")
    done = _toy(engine, settings, tmp_path / "b")
    _set_state(engine, second, "running")
    _set_state(engine, done, "succeeded")
    assert unfinished_jobs(engine, "toy", ["toy-a", "toy-b", "toy-c"]) == {"toy-a": first}
    assert unfinished_jobs(engine, "upload", ["toy-a"]) == {}
    assert unfinished_jobs(engine, "toy", []) == {}
    _set_state(engine, first, "failed")
    assert unfinished_jobs(engine, "toy", iter(["toy-a"])) == {"toy-a": second}


def test_job_state_counts_are_of_the_jobs_a_viewer_may_see(
    db: tuple[Engine, Settings], tmp_path: Path
) -> None:
    engine, settings = db
    alice = create_user(engine, "alice")
    admin = create_user(engine, "root", role="admin")
    mine = _toy(engine, settings, tmp_path / "a", alice.id)
    _toy(engine, settings, tmp_path / "b", alice.id)
    other = _toy(engine, settings, tmp_path / "c")
    _set_state(engine, mine, "failed")
    _set_state(engine, other, "running")
    assert job_state_counts(engine, alice) == {"queued": 1, "failed": 1}
    everyone = {"queued": 1, "running": 1, "failed": 1}
    assert job_state_counts(engine, admin) == everyone
    assert job_state_counts(engine) == everyone
    assert list(job_state_counts(engine)) == ["queued", "running", "failed"]  # JOB_STATES order
