"""`ferry analysis list|show|preview|dispatch|submit|results|status|run|reproduce` against a
real `ferry serve` with the example analyses (installed by the package's
``neuroferry.analyses`` entry points). The service and the commands run without git on
their PATH, so the analyses' code identity is their installed version whatever the state
of the checkout the tests run from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _service import running_service
from neuroferry.pipelines.analysis import read_dispatch_folder

NO_GIT = {"PATH": os.path.dirname(sys.executable)}


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    """A running `ferry serve`; FERRY_HOME holds the admin token."""
    home = tmp_path_factory.mktemp("service-home")
    with running_service(
        home, FERRY_DASK_PROCESSES="false", FERRY_DASK_WORKERS="1", **NO_GIT
    ) as svc:
        yield {"FERRY_URL": svc.url, "FERRY_HOME": str(home), **NO_GIT}


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


# -- analysis jobs ----------------------------------------------------------------------


def results(job_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    out = ferry(["analysis", "results", job_id, "--format", "jsonl"], env, 0).stdout
    return [json.loads(line) for line in out.splitlines()]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Any]:
    """Two assets (folders outside the service's home) and two parameter sets."""
    assets = []
    for name in ("asset-a", "asset-b"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        (folder / "values.txt").write_text(f"{name} " * 20)
        assets.append(folder.as_uri())
    parameters = tmp_path / "analysis_parameters.json"
    parameters.write_text(
        json.dumps(
            {
                "fixed_parameters": {"label": "cli"},
                "distributed_parameters": [{"bins": 4}, {"bins": 8}],
            }
        )
    )
    inputs = [arg for url in assets for arg in ("--location", url)]
    return {"inputs": inputs, "parameters": str(parameters), "root": tmp_path}


def test_submit_wait_results_status_and_a_resubmission_skips(
    admin: dict[str, str], data: dict[str, Any]
) -> None:
    args = [
        "analysis",
        "submit",
        "file-summary",
        *data["inputs"],
        "--parameters",
        data["parameters"],
    ]
    done = ferry([*args, "--wait"], admin, 0)
    job_id = done.stdout.splitlines()[0]
    assert job_id.isdigit()
    assert "4 computed, 0 skipped, 0 failed" in done.stdout
    lines = results(job_id, admin)
    assert [line["state"] for line in lines] == ["computed"] * 4
    assert all(line["record_id"] and line["location"] for line in lines)
    assert len({line["identity"] for line in lines}) == 4
    status = ferry(["analysis", "status", job_id], admin, 0).stdout
    assert f"job {job_id} (file-summary): succeeded" in status
    assert "4 computed, 0 skipped, 0 failed, 0 running, 0 waiting" in status

    again = ferry([*args, "--wait"], admin, 0)
    again_lines = results(again.stdout.splitlines()[0], admin)
    assert [line["state"] for line in again_lines] == ["skipped"] * 4
    assert {line["record_id"] for line in again_lines} == {line["record_id"] for line in lines}

    # without --wait: the job id alone
    queued = ferry(args, admin, 0).stdout
    assert queued.strip().isdigit()


def test_submit_the_models_of_a_dispatch_folder_and_run_one_here(
    admin: dict[str, str], data: dict[str, Any]
) -> None:
    folder = data["root"] / "dispatch"
    ferry(
        [
            "analysis",
            "dispatch",
            "file-summary",
            *data["inputs"],
            "--parameters",
            data["parameters"],
            "--out",
            str(folder),
        ],
        admin,
        0,
    )
    submitted = ferry(
        [
            "analysis",
            "submit",
            "file-summary",
            "--models",
            str(folder),
            "--set",
            "label=cli",
            "--wait",
        ],
        admin,
        0,
    )
    lines = results(submitted.stdout.splitlines()[0], admin)
    assert len(lines) == 4 and {line["state"] for line in lines} <= {"computed", "skipped"}

    # a dry run (the default) prints what it would upload and record, and writes nothing
    model = sorted(folder.rglob("*.json"))[0]
    before = files_under(data["root"])
    dry = ferry(
        ["analysis", "run", "file-summary", "--model", str(model), "--set", "label=cli"],
        admin,
        0,
    ).stdout
    assert "would upload 1 files to (no results store given)" in dry
    assert "summary.json" in dry and "record it would write:" in dry
    assert '"kind": "analysis-result"' in dry
    assert files_under(data["root"]) == before


def test_wait_fails_with_the_failed_tasks_errors(
    admin: dict[str, str], data: dict[str, Any]
) -> None:
    failed = ferry(["analysis", "submit", "volume-stats", *data["inputs"][:2], "--wait"], admin, 1)
    assert "0 computed, 0 skipped, 1 failed" in failed.stdout
    assert "run[" in failed.stderr and "failed:" in failed.stderr


def test_reproduce_a_record(admin: dict[str, str], data: dict[str, Any]) -> None:
    done = ferry(
        ["analysis", "submit", "file-summary", *data["inputs"][:2], "--set", "bins=3", "--wait"],
        admin,
        0,
    )
    [line] = results(done.stdout.splitlines()[0], admin)
    same = ferry(["analysis", "reproduce", line["record_id"]], admin, 0).stdout
    assert "identical  summary.json" in same and "1 of 1 files identical" in same
    by_name = ferry(["analysis", "reproduce", f"{line['identity']}.1"], admin, 0).stdout
    assert "1 of 1 files identical" in by_name

    # the input changed since: the output differs, and the command says so
    (Path(data["inputs"][1].removeprefix("file://")) / "values.txt").write_text("changed")
    differs = ferry(["analysis", "reproduce", line["record_id"]], admin, 1).stdout
    assert "differs  summary.json" in differs and "0 of 1 files identical" in differs
