"""`ferry orchestrator`: runs jobs without the web service, on PostgreSQL beside another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _session import make_session, upload_spec
from neuroferry.config import get_settings
from neuroferry.db import make_engine, upgrade
from neuroferry.engine import get_job, job_tasks, submit_job

pytestmark = pytest.mark.postgres


def test_two_orchestrator_processes_share_the_jobs_and_stop_cleanly(
    fresh_postgres_database: Callable[[], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_postgres_database() as url:
        monkeypatch.setenv("FERRY_DATABASE_URL", url)
        monkeypatch.setenv("FERRY_DASK_WORKERS", "1")
        monkeypatch.setenv("FERRY_ORCHESTRATOR_POLL", "0.1")
        settings = get_settings()
        engine = make_engine(url)
        upgrade(engine)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "neuroferry", "orchestrator"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        try:
            ids = []
            for i in range(4):
                session = make_session(tmp_path / f"s{i}")
                spec = upload_spec(session, subject_id=f"70000{i}")
                ids.append(submit_job(engine, "upload", spec, owner_id=None, settings=settings))
            deadline = time.monotonic() + 180
            for job_id in ids:
                while get_job(engine, job_id)["state"] != "succeeded":
                    assert time.monotonic() < deadline, job_tasks(engine, job_id)
                    time.sleep(0.2)
            ran = [t for j in ids for t in job_tasks(engine, j) if t["state"] == "succeeded"]
            assert {t["attempt"] for t in ran if t["placement"] != "map"} == {1}
            claimed_by = {t["worker"].split(":")[1] for t in ran if t["placement"] == "local"}
            assert claimed_by <= {str(p.pid) for p in procs}
        finally:
            outputs = []
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
                out, _ = proc.communicate(timeout=60)
                outputs.append(out)
            engine.dispose()
        for proc, out in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, out
            assert "orchestrator" in out and "stopping" in out
            assert "Traceback" not in out
