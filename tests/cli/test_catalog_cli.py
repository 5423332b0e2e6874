"""`ferry catalog` against a real `ferry serve`, with the token lookup order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _service import running_service
from conftest import free_port
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine

DOCS = [
    {"name": "ecephys_774659", "subject": {"subject_id": "774659"}, "project": "Ephys"},
    {"name": "behavior_643634", "subject": {"subject_id": "643634"}, "project": "Ephys"},
    {"name": "SPIM_700000", "subject": {"subject_id": "700000"}, "project": "Atlas"},
]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running `ferry serve` (SQLite, thread workers) and its first admin's token."""
    home = tmp_path_factory.mktemp("service-home")
    with running_service(home, FERRY_DASK_PROCESSES="false", FERRY_DASK_WORKERS="1") as svc:
        yield svc.url, home


def ferry(args, *, env, cwd=None, check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        | {"COLUMNS": "250"}  # usage errors come in a box: wide enough for one line
        | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def loaded(service, tmp_path_factory):
    """The service with DOCS imported through `ferry catalog import` by the admin."""
    url, home = service
    lines = tmp_path_factory.mktemp("import") / "docs.jsonl"
    lines.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n\n")
    env = {"FERRY_URL": url, "FERRY_HOME": str(home)}  # token.json found in FERRY_HOME
    out = ferry(["catalog", "import", str(lines)], env=env, check=0).stdout
    assert out.strip() == f"imported {lines}: 3 inserted, 0 replaced"
    return url, home


def _jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_first_serve_wrote_an_admin_token(service):
    _, home = service
    saved = json.loads((Path(home) / "token.json").read_text())
    assert saved["user"] == "admin" and saved["token"].startswith("nf_")


def test_find_count_get(loaded, tmp_path):
    url, home = loaded
    env = {"FERRY_URL": url, "FERRY_HOME": str(home)}
    found = _jsonl(ferry(["catalog", "find", '{"project": "Ephys"}'], env=env, check=0).stdout)
    assert sorted(d["name"] for d in found) == ["behavior_643634", "ecephys_774659"]
    query = tmp_path / "q.json"
    query.write_text(json.dumps({"subject.subject_id": {"$in": ["700000"]}}))
    one = _jsonl(
        ferry(["catalog", "find", f"@{query}", "-p", '{"name": 1, "_id": 0}'], env=env).stdout
    )
    assert one == [{"name": "SPIM_700000"}]
    assert ferry(["catalog", "count", '{"project": "Ephys"}'], env=env, check=0).stdout == "2\n"
    doc = json.loads(ferry(["catalog", "get", found[0]["_id"]], env=env, check=0).stdout)
    assert doc == found[0]
    pretty = json.loads(ferry(["catalog", "find", "-f", "json", "--limit", "1"], env=env).stdout)
    assert len(pretty) == 1


def test_token_lookup_order(loaded, tmp_path):
    url, home = loaded
    admin_token = json.loads((Path(home) / "token.json").read_text())["token"]
    no_home = {"FERRY_URL": url, "FERRY_HOME": str(tmp_path / "empty-home")}
    assert "API token" in ferry(["catalog", "count"], env=no_home, check=3).stderr
    (tmp_path / "token.json").write_text(json.dumps({"token": admin_token}))
    ferry(["catalog", "count"], env=no_home, cwd=tmp_path, check=0)  # ./token.json
    wrong = no_home | {"FERRY_TOKEN": "nf_wrong"}
    assert "not valid" in ferry(["catalog", "count"], env=wrong, cwd=tmp_path, check=3).stderr
    right = ["catalog", "count", "--token", admin_token]
    assert ferry(right, env=wrong, cwd=tmp_path, check=0).stdout == "3\n"  # --token wins


def test_users_cannot_import(loaded, tmp_path):
    url, home = loaded
    engine = make_engine(f"sqlite:///{Path(home) / 'ferry.db'}")
    token = create_token(engine, create_user(engine, "scientist"))
    engine.dispose()
    lines = tmp_path / "one.jsonl"
    lines.write_text(json.dumps({"name": "x"}) + "\n")
    env = {"FERRY_URL": url, "FERRY_TOKEN": token}
    proc = ferry(["catalog", "import", str(lines)], env=env, check=3)
    assert "only admins may PUT /api/v2/catalog" in proc.stderr and "HTTP 403" in proc.stderr
    # reading is fine, but the admin's import (no --owner) is not theirs to see
    assert ferry(["catalog", "count"], env=env, check=0).stdout == "0\n"
    # imported for them with --owner, they see it
    admin = {"FERRY_URL": url, "FERRY_HOME": str(home)}
    ferry(["catalog", "import", str(lines), "--owner", "scientist"], env=admin, check=0)
    assert ferry(["catalog", "count"], env=env, check=0).stdout == "1\n"
    assert ferry(["catalog", "count"], env=admin, check=0).stdout == "4\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["catalog", "find", "{not json"], 2, "FILTER is not valid JSON"),
        (["catalog", "find", '{"a": {"$foo": 1}}'], 2, "$foo at a is not supported"),
        (["catalog", "find", "-f", "xml"], 2, "'xml' is not a format"),
        (["catalog", "get", "no-such-id"], 3, "no catalog document has _id 'no-such-id'"),
        (["catalog", "find", "@/nonexistent/q.json"], 2, "cannot read /nonexistent/q.json"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(loaded, args, code, message):
    url, home = loaded
    proc = ferry(args, env={"FERRY_URL": url, "FERRY_HOME": str(home)}, check=code)
    assert message in proc.stderr


def test_bad_import_line_is_named(loaded, tmp_path):
    url, _ = loaded
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"name": "ok"}\n{"name": \n')
    proc = ferry(["catalog", "import", str(lines)], env={"FERRY_URL": url}, check=2)
    assert "line 2 is not valid JSON" in proc.stderr


def test_service_not_running(tmp_path):
    env = {"FERRY_URL": f"http://127.0.0.1:{free_port()}", "FERRY_TOKEN": "nf_x"}
    proc = ferry(["catalog", "count"], env=env, check=3)
    assert "cannot reach the neuroferry service" in proc.stderr


def test_index_commands(loaded):
    url, home = loaded
    env = {"FERRY_URL": url, "FERRY_HOME": str(home)}
    assert ferry(["catalog", "index", "add", "project"], env=env, check=0).stdout == (
        "indexed project\n"
    )
    assert "was indexed already" in ferry(["catalog", "index", "add", "project"], env=env).stdout
    assert ferry(["catalog", "index", "list"], env=env, check=0).stdout.startswith("project\t")
    assert ferry(["catalog", "count", '{"project": "Ephys"}'], env=env).stdout == "2\n"
    ferry(["catalog", "index", "drop", "project"], env=env, check=0)
    proc = ferry(["catalog", "index", "drop", "project"], env=env, check=3)
    assert "no catalog index on 'project'" in proc.stderr
