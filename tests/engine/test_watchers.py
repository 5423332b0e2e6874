"""Periodic watchers: run by the orchestrators at their interval, by one orchestrator at a
time, a failing run logged and recorded without stopping anything, and the lease of a
stopped orchestrator free again."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ferry_toy_tasks
from _rig import running_rig
from neuroferry.db import orchestrators, transaction
from neuroferry.engine import (
    Orchestrator,
    Watcher,
    WatcherContext,
    register_kind,
    watcher_states,
)
from neuroferry.engine._advance import now_utc
from neuroferry.engine._watchers import release_watcher_lease, take_watcher_lease

register_kind(ferry_toy_tasks.KIND)


class Probe:
    """A watcher function that counts its runs and the most runs at once."""

    def __init__(self, fail: bool = False) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.runs: list[str] = []
        self.fail = fail

    def __call__(self, ctx: WatcherContext) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.runs.append(ctx.orchestrator_id)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        if self.fail:
            raise RuntimeError("the watcher broke on purpose")


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_orchestrators_never_run_one_watcher_at_once(database_url: str) -> None:
    probe = Probe()
    watcher = Watcher("probe", probe, interval=lambda settings: 0.01)
    with running_rig(database_url) as rig:
        orchs = [
            Orchestrator(rig.settings, rig.engine, rig.executor, watchers=[watcher])
            for _ in range(2)
        ]
        rig.orchestrators.extend(orchs)
        for orch in orchs:
            orch.start()
        wait_for(lambda: len(probe.runs) >= 20)
        for orch in orchs:
            orch.stop()
    assert probe.most == 1
    [state] = [s for s in watcher_states(rig.engine) if s["name"] == "probe"]
    assert state["runs"] >= 20 and state["holder"] is None and state["last_error"] is None


def test_a_failing_watcher_is_recorded_and_runs_again(database_url: str, tmp_path: Path) -> None:
    probe = Probe(fail=True)
    watcher = Watcher("breaks", probe, interval=lambda settings: 0.01)
    with running_rig(database_url) as rig:
        orch = Orchestrator(rig.settings, rig.engine, rig.executor, watchers=[watcher])
        rig.orchestrators.append(orch)
        orch.start()
        wait_for(lambda: len(probe.runs) >= 3)
        job = rig.submit_toy(tmp_path / "j")  # the orchestrator still runs jobs
        assert rig.wait(job)["state"] == "succeeded"
        wait_for(lambda: len(probe.runs) >= 6)  # and runs its watcher again and again
        orch.stop()
    [state] = [s for s in watcher_states(rig.engine) if s["name"] == "breaks"]
    assert state["last_error"] == "RuntimeError: the watcher broke on purpose"


def test_the_lease_waits_for_its_interval_and_passes_on_when_its_holder_is_gone(
    database_url: str,
) -> None:
    with running_rig(database_url) as rig:
        engine = rig.engine
        with transaction(engine) as conn:
            now = now_utc()
            conn.execute(
                orchestrators.insert().values(
                    id="a", host="h", pid=1, started=now, heartbeat=now, active=1
                )
            )
        assert take_watcher_lease(engine, "w", "a")
        assert not take_watcher_lease(engine, "w", "b")  # a holds it
        release_watcher_lease(engine, "w", "a", 3600.0, None)
        assert not take_watcher_lease(engine, "w", "b")  # not due for an hour
        release_watcher_lease(engine, "w", "b", 0.0, None)  # b holds nothing: no change
        assert not take_watcher_lease(engine, "w", "b")

        assert take_watcher_lease(engine, "v", "a")
        with transaction(engine) as conn:  # a's heartbeat row is gone: a stopped
            conn.execute(orchestrators.delete().where(orchestrators.c.id == "a"))
        assert take_watcher_lease(engine, "v", "b")
        states = {s["name"]: s for s in watcher_states(engine)}
        assert states["v"]["holder"] == "b" and states["w"]["holder"] is None
