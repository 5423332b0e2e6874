"""`ferry dropbox publish | group add | list` against a real `ferry serve`, and a submit
file dropped in a group's folder run by the service's own watcher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from _service import running_service
from neuroferry.auth import create_token, create_user
from neuroferry.db import dropbox_groups, dropboxes, make_engine

NOW = datetime.now(UTC)

NO_GIT = {"PATH": os.path.dirname(sys.executable)}
"""The service runs without git: the analyses' identity is their installed version."""


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("service-home")
    with running_service(
        home,
        FERRY_DASK_PROCESSES="false",
        FERRY_DASK_WORKERS="1",
        FERRY_DROPBOX_POLL="0.2",
        **NO_GIT,
    ) as svc:
        yield svc.url, home


def ferry(args, *, env, check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        | {"COLUMNS": "250"}
        | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def admin(service):
    url, home = service
    return {"FERRY_URL": url, "FERRY_HOME": str(home)}


@pytest.fixture(scope="module")
def users(service):
    url, home = service
    engine = make_engine(f"sqlite:///{Path(home) / 'ferry.db'}")
    tokens = {
        name: {"FERRY_URL": url, "FERRY_TOKEN": create_token(engine, create_user(engine, name))}
        for name in ("alice", "bob")
    }
    engine.dispose()
    return tokens


def test_publish_add_groups_list_and_run_a_submission(admin, users, tmp_path):
    box = tmp_path / "summary-box"
    missing = ["dropbox", "publish", "summary-box", "--analysis", "file-summary"]
    proc = ferry([*missing, "--store", str(box)], env=admin, check=3)
    assert f"local folder {box} does not exist" in proc.stderr
    box.mkdir()
    out = ferry(
        ["dropbox", "publish", "summary-box", "--analysis", "file-summary", "--store", str(box)],
        env=admin,
        check=0,
    ).stdout
    assert f"published file-summary as drop-box summary-box at {box.as_uri()}" in out
    out = ferry(
        ["dropbox", "group", "add", "lab1", "--dropbox", "summary-box", "--member", "alice"],
        env=admin,
        check=0,
    ).stdout
    assert "group lab1 of drop-box summary-box" in out
    ferry(["dropbox", "group", "add", "lab2", "--dropbox", "summary-box"], env=admin, check=0)
    assert sorted(p.name for p in (box / "lab1").iterdir()) == [
        "configs",
        "inputs",
        "results",
        "submissions",
    ]

    everything = json.loads(ferry(["dropbox", "list", "-f", "json"], env=admin, check=0).stdout)
    assert [(g["name"], g["members"]) for g in everything[0]["groups"]] == [
        ("lab1", ["alice"]),
        ("lab2", []),
    ]
    alices = json.loads(ferry(["dropbox", "list", "-f", "json"], env=users["alice"]).stdout)
    assert [g["name"] for g in alices[0]["groups"]] == ["lab1"]
    assert json.loads(ferry(["dropbox", "list", "-f", "json"], env=users["bob"]).stdout) == []
    table = ferry(["dropbox", "list"], env=users["alice"], check=0).stdout
    assert "summary-box" in table and "lab1 (alice)" in table and "lab2" not in table

    (box / "lab1/inputs/a.npy").write_bytes(b"\x93NUMPY not really")
    (box / "lab1/inputs/b.txt").write_text("hello\n")
    (box / "lab1/configs/config.json").write_text(json.dumps({"bins": 4, "__duration__": 5}))
    (box / "lab1/submissions/submit.json").write_text(
        json.dumps(
            {
                "dataname": ["lab1/inputs/a.npy", "lab1/inputs/b.txt"],
                "configname": "lab1/configs/config.json",
                "timestamp": "run1",
            }
        )
    )
    job = box / "lab1/results/job__summary-box_run1"
    deadline = time.monotonic() + 120
    while not (job / "process_results/end.txt").exists():
        assert time.monotonic() < deadline, "no end.txt"
        time.sleep(0.1)
    assert (job / "process_results/end.txt").read_bytes() == b"end of analysis marker"
    statuses = sorted(p.name for p in (job / "logs").iterdir())
    assert statuses == [
        "DATASET_NAME:a.npy_STATUS.txt",
        "DATASET_NAME:b.txt_STATUS.txt",
        "certificate.txt",
    ]
    summaries = sorted(job.glob("process_results/file-summary/*/summary.json"))
    assert len(summaries) == 2
    assert {json.loads(p.read_text())["bins"] for p in summaries} == {4}
    listed = ferry(["jobs", "list", "--kind", "analysis", "--format", "json"], env=admin)
    assert '"state": "succeeded"' in listed.stdout  # the job shows in `ferry jobs` too

    # the group's members see the job (read-only); other users do not
    [job_id] = re.findall(r"job (\d+): 2 dataset", (job / "logs/certificate.txt").read_text())
    as_json = ["--format", "json"]
    mine = json.loads(ferry(["jobs", "list", *as_json], env=users["alice"], check=0).stdout)
    assert job_id in [str(j["id"]) for j in mine["jobs"]]
    shown = json.loads(ferry(["jobs", "show", job_id, *as_json], env=users["alice"]).stdout)
    assert shown["state"] == "succeeded"
    assert "file-summary" in ferry(["jobs", "logs", job_id], env=users["alice"], check=0).stdout
    refused = ferry(["jobs", "retry", job_id], env=users["alice"], check=3)
    assert "only they or an admin may retry it" in refused.stderr
    theirs = json.loads(ferry(["jobs", "list", *as_json], env=users["bob"], check=0).stdout)
    assert job_id not in [str(j["id"]) for j in theirs["jobs"]]
    for args in (["show", job_id], ["logs", job_id], ["retry", job_id]):
        hidden = ferry(["jobs", *args], env=users["bob"], check=3)
        assert f"job {job_id} does not exist" in hidden.stderr


def test_only_admins_publish_and_add_groups(admin, users, tmp_path):
    proc = ferry(
        ["dropbox", "publish", "mine", "--analysis", "file-summary", "--store", str(tmp_path)],
        env=users["alice"],
        check=3,
    )
    assert "only admins may POST /api/v2/dropboxes" in proc.stderr
    proc = ferry(["dropbox", "group", "add", "g", "--dropbox", "x"], env=users["alice"], check=3)
    assert "only admins" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "bad name", "--analysis", "file-summary"], "'bad name' is not a valid name"),
        (["publish", "ok-name", "--analysis", "nope"], "unknown analysis 'nope'"),
        (["group", "add", "../up", "--dropbox", "summary-box"], "'../up' is not a valid name"),
    ],
)
def test_bad_names_are_exit_2_naming_the_problem(admin, tmp_path, args, message):
    if args[0] == "publish":
        args = [*args, "--store", str(tmp_path)]
    proc = ferry(["dropbox", *args], env=admin, check=2)
    assert message in proc.stderr


