"""The upload job kind: its DAG, and what ``prepare`` makes of a spec."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from neuroferry.config import get_settings
from neuroferry.engine import check_access, get_kind
from neuroferry.errors import ConfigError, Forbidden, InvalidInput
from neuroferry.grants import access_for
from neuroferry.pipelines.upload import KIND, TASK_NAMES, UploadJobSpec, prepare

from .submitted_jobs import FULL_JOBS, MINIMAL_JOB

SEED_ORDER = [
    "send_job_start_email",
    # not in the original: the asset's owner is checked before anything is written
    "check_asset_owner",
    "check_s3_folder_exists",
    "check_source_folders_exist",
    "create_staging_folder",
    "gather_preliminary_metadata",
    "check_metadata_files",
    "copy_derivatives_folder",
    "modality_transformation_settings",
    "compress_data",
    "gather_final_metadata",
    "upload_data_to_s3",
    "register_data_asset",
    "run_analyses",
    "remove_staging_folder",
    "remove_source_folders",
    "send_job_end_email",
]


def spec_of(data: dict[str, Any]) -> UploadJobSpec:
    return UploadJobSpec.model_validate(data)


def test_the_kind_is_installed_under_its_entry_point() -> None:
    assert get_kind("upload") is KIND
    assert KIND.spec_model is UploadJobSpec


def test_tasks_in_the_original_order_with_placements_and_mapping() -> None:
    assert list(TASK_NAMES) == SEED_ORDER
    local = {t.name for t in KIND.tasks if t.placement == "local"}
    assert local == {
        "send_job_start_email",
        "check_asset_owner",
        "gather_preliminary_metadata",  # reads the project's record and the catalog
        "register_data_asset",
        "run_analyses",
        "send_job_end_email",
    }
    assert KIND.task("compress_data").map_over == "modality_transformation_settings"
    assert KIND.task("run_analyses").map_over == "register_data_asset.analyses"
    upload = KIND.task("upload_data_to_s3")
    assert upload.retries == 2 and upload.retry_delay > 0
    assert all(t.retries == 0 for t in KIND.tasks if t.name != "upload_data_to_s3")
    # the upload comes after every check and every transformation
    ancestors: set[str] = set()
    todo = list(upload.upstream)
    while todo:
        name = todo.pop()
        ancestors.add(name)
        todo.extend(KIND.task(name).upstream)
    assert set(SEED_ORDER[: SEED_ORDER.index("upload_data_to_s3")]) <= ancestors


def test_prepare_the_full_submitted_job() -> None:
    settings = get_settings(destinations={"open": "s3://open-data/raw/"})
    prepared = prepare(spec_of(FULL_JOBS[0]), settings)
    asset = "ecephys_700001_2025-04-01_14-30-15"
    assert prepared.name == asset
    assert prepared.summary["destination"] == f"s3://open-data/raw/{asset}"
    assert prepared.summary["destination_name"] == "open"
    # each job stages in its own folder under staging_dir (by job id, see _tasks)
    assert prepared.summary["staging_dir"] == str(Path(settings.home, "staging"))
    assert [(a.key, a.field, a.catalog_name) for a in prepared.assets] == [
        (f"s3://open-data/raw/{asset}", "s3_prefix", asset)
    ]
    assert prepared.summary["user_email"] == "scientist@example.org"
    assert prepared.summary["modalities"] == ["ecephys", "behavior-videos"]
    ts = prepared.task_settings

    assert ts["check_s3_folder_exists"]["skip_task"] is True  # as the request asks
    assert ts["check_asset_owner"]["skip_task"] is False  # whatever the request asks
    assert ts["remove_source_folders"]["skip_task"] is True  # the default
    assert ts["copy_derivatives_folder"]["job_settings"] == {
        "input_source": "/data/rig/s700001/derivatives"
    }
    assert ts["check_source_folders_exist"]["job_settings"] == {
        "modalities": {
            "ecephys": "/data/rig/s700001/ecephys",
            "behavior-videos": "/data/rig/s700001/videos",
        },
        "metadata_dir": "/data/rig/s700001/metadata",
        "derivatives_dir": "/data/rig/s700001/derivatives",
    }
    gather = ts["gather_preliminary_metadata"]["job_settings"]
    assert gather["metadata_dir"] == "/data/rig/s700001/metadata"
    acquired = datetime(2025, 4, 1, 14, 30, 15).astimezone()  # naive: the service's zone
    assert gather["data_description"] == {
        "name": asset,
        "subject_id": "700001",
        "creation_time": acquired.isoformat(),
        "modalities": ["ecephys", "behavior-videos"],
        "project_name": "Ephys Platform",
    }
    assert prepared.summary["platform"] == {
        "name": "Electrophysiology platform",
        "abbreviation": "ecephys",
    }
    transformations = ts["modality_transformation_settings"]["job_settings"]
    assert transformations["ecephys"]["image_version"] == "1.2.0"
    assert transformations["ecephys"]["job_settings"] == {
        "input_source": "/data/rig/s700001/ecephys",
        "compress_raw_data": True,
        "transformation": "command",
    }
    assert transformations["behavior-videos"]["job_settings"] == {
        "input_source": "/data/rig/s700001/videos",
        "transformation": "copy",
    }
    # Code Ocean pipelines cannot run here: the analysis is skipped and the job says why
    analyses = ts["register_data_asset"]["job_settings"]["analyses"]
    assert analyses["ecephys"]["skip_task"] is True
    assert any("Code Ocean" in note for note in prepared.summary["notes"])


def test_prepare_the_second_submitted_job_lets_the_request_win() -> None:
    prepared = prepare(spec_of(FULL_JOBS[1]), get_settings())
    assert prepared.name == "700002_2025-04-02_08-00-00"
    ts = prepared.task_settings
    assert ts["remove_source_folders"]["skip_task"] is False  # the request wins
    assert ts["check_s3_folder_exists"]["skip_task"] is False
    assert ts["copy_derivatives_folder"]["skip_task"] is True  # no derivatives folder
    assert ts["register_data_asset"]["job_settings"]["analyses"] == {}
    assert prepared.summary["destination"] == f"{get_settings().store_url}/{prepared.name}"
    assert "notes" not in prepared.summary


def test_unknown_destination_names_the_field_and_the_allowed() -> None:
    settings = get_settings(destinations={"private": "file:///srv/private"})
    with pytest.raises(InvalidInput) as info:
        prepare(spec_of(FULL_JOBS[0]), settings)
    assert str(info.value) == (
        "s3_bucket: 'open' is not a destination of this service; allowed: default, private"
    )


def test_destination_that_is_not_a_store() -> None:
    settings = get_settings(destinations={"open": "ftp://example.org/raw"})
    with pytest.raises(ConfigError, match="'ftp' is not a store"):
        prepare(spec_of(FULL_JOBS[0]), settings)


def test_force_cloud_sync_skips_the_destination_check() -> None:
    data = copy.deepcopy(MINIMAL_JOB)
    prepared = prepare(spec_of(data), get_settings())
    assert prepared.task_settings["check_s3_folder_exists"]["skip_task"] is False
    data["force_cloud_sync"] = True
    prepared = prepare(spec_of(data), get_settings())
    assert prepared.task_settings["check_s3_folder_exists"]["skip_task"] is True


def test_relative_source_folder_is_refused_at_submission() -> None:
    data = copy.deepcopy(MINIMAL_JOB)
    data["tasks"]["modality_transformation_settings"]["ecephys"]["job_settings"] = {
        "input_source": "dir/data_set_1"
    }
    with pytest.raises(InvalidInput) as info:
        prepare(spec_of(data), get_settings())
    assert "modality ecephys: input_source: 'dir/data_set_1' is not an absolute path" in str(
        info.value
    )


def test_source_outside_the_granted_folders_is_refused_at_submission(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", source_roots=[tmp_path / "rigs"])
    data = copy.deepcopy(MINIMAL_JOB)
    data["metadata_dir"] = str(tmp_path / "rigs" / "s1" / "metadata")
    outside = str(tmp_path / "rigs" / ".." / "elsewhere")
    data["tasks"]["modality_transformation_settings"]["ecephys"]["job_settings"] = {
        "input_source": outside
    }
    prepared = prepare(spec_of(data), settings)
    assert ("modality ecephys: input_source", outside) in prepared.reads
    assert ("metadata_dir", data["metadata_dir"]) in prepared.reads
    assert prepared.removes == ()  # remove_source_folders is skipped by default
    with pytest.raises(Forbidden) as info:
        check_access(prepared, access_for(settings, "alice", "user"))
    message = str(info.value)
    assert "modality ecephys: input_source" in message
    assert f"(which is {tmp_path / 'elsewhere'}) is not under a folder" in message
    assert "[grants.alice]" in message
    check_access(prepared, access_for(settings, "admin", "admin"))  # admins read anywhere


def test_removed_source_folders_must_be_the_users_own(tmp_path: Path) -> None:
    rigs, own = tmp_path / "rigs", tmp_path / "alice"
    settings = get_settings(
        home=tmp_path / "home", source_roots=[rigs], grants={"alice": {"source_roots": [own]}}
    )
    alice = access_for(settings, "alice", "user")
    data = copy.deepcopy(MINIMAL_JOB)
    data["tasks"]["remove_source_folders"] = {"skip_task": False}
    for folder, allowed in ((own / "s1", True), (rigs / "s1", False), (own, False)):
        data["tasks"]["modality_transformation_settings"]["ecephys"]["job_settings"] = {
            "input_source": str(folder)
        }
        prepared = prepare(spec_of(data), settings)
        assert prepared.removes == (("modality ecephys: input_source", str(folder)),)
        if allowed:
            check_access(prepared, alice)
        else:
            with pytest.raises(Forbidden, match="modality ecephys: input_source"):
                check_access(prepared, alice)


def test_an_s3_prefix_other_than_the_asset_name_is_noted() -> None:
    data = copy.deepcopy(MINIMAL_JOB)
    data["s3_prefix"] = "my-own-name"
    prepared = prepare(spec_of(data), get_settings())
    assert prepared.name == "my-own-name"
    assert prepared.summary["destination"].endswith("/my-own-name")
    assert "690165_2025-03-07_09-05-00" in prepared.summary["notes"][0]
