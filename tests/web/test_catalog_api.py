"""/api/v2/catalog over HTTP: tokens, roles, and 4xx for every bad request."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.web import create_app

DOCS = [
    {"name": "ecephys_774659", "subject": {"subject_id": "774659"}, "tags": ["a", "b"]},
    {"name": "behavior_643634", "subject": {"subject_id": "643634"}, "tags": ["b"]},
]


@pytest.fixture
def api(database_url, tmp_path):
    settings = get_settings(
        database_url=database_url, dask_processes=False, dask_workers=1, store_url=tmp_path.as_uri()
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.services.engine
        admin, user = (
            {"Authorization": f"Bearer {create_token(engine, create_user(engine, name, role))}"}
            for name, role in (("root-admin", "admin"), ("scientist", "user"))
        )
        yield Api(client, admin, user)


@dataclass
class Api:
    http: TestClient
    admin: dict[str, str]
    user: dict[str, str]


def test_reads_and_writes_need_a_token(api):
    for method, path, body in [
        ("POST", "/api/v2/catalog/find", {}),
        ("POST", "/api/v2/catalog/count", {}),
        ("GET", "/api/v2/catalog/x", None),
        ("PUT", "/api/v2/catalog", DOCS),
        ("DELETE", "/api/v2/catalog/x", None),
    ]:
        resp = api.http.request(method, path, json=body)
        assert resp.status_code == 401, (method, path, resp.text)
        assert "API token" in resp.json()["detail"]
    resp = api.http.post(
        "/api/v2/catalog/find", json={}, headers={"Authorization": "Bearer nf_wrong"}
    )
    assert resp.status_code == 401


def test_only_admins_write(api):
    resp = api.http.put("/api/v2/catalog", json=DOCS, headers=api.user)
    assert resp.status_code == 403 and "only admins" in resp.json()["detail"]
    resp = api.http.put("/api/v2/catalog", json=DOCS, headers=api.admin)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["inserted"], resp.json()["updated"]) == (2, 0)
    again = api.http.put("/api/v2/catalog", json=DOCS[:1], headers=api.admin).json()
    assert (again["inserted"], again["updated"]) == (0, 1)
    doc_id = again["ids"][0]
    assert api.http.delete(f"/api/v2/catalog/{doc_id}", headers=api.user).status_code == 403
    assert api.http.delete(f"/api/v2/catalog/{doc_id}", headers=api.admin).status_code == 204
    assert api.http.get(f"/api/v2/catalog/{doc_id}", headers=api.user).status_code == 404


def test_documents_without_an_owner_are_the_admins_alone(api):
    ids = api.http.put("/api/v2/catalog", json=DOCS, headers=api.admin).json()["ids"]
    user = api.user
    assert api.http.post("/api/v2/catalog/find", json={}, headers=user).json()["documents"] == []
    assert api.http.post("/api/v2/catalog/count", json={}, headers=user).json() == {"count": 0}
    assert api.http.get(f"/api/v2/catalog/{ids[0]}", headers=user).status_code == 404
    assert api.http.post("/api/v2/catalog/count", json={}, headers=api.admin).json() == {"count": 2}
    # imported again for the scientist: theirs from now on (they keep their ids)
    again = api.http.put(
        "/api/v2/catalog", json=DOCS, params={"owner": "scientist"}, headers=api.admin
    )
    assert again.json()["ids"] == ids
    assert api.http.post("/api/v2/catalog/count", json={}, headers=user).json() == {"count": 2}
    unknown = api.http.put(
        "/api/v2/catalog", json=DOCS, params={"owner": "nobody"}, headers=api.admin
    )
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]


def test_find_count_distinct_get(api):
    # users see only the documents they own: the admin imports these for the scientist
    put = api.http.put(
        "/api/v2/catalog", json=DOCS, params={"owner": "scientist"}, headers=api.admin
    )
    ids = put.json()["ids"]
    user = api.user
    body = {"filter": {"subject.subject_id": {"$in": ["774659"]}}, "projection": {"name": 1}}
    found = api.http.post("/api/v2/catalog/find", json=body, headers=user).json()
    assert found["documents"] == [{"_id": ids[0], "name": "ecephys_774659"}]
    count = api.http.post("/api/v2/catalog/count", json={"filter": {"tags": "b"}}, headers=user)
    assert count.json() == {"count": 2}
    values = api.http.post("/api/v2/catalog/distinct", json={"field": "tags"}, headers=user).json()
    assert sorted(values["values"]) == ["a", "b"]
    doc = api.http.get(f"/api/v2/catalog/{ids[1]}", headers=user).json()
    assert doc["name"] == "behavior_643634"
    page = api.http.post(
        "/api/v2/catalog/find", json={"sort": [["name", -1]], "limit": 1}, headers=user
    ).json()
    assert [d["name"] for d in page["documents"]] == ["ecephys_774659"]
    # alternation inside a repeat: answered (matching takes linear time)
    for pattern in ("^ecephys_774659(?:.|.)*!", "(a|a)*b"):
        body = {"filter": {"name": {"$regex": pattern}}}
        resp = api.http.post("/api/v2/catalog/count", json=body, headers=user)
        assert resp.json() == {"count": 1 if pattern == "(a|a)*b" else 0}, pattern


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/find", {"filter": {"a": {"$foo": 1}}}, 422, "$foo at a is not supported"),
        ("/find", {"filter": {"$where": "1"}}, 422, "$where"),
        ("/find", {"limit": 100000}, 422, "limit"),
        ("/find", {"skip": -5}, 422, "skip"),
        ("/find", {"filter": "not an object"}, 422, "filter"),
        ("/find", {"projection": {"a": 1, "b": 0}}, 422, "mixes inclusion and exclusion"),
        ("/distinct", {"field": ""}, 422, "dotted field path"),
        (
            "/count",
            {"filter": {"name": {"$regex": r"^(e)\1"}}},
            422,
            "$regex at name: back-references like \\1 are not supported",
        ),
        (
            "/find",
            {"filter": {"subject.sex": {"$regex": "^(?=F)"}}},
            422,
            "$regex at subject.sex: look-arounds like (?=…) or (?<=…) are not supported",
        ),
        (
            "/distinct",
            {"field": "name", "filter": {"name": {"$regex": "(?<!x)y"}}},
            422,
            "$regex at name: look-arounds like (?!…) or (?<!…) are not supported",
        ),
        (
            "/count",
            {"filter": {"name": {"$regex": "a" * 1001}}},
            422,
            "$regex at name is 1001 characters long; the longest pattern accepted is 1000",
        ),
    ],
)
def test_bad_requests_are_4xx_and_say_why(api, path, body, status, message):
    resp = api.http.post(f"/api/v2/catalog{path}", json=body, headers=api.user)
    assert resp.status_code == status, resp.text
    assert message in str(resp.json()["detail"])


def test_bad_documents_are_422_naming_the_field(api):
    resp = api.http.put("/api/v2/catalog", json=[{"nope": 1}], headers=api.admin)
    assert resp.status_code == 422 and "'name' is required" in resp.json()["detail"]


def test_indexes_are_declared_by_admins(api):
    api.http.put("/api/v2/catalog", json=DOCS, params={"owner": "scientist"}, headers=api.admin)
    path = "/api/v2/catalog/indexes/subject.subject_id"
    assert api.http.put(path, headers=api.user).status_code == 403
    assert api.http.put(path, headers=api.admin).json() == {
        "path": "subject.subject_id",
        "created": True,
    }
    listed = api.http.get("/api/v2/catalog/indexes", headers=api.user).json()["indexes"]
    assert [(i["path"], i["created_by"]) for i in listed] == [("subject.subject_id", "root-admin")]
    body = {"filter": {"subject.subject_id": "643634"}, "projection": {"name": 1, "_id": 0}}
    found = api.http.post("/api/v2/catalog/find", json=body, headers=api.user).json()
    assert found["documents"] == [{"name": "behavior_643634"}]
    bad = api.http.put("/api/v2/catalog/indexes/%24where", headers=api.admin)
    assert bad.status_code == 422 and "dotted field path" in bad.json()["detail"]
    assert api.http.delete(path, headers=api.admin).status_code == 204
    assert api.http.delete(path, headers=api.admin).status_code == 404


HEAVY = {
    "name": "heavy",
    "x": [{"y": [{"z": list(range(100))} for _ in range(100)]} for _ in range(10)],
}


def test_limits_answer_with_clear_errors(database_url, tmp_path):
    """A filter over the size limits is 422; a query past the statement timeout is 503;
    a distinct with too many values is 422."""
    settings = get_settings(
        database_url=database_url,
        dask_processes=False,
        dask_workers=1,
        store_url=tmp_path.as_uri(),
        statement_timeout=0.3,
        catalog_max_in_values=50,
        catalog_max_distinct=3,
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.services.engine
        admin, user = (
            {"Authorization": f"Bearer {create_token(engine, create_user(engine, name, role))}"}
            for name, role in (("root-admin", "admin"), ("scientist", "user"))
        )
        # the documents are the admin's (users see only their own): the admin queries them
        docs = [HEAVY, *({"name": f"d{i}", "n": i} for i in range(5))]
        put = client.put("/api/v2/catalog", json=docs, headers=admin, params={"owner": "scientist"})
        assert put.status_code == 200

        many = {"filter": {"name": {"$in": [f"d{i}" for i in range(51)]}}}
        resp = client.post("/api/v2/catalog/count", json=many, headers=user)
        assert resp.status_code == 422
        assert "$in at name has 51 values; at most 50" in resp.json()["detail"]

        slow = {"filter": {"$or": [{"x.y.z": f"no{i}"} for i in range(60)]}}
        resp = client.post("/api/v2/catalog/count", json=slow, headers=admin)
        assert resp.status_code == 503, resp.text
        assert resp.json()["detail"].startswith("the query took longer than 0.3 s")
        assert resp.json()["error"] == "QueryTimeout"

        resp = client.post("/api/v2/catalog/distinct", json={"field": "n"}, headers=admin)
        assert resp.status_code == 422 and "more than 3 distinct values" in resp.json()["detail"]
        resp = client.post("/api/v2/catalog/count", json={"filter": {"n": 2}}, headers=admin)
        assert resp.json() == {"count": 1}
