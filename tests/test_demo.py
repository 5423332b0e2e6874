"""``ferry serve --demo``: the generated session, its job files, and the job running."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from _rig import running_rig
from conftest import free_port
from neuroferry.config import get_settings
from neuroferry.demo import CSV_COLUMNS, PROJECT, metadata_files, seed_demo
from neuroferry.engine import get_kind
from neuroferry.pipelines.upload import UploadJobSpec, validate_upload_job
from neuroferry.services import Services

ASSET = "ecephys_demo-001_2025-01-15_10-30-00"


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _job_from_csv(path: Path) -> dict[str, object]:
    """The spreadsheet row as an upload job, the way the original service reads one."""
    with path.open(newline="") as f:
        [row] = list(csv.DictReader(f))
    modalities = [
        {"abbreviation": row[f"modality{i}"], "input_source": row[f"modality{i}.input_source"]}
        for i in range(2)
    ]
    plain = {k: v for k, v in row.items() if not k.startswith("modality")}
    return {**plain, "modalities": modalities}


SUBJECT = json.loads(metadata_files()["metadata/subject.json"])


def test_seed_demo_is_idempotent_and_its_job_validates(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=(tmp_path / "lake").as_uri())
    services = Services.start(settings, orchestrate=False)
    try:
        first = seed_demo(services, settings)
        before = _snapshot(first.folder)
        second = seed_demo(services, settings)
        assert second == first
        assert _snapshot(first.folder) == before  # nothing written again

        assert first.folder == settings.home / "demo"
        assert first.session.parent == first.folder
        assert first.session.name.startswith("session_")
        files = set(before)
        session = first.session.name
        for rel in (
            "ecephys/settings.xml",
            "ecephys/probe_A/continuous.dat",
            "behavior/trials.csv",
            "metadata/subject.json",
            "metadata/procedures.json",
            "metadata/data_description.json",
        ):
            assert f"{session}/{rel}" in files
        # every metadata file the demo writes validates with aind-data-schema
        from aind_data_schema.core.data_description import DataDescription
        from aind_data_schema.core.procedures import Procedures
        from aind_data_schema.core.subject import Subject

        for name, model in (
            ("subject", Subject),
            ("procedures", Procedures),
            ("data_description", DataDescription),
        ):
            model.model_validate_json((first.session / f"metadata/{name}.json").read_bytes())
        assert {"demo_job.json", "demo_jobs.csv"} <= files
        assert all(len(data) < 1024 * 1024 for data, _ in before.values())
        assert json.loads((first.session / "metadata/subject.json").read_text()) == SUBJECT

        request = json.loads(first.job_file.read_text())
        assert request == {"upload_jobs": [first.job]}
        # a valid body for the original service's own model
        core = pytest.importorskip("aind_data_transfer_service.models.core")
        core.SubmitJobRequestV2.model_validate(request)
        spec = UploadJobSpec.model_validate(first.job)
        assert spec.project_name == PROJECT and spec.s3_bucket == "default"
        assert [m.abbreviation for m in spec.modalities] == ["ecephys", "behavior"]
        assert spec.metadata_folder() == str(first.session / "metadata")
        assert spec.asset_name == first.asset == ASSET

        with first.csv_file.open(newline="") as f:
            assert tuple(next(csv.reader(f))) == CSV_COLUMNS
        from_csv = validate_upload_job(_job_from_csv(first.csv_file))
        # the same job: the spreadsheet gives the folders in columns, the request in tasks
        assert from_csv.asset_name == spec.asset_name
        assert from_csv.input_sources() == spec.input_sources()
        assert from_csv.metadata_folder() == spec.metadata_folder()

        from neuroferry.engine import job_type_history
        from neuroferry.pipelines.upload import list_projects

        # an open project list stays open (the demo project is allowed as it is)
        assert list_projects(services.engine) == []
        assert first.project_seeded
        if get_kind("upload").check_preset is not None:
            assert first.job_type_seeded and first.notes == ()
            assert len(job_type_history(services.engine, "upload", "default")) == 1
        text = first.instructions("http://127.0.0.1:8000")
        assert f"ferry jobs submit {first.csv_file} --wait" in text
        assert "ferry jobs list" in text and "http://127.0.0.1:8000/docs" in text
    finally:
        services.close()


def test_the_demo_job_uploads_to_the_default_store(tmp_path, read_store):
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    with running_rig(url) as rig:
        services = Services.start(rig.settings, orchestrate=False)
        try:
            info = seed_demo(services, rig.settings)
        finally:
            services.close()
        rig.start()
        try:  # the way `ferry jobs submit demo_jobs.csv` does it: sheet, preset, checks
            from neuroferry.pipelines.upload import parse_job_sheet, submit_upload_jobs
        except ImportError:  # without those services, the job as it is
            job_id = rig.submit("upload", info.job)
        else:
            sheet = parse_job_sheet(info.csv_file.read_bytes(), info.csv_file.name)
            assert sheet.ok, sheet.errors
            request = {"upload_jobs": [sheet.jobs[0].job]}
            [(job_id, _)] = submit_upload_jobs(rig.engine, rig.settings, request, None)
            rig.wake()
        job = rig.wait(job_id, timeout=120)
        assert job["state"] == "succeeded", rig.states(job_id)
        assert job["name"] == ASSET
        objects = read_store(f"{rig.settings.store_url}/{ASSET}")
        for rel in ("ecephys/probe_A/continuous.dat", "behavior/trials.csv"):
            assert objects[rel] == (info.session / rel).read_bytes()
        assert json.loads(objects["subject.json"]) == SUBJECT
        [doc] = rig.catalog.find({"name": ASSET})
        assert doc["subject"] == SUBJECT and doc["data_description"]["project_name"] == PROJECT


def test_ferry_serve_demo_says_what_to_do_next(tmp_path):
    home, port = tmp_path / "home", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "AWS_"))} | {
        "FERRY_HOME": str(home),
        "FERRY_DASK_PROCESSES": "false",
        "FERRY_DASK_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "neuroferry", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/health", timeout=2).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"ferry serve --demo did not come up:\n{log.read_text()}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    output = log.read_text()
    assert "created the first user, 'admin'" in output
    assert f"ferry jobs submit {home / 'demo' / 'demo_jobs.csv'} --wait" in output
    assert f"http://127.0.0.1:{port}/" in output
    assert f"export FERRY_URL=http://127.0.0.1:{port}" in output  # not the default port
    assert (home / "demo" / "demo_job.json").is_file()
    assert (home / "token.json").is_file()