def test_policy_of_a_group(admin, users, tmp_path):
    made = ferry(
        ["dropbox", "publish", "on-s3", "--analysis", "file-summary", "--store", "s3://lab/x"],
        env=admin,
        check=0,
    )
    assert "at s3://lab/x" in made.stdout
    # adding a group would write its folders to the bucket: this one is added directly
    engine = make_engine(f"sqlite:///{Path(admin['FERRY_HOME']) / 'ferry.db'}")

    with engine.begin() as conn:
        box_id = conn.execute(select(dropboxes.c.id).where(dropboxes.c.name == "on-s3")).scalar()
        conn.execute(insert(dropbox_groups).values(dropbox_id=box_id, name="lab1", created=NOW))
    engine.dispose()
    policy = json.loads(
        ferry(["dropbox", "policy", "lab1", "--dropbox", "on-s3"], env=admin, check=0).stdout
    )
    assert policy["Statement"][5]["Resource"] == [
        f"arn:aws:s3:::lab/x/lab1/{f}/*" for f in ("inputs", "configs", "submissions")
    ]
    refused = ferry(
        ["dropbox", "policy", "lab1", "--dropbox", "on-s3"], env=users["alice"], check=3
    )
    assert "only admins" in refused.stderr
    missing = ferry(["dropbox", "policy", "lab9", "--dropbox", "on-s3"], env=admin, check=2)
    assert "has no group 'lab9'" in missing.stderr


