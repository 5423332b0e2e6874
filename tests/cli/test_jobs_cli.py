"""`ferry jobs` against a real `ferry serve`: submit a JSON request and a spreadsheet and
wait for them, list, show, logs, cancel and retry; bad files and an absent service."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _service import Service, running_service
from _session import make_session, upload_spec
from conftest import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("jobs-cli-home")
    with running_service(home, FERRY_DASK_WORKERS="1", FERRY_ORCHESTRATOR_POLL="0.1") as svc:
        yield svc


def ferry(
    service: Service, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**service.env, "FERRY_URL": service.url, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_submit_json_wait_list_show_logs(service: Service, tmp_path: Path) -> None:
    session = make_session(tmp_path / "session")
    request = {"user_email": "a@example.org", "upload_jobs": [upload_spec(session)]}
    (tmp_path / "jobs.json").write_text(json.dumps(request))
    checked = ferry(service, "jobs", "validate", str(tmp_path / "jobs.json"))
    assert checked.returncode == 0, checked.stderr
    assert "ecephys_700001_2025-04-01_14-30-15" in checked.stdout

    done = ferry(service, "jobs", "submit", str(tmp_path / "jobs.json"), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted job" in done.stdout and ": succeeded" in done.stdout
    assert "upload_data_to_s3 succeeded" in done.stderr  # one line per task change
    job_id = done.stdout.split("submitted job ", 1)[1].split(":")[0]

    listed = ferry(service, "jobs", "list", "--format", "json", "--state", "succeeded")
    page = json.loads(listed.stdout)
    assert [j["id"] for j in page["jobs"]] == [int(job_id)]
    shown = json.loads(ferry(service, "jobs", "show", job_id, "--format", "json").stdout)
    assert shown["state"] == "succeeded" and len(shown["tasks"]) >= 16
    table = ferry(service, "jobs", "show", job_id, "--format", "table")
    assert "compress_data [ecephys]" in table.stdout

    log = ferry(service, "jobs", "logs", job_id, "upload_data_to_s3")
    assert log.returncode == 0 and "upload_data_to_s3 of upload job" in log.stdout
    followed = ferry(service, "jobs", "logs", job_id, "compress_data", "--instance", "1", "-f")
    assert "compress_data [behavior]" in followed.stdout
    every = ferry(service, "jobs", "logs", job_id)
    # no SMTP server here: the e-mail task ends skipped, its log says why
    assert "== send_job_start_email (attempt 1, skipped) ==" in every.stdout
    assert "no SMTP server is configured (FERRY_SMTP_HOST)" in every.stdout

    again = ferry(service, "jobs", "retry", job_id)
    assert again.returncode == 2 and "only failed or cancelled jobs" in again.stderr
    assert "Traceback" not in again.stderr


def test_submit_a_spreadsheet(service: Service, tmp_path: Path) -> None:
    session = make_session(tmp_path / "session")
    (tmp_path / "jobs.csv").write_text(
        "job_type,project_name,platform,subject_id,acq_datetime,modality0,"
        "modality0.input_source,modality1,modality1.input_source,metadata_dir\n"
        f"default,Ephys Platform,ecephys,700123,2025-04-01T10:00:00,ecephys,"
        f"{session / 'ecephys'},behavior,{session / 'behavior'},{session / 'metadata'}\n"
    )
    done = ferry(service, "jobs", "submit", str(tmp_path / "jobs.csv"), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ecephys_700123_2025-04-01_10-00-00: succeeded" in done.stdout


def test_bad_files_are_exit_2_with_every_problem(service: Service, tmp_path: Path) -> None:
    session = make_session(tmp_path / "session")
    bad: dict[str, Any] = upload_spec(session, subject_id="no/slashes")
    (tmp_path / "bad.json").write_text(json.dumps({"upload_jobs": [bad]}))
    result = ferry(service, "jobs", "submit", str(tmp_path / "bad.json"))
    assert result.returncode == 2
    assert "job 1: subject_id:" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "broken.json").write_text("{oops")
    result = ferry(service, "jobs", "submit", str(tmp_path / "broken.json"))
    assert result.returncode == 2 and "is not valid JSON" in result.stderr
    result = ferry(service, "jobs", "submit", str(tmp_path / "jobs.pdf"))
    assert result.returncode == 2 and ".csv, .xlsx or .json" in result.stderr
    missing = ferry(service, "jobs", "show", "99999")
    assert missing.returncode == 3 and "job 99999 does not exist" in missing.stderr


def test_no_service_is_exit_3(service: Service) -> None:
    env = {**service.env, "FERRY_URL": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run(
        [sys.executable, "-m", "neuroferry", "jobs", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3 and "cannot reach the neuroferry service" in result.stderr


def test_the_template_downloads_and_its_examples_parse(service: Service, tmp_path: Path) -> None:
    from neuroferry.pipelines.upload import parse_job_sheet

    target = tmp_path / "t.xlsx"
    result = ferry(service, "template", str(target))
    assert result.returncode == 0, result.stderr
    sheet = parse_job_sheet(target.read_bytes(), target.name)
    assert sheet.jobs and not sheet.errors
    assert ferry(service, "template", str(tmp_path / "no" / "such" / "t.xlsx")).returncode == 2
