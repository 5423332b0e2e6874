"""Submissions written to harm the watcher: one group's bad submit file or config is
refused with a certificate saying why, and never stops the watcher looking at the other
groups; a refused submission never writes into the folder of another one."""

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
)

from _rig import running_rig
from neuroferry.auth import create_user
from neuroferry.dropbox import Watch, add_group, certificate_key, end_key, publish_dropbox
from neuroferry.engine import NewJob, WatcherContext
from neuroferry.errors import StoreError
from neuroferry.stores import open_store


@pytest.fixture
def box(database_url: str) -> Iterator[Box]:
    """Groups ``user1`` and ``user2``; no orchestrator runs: each test runs the watcher."""
    with running_rig(database_url) as rig:
        root = Path(rig.settings.store_url.removeprefix("file://")) / "box"
        root.mkdir(parents=True)
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", str(root))
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [])
        add_group(rig.engine, rig.settings, admin, "user2", BOX, [])
        box = Box(rig, open_store(root.as_uri()), root.as_uri())
        for group in ("user1", "user2"):
            box.put(f"{group}/inputs/d.txt", "a\n")
            box.put(f"{group}/configs/c.json", "{}")
        yield box


def watch(box: Box) -> None:
    ctx = WatcherContext(box.rig.settings, box.rig.engine, box.rig.catalog, lambda: None, "t")
    Watch(ctx).run()


def fields(group: str, timestamp: str, config: str = "c.json", data: str = "d.txt") -> str:
    return json.dumps(
        {
            "dataname": f"{group}/inputs/{data}",
            "configname": f"{group}/configs/{config}",
            "timestamp": timestamp,
        }
    )


def folder(group: str, name: str) -> str:
    return f"{group}/results/job__{BOX}_{name}"


def states(box: Box) -> dict[str, str]:
    return {s["key"]: s["state"] for s in box.submissions()}


def good_one_of_user2_runs(box: Box) -> None:
    """A good submission of the next group, dropped beside user1's bad one."""
    box.submit("user2/submissions/g_submit.json", fields("user2", "good"))
    watch(box)
    watch(box)  # a second run: the bad one is not taken again, nor does it stop this one
    assert states(box)["user2/submissions/g_submit.json"] == "running"
    assert [j["spec"]["results"] for j in box.analysis_jobs()] == [
        f"{box.url}/{folder('user2', 'good')}/process_results"
    ]


DEEP = "[" * 30000


@pytest.mark.parametrize(
    ("name", "config", "problem"),
    [
        ("c.json", DEEP, "deeper than 64 levels"),
        ("c.yaml", DEEP, "deeper than 64 levels"),
        ("c.yaml", "- " * 30000 + "x", "deeper than 64 levels"),
        ("c.json", "[" * 100000, "has 100000 bytes, more than 65536"),
        ("c.json", '{"scale": ' + "9" * 5000 + "}", "does not parse"),
        ("c.yaml", "a: &x [1]\nb: *x\n", "anchors and aliases (&name, *name) are not allowed"),
        ("c.yaml", "label: s3://other-bucket/data\n", "parameter label ('s3://other-bucket/"),
        ("c.json", '{"label": ["x", {"a": "/srv/data"}]}', "parameter label[1].a ('/srv/data')"),
    ],
)
def test_a_config_that_breaks_parsers_is_refused(
    box: Box, name: str, config: str, problem: str
) -> None:
    box.put(f"user1/configs/{name}", config)
    box.submit("user1/submissions/p_submit.json", fields("user1", "1", name))
    good_one_of_user2_runs(box)
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    cert = box.text(certificate_key(folder("user1", "1")))
    assert f"config file user1/configs/{name}" in cert and problem in cert
    assert box.exists(end_key(folder("user1", "1")))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (DEEP, "nests lists or objects deeper than 64 levels"),
        ('{"timestamp": ' + "9" * 5000 + "}", "the submit file cannot be read"),
    ],
)
def test_a_submit_file_that_breaks_the_parser_is_refused(box: Box, text: str, problem: str) -> None:
    box.submit("user1/submissions/p_submit.json", text)
    good_one_of_user2_runs(box)
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    assert problem in box.text(certificate_key(folder("user1", "p_submit")))