def test_members_upload_submit_watch_fetch_and_list_their_own_folder(admin, users, tmp_path):
    box = tmp_path / "members-box"
    box.mkdir()
    publish = ["dropbox", "publish", "members-box", "--analysis", "file-summary"]
    ferry([*publish, "--store", str(box)], env=admin, check=0)
    for group, member in (("g1", "alice"), ("g2", "bob")):
        add = ["dropbox", "group", "add", group, "--dropbox", "members-box", "--member", member]
        ferry(add, env=admin, check=0)
    alice, bob = users["alice"], users["bob"]
    on = ["--dropbox", "members-box"]

    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("one\n")
    (data / "y.txt").write_text("two\n")
    (tmp_path / "c.json").write_text('{"bins": 2}')
    out = ferry(["dropbox", "upload", str(data), *on], env=alice, check=0).stdout
    assert "uploaded" in out and (box / "g1/inputs/y.txt").read_text() == "two\n"
    ferry(
        ["dropbox", "upload", str(tmp_path / "c.json"), "--to", "configs", *on], env=alice, check=0
    )

    # inputs can be written but not read back; another group's folder is out of reach
    refused = ferry(["dropbox", "fetch", "x", str(tmp_path / "n"), *on], env=alice, check=2)
    assert "nothing in results/job__members-box_x/ yet" in refused.stderr
    refused = ferry(["dropbox", "ls", *on, "--group", "g2"], env=alice, check=3)
    assert "'g2' is not a group of drop-box 'members-box' of yours" in refused.stderr
    bobs = json.loads(ferry(["dropbox", "ls", *on, "-f", "json"], env=bob, check=0).stdout)
    assert bobs["group"] == "g2" and bobs["files"] == []

    out = ferry(
        [
            "dropbox",
            "submit",
            *on,
            "--data",
            "inputs/x.txt",
            "--data",
            "y.txt",
            "--config",
            "c.json",
            "--timestamp",
            "t1",
        ],
        env=alice,
        check=0,
    ).stdout
    assert "results in results/job__members-box_t1/" in out
    # a bad field is named before anything is written (the pages make the same checks)
    bad = ["dropbox", "submit", *on, "--data", "x.txt", "--config", "c.txt"]
    refused = ferry(bad, env=alice, check=2)
    assert "config: configs/c.txt is neither .json nor .yaml/.yml" in refused.stderr
    refused = ferry([*bad[:-1], "c.json", "--timestamp", "a/b"], env=alice, check=2)
    assert "timestamp: 'a/b' cannot name a folder" in refused.stderr
    assert sorted(p.name for p in (box / "g1/submissions").iterdir()) == ["t1_submit.json"]
    watched = ferry(["dropbox", "watch", "t1", *on, "--every", "0.2"], env=alice, check=0)
    assert watched.stdout.count("| STATUS: SUCCESS |") >= 2
    ferry(["dropbox", "fetch", "t1", str(tmp_path / "got"), *on], env=alice, check=0)
    got = tmp_path / "got"
    assert (got / "process_results/end.txt").read_bytes() == b"end of analysis marker"
    assert (got / "logs/certificate.txt").exists()
    assert len(list(got.glob("process_results/file-summary/*/summary.json"))) == 2
    listed = ferry(["dropbox", "ls", "inputs/", *on], env=alice, check=0).stdout
    assert "inputs/x.txt" in listed and "inputs/y.txt" in listed


def test_admins_set_a_groups_limits(admin, users, tmp_path):
    (tmp_path / "lim").mkdir()
    publish = ["dropbox", "publish", "lim-box", "--analysis", "file-summary"]
    ferry([*publish, "--store", str(tmp_path / "lim")], env=admin, check=0)
    add = ["dropbox", "group", "add", "g", "--dropbox", "lim-box", "--max-per-day", "10"]
    ferry(add, env=admin, check=0)
    out = ferry(
        [
            "dropbox",
            "group",
            "limits",
            "g",
            "--dropbox",
            "lim-box",
            "--max-running",
            "2",
            "--max-minutes",
            "30",
        ],
        env=admin,
        check=0,
    ).stdout
    assert "limits of group g of drop-box lim-box: max_running 2, max_minutes 30" in out
    boxes = json.loads(ferry(["dropbox", "list", "-f", "json"], env=admin, check=0).stdout)
    [group] = next(b for b in boxes if b["name"] == "lim-box")["groups"]
    assert group["limits"] == {"max_running": 2, "max_minutes": 30, "max_per_day": None}
    limits = ["dropbox", "group", "limits", "g", "--dropbox", "lim-box"]
    assert "only admins" in ferry(limits, env=users["alice"], check=3).stderr
    ferry([*limits, "--max-running", "0"], env=admin, check=2)
    missing = ferry(["dropbox", "group", "limits", "h", "--dropbox", "lim-box"], env=admin, check=3)
    assert "drop-box 'lim-box' has no group 'h'" in missing.stderr
