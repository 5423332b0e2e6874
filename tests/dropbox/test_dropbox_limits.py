"""A group's limits: datasets at once (more wait their turn), minutes per dataset (a
longer one's job is cancelled; a config asking for more is refused) and datasets per
day, each written to the certificate when hit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _box import (
    BOX,
    Box,
    clean_git_state,  # noqa: F401  (autouse)
    wait_for,
)

from _rig import running_rig
from neuroferry.auth import create_user
from neuroferry.dropbox import Limits, add_group, certificate_key, end_key, publish_dropbox
from neuroferry.stores import open_store


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    monkeypatch.setattr("neuroferry.dropbox._progress.SECONDS_PER_MINUTE", 0.5)
    root = tmp_path / "box"
    root.mkdir()
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.05) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", str(root))
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [], Limits(1, 5, None))
        add_group(rig.engine, rig.settings, admin, "user2", BOX, [], Limits(None, None, 3))
        rig.start()
        yield Box(rig, open_store(root.as_uri()), root.as_uri())


def folder(group: str, timestamp: str) -> str:
    return f"{group}/results/job__{BOX}_{timestamp}"


def submit(box: Box, group: str, timestamp: str, data: list[str], config: str) -> None:
    box.submit(
        f"{group}/submissions/{timestamp}_submit.json",
        {
            "dataname": [f"{group}/inputs/{d}" for d in data],
            "configname": f"{group}/configs/{config}",
            "timestamp": timestamp,
        },
    )


def ended(box: Box, group: str, timestamp: str) -> str:
    wait_for(lambda: box.exists(end_key(folder(group, timestamp))), f"end.txt of {timestamp}")
    return box.text(certificate_key(folder(group, timestamp)))


def test_datasets_at_once_wait_and_a_dataset_past_its_minutes_is_cancelled(box: Box) -> None:
    box.put("user1/inputs/slow.txt", "sleep\n")
    box.put("user1/inputs/quick.txt", "a\nb\n")
    box.put("user1/configs/short.yaml", "__duration__: 1\n")
    box.put("user1/configs/long.yaml", "__duration__: 9\n")
    box.put("user1/configs/plain.yaml", "label: x\n")

    submit(box, "user1", "a", ["slow.txt"], "short.yaml")
    wait_for(
        lambda: (
            "STATUS: IN PROGRESS" in box.text(certificate_key(folder("user1", "a")))
            if box.exists(certificate_key(folder("user1", "a")))
            else False
        ),
        "the slow dataset running",
    )
    submit(box, "user1", "b", ["quick.txt"], "plain.yaml")
    submit(box, "user1", "c", ["quick.txt"], "long.yaml")
    submit(box, "user1", "d", ["quick.txt", "slow.txt"], "plain.yaml")

    first = ended(box, "user1", "a")
    assert "ran longer than 1 minutes" in first and "STATUS: FAILED" in first
    second = ended(box, "user1", "b")
    assert "WAITING: your group's datasets running at once are at its limit of 1" in second
    assert "Started: your group has room" in second and "STATUS: SUCCESS" in second
    assert "more than your group's limit of 5 minutes per dataset" in ended(box, "user1", "c")
    assert "more than the 1 your group may run at once" in ended(box, "user1", "d")
    assert len(box.analysis_jobs()) == 2


def test_datasets_per_day(box: Box) -> None:
    box.put("user2/inputs/x.txt", "a\n")
    box.put("user2/configs/c.yaml", "label: x\n")
    submit(box, "user2", "one", ["x.txt", "x.txt"], "c.yaml")
    assert "STATUS: SUCCESS" in ended(box, "user2", "one")
    submit(box, "user2", "two", ["x.txt", "x.txt"], "c.yaml")
    refused = ended(box, "user2", "two")
    assert "your group has submitted 2 datasets in the last 24 hours" in refused
    assert "limit of 3 per day" in refused and "What to do: submit again later" in refused
    submit(box, "user2", "three", ["x.txt"], "c.yaml")
    assert "STATUS: SUCCESS" in ended(box, "user2", "three")
