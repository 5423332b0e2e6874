"""/api/v2/analyses/{name} for command analyses over HTTP: admins register, version, roll
back and delete them; users list them with their schemas and never send a command."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.services import Services
from neuroferry.web import create_app

COUNTER: dict[str, Any] = {
    "description": "Counts files.",
    "command_script": f"{sys.executable} -c 'print(1)' %INPUT_SOURCE %JOB_SETTINGS",
    "parameters": {"bins": {"type": "integer", "default": 16, "minimum": 1}},
    "outputs": {"files": {"type": "integer"}},
    "comment": "first",
}


@dataclass
class Api:
    http: TestClient
    admin: dict[str, str]
    user: dict[str, str]
    store: str


@pytest.fixture
def api(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=tmp_path.as_uri())
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as client:
        admin, user = (
            {"Authorization": f"Bearer {create_token(held.engine, create_user(held.engine, n, r))}"}
            for n, r in (("root-admin", "admin"), ("scientist", "user"))
        )
        yield Api(client, admin, user, settings.store_url)


def test_admins_register_and_version_a_command_analysis_that_users_see(api: Api) -> None:
    put = api.http.put("/api/v2/analyses/counter", json=COUNTER, headers=api.admin)
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and put.json()["changed"] is True
    assert put.json()["settings"]["command_script"] == COUNTER["command_script"]
    again = api.http.put("/api/v2/analyses/counter", json=COUNTER, headers=api.admin)
    assert again.json()["version"] == 1 and again.json()["changed"] is False

    listed = api.http.get("/api/v2/analyses", headers=api.user).json()["analyses"]
    [counter] = [a for a in listed if a["name"] == "counter"]
    assert counter["description"] == "Counts files."
    assert counter["parameters"]["properties"]["bins"] == {
        "default": 16,
        "minimum": 1,
        "title": "Bins",
        "type": "integer",
    }
    assert counter["outputs"]["required"] == ["files"]
    assert counter["code"]["version"] == "1"
    assert counter["code"]["command"] == COUNTER["command_script"]

    changed = {**COUNTER, "command_script": "true", "comment": "simpler"}
    assert (
        api.http.put("/api/v2/analyses/counter", json=changed, headers=api.admin).json()["version"]
        == 2
    )
    shown = api.http.get("/api/v2/analyses/counter", headers=api.user).json()
    assert shown["code"] == {**shown["code"], "version": "2", "command": "true"}
    history = api.http.get("/api/v2/analyses/counter/history", headers=api.user).json()
    assert [(v["version"], v["comment"]) for v in history["versions"]] == [
        (1, "first"),
        (2, "simpler"),
    ]
    back = api.http.post(
        "/api/v2/analyses/counter/rollback", json={"version": 1}, headers=api.admin
    )
    assert back.status_code == 200 and back.json()["version"] == 3
    assert (
        api.http.get("/api/v2/analyses/counter", headers=api.user).json()["code"]["command"]
        == COUNTER["command_script"]
    )

    gone = api.http.delete("/api/v2/analyses/counter", headers=api.admin)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    missing = api.http.get("/api/v2/analyses/counter", headers=api.user)
    assert missing.status_code == 404 and "unknown analysis 'counter'" in missing.text
    # job type lists leave command analyses out
    assert api.http.get("/api/v2/job_types", headers=api.admin).json()["job_types"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/v2/analyses/counter", COUNTER),
        ("POST", "/api/v2/analyses/counter/rollback", {"version": 1}),
        ("DELETE", "/api/v2/analyses/counter", None),
    ],
)
def test_only_admins_change_command_analyses(api: Api, method: str, path: str, body: Any) -> None:
    assert api.http.put("/api/v2/analyses/counter", json=COUNTER, headers=api.admin).is_success
    refused = api.http.request(method, path, json=body, headers=api.user)
    assert refused.status_code == 403, refused.text
    assert api.http.request(method, path, json=body).status_code == 401
    history = api.http.get("/api/v2/analyses/counter/history", headers=api.admin).json()
    assert len(history["versions"]) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"parameters": {"bins": {"type": "float"}}}, "type"),
        ({"parameters": {"bins": {"type": "integer", "default": 1.5}}}, "parameters.bins.default"),
        ({"parameters": {"label": {"type": "string", "maximum": 3}}}, "parameters.label"),
        ({"command_script": "echo 'open"}, "command_script"),
        ({"run_as": "root"}, "run_as"),
        ({"parameters": {"model_dump": {"type": "string"}}}, "parameters.model_dump"),
        ({"parameters": {"model_config": {"type": "string"}}}, "parameters.model_config"),
        ({"parameters": {"schema": {"type": "integer"}}}, "parameters.schema"),
        ({"parameters": {"dict": {"type": "integer"}}}, "parameters.dict"),
        ({"outputs": {"copy": {"type": "integer"}}}, "outputs.copy"),
        ({"outputs": {"json": {"type": "number"}}}, "outputs.json"),
    ],
)
def test_a_bad_definition_is_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    bad = api.http.put("/api/v2/analyses/counter", json={**COUNTER, **change}, headers=api.admin)
    assert bad.status_code == 422, bad.text
    assert field in bad.text


def test_a_user_cannot_send_a_command_with_a_job(api: Api) -> None:
    assert api.http.put("/api/v2/analyses/counter", json=COUNTER, headers=api.admin).is_success
    body = {"locations": ["file:///data/x"], "command_script": "rm -rf /"}
    refused = api.http.post("/api/v2/analyses/counter/jobs", json=body, headers=api.user)
    assert refused.status_code == 422 and "command_script" in refused.text
    spec = {"analysis": "counter", "locations": ["file:///data/x"], "image": "evil/image"}
    refused = api.http.post("/api/v2/jobs/analysis", json=spec, headers=api.user)
    assert refused.status_code == 422 and "image" in refused.text
    bad = {"locations": [api.store + "/data/x"], "parameters": {"bins": 0}}
    refused = api.http.post("/api/v2/analyses/counter/jobs", json=bad, headers=api.user)
    assert refused.status_code == 422 and "bins" in refused.text
