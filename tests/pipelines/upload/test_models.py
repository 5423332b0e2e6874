"""The upload job spec: the original service's request shapes, legacy names, and errors
that name the field and what it allows."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload import (
    MODALITIES,
    PLATFORMS,
    UploadJobSpec,
    asset_name,
    find_modality,
    find_platform,
    validate_upload_job,
)

from .submitted_jobs import FULL_JOBS, MINIMAL_JOB


def job(**changes: Any) -> dict[str, Any]:
    """The minimal submitted job with some fields changed (None removes a field)."""
    data = copy.deepcopy(MINIMAL_JOB)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def error_of(data: dict[str, Any]) -> tuple[str, str]:
    """The first validation error as (dotted field path, message)."""
    with pytest.raises(ValidationError) as info:
        UploadJobSpec.model_validate(data)
    first = info.value.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]


# -- the original service's shapes ---------------------------------------------------------


@pytest.mark.parametrize("data", [*FULL_JOBS, MINIMAL_JOB], ids=["full-0", "full-1", "minimal"])
def test_submitted_jobs_validate_and_name_the_asset_as_the_client_did(data: dict[str, Any]) -> None:
    spec = UploadJobSpec.model_validate(data)
    assert spec.asset_name == data["s3_prefix"]
    dumped = spec.model_dump(mode="json")
    assert UploadJobSpec.model_validate(dumped) == spec  # the stored spec validates again
    assert dumped["acq_datetime"] == data["acq_datetime"]
    assert [m["abbreviation"] for m in dumped["modalities"]] == [
        m["abbreviation"] for m in data["modalities"]
    ]


def test_full_job_keeps_its_task_settings() -> None:
    spec = UploadJobSpec.model_validate(FULL_JOBS[0])
    assert spec.platform is not None and spec.platform.abbreviation == "ecephys"
    assert spec.input_sources() == {
        "ecephys": "/data/rig/s700001/ecephys",
        "behavior-videos": "/data/rig/s700001/videos",
    }
    assert spec.metadata_folder() == "/data/rig/s700001/metadata"
    assert spec.derivatives_folder() == "/data/rig/s700001/derivatives"
    ecephys = spec.tasks.modality_transformation_settings["ecephys"]
    assert ecephys.image == "ghcr.io/example/ephys-compression"
    assert ecephys.image_resources == {
        "cpus_per_task": 8,
        "memory_per_node": 64000,
        "time_limit": 360,
    }
    check = spec.tasks.get("check_s3_folder_exists")
    assert check is not None and check.skip_task is True
    # the former name of the per-modality analysis settings
    assert set(spec.tasks.analysis_settings) == {"ecephys"}
    assert spec.email_notification_types == ["end", "fail"]
    assert spec.s3_bucket == "open"


def test_minimal_job_defaults() -> None:
    data = {
        "project_name": "Ephys Platform",
        "modalities": [{"abbreviation": "ecephys", "input_source": "/data/s1/ecephys"}],
        "subject_id": "690165",
        "acq_datetime": "2025-03-07T09:05:00",
    }
    spec = UploadJobSpec.model_validate(data)
    assert spec.job_type == "default"
    assert spec.email_notification_types == ["fail"]
    assert spec.s3_bucket is None
    assert spec.platform is None
    assert spec.force_cloud_sync is False
    assert spec.asset_name == "690165_2025-03-07_09-05-00"
    assert spec.input_sources() == {"ecephys": "/data/s1/ecephys"}
    assert spec.modalities[0].name == "Extracellular electrophysiology"


# -- names of modalities and platforms -----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ECEPHYS", "ecephys"),
        ("BEHAVIOR_VIDEOS", "behavior-videos"),
        ("behavior_videos", "behavior-videos"),
        ("Behavior videos", "behavior-videos"),
        ("spim", "SPIM"),
        ("ONE_PHOTON", "one-photon"),
        ("ophys", "pophys"),
        ("Serial two-photon tomogrophy", "STPT"),
        ("MRI", "MRI"),
    ],
)
def test_modality_names_match_in_any_case_and_legacy_spelling(given: str, expected: str) -> None:
    assert find_modality(given).abbreviation == expected
    spec = UploadJobSpec.model_validate(
        job(modalities=[{"abbreviation": given, "input_source": "/data/x"}], tasks={})
    )
    assert spec.modalities[0].abbreviation == expected


def test_modalities_as_plain_strings_with_settings_keyed_by_legacy_names() -> None:
    spec = UploadJobSpec.model_validate(
        job(
            modalities=["ECEPHYS", "BEHAVIOR_VIDEOS"],
            tasks={
                "modality_transformation_settings": {
                    "ECEPHYS": {"job_settings": {"input_source": "/data/e"}},
                    "behavior_videos": {"job_settings": {"input_source": "/data/v"}},
                }
            },
        )
    )
    assert spec.input_sources() == {"ecephys": "/data/e", "behavior-videos": "/data/v"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("BEHAVIOR", "behavior"),
        ("smartspim", "SmartSPIM"),
        ("MULTIPLANE_OPHYS", "multiplane-ophys"),
    ],
)
def test_platform_names_match_in_any_case(given: str, expected: str) -> None:
    assert find_platform(given).abbreviation == expected
    spec = UploadJobSpec.model_validate(job(platform=given, s3_prefix=None))
    assert spec.platform is not None and spec.platform.abbreviation == expected
    assert spec.asset_name == f"{expected}_690165_2025-03-07_09-05-00"


def test_the_lists_are_the_original_services() -> None:
    assert len(MODALITIES) == 21 and len(PLATFORMS) == 16
    assert len({m.abbreviation for m in MODALITIES}) == 21


def test_unknown_modality_names_the_field_and_lists_the_allowed() -> None:
    where, message = error_of(job(modalities=[{"abbreviation": "WRONG_MODALITY_HERE"}]))
    assert where == "modalities.0"
    assert "'WRONG_MODALITY_HERE' is not a known modality" in message
    assert "ecephys" in message and "behavior-videos" in message


def test_unknown_platform_names_the_field_and_lists_the_allowed() -> None:
    where, message = error_of(job(platform={"abbreviation": "holodeck"}))
    assert where == "platform"
    assert "'holodeck' is not a known platform" in message and "SmartSPIM" in message


# -- fields that go into the asset's name ------------------------------------------------


@pytest.mark.parametrize("bad", ["../etc", "a/b", "12 34", "a..b", "", "x" * 129, "née"])
def test_subject_id_allows_only_characters_safe_in_a_key(bad: str) -> None:
    where, message = error_of(job(subject_id=bad))
    assert where == "subject_id"
    assert "letters, digits, '-', '_' or '.'" in message


def test_subject_id_from_a_spreadsheet_number() -> None:
    assert UploadJobSpec.model_validate(job(subject_id=123454)).subject_id == "123454"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-05-27T16:07:59", datetime(2024, 5, 27, 16, 7, 59)),
        ("2020-10-10 14:10:10", datetime(2020, 10, 10, 14, 10, 10)),
        ("10/13/2020 1:10:10 PM", datetime(2020, 10, 13, 13, 10, 10)),
        ("1/2/2021 12:00:01 AM", datetime(2021, 1, 2, 0, 0, 1)),
    ],
)
def test_acq_datetime_formats(given: str, expected: datetime) -> None:
    spec = UploadJobSpec.model_validate(job(acq_datetime=given, s3_prefix=None))
    assert spec.acq_datetime == expected
    assert spec.asset_name == asset_name(None, "690165", expected)


@pytest.mark.parametrize("bad", ["2020-10-10ABC", "13/13/2020 1:10:10 PM", "yesterday", ""])
def test_bad_acq_datetime_names_the_field_and_the_formats(bad: str) -> None:
    where, message = error_of(job(acq_datetime=bad))
    assert where == "acq_datetime"
    assert "ISO 8601" in message and "M/D/YYYY h:mm:ss AM/PM" in message


def test_asset_name_format() -> None:
    when = datetime(2025, 4, 1, 14, 30, 15)
    assert asset_name("ecephys", "700001", when) == "ecephys_700001_2025-04-01_14-30-15"
    assert asset_name(None, "700001", when) == "700001_2025-04-01_14-30-15"


def test_s3_prefix_other_than_the_asset_name() -> None:
    spec = UploadJobSpec.model_validate(job(s3_prefix="custom-name_1"))
    assert spec.asset_name == "custom-name_1"
    where, message = error_of(job(s3_prefix="a/../b"))
    assert "s3_prefix" in message and "690165_2025-03-07_09-05-00" in message
    assert where == ""


@pytest.mark.parametrize("value", [".", "..", "/", "./", ".hidden", "-x", "_", "a/b", "a..b"])
def test_an_s3_prefix_that_is_no_plain_name_is_refused(value: str) -> None:
    _where, message = error_of(job(s3_prefix=value))
    assert "s3_prefix" in message and "starts with a letter or digit" in message, message


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_s3_prefix_is_refused(value: str) -> None:
    where, message = error_of(job(s3_prefix=value))
    assert where == "s3_prefix" and "leave s3_prefix out" in message


# -- other fields ------------------------------------------------------------------------


def test_unknown_field_lists_the_allowed() -> None:
    _, message = error_of(job(subjectid="1"))
    assert "unknown field 'subjectid'" in message and "subject_id" in message


def test_unknown_task_lists_the_allowed() -> None:
    where, message = error_of(job(tasks={"compres_data": {"skip_task": True}}))
    assert where == "tasks"
    assert "unknown task 'compres_data'" in message and "check_s3_folder_exists" in message


def test_mapped_task_points_to_its_per_modality_settings() -> None:
    _, message = error_of(job(tasks={"compress_data": {"skip_task": True}}))
    assert "tasks.modality_transformation_settings" in message


def test_unknown_field_of_a_task() -> None:
    where, message = error_of(job(tasks={"check_s3_folder_exists": {"skip": True}}))
    assert where == "tasks.check_s3_folder_exists"
    assert "unknown field 'skip'" in message and "skip_task" in message


def test_both_names_of_the_analysis_settings() -> None:
    _, message = error_of(job(tasks={"analysis_settings": {}, "codeocean_pipeline_settings": {}}))
    assert "not both" in message


def test_modality_without_a_folder() -> None:
    where, message = error_of(job(modalities=["ecephys"], tasks={}))
    assert where == ""
    assert "modalities.0 (ecephys): no input_source" in message
    assert "tasks.modality_transformation_settings.ecephys.job_settings.input_source" in message


def test_two_folders_for_one_modality() -> None:
    data = job(modalities=[{"abbreviation": "ecephys", "input_source": "/data/other"}])
    _, message = error_of(data)
    assert "differs from tasks.modality_transformation_settings.ecephys" in message


def test_settings_for_a_modality_the_job_does_not_have() -> None:
    data = job()
    data["tasks"]["modality_transformation_settings"]["behavior"] = {
        "job_settings": {"input_source": "/data/b"}
    }
    _, message = error_of(data)
    assert "tasks.modality_transformation_settings.behavior" in message
    assert "not one of this job's modalities (ecephys)" in message


def test_a_modality_listed_twice() -> None:
    data = job(modalities=["ecephys", "ECEPHYS"])
    _, message = error_of(data)
    assert "modalities.1: 'ecephys' is listed twice" in message


def test_transformations() -> None:
    data = job()
    settings = data["tasks"]["modality_transformation_settings"]["ecephys"]
    settings["job_settings"]["transformation"] = "zip"
    _, message = error_of(data)
    assert "tasks.modality_transformation_settings.ecephys.job_settings.transformation" in message
    assert "copy, ome-zarr, command" in message
    settings["job_settings"]["transformation"] = "command"
    _, message = error_of(data)
    assert "needs a command_script" in message


def test_metadata_dir_given_twice_differently() -> None:
    data = job(
        metadata_dir="/data/a",
        tasks={
            **MINIMAL_JOB["tasks"],
            "gather_preliminary_metadata": {"job_settings": {"metadata_dir": "/data/b"}},
        },
    )
    _, message = error_of(data)
    assert "metadata_dir '/data/a' differs from tasks.gather_preliminary_metadata" in message


@pytest.mark.parametrize(
    "bad", ["scientist", "a b@c", "@example.org", 'a@b.c"><script>', "a@b.c\r\nBcc: x@y"]
)
def test_user_email(bad: str) -> None:
    where, message = error_of(job(user_email=bad))
    assert where == "user_email" and "not an e-mail address" in message


def test_notification_types() -> None:
    spec = UploadJobSpec.model_validate(job(email_notification_types=["FAIL", "begin", "fail"]))
    assert spec.email_notification_types == ["begin", "fail"]
    spec = UploadJobSpec.model_validate(job(email_notification_types="end, retry"))
    assert spec.email_notification_types == ["end", "retry"]
    where, message = error_of(job(email_notification_types=["never"]))
    assert where == "email_notification_types"
    assert "'never' is not a notification type; allowed: begin, end, fail, retry, all" in message


def test_empty_spreadsheet_cells_mean_not_given() -> None:
    spec = UploadJobSpec.model_validate(
        job(s3_bucket="", platform="", metadata_dir=" ", user_email="", job_type="")
    )
    assert spec.s3_bucket is None and spec.platform is None and spec.metadata_dir is None
    assert spec.user_email is None and spec.job_type == "default"


def test_validate_upload_job_names_every_bad_field() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_upload_job(job(subject_id="a/b", project_name=None))
    message = str(info.value)
    assert message.startswith("invalid upload job: ")
    assert "subject_id: " in message and "project_name: Field required" in message


def test_the_spec_has_a_json_schema() -> None:
    schema = UploadJobSpec.model_json_schema()
    assert schema["required"] == ["project_name", "modalities", "subject_id", "acq_datetime"]
    assert schema["additionalProperties"] is False
    tasks = schema["$defs"]["UploadTasks"]["properties"]
    assert tasks["modality_transformation_settings"]["additionalProperties"] == {
        "$ref": "#/$defs/Task"
    }
