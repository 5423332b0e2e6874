"""``command`` transformations: a real command writing to ``%OUTPUT_LOCATION``, its
placeholders, container runtimes, and the processing record."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neuroferry.engine import (
    TaskFailed,
    command_words,
    image_reference,
    in_container,
    starts_own_container,
)
from neuroferry.errors import InvalidInput
from neuroferry.stores import open_store

from .helpers import Harness, Session, schema_problems, tree

MakeHarness = Callable[..., Harness]

COMPRESS = """\
import gzip, json, pathlib, sys
source, output, settings, location = sys.argv[1:5]
out = pathlib.Path(output)
for path in sorted(pathlib.Path(source).rglob("*")):
    if path.is_file():
        target = out / (path.relative_to(source).as_posix() + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
(out / "run.json").write_text(json.dumps({"settings": json.loads(settings), "to": location}))
print("compressed", source)
"""

RECORD_ARGS = """\
#!{python}
import json, os, sys
with open("args.json", "w") as f:  # the command runs in %OUTPUT_LOCATION
    json.dump({{"argv0": os.path.basename(sys.argv[0]), "args": sys.argv[1:]}}, f)
"""


def with_command(session: Session, script: str, **task: Any) -> dict[str, Any]:
    spec = session.spec()
    settings = spec["tasks"]["modality_transformation_settings"]["ecephys"]
    settings["command_script"] = script
    settings["job_settings"]["level"] = 9
    settings["job_settings"]["note"] = 'it\'s "quoted" $HOME %IMAGE'
    settings.update(task)
    return spec


@pytest.fixture
def compress_script(tmp_path: Path) -> str:
    path = tmp_path / "tools" / "compress.py"
    path.parent.mkdir()
    path.write_text(COMPRESS)
    words = [sys.executable, str(path)]
    return shlex.join(words) + " %INPUT_SOURCE %OUTPUT_LOCATION '%JOB_SETTINGS' %S3_LOCATION"


def test_a_command_compresses_a_modality_and_its_output_is_uploaded(
    session: Session,
    harness: MakeHarness,
    compress_script: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = harness(with_command(session, compress_script))
    job.run_until("modality_transformation_settings")
    stale = job.staging / "ecephys" / "from-a-crashed-attempt"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    with caplog.at_level("INFO"):
        results = job.run("compress_data")
    assert "compressed " + str(session.folder("ecephys")) in caplog.text

    ecephys = results["ecephys"]
    output = job.staging / "ecephys"
    assert ecephys["transformation"] == "command"
    assert ecephys["output_location"] == str(output)
    assert not stale.exists()
    run = json.loads((output / "run.json").read_text())
    assert run["to"] == job.destination
    assert run["settings"] == {
        "input_source": str(session.folder("ecephys")),
        "transformation": "command",
        "level": 9,
        "note": 'it\'s "quoted" $HOME %IMAGE',  # one word, placeholders not re-read
    }
    step = ecephys["processing"]
    assert step["name"] == "Compression"
    assert step["code_url"] == sys.executable and step["code_version"] is None
    assert step["parameters"] == run["settings"]
    assert step["input_location"] == str(session.folder("ecephys"))
    assert step["start_date_time"] <= step["end_date_time"]
    assert results["behavior"]["transformation"] == "copy"

    job.run("gather_preliminary_metadata")
    job.run("check_metadata_files")
    job.run("copy_derivatives_folder")
    job.run("gather_final_metadata")
    written = (job.staging / "processing.json").read_bytes()
    assert schema_problems("processing.json", written) == []
    processing = json.loads(written)
    [process] = processing["data_processes"]
    assert process["process_type"] == "Compression" and process["stage"] == "Processing"
    assert process["code"]["url"] == sys.executable
    assert process["code"]["parameters"] == run["settings"]
    assert process["experimenters"] == ["scientist@example.org"]
    assert process["output_path"] == step["output_location"]
    assert process["start_date_time"] <= process["end_date_time"]

    job.run("upload_data_to_s3")
    uploaded = tree(Path(open_store(job.destination).local_root or ""))
    for rel, data in session.files["ecephys"].items():
        assert gzip.decompress(uploaded[f"ecephys/{rel}.gz"]) == data
    assert f"ecephys/{next(iter(session.files['ecephys']))}" not in uploaded
    assert json.loads(uploaded["processing.json"]) == processing


def test_a_failing_command_fails_the_task(session: Session, harness: MakeHarness) -> None:
    script = shlex.join([sys.executable, "-c", "import sys; print('no disk'); sys.exit(3)"])
    job = harness(with_command(session, script))
    job.run_until("modality_transformation_settings")
    with pytest.raises(TaskFailed, match="command exited with status 3"):
        job.call("compress_data", item="ecephys", params=_item(job, "ecephys"))


def test_a_command_that_writes_nothing_fails(session: Session, harness: MakeHarness) -> None:
    job = harness(with_command(session, shlex.join([sys.executable, "-c", "pass"])))
    job.run_until("modality_transformation_settings")
    with pytest.raises(TaskFailed) as info:
        job.call("compress_data", item="ecephys", params=_item(job, "ecephys"))
    assert "wrote nothing to %OUTPUT_LOCATION" in str(info.value)
    assert str(job.staging / "ecephys") in str(info.value)


def test_an_image_needs_a_container_runtime(session: Session, harness: MakeHarness) -> None:
    spec = with_command(session, "compress %INPUT_SOURCE", image="ghcr.io/lab/compress")
    with pytest.raises(InvalidInput) as refused:  # at submit time
        harness(spec)
    assert "ecephys.image: the command runs in the image ghcr.io/lab/compress" in str(refused.value)
    # submitted while the service had a runtime, run after it lost it: the task says so
    job = harness(spec, container_runtime="docker")
    job.settings = job.settings.model_copy(update={"container_runtime": None})
    job.run_until("modality_transformation_settings")
    with pytest.raises(TaskFailed) as info:
        job.call("compress_data", item="ecephys", params=_item(job, "ecephys"))
    message = str(info.value)
    assert "tasks.modality_transformation_settings.ecephys runs in the image" in message
    assert "set FERRY_CONTAINER_RUNTIME to apptainer, singularity or docker" in message


def _fake_runtime(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An executable ``name`` on PATH that records its arguments in ``args.json``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(RECORD_ARGS.format(python=sys.executable))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _item(job: Harness, modality: str) -> dict[str, Any]:
    return dict(job.results["modality_transformation_settings"][modality])


def test_the_configured_runtime_runs_the_command_in_the_image(
    session: Session, harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runtime(tmp_path, "docker", monkeypatch)
    spec = with_command(
        session,
        "compress --in %INPUT_SOURCE --out %OUTPUT_LOCATION",
        image="ghcr.io/lab/compress",
        image_version="2.1",
    )
    job = harness(spec, container_runtime="docker")
    job.run_until("modality_transformation_settings")
    job.call("compress_data", item="ecephys", params=_item(job, "ecephys"))
    recorded = json.loads((job.staging / "ecephys" / "args.json").read_text())
    source, output = str(session.folder("ecephys")), str(job.staging / "ecephys")
    assert recorded["argv0"] == "docker"
    assert recorded["args"] == [
        "run",
        "--rm",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-v",
        f"{source}:{source}:ro",
        "-v",
        f"{output}:{output}",
        "-w",
        output,
        "ghcr.io/lab/compress:2.1",
        "compress",
        "--in",
        source,
        "--out",
        output,
    ]


def test_a_script_that_starts_its_own_container_runs_as_it_is(
    session: Session, harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original service's presets call singularity themselves."""
    _fake_runtime(tmp_path, "singularity", monkeypatch)
    script = (
        "singularity exec --cleanenv docker://%IMAGE:%IMAGE_VERSION "
        "python -m compress --job-settings ' %JOB_SETTINGS '"
    )
    spec = with_command(session, script, image="ghcr.io/example/ephys", image_version="1.2.0")
    job = harness(spec)  # no runtime configured: none is needed
    job.run_until("modality_transformation_settings")
    result = job.call("compress_data", item="ecephys", params=_item(job, "ecephys"))
    recorded = json.loads((job.staging / "ecephys" / "args.json").read_text())
    assert recorded["argv0"] == "singularity"
    assert recorded["args"][:6] == [
        "exec",
        "--cleanenv",
        "docker://ghcr.io/example/ephys:1.2.0",
        "python",
        "-m",
        "compress",
    ]
    assert recorded["args"][6] == "--job-settings"
    settings = recorded["args"][7]
    assert settings.startswith(" {") and settings.endswith("} ")
    assert json.loads(settings)["level"] == 9
    assert result["processing"]["code_url"] == "ghcr.io/example/ephys"
    assert result["processing"]["code_version"] == "1.2.0"


# -- the command line ----------------------------------------------------------------------

VALUES = {
    "INPUT_SOURCE": "/data/in put",
    "OUTPUT_LOCATION": "/staging/out",
    "JOB_SETTINGS": '{"a": "b c"}',
    "IMAGE": "lab/tool",
    "IMAGE_VERSION": "1.0",
    "S3_LOCATION": "s3://bucket/asset",
}


def test_placeholders_fill_whole_words_without_splitting_values() -> None:
    words = command_words(
        "run %IMAGE:%IMAGE_VERSION -i %INPUT_SOURCE -o=%OUTPUT_LOCATION '%JOB_SETTINGS' "
        "%S3_LOCATION/x %UNKNOWN",
        VALUES,
        "tasks.x",
    )
    assert words == [
        "run",
        "lab/tool:1.0",
        "-i",
        "/data/in put",
        "-o=/staging/out",
        '{"a": "b c"}',
        "s3://bucket/asset/x",
        "%UNKNOWN",
    ]


@pytest.mark.parametrize("script", ["run 'unbalanced", "   "])
def test_scripts_that_are_not_commands(script: str) -> None:
    with pytest.raises(TaskFailed, match=r"tasks\.x\.command_script"):
        command_words(script, VALUES, "tasks.x")


def test_image_references() -> None:
    assert image_reference("docker", "lab/tool", "1.0") == "lab/tool:1.0"
    assert image_reference("apptainer", "lab/tool", "1.0") == "docker://lab/tool:1.0"
    assert image_reference("singularity", "lab/tool", None) == "docker://lab/tool"
    assert image_reference("apptainer", "/images/tool.sif", "1.0") == "/images/tool.sif"
    assert image_reference("apptainer", "oras://reg/tool", "2") == "oras://reg/tool:2"


def test_apptainer_binds_the_folders_at_their_paths() -> None:
    words = in_container(
        "apptainer",
        "docker://lab/tool:1.0",
        ["tool", "x"],
        read_only=["/data/in"],
        writable=["/staging/out"],
        workdir="/staging/out",
    )
    assert words == [
        "apptainer",
        "exec",
        "--cleanenv",
        "--bind",
        "/data/in:/data/in:ro,/staging/out:/staging/out",
        "--pwd",
        "/staging/out",
        "docker://lab/tool:1.0",
        "tool",
        "x",
    ]


def test_scripts_that_start_their_own_container() -> None:
    assert starts_own_container(["singularity", "exec"])
    assert starts_own_container(["/usr/bin/apptainer", "run"])
    assert not starts_own_container(["python", "-m", "docker"])
