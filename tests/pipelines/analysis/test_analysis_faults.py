"""Analysis jobs under `ferry serve` when a process dies: kill -9 of the Dask worker that
runs a task, or of the service while a task runs, and the restarted service running the
``record`` task again after the records were written; each time the job completes with
every result's files complete and exactly one provenance record per result. (Dask runs a
killed worker's task again on a new worker process, in the same attempt; the tasks a killed
service left running are queued again by the restarted one, attempt + 1.)

The analysis (an installed distribution's entry point, so that the service and its worker
processes load it) blocks until the test drops a ``go`` marker, so a process can be killed
while it runs; it leaves a ``started`` marker naming its process for every run.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import neuroferry
from _service import Service, running_service
from neuroferry.catalog import Catalog
from neuroferry.config import get_settings
from neuroferry.db import jobs, make_engine, tasks, transaction
from neuroferry.engine import get_job, job_tasks, submit_job
from neuroferry.pipelines.analysis import ENTRY_POINT_GROUP, RESULT_KIND

SRC = Path(neuroferry.__file__).resolve().parents[1]  # the neuroferry under test
ASSETS = ("asset-a", "asset-b")


def write_distribution(site: Path, marks: Path) -> None:
    """The distribution ``fault-analyses`` 1.0 with the analysis ``waits-for-go``."""
    package = site / "fault_analyses"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import time
            from pathlib import Path

            from pydantic import BaseModel

            from neuroferry.pipelines.analysis import Analysis

            MARKS = Path({str(marks)!r})

            class Parameters(BaseModel):
                label: str = "x"

            def waits(run):
                name = run.inputs.asset_name[0]
                (MARKS / f"started-{{name}}-{{os.getpid()}}").write_text("")
                while not (MARKS / f"go-{{name}}").exists():
                    run.check_cancelled()
                    time.sleep(0.05)
                (run.results / "result.txt").write_text(f"{{name}} {{run.parameters.label}}")
                (run.results / "parts").mkdir()
                (run.results / "parts" / "name.txt").write_text(name)
                return {{"asset": name}}

            WAITS = Analysis("waits-for-go", waits, Parameters)
            """
        )
    )
    info = site / "fault_analyses-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fault-analyses\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fault_analyses\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nwaits-for-go = fault_analyses:WAITS\n"
    )


class Lab:
    """A service that has the analysis ``waits-for-go``, two assets to run it on, and the
    service's database opened here."""

    def __init__(self, tmp_path: Path, service: Service) -> None:
        self.service = service
        self.marks = tmp_path / "marks"
        self.locations = []
        for name in ASSETS:
            folder = tmp_path / "data" / name
            folder.mkdir(parents=True)
            (folder / "part0.bin").write_bytes(name.encode() * 100)
            self.locations.append(folder.as_uri())
        self.engine = make_engine(f"sqlite:///{service.home / 'ferry.db'}")
        self.catalog = Catalog(self.engine)

    def submit(self) -> int:
        spec = {"analysis": "waits-for-go", "locations": self.locations}
        settings = get_settings(home=self.service.home)
        return submit_job(self.engine, "analysis", spec, owner_id=None, settings=settings)

    def go(self, name: str) -> None:
        (self.marks / f"go-{name}").write_text("")

    def started(self, name: str) -> list[int]:
        """The processes that started ``name``'s run, one per run."""
        return [int(p.name.rsplit("-", 1)[1]) for p in self.marks.glob(f"started-{name}-*")]

    def runs(self, job_id: int) -> dict[str, dict[str, Any]]:
        """The job's ``run`` instances by the asset they analyse."""
        found = {}
        for t in job_tasks(self.engine, job_id):
            if t["name"] == "run" and t["map_index"] >= 0:
                found[t["params"]["model"]["asset_name"][0]] = t
        return found

    def task(self, job_id: int, name: str) -> dict[str, Any]:
        return next(t for t in job_tasks(self.engine, job_id) if t["name"] == name)

    def wait_until(self, job_id: int, check: Any, what: str) -> None:
        deadline = time.monotonic() + 120
        while not check():
            assert time.monotonic() < deadline, f"{what}: {job_tasks(self.engine, job_id)}"
            time.sleep(0.05)

    def wait_done(self, job_id: int) -> dict[str, Any]:
        self.wait_until(
            job_id,
            lambda: get_job(self.engine, job_id)["state"] in ("succeeded", "failed", "cancelled"),
            "the job did not end",
        )
        return get_job(self.engine, job_id)

    def records(self) -> list[dict[str, Any]]:
        return self.catalog.find({"kind": RESULT_KIND}, sort=[("name", 1)])

    def check_results(self, job_id: int) -> list[dict[str, Any]]:
        """One record per asset, each pointing at its complete files."""
        docs = self.records()
        assert sorted(d["inputs"]["assets"][0]["name"] for d in docs) == list(ASSETS)
        assert len({d["name"] for d in docs}) == len(docs)
        for doc in docs:
            assert doc["job_id"] == job_id
            name = doc["inputs"]["assets"][0]["name"]
            folder = Path(doc["location"].removeprefix("file://"))
            written = sorted(
                p.relative_to(folder).as_posix()
                for p in folder.rglob("*")
                if p.is_file() and not p.relative_to(folder).as_posix().startswith(".ferry")
            )
            assert (
                written
                == sorted(f["path"] for f in doc["files"])
                == [
                    "parts/name.txt",
                    "result.txt",
                ]
            )
            assert (folder / "result.txt").read_text() == f"{name} x"
            assert doc["outputs"] == {"asset": name}
        return docs


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> Iterator[Lab]:
    site = tmp_path / "site"
    (tmp_path / "marks").mkdir()
    write_distribution(site, tmp_path / "marks")
    # installed here too: the job is submitted (its parameters checked) in this process
    monkeypatch.syspath_prepend(str(site))
    home = tmp_path / "home"
    home.mkdir()
    with running_service(
        home,
        FERRY_DASK_WORKERS="1",
        FERRY_DASK_THREADS_PER_WORKER="2",
        FERRY_ORCHESTRATOR_LEASE="2",
        FERRY_ORCHESTRATOR_POLL="0.1",
        PYTHONPATH=f"{site}:{SRC}",
    ) as service:
        found = Lab(tmp_path, service)
        try:
            yield found
        finally:
            found.engine.dispose()
            sys.modules.pop("fault_analyses", None)


