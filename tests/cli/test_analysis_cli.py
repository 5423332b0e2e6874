"""`ferry analysis list|show` against a real `ferry serve` with the example analyses
(installed by the package's ``neuroferry.analyses`` entry points)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from _service import running_service


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    """A running `ferry serve`; FERRY_HOME holds the admin token."""
    home = tmp_path_factory.mktemp("service-home")
    with running_service(home, FERRY_DASK_PROCESSES="false", FERRY_DASK_WORKERS="1") as svc:
        yield {"FERRY_URL": svc.url, "FERRY_HOME": str(home)}


def ferry(args: list[str], env: dict[str, str], check: int) -> subprocess.CompletedProcess[str]:
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
    assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def test_list_and_show_the_example_analyses(admin: dict[str, str]) -> None:
    listed = json.loads(ferry(["analysis", "list", "--format", "json"], admin, 0).stdout)
    names = [a["name"] for a in listed["analyses"]]
    assert {"file-summary", "volume-stats"} <= set(names)
    table = ferry(["analysis", "list"], admin, 0).stdout
    assert "file-summary" in table and "label, bins, scale" in table

    shown = ferry(["analysis", "show", "file-summary"], admin, 0).stdout
    assert shown.startswith("# file-summary ")
    rows = {line.split()[0]: line.split()[1:3] for line in shown.splitlines() if line[:1].isalpha()}
    assert rows["bins"] == ["integer", "16"] and rows["scale"] == ["number", "1.0"]
    assert rows["label"] == ["string", "''"]

    as_json = json.loads(ferry(["analysis", "show", "volume-stats", "-f", "json"], admin, 0).stdout)
    assert as_json["name"] == "volume-stats" and "level" in as_json["parameters"]["properties"]


def test_an_unknown_analysis_is_an_error_naming_the_known_ones(admin: dict[str, str]) -> None:
    missing = ferry(["analysis", "show", "no-such"], admin, 3)
    assert "unknown analysis 'no-such'" in missing.stderr and "file-summary" in missing.stderr
