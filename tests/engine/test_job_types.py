"""Job types, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel

from neuroferry.engine import (
    Change,
    JobKind,
    apply_job_type,
    delete_job_type,
    diff_job_type_versions,
    diff_job_types,
    find_job_type,
    get_job_type,
    job_type_history,
    list_job_types,
    put_job_type,
    register_kind,
    rollback_job_type,
)
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.pipelines.upload import validate_upload_job

EPHYS = {
    "check_s3_folder_exists": {"skip_task": True},
    "modality_transformation_settings": {
        "ecephys": {"job_settings": {"transformation": "copy"}, "image_resources": {"cpus": 4}}
    },
    "codeocean_pipeline_settings": {"ECEPHYS": {"job_settings": {"analysis": "sorting"}}},
}
NORMALISED = {
    "check_s3_folder_exists": {"skip_task": True},
    "modality_transformation_settings": {
        "ecephys": {"job_settings": {"transformation": "copy"}, "image_resources": {"cpus": 4}}
    },
    "analysis_settings": {"ecephys": {"job_settings": {"analysis": "sorting"}}},
}

COMMAND = {"transformation": "command"}
RSYNC = {"transformation": "rsync"}
FOLDER = {"input_source": "/data/ecephys"}


def test_every_change_is_a_new_version(engine):
    first = put_job_type(engine, "upload", "ephys", EPHYS, "root", "first")
    assert (first.version, first.settings, first.created_by, first.comment) == (
        1,
        NORMALISED,
        "root",
        "first",
    )
    assert first.created.tzinfo is not None and not first.deleted
    # the same settings (in any spelling) change nothing
    assert put_job_type(engine, "upload", "ephys", NORMALISED, "other").version == 1
    second = put_job_type(engine, "upload", "ephys", {"upload_data_to_s3": {}}, "root")
    assert (second.version, second.settings) == (2, {"upload_data_to_s3": {}})
    assert get_job_type(engine, "upload", "ephys") == second
    assert get_job_type(engine, "upload", "ephys", version=1) == first
    put_job_type(engine, "upload", "spim", {}, "root")
    assert [(t.name, t.version) for t in list_job_types(engine)] == [("ephys", 2), ("spim", 1)]
    assert [t.version for t in job_type_history(engine, "upload", "ephys")] == [1, 2]

    back = rollback_job_type(engine, "upload", "ephys", 1, "root")
    assert (back.version, back.settings, back.comment) == (3, NORMALISED, "rollback to version 1")
    assert rollback_job_type(engine, "upload", "ephys", 1, "root").version == 3  # already current

    gone = delete_job_type(engine, "upload", "ephys", "root")
    assert (gone.version, gone.deleted, gone.settings) == (4, True, NORMALISED)
    with pytest.raises(NotFound, match=r"'ephys' \(upload\) was deleted in version 4.*spim"):
        get_job_type(engine, "upload", "ephys")
    with pytest.raises(NotFound, match="was deleted"):
        delete_job_type(engine, "upload", "ephys", "root")
    assert find_job_type(engine, "upload", "ephys") is None
    assert [t.name for t in list_job_types(engine)] == ["spim"]
    assert [t.name for t in list_job_types(engine, include_deleted=True)] == ["ephys", "spim"]
    assert get_job_type(engine, "upload", "ephys", version=4).deleted  # history keeps it

    revived = put_job_type(engine, "upload", "ephys", NORMALISED, "root")  # same settings
    assert (revived.version, revived.deleted) == (5, False)
    assert [(v.version, v.deleted) for v in job_type_history(engine, "upload", "ephys")] == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
        (5, False),
    ]


def test_diff_names_each_changed_path():
    old = {"a": {"skip_task": True, "job_settings": {"x": 1, "y": [1]}}, "b": {}}
    new = {"a": {"skip_task": False, "job_settings": {"x": True, "z": 2}}, "c": {"image": "i"}}
    assert diff_job_types(old, new) == [
        Change("a.job_settings.x", 1, True, "changed"),  # 1 and true differ in JSON
        Change("a.job_settings.y", [1], None, "removed"),
        Change("a.job_settings.z", None, 2, "added"),
        Change("a.skip_task", True, False, "changed"),
        Change("b", {}, None, "removed"),
        Change("c", None, {"image": "i"}, "added"),
    ]
    assert diff_job_types(old, old) == []


def test_diff_between_stored_versions(engine):
    put_job_type(engine, "upload", "ephys", {"upload_data_to_s3": {}}, "root")
    put_job_type(engine, "upload", "ephys", {"upload_data_to_s3": {"skip_task": True}}, "root")
    assert diff_job_type_versions(engine, "upload", "ephys") == (
        1,
        2,
        [Change("upload_data_to_s3.skip_task", None, True, "added")],
    )
    assert diff_job_type_versions(engine, "upload", "ephys", 0, 1)[2] == [
        Change("upload_data_to_s3", None, {}, "added")
    ]
    with pytest.raises(InvalidInput, match=r"to: job type 'ephys' has no version 7; .* 1 to 2"):
        diff_job_type_versions(engine, "upload", "ephys", 1, 7)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"check_s3_folder_exists": {"skip_tsk": True}}, "check_s3_folder_exists: unknown field"),
        ({"compress_data": {}}, "configure it in tasks.modality_transformation_settings"),
        ({"nope": {}}, "unknown task 'nope'"),
        ({"upload_data_to_s3": {"image_resources": 5}}, "upload_data_to_s3.image_resources"),
        (
            {"modality_transformation_settings": {"ecephys": {"skip_task": "maybe"}}},
            "modality_transformation_settings.ecephys.skip_task",
        ),
        (
            {"analysis_settings": {"kinect": {}}},
            "analysis_settings: 'kinect' is not a known modality",
        ),
        (
            {"modality_transformation_settings": {"SPIM": {"job_settings": RSYNC}}},
            "modality_transformation_settings.SPIM.job_settings.transformation: 'rsync' is not",
        ),
        (
            {"modality_transformation_settings": {"SPIM": {"job_settings": COMMAND}}},
            "SPIM: the command transformation needs a command_script",
        ),
        (
            {"modality_transformation_settings": {"ecephys": {"job_settings": FOLDER}}},
            "ecephys.job_settings.input_source: a job type cannot name a session's folder",
        ),
    ],
)
def test_invalid_settings_name_task_modality_and_field(engine, settings, message):
    with pytest.raises(InvalidInput, match="invalid job type settings") as caught:
        put_job_type(engine, "upload", "bad", settings, "root")
    assert message in str(caught.value)
    assert list_job_types(engine) == []


def test_names_kinds_and_lookups_are_checked(engine):
    for name in ("", "a b", "-x", ".", "a/b", "x" * 129):
        with pytest.raises(InvalidInput, match="job type name"):
            put_job_type(engine, "upload", name, {}, "root")
    with pytest.raises(InvalidInput, match="unknown job kind 'nope'"):
        put_job_type(engine, "nope", "x", {}, "root")
    register_kind(JobKind("presetless", BaseModel, (), _prep))
    with pytest.raises(InvalidInput, match="job kind 'presetless' has no job types"):
        put_job_type(engine, "presetless", "x", {}, "root")
    with pytest.raises(InvalidInput, match="settings: a job type's settings are an object"):
        put_job_type(engine, "upload", "x", [], "root")  # type: ignore[arg-type]
    put_job_type(engine, "upload", "ephys.v2_a-b", {}, "root")
    with pytest.raises(NotFound, match=r"no job type 'spim' of kind 'upload'; .*: ephys\.v2_a-b"):
        get_job_type(engine, "upload", "spim")
    with pytest.raises(NotFound, match="has no version 3; its versions are 1 to 1"):
        get_job_type(engine, "upload", "ephys.v2_a-b", version=3)
    with pytest.raises(NotFound, match="no job type 'spim'"):
        job_type_history(engine, "upload", "spim")
    with pytest.raises(NotFound):
        rollback_job_type(engine, "upload", "ephys.v2_a-b", 9, "root")
    # text that neither database could keep is refused, naming the field
    nul = "a\x00b"
    with pytest.raises(InvalidInput, match=r"comment: .* contains a NUL character"):
        put_job_type(engine, "upload", "x", {}, "root", nul)
    with pytest.raises(InvalidInput, match=r"settings: text in a job type may not contain NUL"):
        put_job_type(engine, "upload", "x", {"upload_data_to_s3": {"image": nul}}, "root")
    with pytest.raises(InvalidInput, match=r"name: .* contains a NUL character"):
        get_job_type(engine, "upload", nul)
    with pytest.raises(InvalidInput, match=r"job_type: .* contains a NUL character"):
        apply_job_type(engine, "upload", {"job_type": nul})


def _prep(spec, settings):  # pragma: no cover - never submitted
    raise AssertionError


def test_concurrent_writers_get_distinct_versions(engine):
    errors = []

    def write(i):
        try:
            for j in range(3):
                settings = {"upload_data_to_s3": {"job_settings": {"n": i * 10 + j}}}
                put_job_type(engine, "upload", "busy", settings, f"w{i}")
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in job_type_history(engine, "upload", "busy")] == list(range(1, 13))


# -- applying a job type to a request -------------------------------------------------------


def _request(**changes):
    spec = {
        "project_name": "Ephys Platform",
        "subject_id": "123456",
        "acq_datetime": "2024-05-27T16:07:59",
        "modalities": [
            {"abbreviation": "ecephys", "input_source": "/data/ecephys"},
            {"abbreviation": "behavior", "input_source": "/data/behavior"},
        ],
    }
    return spec | changes


def test_default_without_a_preset_is_no_preset(engine):
    request = _request()
    assert apply_job_type(engine, "upload", request) == (request, "default", None)
    assert apply_job_type(engine, "upload", _request(job_type=" ")) == (
        _request(job_type=" "),
        "default",
        None,
    )


def test_a_stored_default_applies_to_requests_without_a_job_type(engine):
    put_job_type(engine, "upload", "default", {"upload_data_to_s3": {"skip_task": True}}, "root")
    merged, name, version = apply_job_type(engine, "upload", _request())
    assert (name, version) == ("default", 1)
    assert merged["tasks"] == {"upload_data_to_s3": {"skip_task": True}}


def test_unknown_or_deleted_job_types_are_refused_naming_the_known_ones(engine):
    put_job_type(engine, "upload", "ephys", {}, "root")
    put_job_type(engine, "upload", "old", {}, "root")
    delete_job_type(engine, "upload", "old", "root")
    for name in ("nope", "old"):
        with pytest.raises(InvalidInput, match=rf"job_type: '{name}' is not a job type .*: "):
            apply_job_type(engine, "upload", _request(job_type=name))
    with pytest.raises(InvalidInput, match=r"known job types: default, ephys$"):
        apply_job_type(engine, "upload", _request(job_type="nope"))
    with pytest.raises(InvalidInput, match="job_type: 5 is not a job type name"):
        apply_job_type(engine, "upload", _request(job_type=5))


def test_request_settings_win_task_by_task_and_modality_by_modality(engine):
    preset = {
        "check_s3_folder_exists": {"skip_task": True},
        "upload_data_to_s3": {"image_resources": {"cpus": 8}},
        "modality_transformation_settings": {
            "ecephys": {"image_resources": {"cpus": 16}},
            "behavior": {"image_resources": {"cpus": 2}},
            "SPIM": {"image_resources": {"cpus": 32}},  # not one of the job's modalities
        },
        "analysis_settings": {"ecephys": {"job_settings": {"analysis": "sorting"}}},
    }
    put_job_type(engine, "upload", "ephys", preset, "root")
    request = _request(
        job_type="ephys",
        tasks={
            "check_s3_folder_exists": {"skip_task": False},
            "modality_transformation_settings": {"BEHAVIOR": {"job_settings": {"x": 1}}},
            "codeocean_pipeline_settings": {"behavior": {"job_settings": {"analysis": "qc"}}},
        },
    )
    merged, name, version = apply_job_type(engine, "upload", request)
    assert (name, version) == ("ephys", 1)
    assert merged["tasks"] == {
        "check_s3_folder_exists": {"skip_task": False},  # the request's, whole
        "upload_data_to_s3": {"image_resources": {"cpus": 8}},  # the preset's
        "modality_transformation_settings": {
            "ecephys": {"image_resources": {"cpus": 16}},
            "BEHAVIOR": {"job_settings": {"x": 1}},
        },
        "analysis_settings": {
            "ecephys": {"job_settings": {"analysis": "sorting"}},
            "behavior": {"job_settings": {"analysis": "qc"}},
        },
    }
    assert request["tasks"]["check_s3_folder_exists"] == {"skip_task": False}  # not changed
    spec = validate_upload_job(merged)
    assert spec.tasks.modality_transformation_settings["behavior"].job_settings == {"x": 1}
    assert spec.tasks.get("upload_data_to_s3").image_resources == {"cpus": 8}


def test_a_kind_without_a_merge_of_its_own_takes_the_request_s_tasks_task_by_task(engine):
    register_kind(JobKind("plain", BaseModel, (), _prep, check_preset=dict))
    put_job_type(engine, "plain", "fast", {"a": {"cpus": 8}, "b": {"cpus": 2}}, "root")
    request = {"job_type": "fast", "tasks": {"b": {"memory": 4}}}
    merged, name, version = apply_job_type(engine, "plain", request)
    assert (name, version) == ("fast", 1)
    assert merged == {"job_type": "fast", "tasks": {"a": {"cpus": 8}, "b": {"memory": 4}}}
    assert request["tasks"] == {"b": {"memory": 4}}  # not changed
