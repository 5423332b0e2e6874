"""Each task of the upload, called as the engine calls it, on a generated session."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import obstore
import pytest

from _smtp import SMTPServer
from neuroferry.catalog import Catalog
from neuroferry.engine import Skipped, TaskFailed
from neuroferry.pipelines.upload import set_project_facts
from neuroferry.stores import open_store

from .helpers import FACTS, PROCEDURES, SESSION, SUBJECT, Harness, Session, schema_problems, tree

MakeHarness = Callable[..., Harness]
ASSET = "ecephys_123456_2024-06-19_10-00-00"


@pytest.fixture
def catalog(project_catalog: Catalog) -> Catalog:
    return project_catalog


def test_the_whole_upload_on_a_session(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    job = harness(session.spec())
    job.catalog = catalog
    results = job.run_until("send_job_end_email")
    dest = job.destination
    assert dest.endswith("/" + ASSET)

    # every modality under its abbreviation, the derivatives, and the metadata at the top
    uploaded = tree(Path(open_store(dest).local_root or ""))
    for name in ("ecephys", "behavior", "behavior-videos", "derivatives"):
        for rel, data in session.files[name].items():
            assert uploaded.pop(f"{name}/{rel}") == data
    uploaded_metadata = dict(uploaded)
    metadata = {k: json.loads(v) for k, v in uploaded.items()}
    assert set(metadata) == {
        "data_description.json",
        "subject.json",
        "procedures.json",
        "session.json",
        "processing.json",
    }
    assert metadata["subject.json"] == SUBJECT
    assert metadata["procedures.json"] == PROCEDURES
    assert metadata["session.json"] == SESSION
    assert metadata["data_description.json"]["name"] == ASSET
    assert metadata["data_description.json"]["data_level"] == "raw"

    upload = results["upload_data_to_s3"]
    total = sum(
        len(b)
        for name in ("ecephys", "behavior", "behavior-videos", "derivatives")
        for b in session.files[name].values()
    )
    metadata_bytes = sum(
        p.stat().st_size for p in Path(open_store(dest).local_root or "").glob("*.json")
    )
    assert upload["bytes_copied"] == total + metadata_bytes
    assert list(upload["parts"]) == [
        "ecephys",
        "behavior",
        "behavior-videos",
        "derivatives",
        "metadata",
    ]

    # registered, with the metadata read back from the destination
    document = catalog.find({"name": ASSET})[0]
    assert document["location"] == dest
    assert document["subject"] == SUBJECT and document["procedures"] == PROCEDURES
    assert document["data_description"]["subject_id"] == "123456"
    assert document["processing"]["data_processes"] == []  # every modality copied
    for name in ("data_description.json", "processing.json"):  # the files neuroferry wrote
        assert schema_problems(name, uploaded_metadata[name]) == []
    assert results["register_data_asset"]["analyses"] == {}
    assert results["run_analyses"] == {}  # nothing to map over

    # staging removed; the source folders kept (remove_source_folders is off by default)
    assert not job.staging.exists()
    assert results["remove_source_folders"] is None
    assert tree(session.folder("ecephys")) == session.files["ecephys"]
    # no SMTP server configured: the e-mail task ends skipped, saying why
    ended = results["send_job_end_email"]
    assert isinstance(ended, Skipped) and "FERRY_SMTP_HOST" in ended.reason


def test_upload_files_count(session: Session, harness: MakeHarness, catalog: Catalog) -> None:
    job = harness(session.spec())
    results = job.run_until("upload_data_to_s3")
    parts = results["upload_data_to_s3"]["parts"]
    assert {name: p["files_copied"] for name, p in parts.items()} == {
        "ecephys": 3,
        "behavior": 1,
        "behavior-videos": 1,
        "derivatives": 1,
        "metadata": 5,
    }
    assert results["upload_data_to_s3"]["files_copied"] == 11


# -- check_s3_folder_exists ------------------------------------------------------------------


def test_destination_that_holds_objects_is_refused(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    store = open_store(job.destination, create=True)
    obstore.put(store.raw, "ecephys/old.dat", b"uploaded before")
    with pytest.raises(TaskFailed) as info:
        job.call("check_s3_folder_exists")
    message = str(info.value)
    assert f"the destination {job.destination} already holds 1 object " in message
    assert "ecephys/old.dat" in message
    assert "force_cloud_sync: true" in message and "skip_task: true" in message


def test_destination_check_passes_when_empty_or_forced(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(session.spec())
    assert job.call("check_s3_folder_exists") == {
        "location": job.destination,
        "checked": True,
        "empty": True,
    }
    forced = harness(session.spec(force_cloud_sync=True))
    obstore.put(open_store(forced.destination, create=True).raw, "x", b"x")
    assert forced.prepared.task_settings["check_s3_folder_exists"]["skip_task"] is True
    assert forced.call("check_s3_folder_exists")["checked"] is False


# -- check_source_folders_exist ----------------------------------------------------------


def test_missing_and_wrong_source_folders_are_each_named(
    session: Session, harness: MakeHarness
) -> None:
    spec = session.spec()
    settings = spec["tasks"]["modality_transformation_settings"]
    settings["behavior"]["job_settings"]["input_source"] = str(session.root / "no-such-folder")
    settings["behavior-videos"]["job_settings"]["input_source"] = str(
        session.folder("behavior") / "trials.csv"
    )
    job = harness(spec)
    with pytest.raises(TaskFailed) as info:
        job.call("check_source_folders_exist")
    message = str(info.value)
    assert f"modality behavior: input_source: {session.root / 'no-such-folder'} does not exist" in (
        message
    )
    assert "modality behavior-videos: input_source: " in message and "is a file, not a folder" in (
        message
    )
    assert "modality ecephys" not in message


def test_source_folders_under_the_allowed_roots(
    session: Session, harness: MakeHarness, tmp_path: Path
) -> None:
    job = harness(session.spec(), user="alice", source_roots=[session.root])
    checked = job.call("check_source_folders_exist")["folders"]
    assert checked["modality ecephys: input_source"] == str(session.folder("ecephys"))
    assert checked["metadata_dir"] == str(session.folder("metadata"))
    assert checked["derivatives_dir"] == str(session.folder("derivatives"))

    # a symlink inside an allowed folder that leads out of it
    outside = tmp_path / "outside"
    outside.mkdir()
    (session.root / "sneaky").symlink_to(outside)
    spec = session.spec()
    spec["tasks"]["modality_transformation_settings"]["behavior"]["job_settings"][
        "input_source"
    ] = str(session.root / "sneaky")
    job = harness(spec, user="alice", source_roots=[session.root])
    with pytest.raises(TaskFailed) as info:
        job.call("check_source_folders_exist")
    assert f"(which is {outside})" in str(info.value)
    assert "is not under a folder user 'alice' may read" in str(info.value)


# -- staging and metadata ----------------------------------------------------------------


def test_staging_folder_is_made_once(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    assert job.call("create_staging_folder") == {"staging": str(job.staging)}
    (job.staging / "kept").write_text("x")
    job.call("create_staging_folder")  # again, as after a crash
    assert (job.staging / "kept").read_text() == "x"
    assert job.staging.parent == Path(job.settings.home) / "staging"


def test_preliminary_metadata(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    job.run_until("create_staging_folder")
    result = job.run("gather_preliminary_metadata")
    assert result["copied"] == ["procedures.json", "session.json", "subject.json"]
    assert result["written"] == ["data_description.json"] and result["missing"] == []
    staged = tree(job.staging)
    assert set(staged) == {
        "data_description.json",
        "procedures.json",
        "session.json",
        "subject.json",
    }  # not notes.txt, not old/rig.json
    assert staged["subject.json"] == session.files["metadata"]["subject.json"]
    assert schema_problems("data_description.json", staged["data_description.json"]) == []
    description = json.loads(staged["data_description.json"])
    assert description["name"] == ASSET and description["subject_id"] == "123456"
    assert description["creation_time"].startswith("2024-06-19T10:00:00")
    assert [m["abbreviation"] for m in description["modalities"]] == [
        "ecephys",
        "behavior",
        "behavior-videos",
    ]
    assert description["project_name"] == "Ephys Platform"
    assert description["data_level"] == "raw" and "platform" not in description
    # the facts a request does not carry come from the project's record
    assert description["institution"]["abbreviation"] == FACTS["institution"]
    assert description["investigators"] == [{"object_type": "Person", "name": "Jane Doe"}] or [
        p["name"] for p in description["investigators"]
    ] == ["Jane Doe"]
    assert [f["funder"]["abbreviation"] for f in description["funding_source"]] == ["AIND"]


def _valid_description() -> bytes:
    """A data description a user made with aind-data-schema, as its ``model_dump_json``
    writes it (``creation_time`` ends in ``Z``)."""
    from aind_data_schema.components.identifiers import Person
    from aind_data_schema.core.data_description import DataDescription, Funding
    from aind_data_schema_models.modalities import Modality
    from aind_data_schema_models.organizations import Organization

    model = DataDescription(
        creation_time=datetime(2024, 6, 19, 10, 0, tzinfo=UTC),
        institution=Organization.AIND,
        funding_source=[Funding(funder=Organization.NIMH)],
        investigators=[Person(name="Ada Lovelace")],
        project_name="Ephys Platform",
        modalities=[Modality.ECEPHYS],
        data_level="raw",
        subject_id="123456",
    )
    return model.model_dump_json(indent=3).encode()


def test_a_users_data_description_is_uploaded_byte_for_byte(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    given = _valid_description()
    assert b'"creation_time": "2024-06-19T10:00:00Z"' in given
    assert schema_problems("data_description.json", given) == []
    (session.folder("metadata") / "data_description.json").write_bytes(given)
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("register_data_asset")
    assert (job.staging / "data_description.json").read_bytes() == given
    uploaded = Path(open_store(job.destination).local_root or "") / "data_description.json"
    assert uploaded.read_bytes() == given
    # what neuroferry adds goes to the catalog, not into the user's file
    document = catalog.find({"name": ASSET})[0]
    assert document["data_description"] == json.loads(given)
    assert document["upload_job"]["platform"]["abbreviation"] == "ecephys"


def test_a_missing_project_fact_stops_the_job_before_anything_moves(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    set_project_facts(catalog.engine, "Ephys Platform", {"investigators": None})
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("gather_preliminary_metadata")
    assert not (job.staging / "data_description.json").exists()
    with pytest.raises(TaskFailed) as info:
        job.run("check_metadata_files")
    message = str(info.value)
    assert "data_description.json: investigators: missing" in message
    assert "ferry projects set" in message and "metadata_dir" in message
    assert "/projects page" in message
    assert (
        not Path(open_store(job.destination, create=True).local_root or "")
        .joinpath("data_description.json")
        .exists()
    )


def test_a_project_without_a_record_names_where_to_add_it(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(session.spec(project_name="Unrecorded"))
    job.run_until("gather_preliminary_metadata")
    with pytest.raises(TaskFailed) as info:
        job.run("check_metadata_files")
    message = str(info.value)
    assert "institution: missing" in message
    assert "project 'Unrecorded' has no record" in message and "ferry projects add" in message


def test_subject_and_procedures_come_from_the_catalog(
    session: Session, harness: MakeHarness, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("subject.json", "procedures.json"):
        (session.folder("metadata") / name).unlink()
    older = {"subject_id": "123456", "sex": "Male"}
    catalog.upsert(
        {
            "name": "earlier_asset",
            "data_description": {"creation_time": "2024-05-01T10:00:00Z"},
            "subject": SUBJECT,
            "procedures": PROCEDURES,
        },
        None,
    )
    catalog.upsert(
        {"name": "older", "data_description": {"creation_time": "2023-01-01"}, "subject": older},
        None,
    )
    catalog.upsert({"name": "someone else", "subject": {"subject_id": "999"}}, None)
    spec = session.spec()
    spec["tasks"]["gather_preliminary_metadata"]["job_settings"]["session_settings"] = {
        "job_settings": {"job_settings_name": "Bergamo"}
    }
    job = harness(spec)
    job.catalog = catalog
    assert any("session_settings ignored" in note for note in job.summary["notes"])
    job.run_until("create_staging_folder")
    with caplog.at_level("INFO"):
        result = job.run("gather_preliminary_metadata")
    assert result["from_catalog"] == {
        "subject.json": "earlier_asset",
        "procedures.json": "earlier_asset",
    }
    assert result["ignored"] == ["session_settings"]
    assert "job_settings session_settings ignored" in caplog.text
    assert json.loads((job.staging / "subject.json").read_text()) == SUBJECT
    assert json.loads((job.staging / "procedures.json").read_text()) == PROCEDURES


def test_without_a_metadata_folder_only_the_data_description(
    session: Session, harness: MakeHarness
) -> None:
    spec = session.spec()
    del spec["tasks"]["gather_preliminary_metadata"]
    job = harness(spec)
    job.run_until("check_metadata_files")
    assert set(tree(job.staging)) == {"data_description.json"}
    assert job.results["check_metadata_files"] == {"files": ["data_description.json"]}


def test_invalid_metadata_names_the_file_line_and_column(
    session: Session, harness: MakeHarness
) -> None:
    (session.folder("metadata") / "procedures.json").write_text('{\n  "subject_id": 1,\n  oops\n}')
    (session.folder("metadata") / "rig.json").write_text("[1, 2]")
    job = harness(session.spec())
    job.run_until("gather_preliminary_metadata")
    with pytest.raises(TaskFailed) as info:
        job.run("check_metadata_files")
    message = str(info.value)
    where = session.folder("metadata") / "procedures.json"
    assert f"{where}: invalid JSON at line 3 column 3: Expecting property name" in message
    assert f"{session.folder('metadata') / 'rig.json'}: holds a JSON list, not an object" in message


def test_a_metadata_file_over_the_limit_is_refused_unread(
    session: Session, harness: MakeHarness
) -> None:
    from neuroferry.pipelines.upload._tasks import MAX_METADATA_BYTES

    big = session.folder("metadata") / "zz_big.json"
    with big.open("wb") as f:  # sparse: no disk space, but larger than the limit
        f.truncate(MAX_METADATA_BYTES + 1)
    job = harness(session.spec())
    job.run_until("create_staging_folder")
    with pytest.raises(TaskFailed, match=r"metadata_dir: .*zz_big\.json has more than 67108864"):
        job.run("gather_preliminary_metadata")
    assert not (job.staging / "zz_big.json").exists()


def test_missing_data_description_fails_the_check(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    job.run_until("create_staging_folder")
    with pytest.raises(TaskFailed, match=r"data_description\.json is missing"):
        job.call("check_metadata_files")


# -- derivatives, transformations, processing --------------------------------------------


def test_derivatives_are_noted_for_the_upload(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    assert job.call("copy_derivatives_folder") == {
        "input_source": str(session.folder("derivatives")),
        "files": 1,
        "bytes": len(session.files["derivatives"]["sorting/units.csv"]),
    }
    spec = session.spec()
    del spec["derivatives_dir"]
    assert harness(spec).run("copy_derivatives_folder") is None  # skipped: no folder


def test_transformation_settings_are_the_items_of_compress_data(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(session.spec())
    settings = job.call("modality_transformation_settings")
    assert list(settings) == ["ecephys", "behavior", "behavior-videos"]
    assert settings["behavior"]["job_settings"] == {
        "input_source": str(session.folder("behavior")),
        "transformation": "copy",
    }


def test_copy_and_ome_zarr_upload_the_folder_as_it_is(
    session: Session, harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    spec = session.spec()
    spec["tasks"]["modality_transformation_settings"]["behavior-videos"]["job_settings"][
        "transformation"
    ] = "ome-zarr"
    job = harness(spec)
    job.run_until("modality_transformation_settings")
    with caplog.at_level("INFO"):
        results = job.run("compress_data")
    assert results["ecephys"] == {
        "modality": "ecephys",
        "transformation": "copy",
        "output_location": str(session.folder("ecephys")),
        "processing": None,
    }
    assert results["behavior-videos"]["transformation"] == "ome-zarr"
    assert results["behavior-videos"]["output_location"] == str(session.folder("behavior-videos"))
    assert "OME-Zarr conversion is not done by upload jobs yet" in caplog.text


def test_a_skipped_transformation_still_uploads_the_folder(
    session: Session, harness: MakeHarness
) -> None:
    spec = session.spec()
    spec["tasks"]["modality_transformation_settings"]["behavior"]["skip_task"] = True
    job = harness(spec)
    results = job.run_until("upload_data_to_s3")
    assert results["compress_data"]["behavior"] is None
    assert results["upload_data_to_s3"]["parts"]["behavior"]["files_copied"] == 1


def test_a_users_processing_file_is_uploaded_as_it_is(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    given = b'{"processing_pipeline": {"data_processes": []}, "notes": "rig"}'
    (session.folder("metadata") / "processing.json").write_bytes(given)
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("compress_data")
    step = {
        "name": "Compression",
        "code_url": "https://example.org/compress",
        "code_version": "1.0",
        "parameters": {"level": 3},
        "start_date_time": "2024-06-19T12:00:00+00:00",
        "end_date_time": "2024-06-19T12:05:00+00:00",
    }
    job.results["compress_data"]["ecephys"]["processing"] = step
    result = job.run("gather_final_metadata")
    assert result["file"] is None
    assert (job.staging / "processing.json").read_bytes() == given
    for task in ("copy_derivatives_folder", "upload_data_to_s3", "register_data_asset"):
        job.run(task)
    [process] = catalog.find({"name": ASSET})[0]["upload_job"]["data_processes"]
    assert process["code"]["version"] == "1.0" and process["code"]["parameters"] == {"level": 3}


def test_final_metadata_lists_a_data_process_per_transformation(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(session.spec())
    job.run_until("compress_data")
    step = {
        "name": "Compression",
        "code_url": "https://example.org/compress",
        "code_version": "1.0",
        "parameters": {"level": 3},
        "start_date_time": "2024-06-19T12:00:00+00:00",
        "end_date_time": "2024-06-19T12:05:00+00:00",
    }
    job.results["compress_data"]["ecephys"]["processing"] = step
    job.results["compress_data"]["behavior"]["processing"] = {**step, "name": "tidy"}
    result = job.run("gather_final_metadata")
    written = (job.staging / "processing.json").read_bytes()
    assert schema_problems("processing.json", written) == []
    processes = json.loads(written)["data_processes"]
    assert [(p["process_type"], p["name"]) for p in processes] == [
        ("Compression", "Compression"),
        ("Other", "tidy"),
    ]
    assert processes[0]["start_date_time"].startswith("2024-06-19T12:00:00")
    assert len(result["data_processes"]) == 2
    job.run("gather_final_metadata")  # again, as after a crash: the same file
    assert (job.staging / "processing.json").read_bytes() == written


# -- clean-up ---------------------------------------------------------------------------------


def test_remove_staging_folder_again_and_again(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    job.run_until("create_staging_folder")
    (job.staging / "a.json").write_text("{}")
    assert job.call("remove_staging_folder") == {"staging": str(job.staging), "removed": True}
    assert not job.staging.exists()
    assert job.call("remove_staging_folder")["removed"] is False


def _with_removal(session: Session) -> dict[str, Any]:
    spec = session.spec()
    spec["tasks"]["remove_source_folders"] = {"skip_task": False}
    return spec


def test_source_folders_removed_after_the_upload(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    job = harness(_with_removal(session))
    job.catalog = catalog
    results = job.run_until("remove_source_folders")
    assert sorted(results["remove_source_folders"]["removed"]) == sorted(
        str(session.folder(n)) for n in ("ecephys", "behavior", "behavior-videos", "derivatives")
    )
    assert sorted(p.name for p in session.root.iterdir()) == ["metadata"]
    # the data is at the destination
    uploaded = tree(Path(open_store(job.destination).local_root or ""))
    assert uploaded["ecephys/settings.xml"] == session.files["ecephys"]["settings.xml"]
    # again, as after a crash: nothing left to remove, nothing fails
    assert len(job.run("remove_source_folders")["removed"]) == 4


def test_a_source_folder_that_changed_since_the_upload_is_kept(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    job = harness(_with_removal(session))
    job.catalog = catalog
    job.run_until("remove_staging_folder")
    (session.folder("behavior") / "late.csv").write_text("written after the upload\n")
    with pytest.raises(TaskFailed) as info:
        job.run("remove_source_folders")
    message = str(info.value)
    assert f"behavior: {session.folder('behavior')} holds 2 files" in message
    assert "but 1 file (" in message and "it is kept" in message
    assert (session.folder("behavior") / "late.csv").exists()
    assert not session.folder("ecephys").exists()  # the others were removed


def test_nothing_is_removed_when_the_upload_did_not_run(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(_with_removal(session))
    assert job.call("remove_source_folders") == {"removed": []}
    assert tree(session.folder("ecephys")) == session.files["ecephys"]


# -- e-mail --------------------------------------------------------------------------------


def test_start_and_end_emails(
    session: Session, harness: MakeHarness, smtp_server: SMTPServer
) -> None:
    job = harness(
        session.spec(email_notification_types=["begin", "end"]),
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )
    assert job.run("send_job_start_email") == {"sent": True}
    job.results["upload_data_to_s3"] = {"files_copied": 11, "bytes_copied": 1234}
    assert job.call("send_job_end_email") == {"sent": True}
    assert [m["To"] for m in smtp_server.messages] == ["scientist@example.org"] * 2
    body = smtp_server.messages[1].get_content()
    assert ASSET in body and job.destination in body


def test_no_email_when_not_asked_for(
    session: Session, harness: MakeHarness, smtp_server: SMTPServer
) -> None:
    job = harness(
        session.spec(email_notification_types=["fail"]),
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )
    assert job.call("send_job_start_email") == {"sent": False}
    assert smtp_server.messages == []


# -- removing a folder swapped since it was checked ----------------------------------------


@pytest.mark.parametrize("swapped", ["folder", "parent"])
def test_a_folder_is_removed_only_where_it_was_checked(tmp_path: Path, swapped: str) -> None:
    from neuroferry.errors import UnsafePath
    from neuroferry.pipelines.upload._tasks import _remove_checked

    other = tmp_path / "other" / "race" / "ecephys"
    other.mkdir(parents=True)
    (other / "keep.dat").write_bytes(b"another user's data")
    real = (tmp_path / "granted" / "race" / "ecephys").resolve()
    real.mkdir(parents=True)
    moved = real if swapped == "folder" else real.parent
    moved.rename(moved.with_name(moved.name + ".real"))  # after the check, before the removal
    moved.symlink_to(other if swapped == "folder" else other.parent)
    with pytest.raises((UnsafePath, OSError), match=r"symbolic link|changed since it was checked"):
        _remove_checked(real)
    assert (other / "keep.dat").read_bytes() == b"another user's data"
    real = (tmp_path / "granted" / "kept").resolve()
    real.mkdir()
    _remove_checked(real)
    assert not real.exists()
