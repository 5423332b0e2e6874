"""Bodies built with aind-data-transfer-service's own models get its envelope keys back
from ``validate_json``, ``validate_csv`` and ``submit_jobs`` (next to neuroferry's), and
its ``s3_bucket`` names reach the destinations of those names."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from _service import Service
from _session import make_session
from neuroferry import __version__
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine

core = pytest.importorskip("aind_data_transfer_service.models.core")
platforms = pytest.importorskip("aind_data_transfer_service.configs.platforms_v1")
modalities = pytest.importorskip("aind_data_schema_models.modalities")
Modality = modalities.Modality
Platform = platforms.Platform


class Api:
    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url, self.token, self.root = url, token, root

    def post(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(self.url + "/api/v2" + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A web-only service with the original's three destinations."""
    tmp = tmp_path_factory.mktemp("envelope")
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(
        FERRY_HOME=str(home),
        FERRY_SOURCE_ROOTS=json.dumps([str(tmp)]),
        FERRY_DESTINATIONS=json.dumps(
            {name: (tmp / "lakes" / name).as_uri() for name in ("default", "open", "private")}
        ),
    )
    service = Service(home, env, "--no-orchestrator")
    service.start()
    engine = make_engine(f"sqlite:///{home / 'ferry.db'}")
    token = create_token(engine, create_user(engine, "carol"))
    engine.dispose()
    try:
        yield Api(service.url, token, tmp)
    finally:
        service.stop()


def _job(session: Path, subject_id: str, **fields: Any) -> Any:
    tasks = {
        "modality_transformation_settings": {
            "ecephys": core.Task(job_settings={"input_source": str(session / "ecephys")}),
            "behavior": core.Task(job_settings={"input_source": str(session / "behavior")}),
        },
        "gather_preliminary_metadata": core.Task(
            job_settings={"metadata_dir": str(session / "metadata")}
        ),
        **fields.pop("tasks", {}),
    }
    return core.UploadJobConfigsV2(
        job_type="default",
        project_name="Ephys Platform",
        platform=Platform.ECEPHYS,
        modalities=[Modality.ECEPHYS, Modality.BEHAVIOR],
        subject_id=subject_id,
        acq_datetime=datetime(2025, 4, 1, 14, 30, 15),
        tasks=tasks,
        **fields,
    )


def _shapes(session: Path) -> dict[str, dict[str, Any]]:
    """Request bodies as the original's clients build them, by shape."""
    requests = {
        "one job": core.SubmitJobRequestV2(upload_jobs=[_job(session, "710001")]),
        "request-level e-mail, open bucket": core.SubmitJobRequestV2(
            user_email="scientist@example.org",
            email_notification_types=["begin", "fail"],
            upload_jobs=[_job(session, "710002", s3_bucket="open")],
        ),
        "two jobs, private bucket, a skipped check": core.SubmitJobRequestV2(
            upload_jobs=[
                _job(session, "710003", s3_bucket="private"),
                _job(
                    session,
                    "710004",
                    s3_bucket="private",
                    tasks={"check_s3_folder_exists": core.Task(skip_task=True)},
                ),
            ]
        ),
    }
    return {name: json.loads(r.model_dump_json(exclude_none=True)) for name, r in requests.items()}


def test_validate_json_and_submit_jobs_answer_with_the_original_keys(api: Api) -> None:
    session = make_session(api.root / "session")
    for shape, body in _shapes(session).items():
        checked = api.post("/validate_json", json=body)
        assert checked.status_code == 200, (shape, checked.text)
        data = checked.json()["data"]
        assert isinstance(checked.json()["message"], str)
        assert data["version"] == __version__
        assert data["model_json"] == body
        validated = data["validated_model_json"]["upload_jobs"]
        assert [j["subject_id"] for j in validated] == [
            j["subject_id"] for j in body["upload_jobs"]
        ]
        assert [j["name"] for j in data["jobs"]] == [j["s3_prefix"] for j in body["upload_jobs"]]
        # each entry also holds the job's own fields, as the original's entries do
        assert [j["subject_id"] for j in data["jobs"]] == [
            j["subject_id"] for j in body["upload_jobs"]
        ]

        sent = api.post("/submit_jobs", json=body)
        assert sent.status_code == 200, (shape, sent.text)
        data = sent.json()["data"]
        assert data["errors"] == []
        assert len(data["responses"]) == len(body["upload_jobs"]) == len(data["jobs"])
        assert [r["id"] for r in data["responses"]] == [j["id"] for j in data["jobs"]]


def test_refused_bodies_carry_the_original_keys_too(api: Api) -> None:
    session = make_session(api.root / "refused")
    body = _shapes(session)["one job"]
    body["upload_jobs"][0]["project_name"] = ""
    checked = api.post("/validate_json", json=body)
    assert checked.status_code == 422
    answer = checked.json()
    assert answer["message"] == "There were validation errors"
    assert answer["data"]["model_json"] == body and answer["data"]["errors"]
    assert "project_name" in answer["detail"]  # neuroferry's own keys stay
    sent = api.post("/submit_jobs", json=body)
    assert sent.status_code == 422
    assert sent.json()["data"]["responses"] == [] and sent.json()["data"]["errors"]


def test_validate_csv_answers_with_the_original_keys(api: Api) -> None:
    session = make_session(api.root / "csv")
    csv = (
        "job_type,project_name,platform,subject_id,acq_datetime,modality0,"
        "modality0.input_source,metadata_dir,s3_bucket\n"
        f"default,Ephys Platform,ecephys,710101,10/13/2020 1:10:10 PM,ECEPHYS,"
        f"{session / 'ecephys'},{session / 'metadata'},open\n"
    )
    checked = api.post("/validate_csv", files={"file": ("jobs.csv", csv.encode(), "text/csv")})
    assert checked.status_code == 200, checked.text
    data = checked.json()["data"]
    assert data["errors"] == []
    [job] = data["jobs"]
    assert job["subject_id"] == "710101" and job["s3_bucket"] == "open"
    bad = csv.replace("10/13/2020 1:10:10 PM", "13/13/2020")
    refused = api.post("/validate_csv", files={"file": ("jobs.csv", bad.encode(), "text/csv")})
    assert refused.status_code == 422
    assert refused.json()["data"]["jobs"] == [] and refused.json()["data"]["errors"]
