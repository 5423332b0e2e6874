"""`ferry job-types` and `ferry projects` against a real `ferry serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _service import running_service
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running `ferry serve` (SQLite, thread workers); FERRY_HOME holds the admin token."""
    home = tmp_path_factory.mktemp("service-home")
    with running_service(home, FERRY_DASK_PROCESSES="false", FERRY_DASK_WORKERS="1") as svc:
        yield svc.url, home


def ferry(args, *, env, check=None, stdin=None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        | {"COLUMNS": "250"}
        | env,
        input=stdin,
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
    return {"FERRY_URL": url, "FERRY_HOME": str(home)}  # token.json found in FERRY_HOME


@pytest.fixture(scope="module")
def user(service):
    url, home = service
    engine = make_engine(f"sqlite:///{Path(home) / 'ferry.db'}")
    token = create_token(engine, create_user(engine, "scientist"))
    engine.dispose()
    return {"FERRY_URL": url, "FERRY_TOKEN": token}


def test_set_show_history_diff_rollback_delete(admin, user, tmp_path):
    first = tmp_path / "ephys.json"
    first.write_text(json.dumps({"check_s3_folder_exists": {"skip_task": True}}))
    saved = ferry(["job-types", "set", "ephys", str(first), "-m", "first"], env=admin, check=0)
    assert saved.stdout == "saved job type ephys (upload): version 1\n"
    same = ferry(["job-types", "set", "ephys", str(first)], env=admin, check=0)
    assert "unchanged: version 1" in same.stdout
    second = json.dumps({"check_s3_folder_exists": {"skip_task": False}, "upload_data_to_s3": {}})
    ferry(["job-types", "set", "ephys", "-"], env=admin, stdin=second, check=0)

    listed = json.loads(ferry(["job-types", "list", "-f", "json"], env=user, check=0).stdout)
    assert [(t["name"], t["version"]) for t in listed] == [("ephys", 2)]
    table = ferry(["job-types", "list"], env=user, check=0).stdout
    assert "ephys" in table and "admin" in table  # who saved it
    shown = ferry(["job-types", "show", "ephys", "--version", "1"], env=user, check=0)
    assert json.loads(shown.stdout) == {"check_s3_folder_exists": {"skip_task": True}}
    assert "ephys (upload) version 1" in shown.stderr and "first" in shown.stderr
    history = json.loads(ferry(["job-types", "history", "ephys", "-f", "json"], env=user).stdout)
    assert [v["version"] for v in history] == [1, 2]
    diff = ferry(["job-types", "diff", "ephys", "1", "2"], env=user, check=0).stdout.splitlines()
    assert diff == ["~ check_s3_folder_exists.skip_task: true → false", "+ upload_data_to_s3: {}"]

    back = ferry(["job-types", "rollback", "ephys", "1"], env=admin, check=0)
    assert back.stdout == "rolled back job type ephys (upload): version 3\n"
    gone = ferry(["job-types", "delete", "ephys", "-m", "retired"], env=admin, check=0)
    assert gone.stdout == "deleted job type ephys (upload): version 4\n"
    missing = ferry(["job-types", "show", "ephys"], env=user, check=3)
    assert "was deleted in version 4" in missing.stderr and "HTTP 404" in missing.stderr


def test_users_read_but_cannot_write(user, tmp_path):
    settings = tmp_path / "s.json"
    settings.write_text("{}")
    proc = ferry(["job-types", "set", "x", str(settings)], env=user, check=3)
    assert "only admins may PUT /api/v2/job_types/x" in proc.stderr
    assert "only admins" in ferry(["projects", "add", "Atlas"], env=user, check=3).stderr
    ferry(["projects", "list"], env=user, check=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1]", "must hold a JSON object of task name to task settings"),
        ('{"upload_data_to_s3": {"skip_tsk": true}}', "upload_data_to_s3: unknown field"),
        (
            '{"modality_transformation_settings": {"kinect": {}}}',
            "'kinect' is not a known modality",
        ),
    ],
)
def test_bad_settings_files_are_exit_2_naming_the_problem(admin, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = ferry(["job-types", "set", "bad", str(bad)], env=admin, check=2)
    assert message in proc.stderr


def test_projects(admin, user):
    assert "any project name" in ferry(["projects", "list"], env=user, check=0).stderr
    added = ferry(["projects", "add", "Ephys Platform"], env=admin, check=0)
    assert added.stdout == "added project Ephys Platform\n"
    ferry(["projects", "add", "Ephys Platform"], env=admin, check=2)  # exists already
    listed = json.loads(ferry(["projects", "list", "-f", "json"], env=user, check=0).stdout)
    assert [p["name"] for p in listed] == ["Ephys Platform"]
    set_ = ferry(
        [
            "projects",
            "set",
            "Ephys Platform",
            "--institution",
            "AIND",
            "--funder",
            "NIMH:R01-123",
            "--investigator",
            "Jane Doe",
        ],
        env=admin,
        check=0,
    )
    assert "institution AIND; funding NIMH; investigators Jane Doe" in set_.stdout
    [listed] = json.loads(ferry(["projects", "list", "-f", "json"], env=user, check=0).stdout)
    assert listed["funding_source"] == [{"funder": "NIMH", "grant_number": "R01-123"}]
    bad = ferry(["projects", "set", "Ephys Platform", "--institution", "Hogwarts"], env=admin)
    assert bad.returncode == 2 and "not an organization" in bad.stderr
    ferry(["projects", "set", "Ephys Platform"], env=admin, check=2)  # nothing to set
    ferry(["projects", "remove", "Ephys Platform"], env=admin, check=0)
    assert "no project 'x'" in ferry(["projects", "remove", "x"], env=admin, check=3).stderr
