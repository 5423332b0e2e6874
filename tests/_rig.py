"""A database, a real Dask cluster and an orchestrator, as ``ferry serve`` holds them,
for tests that run jobs in the test process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from neuroferry.catalog import Catalog
from neuroferry.config import Settings, get_settings
from neuroferry.db import make_engine, upgrade
from neuroferry.engine import Executor, Orchestrator, get_job, job_tasks, submit_job
from neuroferry.notify import notify_job
from neuroferry.stores import Store, open_store

FINAL = ("succeeded", "failed", "cancelled")


class Rig:
    def __init__(self, settings: Settings, engine: Engine, executor: Executor) -> None:
        self.settings = settings
        self.engine = engine
        self.executor = executor
        self.catalog = Catalog(engine)
        self.log_store: Store = open_store(settings.log_store_url, create=True)
        self.orchestrators: list[Orchestrator] = []

    def start(self) -> Orchestrator:
        orch = Orchestrator(
            self.settings, self.engine, self.executor, catalog=self.catalog, notifier=notify_job
        )
        orch.start()
        self.orchestrators.append(orch)
        return orch

    def wake(self) -> None:
        for orch in self.orchestrators:
            orch.wake()

    def submit(self, kind: str, spec: dict[str, Any], owner_id: int | None = None) -> int:
        job_id = submit_job(self.engine, kind, spec, owner_id=owner_id, settings=self.settings)
        self.wake()
        return job_id

    def submit_toy(self, folder: Path, **spec: Any) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        return self.submit("toy", {"dir": str(folder), **spec})

    def wait(
        self, job_id: int, states: tuple[str, ...] = FINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = get_job(self.engine, job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']}: {self.states(job_id)}")
            time.sleep(0.05)

    def tasks(self, job_id: int) -> dict[str, dict[str, Any]]:
        """A job's tasks by name; mapped instances as ``name[item]``."""
        return {
            t["name"] + (f"[{t['item']}]" if t["map_index"] >= 0 else ""): t
            for t in job_tasks(self.engine, job_id)
        }

    def states(self, job_id: int) -> dict[str, str]:
        return {
            k: f"{v['state']} {v['error'] or ''}".strip() for k, v in self.tasks(job_id).items()
        }


@contextlib.contextmanager
def running_rig(database_url: str, **overrides: Any) -> Iterator[Rig]:
    """A rig on ``database_url`` with an in-process Dask cluster; orchestrators stopped
    and everything closed on exit."""
    options: dict[str, Any] = {
        "database_url": database_url,
        "dask_processes": False,
        "dask_workers": 1,
        "dask_threads_per_worker": 4,
        "orchestrator_lease": 3,
        "orchestrator_poll": 0.05,
        **overrides,
    }
    settings = get_settings(**options)
    engine = make_engine(database_url)
    upgrade(engine)
    executor = Executor.start(settings)
    rig = Rig(settings, engine, executor)
    try:
        yield rig
    finally:
        for orch in rig.orchestrators:
            orch.stop()
        executor.close()
        engine.dispose()
