"""/api/v2/job_types, /projects, /modalities and /platforms over HTTP: tokens, roles,
versions, and 4xx that name the field."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.services import Services
from neuroferry.web import create_app

EPHYS = {
    "check_s3_folder_exists": {"skip_task": True},
    "modality_transformation_settings": {"ECEPHYS": {"image_resources": {"cpus": 8}}},
}


@dataclass
class Api:
    http: TestClient
    admin: dict[str, str]
    user: dict[str, str]


@pytest.fixture
def api(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=tmp_path.as_uri())
    held = Services.start(settings, orchestrate=False)  # no jobs run here
    with TestClient(create_app(settings, held)) as client:
        engine = held.engine
        admin, user = (
            {"Authorization": f"Bearer {create_token(engine, create_user(engine, name, role))}"}
            for name, role in (("root-admin", "admin"), ("scientist", "user"))
        )
        yield Api(client, admin, user)


WRITES = [
    ("PUT", "/api/v2/job_types/ephys", {"settings": {}}),
    ("DELETE", "/api/v2/job_types/ephys", None),
    ("POST", "/api/v2/job_types/ephys/rollback", {"version": 1}),
    ("POST", "/api/v2/projects", {"name": "Atlas"}),
    ("DELETE", "/api/v2/projects/Atlas", None),
    ("PUT", "/api/v2/modalities/kinect", {"name": "Kinect"}),
    ("DELETE", "/api/v2/modalities/ecephys", None),
    ("PUT", "/api/v2/platforms/rig9", {"name": "Rig 9"}),
    ("DELETE", "/api/v2/platforms/MRI", None),
]
READS = [
    ("GET", "/api/v2/job_types", None),
    ("GET", "/api/v2/job_types/ephys", None),
    ("GET", "/api/v2/job_types/ephys/history", None),
    ("GET", "/api/v2/job_types/ephys/diff", None),
    ("GET", "/api/v2/projects", None),
    ("GET", "/api/v2/modalities", None),
    ("GET", "/api/v2/platforms", None),
]


def test_tokens_and_roles(api):
    for method, path, body in READS + WRITES:
        resp = api.http.request(method, path, json=body)
        assert resp.status_code == 401, (method, path, resp.text)
    for method, path, body in WRITES:
        resp = api.http.request(method, path, json=body, headers=api.user)
        assert resp.status_code == 403, (method, path, resp.text)
        assert "only admins" in resp.json()["detail"]
    for method, path, _ in READS:
        resp = api.http.request(method, path, headers=api.user)
        assert resp.status_code in (200, 404), (method, path, resp.text)


def test_versions_history_diff_rollback_delete(api):
    url = "/api/v2/job_types/ephys"
    first = api.http.put(url, json={"settings": EPHYS, "comment": "first"}, headers=api.admin)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["version"], body["changed"], body["created_by"], body["kind"]) == (
        1,
        True,
        "root-admin",
        "upload",
    )
    assert body["settings"]["modality_transformation_settings"] == {
        "ecephys": {"image_resources": {"cpus": 8}}
    }
    same = api.http.put(url, json={"settings": body["settings"]}, headers=api.admin).json()
    assert (same["version"], same["changed"]) == (1, False)
    second = {"check_s3_folder_exists": {"skip_task": False}}
    assert api.http.put(url, json={"settings": second}, headers=api.admin).json()["version"] == 2

    user = api.user
    assert api.http.get(url, headers=user).json()["settings"] == second
    assert api.http.get(url, params={"version": 1}, headers=user).json()["comment"] == "first"
    listed = api.http.get("/api/v2/job_types", headers=user).json()["job_types"]
    assert [(t["name"], t["version"]) for t in listed] == [("ephys", 2)]
    history = api.http.get(f"{url}/history", headers=user).json()
    assert [v["version"] for v in history["versions"]] == [1, 2]
    diff = api.http.get(f"{url}/diff", headers=user).json()
    assert (diff["from"], diff["to"]) == (1, 2)
    assert {c["path"]: c["change"] for c in diff["changes"]} == {
        "check_s3_folder_exists.skip_task": "changed",
        "modality_transformation_settings": "removed",
    }
    diff = api.http.get(f"{url}/diff", params={"from": 2, "to": 1}, headers=user).json()
    assert [c["change"] for c in diff["changes"]] == ["changed", "added"]

    back = api.http.post(f"{url}/rollback", json={"version": 1}, headers=api.admin).json()
    assert (back["version"], back["settings"], back["changed"]) == (3, body["settings"], True)
    gone = api.http.delete(url, params={"comment": "retired"}, headers=api.admin)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert gone.json()["comment"] == "retired"
    missing = api.http.get(url, headers=user)
    assert missing.status_code == 404 and "was deleted in version 4" in missing.json()["detail"]
    assert api.http.get("/api/v2/job_types", headers=user).json()["job_types"] == []
    revived = api.http.post(f"{url}/rollback", json={"version": 2}, headers=api.admin).json()
    assert (revived["version"], revived["deleted"]) == (5, False)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/job_types/x", {"settings": {"nope": {}}}, 422, "unknown task 'nope'"),
        (
            "PUT",
            "/job_types/x",
            {"settings": {"analysis_settings": {"ecephys": {"skip_task": "maybe"}}}},
            422,
            "analysis_settings.ecephys.skip_task",
        ),
        ("PUT", "/job_types/x", {"settings": []}, 422, "settings"),
        ("PUT", "/job_types/x", {}, 422, "settings"),
        ("PUT", "/job_types/x", {"settings": {}, "extra": 1}, 422, "extra"),
        ("PUT", "/job_types/a%20b", {"settings": {}}, 422, "job type name 'a b'"),
        ("PUT", "/job_types/x?kind=nope", {"settings": {}}, 422, "unknown job kind 'nope'"),
        ("GET", "/job_types/x", None, 404, "no job type 'x' of kind 'upload'"),
        ("GET", "/job_types/x/history", None, 404, "no job type 'x'"),
        ("GET", "/job_types/x?version=0", None, 422, "version"),
        ("POST", "/job_types/x/rollback", {"version": 0}, 422, "version"),
        ("POST", "/job_types/x/rollback", {"version": 1}, 404, "no job type 'x'"),
        ("DELETE", "/job_types/x", None, 404, "no job type 'x'"),
        ("POST", "/projects", {"name": ""}, 422, "name"),
        ("DELETE", "/projects/x", None, 404, "no project 'x'"),
        ("PUT", "/modalities/ECEPHYS", {"name": "x"}, 422, "would match the modality 'ecephys'"),
        ("PUT", "/modalities/x", {}, 422, "name"),
        ("PUT", "/platforms/x", {"name": "X", "legacy_names": "y"}, 422, "legacy_names"),
        ("DELETE", "/platforms/x", None, 404, "no platform 'x'"),
    ],
)
def test_bad_requests_say_what_is_wrong(api, method, path, body, status, message):
    resp = api.http.request(method, f"/api/v2{path}", json=body, headers=api.admin)
    assert resp.status_code == status, resp.text
    assert message in str(resp.json()["detail"])


def test_diff_of_unknown_versions_is_422(api):
    api.http.put("/api/v2/job_types/x", json={"settings": {}}, headers=api.admin)
    resp = api.http.get("/api/v2/job_types/x/diff", params={"to": 4}, headers=api.user)
    assert resp.status_code == 422 and "to: job type 'x' has no version 4" in resp.json()["detail"]


def test_projects_modalities_platforms(api):
    user, admin = api.user, api.admin
    assert api.http.get("/api/v2/projects", headers=user).json() == {"projects": []}
    added = api.http.post("/api/v2/projects", json={"name": "Ephys Platform"}, headers=admin)
    assert added.status_code == 201 and added.json()["created_by"] == "root-admin"
    again = api.http.post("/api/v2/projects", json={"name": "Ephys Platform"}, headers=admin)
    assert again.status_code == 422 and "exists already" in again.json()["detail"]
    names = [p["name"] for p in api.http.get("/api/v2/projects", headers=user).json()["projects"]]
    assert names == ["Ephys Platform"]

    # the facts uploads write into data descriptions: admins set them, checked
    facts = {"institution": "Allen Institute for Neural Dynamics", "investigators": ["Jane Doe"]}
    path = "/api/v2/projects/Ephys%20Platform"
    assert api.http.put(path, json=facts, headers=user).status_code == 403
    set_ = api.http.put(path, json=facts, headers=admin)
    assert set_.status_code == 200, set_.text
    assert set_.json()["institution"] == "AIND" and set_.json()["investigators"] == ["Jane Doe"]
    funding = {"funding_source": [{"funder": "NIMH", "grant_number": "R01"}]}
    both = api.http.put(path, json=funding, headers=admin).json()
    assert both["institution"] == "AIND"  # the facts not given are kept
    assert both["funding_source"] == [{"funder": "NIMH", "grant_number": "R01"}]
    wrong = api.http.put(path, json={"institution": "Hogwarts"}, headers=admin)
    assert wrong.status_code == 422 and "institution: 'Hogwarts'" in wrong.json()["detail"]
    for bad, field in [
        ({"investigators": ["a\u0000b"]}, "investigators[0]"),
        ({"funding_source": [{"funder": "NIMH", "fundee": ["x\ny"]}]}, "funding_source[0]"),
        ({"funding_source": [{"funder": "NIMH", "grant_number": {"a": 1}}]}, "grant_number"),
    ]:
        refused = api.http.put(path, json=bad, headers=admin)
        assert refused.status_code == 422 and field in refused.json()["detail"], refused.text
    cleared = api.http.put(path, json={"investigators": None}, headers=admin).json()
    assert cleared["investigators"] is None
    missing = api.http.put("/api/v2/projects/nope", json=facts, headers=admin)
    assert missing.status_code == 404
    removed = api.http.delete("/api/v2/projects/Ephys%20Platform", headers=admin)
    assert removed.status_code == 204

    modalities = api.http.get("/api/v2/modalities", headers=user).json()["modalities"]
    pophys = next(m for m in modalities if m["abbreviation"] == "pophys")
    assert pophys["legacy_names"] == ["ophys"] and pophys["name"] == "Planar optical physiology"
    term = {"name": "Kinect depth video", "legacy_names": ["depth"]}
    put = api.http.put("/api/v2/modalities/kinect", json=term, headers=admin)
    assert put.status_code == 200 and put.json()["created_by"] == "root-admin"
    listed = api.http.get("/api/v2/modalities", headers=user).json()["modalities"]
    assert "kinect" in {m["abbreviation"] for m in listed}
    assert api.http.delete("/api/v2/modalities/kinect", headers=admin).status_code == 204

    platforms = api.http.get("/api/v2/platforms", headers=user).json()["platforms"]
    assert "SmartSPIM" in {p["abbreviation"] for p in platforms}
    assert api.http.delete("/api/v2/platforms/SmartSPIM", headers=admin).status_code == 204
    platforms = api.http.get("/api/v2/platforms", headers=user).json()["platforms"]
    assert "SmartSPIM" not in {p["abbreviation"] for p in platforms}
