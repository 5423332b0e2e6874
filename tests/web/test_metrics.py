"""GET /metrics: Prometheus text with jobs and tasks by state, durations, bytes, queue."""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

import ferry_toy_tasks
from neuroferry.config import get_settings
from neuroferry.engine import get_job, register_kind, submit_job
from neuroferry.web import create_app

register_kind(ferry_toy_tasks.KIND)


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_metrics_count_jobs_tasks_durations_and_bytes(database_url: str, tmp_path: Path) -> None:
    settings = get_settings(
        database_url=database_url, dask_processes=False, dask_workers=1, orchestrator_poll=0.05
    )
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        before = client.get("/metrics").text
        bytes_before = sample(before, "ferry_bytes_transferred_total")
        (tmp_path / "j").mkdir()
        job_id = submit_job(
            services.engine,
            "toy",
            {"dir": str(tmp_path / "j"), "nbytes": 5000},
            owner_id=None,
            settings=settings,
        )
        services.orchestrator.wake()
        deadline = time.monotonic() + 60
        while get_job(services.engine, job_id)["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    assert sample(text, 'ferry_jobs{state="succeeded"}') == 1
    assert sample(text, 'ferry_tasks{state="skipped"}') == 2
    assert sample(text, "ferry_queue_depth") == 0
    assert sample(text, "ferry_bytes_transferred_total") - bytes_before == 3 * 5000
    assert sample(text, 'ferry_task_duration_seconds_count{kind="toy"}') >= 7
    assert 'ferry_task_duration_seconds_bucket{kind="toy",le="+Inf"}' in text
    assert "# TYPE ferry_task_duration_seconds histogram" in text
