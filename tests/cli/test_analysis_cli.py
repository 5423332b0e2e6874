"""`ferry analysis list|show|preview|dispatch` against a real `ferry serve` with the example
analyses (installed by the package's ``neuroferry.analyses`` entry points)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _service import running_service
from neuroferry.pipelines.analysis import read_dispatch_folder


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
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.splitlines()]
    rows = {row[0]: row[1:3] for row in cells if len(row) == 4}
    assert rows["bins"] == ["integer", "16"] and rows["scale"] == ["number", "1.0"]
    assert rows["label"] == ["string", "''"]

    as_json = json.loads(ferry(["analysis", "show", "volume-stats", "-f", "json"], admin, 0).stdout)
    assert as_json["name"] == "volume-stats" and "level" in as_json["parameters"]["properties"]


def test_an_unknown_analysis_is_an_error_naming_the_known_ones(admin: dict[str, str]) -> None:
    missing = ferry(["analysis", "show", "no-such"], admin, 3)
    assert "unknown analysis 'no-such'" in missing.stderr and "file-summary" in missing.stderr


def test_preview_and_dispatch_the_file_summary_over_a_folder(
    admin: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for name in ("one.txt", "two.TXT", "sub/three.txt", "skip.bin"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(name.encode())
    inputs = ["--location", data.as_uri(), "--file-extension", "txt"]
    preview = json.loads(
        ferry(
            ["analysis", "preview", "file-summary", *inputs, "--set", "bins=8", "-f", "json"],
            admin,
            0,
        ).stdout
    )
    assert [preview[k] for k in ("inputs", "parameter_sets", "models")] == [3, 1, 3]
    assert [m["file_location"] for m in preview["first"]] == [
        [f"{data.as_uri()}/one.txt"],
        [f"{data.as_uri()}/sub/three.txt"],
        [f"{data.as_uri()}/two.TXT"],
    ]

    parameters = tmp_path / "analysis_parameters.json"
    parameters.write_text(
        json.dumps(
            {
                "fixed_parameters": {"bins": 8},
                "distributed_parameters": [{"label": "a"}, {"label": "b"}],
            }
        )
    )
    out = tmp_path / "dispatch"
    args = ["analysis", "dispatch", "file-summary", *inputs, "--parameters", str(parameters)]
    shown = ferry([*args, "--tasks-per-job", "2", "--out", str(out)], admin, 0).stdout
    assert "file-summary: 3 inputs x 2 parameter sets = 6 dispatch models" in shown
    assert shown.splitlines()[-1] == f"wrote 6 dispatch models in 3 folders to {out}"
    models = read_dispatch_folder(str(out))
    assert sorted((m.file_location[0], m.distributed_parameters["label"]) for m in models) == [
        (f"{data.as_uri()}/{name}", label)
        for name in ("one.txt", "sub/three.txt", "two.TXT")
        for label in ("a", "b")
    ]
    assert sorted(p.parent.name for p in out.rglob("*.json")) == ["0", "0", "1", "1", "2", "2"]

    refused = ferry([*args, "--set", "bins=0", "--out", str(tmp_path / "other")], admin, 2)
    assert "bins: Input should be greater than or equal to 1" in refused.stderr
    assert not (tmp_path / "other").exists()