def test_an_unexpected_fault_refuses_the_submission_without_telling_its_details(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Watch, *args: Any) -> None:
        raise RuntimeError("secret detail /srv/ferry/home")

    monkeypatch.setattr(Watch, "_check_limits", broken)
    box.submit("user1/submissions/p_submit.json", fields("user1", "1"))
    watch(box)
    monkeypatch.undo()
    good_one_of_user2_runs(box)
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    cert = box.text(certificate_key(folder("user1", "1")))
    assert "internal error" in cert and "secret" not in cert and "/srv" not in cert


def test_a_long_submit_file_name_is_refused_in_a_folder_of_a_short_name(box: Box) -> None:
    key = "user1/submissions/" + "x" * 239 + "_submit.json"
    box.submit(key, "not json")
    good_one_of_user2_runs(box)
    [row] = [s for s in box.submissions() if s["key"] == key]
    assert row["state"] == "rejected"
    name = row["folder"].rpartition("/")[2]
    assert len(name) < 255 and name.startswith(f"job__{BOX}_xxxx")
    assert "is not valid JSON" in box.text(certificate_key(row["folder"]))


def test_a_timestamp_too_long_for_a_folder_name_is_refused(box: Box) -> None:
    box.submit("user1/submissions/p_submit.json", fields("user1", "é" * 100))
    good_one_of_user2_runs(box)
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    cert = box.text(certificate_key(folder("user1", "p_submit")))
    assert "cannot name a folder: it is longer than 128 bytes" in cert


