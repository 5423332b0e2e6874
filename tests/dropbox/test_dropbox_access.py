"""A drop-box job runs with the access its submission was checked against, not its
owner's: its analysis reads only the group's folder and writes only the job's results."""

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
from pydantic import BaseModel, ConfigDict

from _rig import running_rig
from neuroferry.auth import create_user
from neuroferry.dropbox import add_group, end_key, publish_dropbox, status_key
from neuroferry.pipelines.analysis import Analysis, AnalysisRun, register_analysis
from neuroferry.stores import open_store


class PeekParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other: str = ""
    """A path relative to the drop-box's root, read besides the input."""


def peek(run: AnalysisRun) -> dict[str, Any]:
    """Reads its input, then the drop-box file its ``other`` parameter names (a relative
    path it resolves against the drop-box's root, as an analysis of its own may)."""
    assert isinstance(run.parameters, PeekParameters)
    [url] = run.inputs.file_location or []
    root = url.rsplit("/", 3)[0]  # {root}/{group}/inputs/{file}
    parent, _, name = url.rpartition("/")
    run.open_store(parent).get(name)
    folder, _, other = f"{root}/{run.parameters.other}".rpartition("/")
    data = run.open_store(folder).get(other)
    (run.results / "peeked.txt").write_bytes(data)
    return {}


register_analysis(Analysis("peek", peek, PeekParameters, version="1.0"))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    (tmp_path / BOX).mkdir()
    url = (tmp_path / BOX).as_uri()
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.1) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        for name in ("alice", "bob"):
            create_user(rig.engine, name)
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "peek", url)
        add_group(rig.engine, rig.settings, admin, "user1", BOX, ["alice"])
        add_group(rig.engine, rig.settings, admin, "user2", BOX, ["bob"])
        rig.start()
        yield Box(rig, open_store(url), url)


def submit(box: Box, timestamp: str, other: str) -> str:
    box.put(f"user1/configs/{timestamp}.json", json.dumps({"other": other}))
    box.submit(
        f"user1/submissions/{timestamp}_submit.json",
        {
            "dataname": "user1/inputs/data.txt",
            "configname": f"user1/configs/{timestamp}.json",
            "timestamp": timestamp,
        },
    )
    folder = f"user1/results/job__{BOX}_{timestamp}"
    wait_for(lambda: box.exists(end_key(folder)), f"end.txt of {folder}")
    return folder


def test_an_analysis_reading_outside_the_group_folder_is_refused(box: Box) -> None:
    box.put("user1/inputs/data.txt", "mine\n")
    box.put("user1/inputs/notes.txt", "also mine\n")
    box.put("user2/inputs/secret.txt", "SECRET\n")

    # its own group's folder: read
    folder = submit(box, "own", "user1/inputs/notes.txt")
    status = json.loads(box.text(status_key(folder, "data.txt")))
    assert status["status"] == "SUCCESS", status
    assert box.text(f"{status['results']}/peeked.txt") == "also mine\n"

    # another group's folder, though the drop-box's admin could read it: refused
    folder = submit(box, "theirs", "user2/inputs/secret.txt")
    status = json.loads(box.text(status_key(folder, "data.txt")))
    assert status["status"] == "FAILED" and status["reason"] == 1
    assert "is not under a store prefix" in status["error"]
    assert "/user1" in status["error"]  # the one prefix it may read
    assert not any("SECRET" in line for line in status["std"].values())
    assert not [e.path for e in box.store.list(folder) if e.path.endswith("peeked.txt")]
