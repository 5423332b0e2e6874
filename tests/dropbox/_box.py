"""Helpers of the drop-box tests: a test analysis (``count-lines``) and a published
drop-box with its rig."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from _rig import Rig
from neuroferry.db import dropbox_submissions, jobs
from neuroferry.engine import watcher_states
from neuroferry.errors import NotFound
from neuroferry.pipelines.analysis import Analysis, AnalysisRun, register_analysis
from neuroferry.stores import Store

BOX = "caiman-ncap-web"
JOB = f"user1/results/job__{BOX}_1709647330"


class LineParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: float = 1.0
    label: str = ""


def count_lines(run: AnalysisRun) -> dict[str, Any]:
    """Counts each input file's lines; a file that says ``fail`` fails the task, one that
    says ``sleep`` runs until its job is cancelled."""
    assert isinstance(run.parameters, LineParameters)
    counts = {}
    for url in run.inputs.file_location or []:
        run.check_cancelled()
        parent, _, name = url.rpartition("/")
        data = run.open_store(parent).get(name)
        if data.startswith(b"fail"):
            raise RuntimeError(f"{name} asks to fail")
        while data.startswith(b"sleep"):  # until the job is cancelled
            run.check_cancelled()
            time.sleep(0.02)
        run.log.info("counting %s", name)
        counts[name] = data.count(b"\n") * run.parameters.scale
    (run.results / "lines.json").write_text(json.dumps({"label": run.parameters.label, **counts}))
    return {}


register_analysis(Analysis("count-lines", count_lines, LineParameters, version="1.0"))


def wait_for(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Box:
    """A published drop-box with groups ``user1`` (alice) and ``user2`` (bob), and a rig
    whose orchestrator runs the drop-box watcher."""

    def __init__(self, rig: Rig, store: Store, url: str) -> None:
        self.rig = rig
        self.store = store
        self.url = url

    def put(self, key: str, data: bytes | str) -> None:
        self.store.put(key, data.encode() if isinstance(data, str) else data)

    def text(self, key: str) -> str:
        return self.store.get(key).decode()

    def exists(self, key: str) -> bool:
        try:
            self.store.head(key)
        except NotFound:
            return False
        return True

    def submit(self, key: str, fields: dict[str, Any] | str) -> None:
        self.put(key, fields if isinstance(fields, str) else json.dumps(fields))

    def runs(self) -> int:
        return next(s["runs"] for s in watcher_states(self.rig.engine) if s["name"] == "dropbox")

    def settle(self) -> None:
        """Wait for two more whole runs of the watcher: what is there now was seen."""
        wait_for(lambda: any(s["name"] == "dropbox" for s in watcher_states(self.rig.engine)), "w")
        start = self.runs()
        wait_for(lambda: self.runs() >= start + 2, "two watcher runs")

    def analysis_jobs(self) -> list[dict[str, Any]]:
        with self.rig.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.spec).where(jobs.c.kind == "analysis"))
            return [dict(r._mapping) for r in rows]

    def submissions(self) -> list[dict[str, Any]]:
        with self.rig.engine.connect() as conn:
            rows = conn.execute(select(dropbox_submissions).order_by(dropbox_submissions.c.id))
            return [dict(r) for r in rows.mappings()]


@pytest.fixture(autouse=True)
def clean_git_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test analysis counts as committed code, whatever the checkout's state (used by
    every drop-box test module: ``from _box import clean_git_state``)."""
    monkeypatch.setattr(
        "neuroferry.pipelines.analysis._identity._git_state", lambda path: (None, False)
    )
