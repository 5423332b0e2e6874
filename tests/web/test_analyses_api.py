"""/api/v2/analyses over HTTP: the installed analyses with their code identity and schemas."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.pipelines.analysis import FILE_SUMMARY, Analysis, register_analysis
from neuroferry.services import Services
from neuroferry.web import create_app


class Threshold(BaseModel):
    cutoff: float = 0.5
    method: str


def _noop(run):
    return None


register_analysis(FILE_SUMMARY)
register_analysis(Analysis("threshold-test", _noop, Threshold, description="Cuts off."))


@pytest.fixture
def api(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=tmp_path.as_uri())
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as client:
        token = create_token(held.engine, create_user(held.engine, "scientist", "user"))
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_a_user_lists_the_analyses_with_their_parameter_schemas(api: TestClient) -> None:
    found = api.get("/api/v2/analyses")
    assert found.status_code == 200, found.text
    by_name = {a["name"]: a for a in found.json()["analyses"]}
    summary = by_name["file-summary"]
    assert set(summary["parameters"]["properties"]) == {"label", "bins", "scale"}
    assert summary["parameters"]["properties"]["bins"]["default"] == 16
    assert summary["code"]["name"] == "file-summary" and summary["code"]["version"]
    assert found.json()["broken"] == {}  # only admins are told about broken ones

    threshold = api.get("/api/v2/analyses/threshold-test").json()
    assert threshold["description"] == "Cuts off."
    assert threshold["parameters"]["required"] == ["method"]
    assert threshold["outputs"] is None


def test_an_unknown_analysis_is_404_naming_the_known_ones(api: TestClient) -> None:
    missing = api.get("/api/v2/analyses/no-such")
    assert missing.status_code == 404
    assert "unknown analysis 'no-such'" in missing.json()["detail"]
    assert "file-summary" in missing.json()["detail"]


def test_the_analyses_need_a_token(api: TestClient) -> None:
    del api.headers["Authorization"]
    assert api.get("/api/v2/analyses").status_code == 401
