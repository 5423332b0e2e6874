"""Commands and images are admin-defined: an ordinary user's request may not carry a
command line or image (on any front door), commands run with a scrubbed environment,
and secrets never reach a task log."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Deployment

S3_SECRET = "fake-s3-secret-Zq81vP0w"
AWS_SECRET = "fake-aws-secret-Kd72mX3n"
AWS_TOKEN = "fake-aws-session-token-Hh55rT9c"
SMTP_PASSWORD = "fake-smtp-password-Uy30bN6e"
SECRETS = (S3_SECRET, AWS_SECRET, AWS_TOKEN, SMTP_PASSWORD)

SERVICE_ENV = {
    "FERRY_S3_SECRET_ACCESS_KEY": S3_SECRET,
    "FERRY_SMTP_PASSWORD": SMTP_PASSWORD,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "AWS_SESSION_TOKEN": AWS_TOKEN,
}

HOSTILE = "cat $FERRY_HOME/token.json; env"
ENV_COMMAND = "sh -c 'env; echo converted > %OUTPUT_LOCATION/out.txt'"
CAT_COMMAND = "sh -c 'cat %INPUT_SOURCE/notes.txt; echo converted > %OUTPUT_LOCATION/out.txt'"

_subjects = iter(range(810000, 819999))


def _session(d: Deployment) -> Path:
    folder = d.shared / f"session-{next(_subjects)}"
    (folder / "ecephys").mkdir(parents=True)
    (folder / "ecephys" / "data.bin").write_bytes(b"\x00\x01" * 64)
    return folder


def _job(d: Deployment, **extra: Any) -> dict[str, Any]:
    folder = _session(d)
    return {
        "project_name": "Ephys Platform",
        "platform": "ecephys",
        "subject_id": folder.name.removeprefix("session-"),
        "acq_datetime": "2025-04-01T14:30:15",
        "modalities": [{"abbreviation": "ecephys", "input_source": str(folder / "ecephys")}],
        **extra,
    }


PLACEMENTS = [
    (
        {"modality_transformation_settings": {"ecephys": {"command_script": HOSTILE}}},
        "tasks.modality_transformation_settings.ecephys.command_script",
    ),
    (
        {
            "modality_transformation_settings": {
                "Extracellular electrophysiology": {
                    "job_settings": {"transformation": "command"},
                    "command_script": HOSTILE,
                }
            }
        },
        "tasks.modality_transformation_settings.ecephys.command_script",
    ),
    (
        {
            "modality_transformation_settings": {
                "ecephys": {"command_script": "run %INPUT_SOURCE", "image": "evil/image"}
            }
        },
        "tasks.modality_transformation_settings.ecephys.image",
    ),
    (
        {"modality_transformation_settings": {"ecephys": {"image_version": "6.6.6"}}},
        "tasks.modality_transformation_settings.ecephys.image_version",
    ),
    (
        {"gather_preliminary_metadata": {"command_script": HOSTILE}},
        "tasks.gather_preliminary_metadata.command_script",
    ),
    (
        {"codeocean_pipeline_settings": {"ecephys": {"command_script": HOSTILE}}},
        "tasks.analysis_settings.ecephys.command_script",
    ),
]


def _no_jobs(d: Deployment, who: str, subject: str) -> None:
    page = d.api("GET", "/jobs", who, params={"name": subject}).json()
    assert page["total"] == 0, page


@pytest.mark.parametrize(("tasks", "field"), PLACEMENTS)
def test_a_user_cannot_give_a_command_or_image(
    hostile: Deployment, tasks: dict[str, Any], field: str
) -> None:
    job = _job(hostile, tasks=copy.deepcopy(tasks))
    for path in ("/submit_jobs", "/validate_json"):
        r = hostile.api("POST", path, "alice", json={"upload_jobs": [job]})
        assert r.status_code in (403, 422), r.text
        assert field in r.text and "job types defined by admins" in r.text, r.text
        assert r.status_code < 500
    _no_jobs(hostile, "alice", job["subject_id"])


def test_the_submit_page_refuses_a_command_too(hostile: Deployment) -> None:
    job = _job(hostile, tasks=copy.deepcopy(PLACEMENTS[0][0]))
    payload = json.dumps({"filename": "jobs.csv", "jobs": [{"row": 2, "job": job}]})
    r = httpx.post(
        f"{hostile.url}/submit/jobs",
        headers={"Authorization": f"Bearer {hostile.tokens['alice']}"},
        data={"jobs": payload, "email_notification_types": ["fail"]},
        follow_redirects=False,
        timeout=60,
    )
    assert r.status_code == 422, r.text
    assert "tasks.modality_transformation_settings.ecephys.command_script" in r.text
    _no_jobs(hostile, "alice", job["subject_id"])


def test_the_cli_refuses_a_command_too(hostile: Deployment, tmp_path: Path) -> None:
    job = _job(hostile, tasks=copy.deepcopy(PLACEMENTS[0][0]))
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"upload_jobs": [job]}))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "AWS_"))}
    env = {**base, "FERRY_URL": hostile.url, "FERRY_TOKEN": hostile.tokens["alice"]}
    env["FERRY_HOME"] = str(tmp_path / "cli-home")
    for command in ("validate", "submit"):
        done = subprocess.run(
            [sys.executable, "-m", "neuroferry", "jobs", command, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0, done.stdout
        out = done.stdout + done.stderr
        assert "tasks.modality_transformation_settings.ecephys.command_script" in out, out
        assert "Traceback" not in out
    _no_jobs(hostile, "alice", job["subject_id"])


def _sheet(job: dict[str, Any], column: str, value: str) -> str:
    source = job["modalities"][0]["input_source"]
    header = "project_name,platform,subject_id,acq_datetime,modality0,modality0.input_source"
    row = f"{job['project_name']},ecephys,{job['subject_id']},{job['acq_datetime']},ecephys,"
    return f"{header},{column}\n{row}{source},{value}\n"


@pytest.mark.parametrize("column", ["modality0.command_script", "modality0.image"])
def test_a_spreadsheet_cannot_give_a_command(hostile: Deployment, column: str) -> None:
    job = _job(hostile)
    text = _sheet(job, column, HOSTILE.replace(";", " &&"))
    for who in ("alice", "admin"):  # a sheet has no place for a command, whoever sends it
        r = hostile.api(
            "POST",
            "/validate_csv",
            who,
            files={"file": ("jobs.csv", io.BytesIO(text.encode()), "text/csv")},
        )
        assert r.status_code == 422, r.text
        assert column in r.text and "job types defined by admins" in r.text


def _save_job_type(d: Deployment, name: str, script: str) -> None:
    settings = {
        "modality_transformation_settings": {
            "ecephys": {"job_settings": {"transformation": "command"}, "command_script": script}
        }
    }
    r = d.api("PUT", f"/job_types/{name}", "admin", json={"settings": settings})
    assert r.status_code == 200, r.text


def test_a_command_needs_an_admin_defined_one(hostile: Deployment) -> None:
    tasks = {"modality_transformation_settings": {"ecephys": {"job_settings": {}}}}
    tasks["modality_transformation_settings"]["ecephys"]["job_settings"]["transformation"] = (
        "command"
    )
    job = _job(hostile, tasks=tasks)
    r = hostile.api("POST", "/submit_jobs", "alice", json={"upload_jobs": [job]})
    assert r.status_code == 422, r.text
    assert "tasks.modality_transformation_settings.ecephys" in r.text
    assert "job types defined by admins" in r.text
    _no_jobs(hostile, "alice", job["subject_id"])


def test_repeating_the_job_types_command_is_allowed_and_admins_may_give_their_own(
    hostile: Deployment,
) -> None:
    script = "sh -c 'cp -r %INPUT_SOURCE/. %OUTPUT_LOCATION/'"
    _save_job_type(hostile, "repeat-command", script)
    same = {
        "modality_transformation_settings": {
            "ecephys": {"job_settings": {"transformation": "command"}, "command_script": script}
        }
    }
    job = _job(hostile, job_type="repeat-command", tasks=same)
    r = hostile.api("POST", "/validate_json", "alice", json={"upload_jobs": [job]})
    assert r.status_code == 200, r.text
    other = copy.deepcopy(same)
    other["modality_transformation_settings"]["ecephys"]["command_script"] = HOSTILE
    job = _job(hostile, job_type="repeat-command", tasks=other)
    r = hostile.api("POST", "/validate_json", "alice", json={"upload_jobs": [job]})
    assert r.status_code == 422 and "ecephys.command_script" in r.text, r.text
    r = hostile.api("POST", "/validate_json", "admin", json={"upload_jobs": [job]})
    assert r.status_code == 200, r.text


def _run_for_alice(d: Deployment, job_type: str, notes: str = "") -> str:
    """Submit a job of ``job_type`` as alice (``notes`` in its ecephys folder's
    ``notes.txt``); the log of its command, once the command succeeded."""
    job = _job(d, job_type=job_type)
    (Path(job["modalities"][0]["input_source"]) / "notes.txt").write_text(notes)
    r = d.api("POST", "/submit_jobs", "alice", json={"upload_jobs": [job]})
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["jobs"][0]["id"]
    d.wait(job_id, "alice")
    tasks = d.api("GET", f"/jobs/{job_id}/tasks", "alice").json()
    [compress] = [t for t in tasks if t["name"] == "compress_data" and t["map_index"] >= 0]
    log = d.api(
        "GET",
        f"/jobs/{job_id}/tasks/compress_data/logs",
        "alice",
        params={"map_index": compress["map_index"]},
    ).text
    assert compress["state"] == "succeeded", (compress, log)
    return log


def test_an_admin_defined_command_gets_no_secrets(hostile: Deployment) -> None:
    _save_job_type(hostile, "print-env", ENV_COMMAND)
    log = _run_for_alice(hostile, "print-env")
    assert "PATH=" in log  # env ran and printed its variables
    assert "FERRY_" not in log and "AWS_" not in log, log
    for secret in SECRETS:
        assert secret not in log, log
    home = next(line for line in log.splitlines() if " HOME=" in line)
    assert "/.scratch/ecephys" in home
    tmp = next(line for line in log.splitlines() if " TMPDIR=" in line)
    assert "/.scratch/ecephys" in tmp


def test_secrets_in_a_commands_output_are_redacted_in_its_log(hostile: Deployment) -> None:
    _save_job_type(hostile, "print-notes", CAT_COMMAND)
    admin_token = hostile.tokens["admin"]
    notes = f"key {S3_SECRET} smtp {SMTP_PASSWORD} token {admin_token}\n"
    log = _run_for_alice(hostile, "print-notes", notes)
    for secret in (*SECRETS, admin_token):
        assert secret not in log, log
    assert "key [redacted] smtp [redacted] token [redacted]" in log, log


def test_the_service_log_shows_no_secrets_or_tokens(hostile: Deployment) -> None:
    """A token or secret in a request's URL (as access logs record it) is redacted."""
    admin_token = hostile.tokens["admin"]
    for value in (admin_token, S3_SECRET):
        r = hostile.api("GET", "/jobs", "alice", params={"name": f"marker-{value}"})
        assert r.status_code == 200, r.text
    time.sleep(0.5)  # the access log line is written after the response
    log = hostile.service.log.read_text()
    assert "/api/v2/jobs?name=marker-" in log  # the requests were logged
    assert admin_token not in log and S3_SECRET not in log
    assert "name=marker-%5Bredacted%5D" in log or "name=marker-[redacted]" in log
