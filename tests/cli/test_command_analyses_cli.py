"""`ferry analysis register|history|rollback|delete` (command analyses) against a real
`ferry serve`, and a job that runs one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _service import running_service
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine

# writes the number of input folders to outputs.json and the parameters to settings.json
COUNT = (
    f"{sys.executable} -c "
    "'import json, os, sys; out = sys.argv[2]; "
    'open(os.path.join(out, "settings.json"), "w").write(sys.argv[3]); '
    'count = {"inputs": len(os.listdir(sys.argv[1]))}; '
    'json.dump(count, open(os.path.join(out, "outputs.json"), "w"))\''
    " %INPUT_SOURCE %OUTPUT_LOCATION %JOB_SETTINGS"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("service-home")
    with running_service(home, FERRY_DASK_PROCESSES="false", FERRY_DASK_WORKERS="1") as svc:
        yield svc.url, home


@pytest.fixture(scope="module")
def admin(service):
    url, home = service
    return {"FERRY_URL": url, "FERRY_HOME": str(home)}


@pytest.fixture(scope="module")
def user(service):
    url, home = service
    engine = make_engine(f"sqlite:///{Path(home) / 'ferry.db'}")
    token = create_token(engine, create_user(engine, "scientist"))
    engine.dispose()
    return {"FERRY_URL": url, "FERRY_TOKEN": token}


def ferry(args: list[str], env: dict[str, str], check: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        | {"COLUMNS": "250"}
        | env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def test_register_show_run_history_rollback_delete(
    admin: dict[str, str], user: dict[str, str], tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"bins": {"type": "integer", "default": 4, "minimum": 1}}))
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"inputs": {"type": "integer"}}))
    register = ["analysis", "register", "counter", "--command", COUNT, "--parameters", str(schema)]
    register += ["--outputs", str(outputs), "--description", "Counts inputs.", "-m", "first"]

    refused = ferry(register, user, 3)
    assert "admin" in refused.stderr
    assert ferry(register, admin, 0).stdout == "registered command analysis counter: version 1\n"
    assert "unchanged: version 1" in ferry(register, admin, 0).stdout

    listed = ferry(["analysis", "list"], user, 0).stdout
    assert "counter" in listed and "Counts inputs." in listed
    shown = ferry(["analysis", "show", "counter"], user, 0).stdout
    assert f"command: {COUNT}" in shown and "bins" in shown

    data = tmp_path / "data" / "asset-a"
    data.mkdir(parents=True)
    (data / "values.txt").write_text("1 2 3")
    submit = ["analysis", "submit", "counter", "--location", data.as_uri(), "--set", "bins=8"]
    done = ferry([*submit, "--wait"], admin, 0)
    assert "1 computed, 0 skipped, 0 failed" in done.stdout
    [line] = [
        json.loads(x)
        for x in ferry(
            ["analysis", "results", done.stdout.splitlines()[0], "--format", "jsonl"], admin, 0
        ).stdout.splitlines()
    ]
    folder = Path(line["location"].removeprefix("file://"))
    assert json.loads((folder / "settings.json").read_text()) == {"bins": 8}
    assert json.loads((folder / "outputs.json").read_text()) == {"inputs": 1}
    assert "0 computed, 1 skipped" in ferry([*submit, "--wait"], admin, 0).stdout

    second = [*register[:4], "true", *register[5:]]
    assert "version 2" in ferry(second, admin, 0).stdout
    history = ferry(["analysis", "history", "counter", "--format", "json"], user, 0).stdout
    versions: list[dict[str, Any]] = json.loads(history)
    assert [v["settings"]["command_script"] for v in versions] == [COUNT, "true"]
    assert "rolled back command analysis counter: version 3" in (
        ferry(["analysis", "rollback", "counter", "1"], admin, 0).stdout
    )
    assert (
        "deleted command analysis counter"
        in ferry(["analysis", "delete", "counter"], admin, 0).stdout
    )
    assert "unknown analysis 'counter'" in ferry(["analysis", "show", "counter"], user, 3).stderr

    # the record names version 1, which the history still holds: it is run again here
    again = ferry(["analysis", "reproduce", line["record_id"]], admin, 0).stdout
    assert "identical  outputs.json" in again and "identical  settings.json" in again


def test_a_bad_schema_file_is_an_error_naming_it(admin: dict[str, str], tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"bins": {"type": "decimal"}}))
    bad = ferry(
        ["analysis", "register", "x", "--command", "true", "--parameters", str(schema)], admin, 2
    )
    assert "parameters" in bad.stderr and "bins" in bad.stderr and "type" in bad.stderr
    schema.write_text("[1]")
    listed = ferry(
        ["analysis", "register", "x", "--command", "true", "--parameters", str(schema)], admin, 2
    )
    assert "--parameters" in listed.stderr and "JSON object" in listed.stderr