def test_kill_9_of_the_worker_running_a_task_runs_it_again_and_records_it_once(
    lab: Lab,
) -> None:
    lab.go("asset-a")
    job_id = lab.submit()
    lab.wait_until(job_id, lambda: lab.started("asset-b"), "asset-b never started")
    [pid] = lab.started("asset-b")
    assert pid in lab.service.children()  # a worker process of the service
    os.kill(pid, signal.SIGKILL)
    lab.wait_until(job_id, lambda: len(lab.started("asset-b")) == 2, "asset-b never ran again")
    lab.go("asset-b")

    job = lab.wait_done(job_id)
    assert job["state"] == "succeeded", job_tasks(lab.engine, job_id)
    assert lab.service.proc is not None and lab.service.proc.poll() is None  # it lived on
    [again] = set(lab.started("asset-b")) - {pid}  # another worker process ran it again
    runs = lab.runs(job_id)
    assert runs["asset-b"]["worker"].endswith(f":{again}")
    assert {name: t["state"] for name, t in runs.items()} == dict.fromkeys(ASSETS, "succeeded")
    lab.check_results(job_id)
    assert lab.task(job_id, "record")["result"] == {"recorded": 2, "already_recorded": 0}


def test_kill_9_of_the_service_between_run_and_record_records_each_result_once(
    lab: Lab,
) -> None:
    lab.go("asset-a")
    job_id = lab.submit()
    lab.wait_until(
        job_id,
        lambda: lab.started("asset-b") and lab.runs(job_id)["asset-a"]["state"] == "succeeded",
        "asset-a never finished while asset-b ran",
    )
    lab.service.kill()
    runs = lab.runs(job_id)
    assert runs["asset-b"]["state"] == "running"  # as the dead service left it
    assert lab.task(job_id, "record")["state"] == "pending" and lab.records() == []

    lab.go("asset-b")
    lab.service.start()
    job = lab.wait_done(job_id)
    assert job["state"] == "succeeded", job_tasks(lab.engine, job_id)
    runs = lab.runs(job_id)
    assert (runs["asset-a"]["attempt"], runs["asset-b"]["attempt"]) == (1, 2)
    assert len(lab.started("asset-a")) == 1 and len(lab.started("asset-b")) == 2
    first = lab.check_results(job_id)
    assert lab.task(job_id, "record")["result"] == {"recorded": 2, "already_recorded": 0}

    # killed again after the records were written but before the record task's end was
    # saved: the restarted service runs it again, and it writes no second record
    lab.service.kill()
    record = lab.task(job_id, "record")
    with transaction(lab.engine) as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == record["id"])
            .values(state="running", finished=None, result=None)
        )
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="running", finished=None))
    lab.service.start()
    job = lab.wait_done(job_id)
    assert job["state"] == "succeeded", job_tasks(lab.engine, job_id)
    record = lab.task(job_id, "record")
    assert record["attempt"] == 2
    assert record["result"] == {"recorded": 0, "already_recorded": 2}
    assert lab.check_results(job_id) == first
