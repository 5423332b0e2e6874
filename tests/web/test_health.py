import pytest
from fastapi.testclient import TestClient

from neuroferry.config import get_settings
from neuroferry.db import head_revision
from neuroferry.web import create_app


def _client(**overrides):
    settings = get_settings(dask_processes=False, dask_workers=1, **overrides)
    return TestClient(create_app(settings))


def _admin(client):
    """Health details are for admins: a header with a new admin's token."""
    from neuroferry.auth import create_token, create_user

    engine = client.app.state.services.engine
    admin = create_user(engine, f"root{id(client)}", "admin")
    return {"Authorization": f"Bearer {create_token(engine, admin, 'health')}"}


def test_health_reports_database_store_and_executor(database_url, tmp_path):
    with _client(database_url=database_url, store_url=(tmp_path / "lake").as_uri()) as client:
        public = client.get("/api/v2/health")
        resp = client.get("/api/v2/health", headers=_admin(client))
    assert public.status_code == 200 and public.json() == {"status": "ok"}
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["database"]["revision"] == head_revision()
    assert body["database"]["backend"] in ("sqlite", "postgresql")
    assert body["store"] == {"url": (tmp_path / "lake").as_uri(), "ok": True}
    assert body["executor"]["ok"] and body["executor"]["workers"] == 1
    assert body["executor"]["address"].startswith(("tcp://127.0.0.1", "inproc://"))


def test_health_is_503_and_names_the_part_that_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nobody-secret")
    with _client(
        database_url=f"sqlite:///{tmp_path / 'f.db'}",
        store_url="s3://lake/raw",
        s3_endpoint_url="http://127.0.0.1:1",
        store_retry_timeout=1,
    ) as client:
        public = client.get("/api/v2/health")
        resp = client.get("/api/v2/health", headers=_admin(client))
    assert public.status_code == 503 and public.json() == {"status": "not ok"}
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["store"]["ok"] is False and body["store"]["error"]
    assert body["database"]["ok"] is True


def test_password_is_not_shown(tmp_path):
    app = create_app(get_settings(database_url="postgresql://postgres:hunter2@127.0.0.1:1/x"))
    with pytest.raises(Exception, match=r"127\.0\.0\.1:1") as info, TestClient(app):
        pass
    assert "hunter2" not in str(info.value)


def test_a_web_only_process_runs_no_executor(tmp_path):
    from neuroferry.services import Services

    settings = get_settings(database_url=f"sqlite:///{tmp_path / 'f.db'}")
    services = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, services)) as client:
        body = client.get("/api/v2/health", headers=_admin(client)).json()
    assert body["status"] == "ok"
    assert "executor" not in body and "orchestrator" not in body
