"""Command analyses: definitions checked field by field, versions kept as job types are,
the command line (in a container too), and jobs that run them end to end on a real
orchestrator, Dask cluster and database."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _rig import Rig, running_rig
from neuroferry.config import get_settings
from neuroferry.engine import (
    Cancelled,
    TaskFailed,
    get_job_type,
    job_type_history,
    list_job_types,
    put_job_type,
    register_kind,
    rollback_job_type,
)
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.analysis import (
    COMMAND_ANALYSES,
    KIND,
    RESULT_KIND,
    Analysis,
    AnalysisRun,
    DispatchModel,
    analyses,
    code_identity,
    command_analysis,
    get_analysis,
    image_digest,
    pin_command,
)
from neuroferry.pipelines.analysis._commands import check_definition
from neuroferry.stores import open_store

register_kind(KIND)

SCRIPT = Path(__file__).with_name("count_files.py")
COUNT = shlex.join([sys.executable, str(SCRIPT)]) + " %INPUT_SOURCE %OUTPUT_LOCATION %JOB_SETTINGS"
DEFINITION: dict[str, Any] = {
    "description": "Counts the input files.",
    "command_script": COUNT,
    "parameters": {"scale": {"type": "number", "default": 1, "minimum": 0}},
    "outputs": {"files": {"type": "integer"}, "bytes": {"type": "number"}},
}
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"parameters": {"bins": {"type": "float"}}}, "parameters.bins.type"),
        ({"parameters": {"bins": {"type": "integer", "default": "x"}}}, "parameters.bins.default"),
        ({"parameters": {"label": {"type": "string", "minimum": 1}}}, "parameters.label"),
        ({"parameters": {"Bad-Name": {"type": "string"}}}, "parameters.Bad-Name"),
        ({"parameters": {"model_dump": {"type": "string"}}}, "parameters.model_dump"),
        ({"parameters": {"model_anything": {"type": "string"}}}, "parameters.model_anything"),
        ({"parameters": {"schema": {"type": "string"}}}, "parameters.schema"),
        ({"outputs": {"json": {"type": "integer"}}}, "outputs.json"),
        ({"outputs": {"copy": {"type": "integer"}}}, "outputs.copy"),
        ({"parameters": {"n": {"type": "integer", "code": "rm -rf"}}}, "parameters.n.code"),
        ({"outputs": {"n": {"type": "list"}}}, "outputs.n.type"),
        ({"command_script": "echo 'unclosed"}, "command_script"),
        ({"command_script": ""}, "command_script"),
        ({"image_version": "1.0"}, "image_version"),
        ({"image": "--privileged"}, "image"),
        ({"image": "lab/x", "image_version": "1 --rm"}, "image_version"),
        ({"shell": True}, "shell"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_definition("counter", {**DEFINITION, **change})
    assert field in str(refused.value)


def test_names_are_those_of_analyses_and_not_an_installed_one(fresh_registry: None) -> None:
    with pytest.raises(InvalidInput, match="lower case"):
        check_definition("Counter", DEFINITION)
    with pytest.raises(InvalidInput, match="installed analysis"):
        check_definition("file-summary", DEFINITION)


def test_definitions_are_versioned_as_job_types_and_found_as_analyses(
    engine: Any, fresh_registry: None
) -> None:
    first = put_job_type(engine, COMMAND_ANALYSES, "counter", DEFINITION, "root", "first")
    same = put_job_type(engine, COMMAND_ANALYSES, "counter", DEFINITION, "root")
    assert first.version == same.version == 1  # the same definition changes nothing
    changed = {**DEFINITION, "command_script": COUNT + " marked"}
    assert put_job_type(engine, COMMAND_ANALYSES, "counter", changed, "root").version == 2
    assert [v.version for v in job_type_history(engine, COMMAND_ANALYSES, "counter")] == [1, 2]
    assert rollback_job_type(engine, COMMAND_ANALYSES, "counter", 1, "root").version == 3
    assert get_job_type(engine, COMMAND_ANALYSES, "counter").settings["command_script"] == COUNT
    assert list_job_types(engine) == []  # job type lists leave command analyses out

    found = get_analysis("counter", engine)
    assert found.version == "3" and found.description == "Counts the input files."
    assert found.parameters.model_json_schema()["properties"]["scale"]["minimum"] == 0
    assert "counter" in analyses(engine) and "counter" not in analyses()
    with pytest.raises(InvalidInput, match="unknown analysis 'counter'"):
        get_analysis("counter")  # without the database: workers never see the definitions
    with pytest.raises(InvalidInput, match=r"parameters\.bins\.type"):
        put_job_type(
            engine, COMMAND_ANALYSES, "other", {**DEFINITION, "parameters": {"bins": {}}}, "root"
        )


def test_the_identity_has_the_version_command_image_and_digest() -> None:
    def code(**change: Any) -> Any:
        pinned = {"version": 1, "definition": {**DEFINITION, **change}, "digest": None}
        pinned.update(change.pop("pin", {}))
        return code_identity(command_analysis("counter", pinned))

    base = code()
    assert base.command == COUNT and base.image is None and base.source is None
    boxed = code(image="lab/count", image_version="2")
    assert boxed.image == "lab/count:2"
    pinned = {"version": 1, "definition": {**DEFINITION, "image": "lab/count"}, "digest": DIGEST}
    assert code_identity(command_analysis("counter", pinned)).digest == DIGEST
    version_2 = code_identity(command_analysis("counter", {"version": 2, "definition": DEFINITION}))
    assert len({base, boxed, version_2, code(command_script=COUNT + " x")}) == 4


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker`` on PATH that records its arguments and, for ``run``, runs the command
    after the image (``inspect`` prints a digest)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls.jsonl"
    docker = bin_dir / "docker"
    docker.write_text(
        f"#!{sys.executable}\n"
        "import json, subprocess, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == 'image':\n"
        f"    print('lab/count@{DIGEST}')\n"
        "else:\n"
        "    at = next(i for i, w in enumerate(sys.argv) if w.startswith('lab/count'))\n"
        "    sys.exit(subprocess.run(sys.argv[at + 1:]).returncode)\n"
    )
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _run(
    analysis: Analysis,
    results: Path,
    locations: list[str],
    check_cancelled: Callable[[], None] = lambda: None,
    **parameters: Any,
) -> Any:
    """Runs ``analysis`` as a task would, over whole assets at ``locations``."""
    results.mkdir(parents=True)
    return analysis.run(
        AnalysisRun(
            inputs=DispatchModel(
                s3_location=locations, asset_name=["x"] * len(locations), docdb_record_id=[]
            ),
            parameters=analysis.parameters.model_validate(parameters),
            results=results,
            open_store=lambda url: open_store(url),
            log=logging.getLogger("test-command"),
            check_cancelled=check_cancelled,
        )
    )


def test_in_a_container_the_command_runs_through_the_runtime(
    tmp_path: Path, fake_docker: Path
) -> None:
    settings = get_settings(container_runtime="docker")
    digest = image_digest(settings, "lab/count", "2")
    assert digest == DIGEST
    assert image_digest(get_settings(), "lab/count", "2") is None  # no runtime: unknown
    assert image_digest(get_settings(), f"lab/count@{DIGEST}", None) == DIGEST

    data = tmp_path / "asset"
    data.mkdir()
    (data / "a.bin").write_bytes(b"12345")
    definition = {**DEFINITION, "image": "lab/count", "image_version": "2"}
    pinned = {"version": 1, "definition": definition, "digest": digest}
    results = tmp_path / "work" / "results"
    outputs = _run(command_analysis("counter", pinned, settings), results, [data.as_uri()], scale=2)
    assert outputs == {"files": 1, "bytes": 10.0}
    assert (results / "listing.txt").read_text() == "0/asset/a.bin\n"
    [inspect, run] = [json.loads(line) for line in fake_docker.read_text().splitlines()]
    assert inspect[:2] == ["image", "inspect"] and inspect[-1] == "lab/count:2"
    assert run[:4] == ["run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}"]
    image_at = run.index(f"lab/count:2@{DIGEST}")  # the image run is the one identified
    assert run[image_at + 1 :][:2] == [sys.executable, str(SCRIPT)]
    assert run[image_at + 4 :] == [str(results), '{"scale":2.0}']  # parameters: one word
    assert f"{results}:{results}" in run and "-w" in run
    assert any(m.endswith("/inputs:ro") for m in run)  # the inputs, read only


def test_without_a_runtime_a_container_analysis_fails_saying_so(tmp_path: Path) -> None:
    pinned = {"version": 1, "definition": {**DEFINITION, "image": "lab/count"}}
    analysis = command_analysis("counter", pinned, get_settings())
    with pytest.raises(TaskFailed, match="no container runtime is configured"):
        _run(analysis, tmp_path / "results", [])


def test_cancelling_stops_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    definition = {**DEFINITION, "command_script": shlex.join([sys.executable, "-c", script])}
    analysis = command_analysis("sleeper", {"version": 1, "definition": definition})

    def check_cancelled() -> None:
        if pid_file.exists() and pid_file.read_text():
            raise Cancelled("cancelled while running")

    with pytest.raises(Cancelled):
        _run(analysis, tmp_path / "results", [], check_cancelled)
    with pytest.raises(ProcessLookupError):  # stopped, and waited for
        os.kill(int(pid_file.read_text()), 0)


# -- jobs ---------------------------------------------------------------------------------


@pytest.fixture
def rig(database_url: str) -> Iterator[Rig]:
    with running_rig(database_url) as r:
        r.start()
        yield r


def _assets(rig: Rig, root: Path, names: list[str]) -> None:
    for name in names:
        folder = root / name
        (folder / "sub").mkdir(parents=True)
        (folder / "a.bin").write_bytes(b"x" * 10)
        (folder / "sub" / "b.bin").write_bytes(b"y" * 5)
        rig.catalog.upsert({"name": name, "location": folder.as_uri()})


def _records(rig: Rig) -> list[dict[str, Any]]:
    return rig.catalog.find({"kind": RESULT_KIND, "analysis": "counter"}, sort=[("name", 1)])


def test_a_job_runs_the_pinned_command_over_its_inputs_and_records_it(
    rig: Rig, tmp_path: Path
) -> None:
    put_job_type(rig.engine, COMMAND_ANALYSES, "counter", DEFINITION, "root")
    _assets(rig, tmp_path / "data", ["asset-a", "asset-b"])
    spec = {"analysis": "counter", "query": {"name": {"$in": ["asset-a", "asset-b"]}}}
    job_id = rig.submit("analysis", {**spec, "fixed_parameters": {"scale": 2}})
    assert rig.wait(job_id, timeout=120)["state"] == "succeeded", rig.states(job_id)
    pinned = rig.tasks(job_id)["dispatch"]["result"]["command"]
    assert pinned["version"] == 1 and pinned["definition"]["command_script"] == COUNT

    docs = _records(rig)
    assert len(docs) == 2
    lake = Path(rig.settings.store_url.removeprefix("file://")) / "analysis" / "counter"
    for doc in docs:
        assert doc["code"]["command"] == COUNT and doc["code"]["version"] == "1"
        assert doc["outputs"] == {"files": 2, "bytes": 30.0}
        assert doc["parameters"] == {"scale": 2.0}
        asset = doc["inputs"]["assets"][0]["name"]
        listing = (lake / doc["name"] / "listing.txt").read_text().splitlines()
        assert listing == [f"0/{asset}/a.bin", f"0/{asset}/sub/b.bin"]
        assert {f["path"] for f in doc["files"]} == {"listing.txt", "outputs.json"}

    again = rig.submit("analysis", {**spec, "fixed_parameters": {"scale": 2}})
    assert rig.wait(again, timeout=120)["state"] == "succeeded"
    assert rig.tasks(again)["dispatch"]["result"]["already_computed"] == 2

    # a new version (another command) is other code: its results are made again
    changed = {**DEFINITION, "command_script": COUNT + " marked"}
    put_job_type(rig.engine, COMMAND_ANALYSES, "counter", changed, "root")
    third = rig.submit("analysis", {**spec, "fixed_parameters": {"scale": 2}})
    assert rig.wait(third, timeout=120)["state"] == "succeeded"
    assert rig.tasks(third)["dispatch"]["result"]["already_computed"] == 0
    newer = [d for d in _records(rig) if d["code"]["version"] == "2"]
    assert len(newer) == 2 and not {d["identity"] for d in newer} & {d["identity"] for d in docs}
    assert all((lake / d["name"] / "listing.txt").read_text().endswith("marked\n") for d in newer)


def test_a_job_cannot_carry_a_command_or_bad_parameters(rig: Rig) -> None:
    put_job_type(rig.engine, COMMAND_ANALYSES, "counter", DEFINITION, "root")
    for field in ("command_script", "image", "command"):
        with pytest.raises(InvalidInput, match=f"{field}: Extra inputs are not permitted"):
            rig.submit("analysis", {"analysis": "counter", "locations": ["file:///x"], field: "sh"})
    with pytest.raises(InvalidInput, match="scale"):
        rig.submit(
            "analysis",
            {"analysis": "counter", "locations": ["file:///x"], "parameters": {"scale": -1}},
        )
    with pytest.raises(InvalidInput, match="cmd: Extra inputs are not permitted"):
        rig.submit(
            "analysis",
            {"analysis": "counter", "locations": ["file:///x"], "parameters": {"cmd": "rm"}},
        )
    assert pin_command("no-such", rig.engine, rig.settings) is None
