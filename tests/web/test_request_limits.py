"""Request bodies are bounded: 413 naming the setting, before the body is read in full."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.web import create_app

HEADER = "project_name,subject_id,acq_datetime,modality0,modality0.input_source\n"


@pytest.fixture
def client(tmp_path):
    settings = get_settings(
        database_url=f"sqlite:///{tmp_path / 'ferry.db'}",
        dask_processes=False,
        dask_workers=1,
        store_url=tmp_path.as_uri(),
        max_request_bytes=200_000,
        max_upload_bytes=50_000,
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.services.engine
        token = create_token(engine, create_user(engine, "scientist", "user"))
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_a_json_body_over_max_request_bytes_is_413(client):
    big = {"filter": {"name": {"$in": ["x" * 100] * 2500}}}
    resp = client.post("/api/v2/catalog/count", json=big)
    assert resp.status_code == 413
    assert resp.json()["detail"] == (
        "the request body is larger than 200000 bytes; at most 200000 bytes "
        "(setting max_request_bytes) are allowed here"
    )
    small = {"filter": {"name": {"$in": ["x" * 100] * 100}}}
    assert client.post("/api/v2/catalog/count", json=small).json() == {"count": 0}


def test_a_body_without_a_length_is_counted(client):
    def chunks():
        for _ in range(100):
            yield b" " * 10_000

    resp = client.post(
        "/api/v2/catalog/count", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and "setting max_request_bytes" in resp.text


def test_spreadsheet_uploads_are_bounded_by_max_upload_bytes(client):
    rows = HEADER + "p,1,2024-05-27T16:07:59,ecephys,/data/x\n" * 1500  # about 60 kB
    resp = client.post("/api/v2/validate_csv", files={"file": ("jobs.csv", rows.encode())})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("file: jobs.csv is larger than 50000 bytes")
    assert "setting max_upload_bytes" in resp.json()["detail"]
    huge = HEADER + "p,1,2024-05-27T16:07:59,ecephys,/data/x\n" * 4000  # about 160 kB
    resp = client.post("/api/v2/validate_csv", files={"file": ("jobs.csv", huge.encode())})
    assert resp.status_code == 413 and "setting max_upload_bytes" in resp.text