def test_a_refused_certificate_that_cannot_be_written_still_settles_the_submission(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = type(box.store).put
    written = []

    def refuse_certificates(self: Any, key: str, data: bytes) -> None:
        if key.startswith("user1/results/"):
            raise StoreError(f"cannot write {key}: name too long")
        written.append(key)
        real(self, key, data)

    box.submit("user1/submissions/p_submit.json", "not json")
    monkeypatch.setattr(type(box.store), "put", refuse_certificates)
    watch(box)
    monkeypatch.undo()
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    good_one_of_user2_runs(box)


def test_a_timestamp_used_before_leaves_the_earlier_folder_alone(box: Box) -> None:
    job = folder("user1", "T")
    box.put("user1/configs/bad.json", '{"nope": 1}')
    box.submit("user1/submissions/1_submit.json", fields("user1", "T", "bad.json"))
    watch(box)
    assert box.exists(end_key(job))  # refused: its folder says it ended
    # the same timestamp again, now good: runs, and the refused one's end.txt is gone
    box.submit("user1/submissions/2_submit.json", fields("user1", "T"))
    watch(box)
    assert states(box)["user1/submissions/2_submit.json"] == "running"
    assert not box.exists(end_key(job))
    running = box.text(certificate_key(job))
    # a third, both reusing the timestamp and naming missing data: the running job's
    # certificate stays its own, no end.txt appears, a note says why it did not run
    box.submit("user1/submissions/3_submit.json", fields("user1", "T", data="missing.txt"))
    watch(box)
    assert states(box)["user1/submissions/3_submit.json"] == "duplicate"
    assert box.text(certificate_key(job)) == running
    assert not box.exists(end_key(job))
    notes = [e.path for e in box.store.list(f"{job}/logs/") if "rejected_3_submit" in e.path]
    assert len(notes) == 1 and "user1/submissions/2_submit.json" in box.text(notes[0])


def test_a_refused_file_named_like_a_running_job_leaves_its_folder_alone(box: Box) -> None:
    job = folder("user1", "x_submit")
    box.submit("user1/submissions/a_submit.json", fields("user1", "x_submit"))
    watch(box)
    running = box.text(certificate_key(job))
    box.submit("user1/submissions/x_submit.json", "not json")  # refused in job__..._x_submit
    watch(box)
    assert states(box)["user1/submissions/x_submit.json"] == "rejected"
    assert box.text(certificate_key(job)) == running
    assert not box.exists(end_key(job))
    [note] = [e.path for e in box.store.list(f"{job}/logs/") if "rejected_" in e.path]
    assert "is not valid JSON" in box.text(note)


def test_the_validated_parameters_are_kept(box: Box) -> None:
    box.put("user1/configs/c.yaml", "scale: 2\n")
    box.submit("user1/submissions/p_submit.json", fields("user1", "1", "c.yaml"))
    watch(box)
    [row] = box.submissions()
    assert row["parameters"]["parameters"] == {"scale": 2.0, "label": ""}
    [job] = box.analysis_jobs()
    assert job["spec"]["fixed_parameters"] == {"scale": 2.0, "label": ""}


def test_a_refused_job_is_told_without_the_service_folders(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = box.rig.settings.home

    def refused(self: Watch, *args: Any) -> NewJob:
        raise StoreError(
            f"cannot write {box.url}/user1/results/x nor {home}/staging/y nor "
            f"{home.as_uri()}/lake/z"
        )

    monkeypatch.setattr(Watch, "_new_job", refused)
    box.submit("user1/submissions/p_submit.json", fields("user1", "1"))
    watch(box)
    assert states(box)["user1/submissions/p_submit.json"] == "rejected"
    cert = box.text(certificate_key(folder("user1", "1")))
    assert "the job was refused: cannot write user1/results/x nor [service]/staging/y" in cert
    assert str(home) not in cert and "file://" not in cert


def test_the_database_keeps_one_live_submission_per_timestamp(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.submit("user1/submissions/1_submit.json", fields("user1", "T"))
    watch(box)
    real = Watch._timestamp_used
    calls: list[int] = []

    def missed_once(self: Watch, *args: Any) -> Any:
        calls.append(1)  # the first look misses it, as another watcher's would
        return None if len(calls) == 1 else real(self, *args)

    monkeypatch.setattr(Watch, "_timestamp_used", missed_once)
    box.submit("user1/submissions/2_submit.json", fields("user1", "T"))
    watch(box)
    assert len(calls) == 2
    assert states(box) == {
        "user1/submissions/1_submit.json": "running",
        "user1/submissions/2_submit.json": "duplicate",
    }
    assert len(box.analysis_jobs()) == 1


def test_one_refused_job_of_a_burst_is_refused_alone(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs of a group's new submit files are submitted together; when the service
    refuses one of them, it alone is refused and the others run, each once."""
    new_job = Watch._new_job

    def refuse_two(self: Watch, box_: Any, group: str, folder_: str, *args: Any) -> NewJob:
        if folder_.endswith("_2"):
            raise StoreError("the store refused it")
        return new_job(self, box_, group, folder_, *args)

    monkeypatch.setattr(Watch, "_new_job", refuse_two)
    for timestamp in ("1", "2", "3"):
        box.submit(f"user1/submissions/{timestamp}_submit.json", fields("user1", timestamp))
    watch(box)
    watch(box)
    assert states(box) == {
        "user1/submissions/1_submit.json": "running",
        "user1/submissions/2_submit.json": "rejected",
        "user1/submissions/3_submit.json": "running",
    }
    assert sorted(j["spec"]["results"] for j in box.analysis_jobs()) == [
        f"{box.url}/{folder('user1', t)}/process_results" for t in ("1", "3")
    ]
    assert "the job was refused: the store refused it" in box.text(
        certificate_key(folder("user1", "2"))
    )
    for timestamp in ("1", "3"):
        cert = box.text(certificate_key(folder("user1", timestamp)))
        assert "STEP 3/3 (Submission): DONE" in cert and not box.exists(
            end_key(folder("user1", timestamp))
        )
