"""Each submit file runs exactly once: many dropped at once with two orchestrators, and a
watcher that stopped right after submitting a job (its job is found, not submitted
again) or right after claiming a file (the file is taken again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _box import (
    BOX,
    Box,
    clean_git_state,  # noqa: F401  (autouse)
    wait_for,
)

from _rig import Rig, running_rig
from neuroferry.auth import create_user
from neuroferry.dropbox import Watch, add_group, end_key, publish_dropbox
from neuroferry.engine import Orchestrator


@pytest.fixture
def box(database_url: str) -> Iterator[Box]:
    with running_rig(database_url, dropbox_poll=0.05) as rig:
        # inside the service's own lake: the groups' folders are reachable, nothing else
        root = Path(rig.settings.store_url.removeprefix("file://")) / "box"
        root.mkdir(parents=True)
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", str(root))
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [])
        from neuroferry.stores import open_store

        yield Box(rig, open_store(root.as_uri()), root.as_uri())


def drop(box: Box, n: int, prefix: str = "s") -> list[str]:
    box.put("user1/inputs/d.txt", "a\n")
    box.put("user1/configs/c.json", "{}")
    folders = []
    for i in range(n):
        fields = {
            "dataname": "user1/inputs/d.txt",
            "configname": "user1/configs/c.json",
            "timestamp": f"{prefix}{i}",
        }
        box.submit(f"user1/submissions/{prefix}{i}_submit.json", json.dumps(fields))
        folders.append(f"user1/results/job__{BOX}_{prefix}{i}")
    return folders


def start(rig: Rig, n: int) -> None:
    for _ in range(n):
        orch = Orchestrator(rig.settings, rig.engine, rig.executor, catalog=rig.catalog)
        rig.orchestrators.append(orch)
        orch.start()


def test_many_files_with_two_orchestrators_each_run_once(box: Box) -> None:
    folders = drop(box, 12)
    start(box.rig, 2)
    for folder in folders:
        wait_for(lambda f=folder: box.exists(end_key(f)), f"end.txt of {folder}")
    results = sorted(j["spec"]["results"] for j in box.analysis_jobs())
    assert results == sorted(f"{box.url}/{f}/process_results" for f in folders)
    assert sorted(s["state"] for s in box.submissions()) == ["ended"] * 12


def test_a_watcher_stopped_after_submitting_leaves_one_job(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Watch._mark_running
    crashed: list[Any] = []

    def crash_once(self: Watch, ready: Any, ids: list[int]) -> None:
        if not crashed:  # after the job was submitted, before its row says so
            crashed.extend(ids)
            raise RuntimeError("the service died here")
        real(self, ready, ids)

    monkeypatch.setattr(Watch, "_mark_running", crash_once)
    [folder] = drop(box, 1, "crash")
    start(box.rig, 1)
    wait_for(lambda: box.exists(end_key(folder)), "end.txt")
    assert [j["id"] for j in box.analysis_jobs()] == crashed
    [row] = box.submissions()
    assert row["state"] == "ended" and row["job_id"] == crashed[0]


def test_a_file_claimed_by_a_watcher_that_stopped_is_taken_again(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[int] = []

    def stop_once(self: Watch, *args: Any) -> None:
        if not stopped:
            stopped.append(1)
            raise RuntimeError("the service died here")
        real(self, *args)

    real = Watch.process
    monkeypatch.setattr(Watch, "process", stop_once)
    [folder] = drop(box, 1, "claimed")
    start(box.rig, 1)
    wait_for(lambda: box.exists(end_key(folder)), "end.txt")
    assert len(box.analysis_jobs()) == 1 and stopped
    assert [s["state"] for s in box.submissions()] == ["ended"]
