"""Durability of upload jobs under `ferry serve`: kill -9 the service, or one of its Dask
workers, in the middle of an upload to the real S3 server; the job still completes with
every object identical to the source, and no object that was already stored is sent again.

"Sent again" is checked on the S3 server's own files: an object stored before the kill
keeps its inode and modification time to the nanosecond, which a second PUT would change.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from _service import Service
from _session import ASSET, make_session, tree, upload_spec
from neuroferry.config import get_settings
from neuroferry.db import make_engine
from neuroferry.engine import get_job, job_tasks, read_log, submit_job
from neuroferry.stores import open_store

pytestmark = pytest.mark.s3

FILES = 300


def big_session(root: Path) -> Path:
    session = make_session(root)
    many = session / "ecephys" / "chunks"
    many.mkdir()
    for i in range(FILES):
        (many / f"chunk_{i:04d}.bin").write_bytes(os.urandom(64 * 1024))
    return session


def stored(folder: Path) -> dict[str, tuple[int, int]]:
    """Objects the S3 server holds under ``folder``: key -> (inode, mtime in ns); the
    server's own temporary files of PUTs in flight are not objects."""
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and ".rclone_temp" not in p.name:
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture
def setup(tmp_path: Path, s3_server: Any, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    bucket = s3_env.removeprefix("s3://")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.setenv("FERRY_DESTINATIONS", json.dumps({"lab": f"{s3_env}/raw"}))
    monkeypatch.setenv("FERRY_ORCHESTRATOR_LEASE", "2")
    monkeypatch.setenv("FERRY_ORCHESTRATOR_POLL", "0.1")
    monkeypatch.setenv("FERRY_SYNC_CONCURRENCY", "1")  # slow enough to be caught mid-way
    service = Service(home, dict(os.environ))
    session = big_session(tmp_path / "session")
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        yield service, session, settings, engine, s3_server.root / bucket / "raw" / ASSET
    finally:
        service.stop()
        engine.dispose()


def upload_task(engine: Any, job_id: int) -> dict[str, Any]:
    return next(t for t in job_tasks(engine, job_id) if t["name"] == "upload_data_to_s3")


def wait_mid_upload(engine: Any, job_id: int, objects: Path, log_store: Any) -> str:
    """Wait until the upload has sent some files and its log has been written (a running
    task's log is first written within FIRST_WRITE seconds); its log."""
    deadline = time.monotonic() + 120
    while True:
        running = upload_task(engine, job_id)["state"] == "running"
        chunks = objects / "ecephys" / "chunks"
        done = len(list(chunks.iterdir())) if chunks.exists() else 0
        log = read_log(engine, log_store, job_id, "upload_data_to_s3") if running else ""
        if running and done >= 20 and log:
            assert done < FILES, "the upload finished before it could be interrupted"
            return log
        assert time.monotonic() < deadline, get_job(engine, job_id)
        time.sleep(0.02)


def wait_done(engine: Any, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while (job := get_job(engine, job_id))["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job_tasks(engine, job_id)
        time.sleep(0.2)
    return job


def check_objects(objects: Path, session: Path, before: dict[str, tuple[int, int]]) -> None:
    after = stored(objects)
    for modality in ("ecephys", "behavior", "behavior-videos"):
        for rel, sha in tree(session / modality).items():
            key = f"{modality}/{rel}"
            assert hashlib.sha256((objects / key).read_bytes()).hexdigest() == sha, key
    sent_again = [k for k, v in before.items() if after.get(k) != v and not k.startswith(".ferry")]
    assert not sent_again, f"{len(sent_again)} objects were sent twice: {sent_again[:5]}"


def test_kill_9_of_the_service_mid_upload_loses_nothing(setup: Any) -> None:
    service, session, settings, engine, objects = setup
    service.start()
    job_id = submit_job(
        engine, "upload", upload_spec(session, "lab"), owner_id=None, settings=settings
    )
    log_store = open_store(settings.log_store_url)
    wait_mid_upload(engine, job_id, objects, log_store)
    service.kill()
    before = stored(objects)
    assert upload_task(engine, job_id)["state"] == "running"  # as the dead service left it

    service.start()
    job = wait_done(engine, job_id)
    assert job["state"] == "succeeded", job_tasks(engine, job_id)
    check_objects(objects, session, before)
    upload = upload_task(engine, job_id)
    assert upload["attempt"] == 2
    kept = sum(1 for k in before if k.startswith("ecephys/chunks/"))
    assert upload["result"]["files_skipped"] >= kept
    assert "attempt 2" in read_log(engine, log_store, job_id, "upload_data_to_s3")
    assert "attempt 1" in read_log(engine, log_store, job_id, "upload_data_to_s3", attempt=1)


def test_kill_9_of_a_dask_worker_mid_upload_loses_nothing(setup: Any) -> None:
    service, session, settings, engine, objects = setup
    service.start()
    job_id = submit_job(
        engine, "upload", upload_spec(session, "lab"), owner_id=None, settings=settings
    )
    log_store = open_store(settings.log_store_url)
    header = wait_mid_upload(engine, job_id, objects, log_store).splitlines()[0]
    pid = int(header.split(" on ", 1)[1].split(":")[1].split()[0].rstrip(","))
    assert pid in service.children()
    os.kill(pid, signal.SIGKILL)
    before = stored(objects)

    job = wait_done(engine, job_id)
    assert job["state"] == "succeeded", job_tasks(engine, job_id)
    check_objects(objects, session, before)
    assert service.proc is not None and service.proc.poll() is None  # the service lived on
