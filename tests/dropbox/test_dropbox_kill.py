"""``kill -9`` of ``ferry serve`` while it runs drop-box submissions: after a restart every
submission has run exactly once, with one task per dataset, and ended with ``end.txt``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from _service import Service
from neuroferry.auth import get_user
from neuroferry.config import get_settings
from neuroferry.db import dropbox_submissions, jobs, make_engine
from neuroferry.dropbox import add_group, end_key, publish_dropbox
from neuroferry.engine import job_tasks

SUBMISSIONS, DATASETS = 4, 6


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("FERRY_", "AWS_")):
            monkeypatch.delenv(name)
    env = {
        "FERRY_HOME": str(home),
        "FERRY_DASK_PROCESSES": "false",
        "FERRY_DASK_WORKERS": "1",
        "FERRY_DASK_THREADS_PER_WORKER": "1",
        "FERRY_ORCHESTRATOR_LEASE": "2",
        "FERRY_ORCHESTRATOR_POLL": "0.1",
        "FERRY_DROPBOX_POLL": "0.2",
        # without git the analyses' identity is their installed version
        "PATH": os.path.dirname(sys.executable),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    svc = Service(home, dict(os.environ))
    try:
        yield svc
    finally:
        svc.stop()


def rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(dropbox_submissions)).mappings()]


def test_kill_9_mid_job_neither_loses_nor_repeats_a_submission(
    service: Service, tmp_path: Path
) -> None:
    service.start()
    settings = get_settings()
    engine = make_engine(settings.database_url)
    box = tmp_path / "box"
    box.mkdir()
    admin = get_user(engine, "admin")
    publish_dropbox(engine, settings, admin, "sum", "file-summary", str(box))
    add_group(engine, settings, admin, "g", "sum", [])
    for i in range(DATASETS):
        (box / f"g/inputs/d{i}.bin").write_bytes(os.urandom(200_000))
    (box / "g/configs/c.json").write_text(json.dumps({"bins": 8}))
    for s in range(SUBMISSIONS):
        fields = {
            "dataname": [f"g/inputs/d{i}.bin" for i in range(DATASETS)],
            "configname": "g/configs/c.json",
            "timestamp": f"t{s}",
        }
        (box / f"g/submissions/s{s}_submit.json").write_text(json.dumps(fields))

    deadline = time.monotonic() + 120
    while not any(r["state"] == "running" for r in rows(engine)):
        assert time.monotonic() < deadline, "no submission was taken"
        time.sleep(0.01)
    service.kill()
    left = rows(engine)  # as the dead service left them: a job mid-way, files not yet taken
    assert "running" in {r["state"] for r in left} and len(left) <= SUBMISSIONS
    service.start()

    folders = [f"g/results/job__sum_t{s}" for s in range(SUBMISSIONS)]
    deadline = time.monotonic() + 180
    while not all((box / end_key(f)).exists() for f in folders):
        assert time.monotonic() < deadline, rows(engine)
        time.sleep(0.2)
    taken = rows(engine)
    assert sorted(r["state"] for r in taken) == ["ended"] * SUBMISSIONS
    with engine.connect() as conn:
        made = conn.execute(select(jobs.c.id, jobs.c.spec).where(jobs.c.kind == "analysis")).all()
    assert sorted(spec["results"] for _, spec in made) == sorted(
        f"{box.as_uri()}/{f}/process_results" for f in folders
    )
    assert sorted(r["job_id"] for r in taken) == sorted(job_id for job_id, _ in made)
    for job_id, _ in made:
        runs = [t for t in job_tasks(engine, job_id) if t["name"] == "run" and t["map_index"] >= 0]
        assert len(runs) == DATASETS and {t["state"] for t in runs} == {"succeeded"}
    for folder in folders:
        summaries = list((box / folder / "process_results/file-summary").glob("*/summary.json"))
        assert len(summaries) == DATASETS
        for i in range(DATASETS):
            status = json.loads(
                (box / folder / f"logs/DATASET_NAME:d{i}.bin_STATUS.txt").read_text()
            )
            assert status["status"] == "SUCCESS"
    engine.dispose()
