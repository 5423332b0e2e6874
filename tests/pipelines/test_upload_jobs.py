"""Upload jobs end to end through the engine: a generated session folder into a local
store and into the real S3 server, with metadata, the catalog document and e-mails."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _rig import running_rig
from _session import ASSET, PROCEDURES, SUBJECT, make_session, tree, upload_spec
from neuroferry.engine import cancel_job, read_log, retry_job


def tasks_result(rig: Any, job_id: int, name: str) -> Any:
    return rig.tasks(job_id)[name]["result"]


@pytest.mark.parametrize("where", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_session_is_uploaded_registered_and_announced(
    where: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: Any,
    read_store: Callable[[str], dict[str, bytes]],
) -> None:
    session = make_session(tmp_path / "session")
    if where == "s3":
        server = request.getfixturevalue("s3_server")
        request.getfixturevalue("s3_env")
        dest = f"s3://{server.make_bucket()}/raw"
    else:
        dest = (tmp_path / "lake").as_uri()
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        destinations={"lab": dest},
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    ) as rig:
        rig.start()
        job_id = rig.submit("upload", upload_spec(session, "lab"))
        job = rig.wait(job_id, timeout=120)
        assert job["state"] == "succeeded", rig.states(job_id)
        assert job["name"] == ASSET

        objects = read_store(f"{dest}/{ASSET}")
        digests = {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
        for modality in ("ecephys", "behavior", "behavior-videos"):
            for rel, sha in tree(session / modality).items():
                assert digests[f"{modality}/{rel}"] == sha
        assert (
            digests["derivatives/spikes/sorted.npy"]
            == tree(session / "derivatives")["spikes/sorted.npy"]
        )
        assert json.loads(objects["subject.json"]) == SUBJECT
        assert json.loads(objects["procedures.json"]) == PROCEDURES
        assert "session.json" in objects
        description = json.loads(objects["data_description.json"])
        assert description["name"] == ASSET
        assert description["subject_id"] == "700001"
        assert description["project_name"] == "Ephys Platform"
        assert {m["abbreviation"] for m in description["modalities"]} == {
            "ecephys",
            "behavior",
            "behavior-videos",
        }
        processing = json.loads(objects["processing.json"])
        assert processing  # each compress step's record; its shape is checked in the unit tests

        [doc] = rig.catalog.find({"name": ASSET})
        assert doc["location"] == f"{dest}/{ASSET}"
        assert doc["_id"] == tasks_result(rig, job_id, "register_data_asset")["id"]

        tasks = rig.tasks(job_id)
        assert tasks["remove_source_folders"]["state"] == "skipped"
        assert tasks["run_analyses"]["state"] == "skipped"
        assert {tasks[f"compress_data[{m}]"]["state"] for m in ("ecephys", "behavior")} == {
            "succeeded"
        }
        upload = tasks["upload_data_to_s3"]
        assert upload["result"]["bytes_copied"] >= 9 * 1024 * 1024
        log = read_log(rig.engine, rig.log_store, job_id, "upload_data_to_s3")
        assert "upload_data_to_s3 of upload job" in log

        subjects = sorted(str(m["Subject"]).strip() for m in smtp_server.messages)
        assert len(subjects) == 2, subjects
        assert all(ASSET in s for s in subjects)
        assert [m["To"] for m in smtp_server.messages] == ["scientist@example.org"] * 2

        # the same asset again: refused early, before anything moves
        again = rig.submit("upload", upload_spec(session, "lab"))
        failed = rig.wait(again)
        assert failed["state"] == "failed"
        assert failed["error"].startswith("check_s3_folder_exists failed:")
        assert ASSET in failed["error"] and "force_cloud_sync" in failed["error"]
        assert rig.tasks(again)["upload_data_to_s3"]["state"] == "pending"


def test_bad_input_fails_early_naming_what_and_where(tmp_path: Path) -> None:
    session = make_session(tmp_path / "session")
    (session / "metadata" / "subject.json").write_text('{"subject_id": "700001",\n  oops}')
    with running_rig(f"sqlite:///{tmp_path / 'ferry.db'}") as rig:
        rig.start()
        bad_json = rig.wait(rig.submit("upload", upload_spec(session)))
        assert bad_json["state"] == "failed"
        assert "subject.json" in bad_json["error"] and "line 2" in bad_json["error"]
        assert rig.tasks(bad_json["id"])["upload_data_to_s3"]["state"] == "pending"

        (session / "metadata" / "subject.json").write_text(json.dumps(SUBJECT))
        spec = upload_spec(session)
        spec["modalities"][1]["input_source"] = str(session / "nowhere")
        missing = rig.wait(rig.submit("upload", spec))
        assert missing["state"] == "failed"
        assert "behavior" in missing["error"] and str(session / "nowhere") in missing["error"]


@pytest.mark.s3
def test_cancel_mid_upload_reports_the_partial_upload_and_retry_finishes(
    tmp_path: Path, s3_server: Any, s3_env: str, smtp_server: Any
) -> None:
    session = make_session(tmp_path / "session")
    chunks = session / "ecephys" / "chunks"
    chunks.mkdir()
    for i in range(1000):  # small files: many requests, so the upload takes a few seconds
        (chunks / f"{i:04d}.bin").write_bytes(os.urandom(8 * 1024))
    stored = s3_server.root / s3_env.removeprefix("s3://") / "raw" / ASSET / "ecephys" / "chunks"
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        destinations={"lab": f"{s3_env}/raw"},
        sync_concurrency=1,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    ) as rig:
        rig.start()
        job_id = rig.submit("upload", upload_spec(session, "lab"))
        deadline = time.monotonic() + 60
        while not (stored.exists() and len(list(stored.iterdir())) >= 10):
            assert time.monotonic() < deadline, rig.states(job_id)
            time.sleep(0.02)
        cancel_job(rig.engine, rig.log_store, job_id)
        job = rig.wait(job_id)
        assert job["state"] == "cancelled", rig.states(job_id)
        tasks = rig.tasks(job_id)
        upload = tasks["upload_data_to_s3"]
        assert upload["state"] == "cancelled"
        partial = upload["result"]
        assert partial["interrupted"]["part"] == "ecephys"
        assert 10 <= partial["interrupted"]["files_copied"] < 1000
        assert tasks["register_data_asset"]["state"] == "cancelled"
        assert rig.catalog.find({"name": ASSET}) == []

        retry_job(rig.engine, rig.log_store, job_id)
        rig.wake()
        assert rig.wait(job_id, timeout=120)["state"] == "succeeded", rig.states(job_id)
        upload = rig.tasks(job_id)["upload_data_to_s3"]
        assert upload["attempt"] == 2
        assert upload["result"]["files_skipped"] >= partial["interrupted"]["files_copied"]
        assert len(list(stored.iterdir())) == 1000
        assert rig.catalog.find({"name": ASSET}) != []


def test_a_failed_job_sends_the_fail_e_mail(tmp_path: Path, smtp_server: Any) -> None:
    session = make_session(tmp_path / "session")
    (session / "metadata" / "procedures.json").write_text("[1, 2")
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}", smtp_host=smtp_server.host, smtp_port=smtp_server.port
    ) as rig:
        rig.start()
        job = rig.wait(rig.submit("upload", upload_spec(session)))
        assert job["state"] == "failed"
        deadline = time.monotonic() + 10
        while len(smtp_server.messages) < 2:  # begin, then fail
            assert time.monotonic() < deadline, [m["Subject"] for m in smtp_server.messages]
            time.sleep(0.05)
        fail = smtp_server.messages[-1]
        assert "failed" in str(fail["Subject"])
        assert "procedures.json" in fail.get_content()
