"""Checking upload requests by who sends them: commands and images come from job types,
which admins define; an ordinary user may only repeat what the job type gives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.engine import put_job_type
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload import UploadTasks, check_upload_jobs
from neuroferry.pipelines.upload._presets import commands_not_from_preset

ADMIN = User(1, "admin", "admin")
ALICE = User(2, "alice", "user")
SCRIPT = "convert %INPUT_SOURCE %OUTPUT_LOCATION"
CONVERT = {
    "modality_transformation_settings": {
        "ecephys": {
            "job_settings": {"transformation": "command"},
            "command_script": SCRIPT,
            "image": "lab/convert",
            "image_version": "1.0",
        }
    }
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "rig" / "ecephys").mkdir(parents=True)
    # a runtime to run the job types' images with (without one they are refused)
    return Settings(
        home=tmp_path / "home", source_roots=[tmp_path / "rig"], container_runtime="docker"
    )


def _request(settings: Settings, **job: Any) -> dict[str, Any]:
    rig = settings.source_roots[0]
    return {
        "upload_jobs": [
            {
                "project_name": "Ephys Platform",
                "platform": "ecephys",
                "subject_id": "700001",
                "acq_datetime": "2025-04-01T14:30:15",
                "modalities": [{"abbreviation": "ecephys", "input_source": str(rig / "ecephys")}],
                **job,
            }
        ]
    }


@pytest.mark.parametrize(
    ("tasks", "fields"),
    [
        (
            {"modality_transformation_settings": {"ecephys": {"command_script": "env"}}},
            ["tasks.modality_transformation_settings.ecephys.command_script"],
        ),
        (
            {"modality_transformation_settings": {"ECEPHYS": {"image": "x", "image_version": "1"}}},
            [
                "tasks.modality_transformation_settings.ecephys.image",
                "tasks.modality_transformation_settings.ecephys.image_version",
            ],
        ),
        (
            {"remove_source_folders": {"command_script": "rm -rf /"}},
            ["tasks.remove_source_folders.command_script"],
        ),
        (
            {"codeocean_pipeline_settings": {"ecephys": {"image": "x"}}},
            ["tasks.analysis_settings.ecephys.image"],
        ),
    ],
)
def test_a_user_may_not_give_a_command_or_image(engine, settings, tasks, fields) -> None:
    request = _request(settings, tasks=tasks)
    with pytest.raises(InvalidInput) as info:
        check_upload_jobs(engine, settings, request, user=ALICE)
    assert [p["field"] for p in info.value.problems] == fields
    for problem in info.value.problems:
        assert "commands and images come from job types defined by admins" in problem["message"]
    assert fields[0] in str(info.value)
    # admins, and the service itself, may
    for trusted in (ADMIN, None):
        [checked] = check_upload_jobs(engine, settings, request, user=trusted)
        assert checked.spec.tasks.model_dump(exclude_unset=True)


def test_blank_and_null_values_are_not_commands(engine, settings) -> None:
    tasks = {
        "modality_transformation_settings": {
            "ecephys": {"command_script": None, "image": "", "image_version": "  "}
        },
        "gather_preliminary_metadata": {"command_script": None},
    }
    [checked] = check_upload_jobs(engine, settings, _request(settings, tasks=tasks), user=ALICE)
    assert checked.spec.tasks.modality_transformation_settings["ecephys"].command_script is None


def test_a_user_may_use_or_repeat_the_job_types_command(engine, settings) -> None:
    put_job_type(engine, "upload", "convert", CONVERT, "admin")
    [chosen] = check_upload_jobs(
        engine, settings, _request(settings, job_type="convert"), user=ALICE
    )
    task = chosen.spec.tasks.modality_transformation_settings["ecephys"]
    assert (task.command_script, task.image, task.image_version) == (SCRIPT, "lab/convert", "1.0")
    repeated = copy.deepcopy(CONVERT)
    repeated["modality_transformation_settings"]["ecephys"]["job_settings"]["level"] = 3
    [checked] = check_upload_jobs(
        engine, settings, _request(settings, job_type="convert", tasks=repeated), user=ALICE
    )
    assert checked.spec.tasks.modality_transformation_settings["ecephys"].job_settings == {
        "transformation": "command",
        "level": 3,
    }
    changed = copy.deepcopy(CONVERT)
    changed["modality_transformation_settings"]["ecephys"]["image_version"] = "2.0"
    request = _request(settings, job_type="convert", tasks=changed)
    with pytest.raises(InvalidInput) as info:
        check_upload_jobs(engine, settings, request, user=ALICE)
    assert [p["field"] for p in info.value.problems] == [
        "tasks.modality_transformation_settings.ecephys.image_version"
    ]
    # the job type's command in another task is not that task's command
    moved = {"copy_derivatives_folder": {"command_script": SCRIPT}}
    request = _request(settings, job_type="convert", tasks=moved)
    with pytest.raises(InvalidInput, match=r"tasks\.copy_derivatives_folder\.command_script"):
        check_upload_jobs(engine, settings, request, user=ALICE)


def test_the_command_transformation_needs_a_job_type_that_defines_one(engine, settings) -> None:
    tasks = {"modality_transformation_settings": {"ecephys": {"job_settings": {}}}}
    tasks["modality_transformation_settings"]["ecephys"]["job_settings"]["transformation"] = (
        "command"
    )
    with pytest.raises(InvalidInput) as info:
        check_upload_jobs(engine, settings, _request(settings, tasks=tasks), user=ALICE)
    message = str(info.value)
    assert "tasks.modality_transformation_settings.ecephys: the command transformation" in message
    assert "commands come from job types defined by admins" in message


def test_commands_not_from_preset() -> None:
    preset = UploadTasks.model_validate(CONVERT)
    same = UploadTasks.model_validate(copy.deepcopy(CONVERT))
    assert commands_not_from_preset(same, preset) == []
    assert commands_not_from_preset(UploadTasks(), preset) == []
    other = UploadTasks.model_validate(
        {
            "modality_transformation_settings": {
                "ecephys": {"command_script": SCRIPT, "image": "evil/convert"},
                "SPIM": {"command_script": SCRIPT},
            },
            "upload_data_to_s3": {"image": "lab/convert"},
        }
    )
    assert commands_not_from_preset(other, preset) == [
        "tasks.modality_transformation_settings.ecephys.image",
        "tasks.modality_transformation_settings.SPIM.command_script",
        "tasks.upload_data_to_s3.image",
    ]


def test_an_image_without_a_container_runtime_is_refused_at_submit(engine, settings) -> None:
    """Not at run time: a command in an image needs FERRY_CONTAINER_RUNTIME."""
    bare = settings.model_copy(update={"container_runtime": None})
    put_job_type(engine, "upload", "convert", CONVERT, "admin")
    with pytest.raises(InvalidInput) as info:
        check_upload_jobs(engine, bare, _request(bare, job_type="convert"), user=ALICE)
    [problem] = info.value.problems
    assert problem["field"] == "tasks.modality_transformation_settings.ecephys.image"
    assert "no container runtime" in str(info.value) and "lab/convert" in str(info.value)
    # a script that starts its own container needs none from the service
    own = copy.deepcopy(CONVERT)
    own["modality_transformation_settings"]["ecephys"]["command_script"] = "docker run x"
    put_job_type(engine, "upload", "own", own, "admin")
    [checked] = check_upload_jobs(engine, bare, _request(bare, job_type="own"), user=ALICE)
    assert checked.spec.tasks.modality_transformation_settings["ecephys"].image == "lab/convert"
