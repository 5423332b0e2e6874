"""/api/v2/users and /api/v2/tokens over HTTP: roles, own tokens, expiry and revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from neuroferry.auth import create_token, create_user, hash_token
from neuroferry.config import get_settings
from neuroferry.db import api_tokens
from neuroferry.services import Services
from neuroferry.web import create_app


@dataclass
class Api:
    http: TestClient
    engine: Engine
    admin: dict[str, str]
    user: dict[str, str]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=tmp_path.as_uri())
    held = Services.start(settings, orchestrate=False)  # accounts need no executor
    with TestClient(create_app(settings, held)) as client:
        engine = held.engine
        admin = bearer(create_token(engine, create_user(engine, "root-admin", "admin")))
        user = bearer(create_token(engine, create_user(engine, "scientist", "user")))
        yield Api(client, engine, admin, user)


def test_everything_needs_a_token(api):
    for method, path, body in [
        ("GET", "/api/v2/users", None),
        ("POST", "/api/v2/users", {"name": "x"}),
        ("DELETE", "/api/v2/users/scientist", None),
        ("GET", "/api/v2/users/me", None),
        ("POST", "/api/v2/users/scientist/tokens", {}),
        ("GET", "/api/v2/tokens", None),
        ("POST", "/api/v2/tokens", {}),
        ("DELETE", "/api/v2/tokens/1", None),
    ]:
        resp = api.http.request(method, path, json=body)
        assert resp.status_code == 401, (method, path, resp.text)
        assert "API token" in resp.json()["detail"]


def test_only_admins_manage_users(api):
    for method, path, body in [
        ("GET", "/api/v2/users", None),
        ("POST", "/api/v2/users", {"name": "intruder", "role": "admin"}),
        ("DELETE", "/api/v2/users/root-admin", None),
        ("POST", "/api/v2/users/root-admin/tokens", {}),
    ]:
        resp = api.http.request(method, path, json=body, headers=api.user)
        assert resp.status_code == 403, (method, path, resp.text)
        assert "only admins may" in resp.json()["detail"]
    names = [u["name"] for u in api.http.get("/api/v2/users", headers=api.admin).json()]
    assert names == ["root-admin", "scientist"]


def test_admin_adds_lists_and_removes_a_user(api):
    resp = api.http.post(
        "/api/v2/users",
        json={"name": "j.doe@lab", "email": "jdoe@lab.example.org"},
        headers=api.admin,
    )
    assert resp.status_code == 201, resp.text
    added = resp.json()
    assert (added["name"], added["role"], added["email"]) == (
        "j.doe@lab",
        "user",
        "jdoe@lab.example.org",
    )
    assert added["active_tokens"] == 0
    made = api.http.post(
        "/api/v2/users/j.doe@lab/tokens", json={"label": "pipeline"}, headers=api.admin
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    me = api.http.get("/api/v2/users/me", headers=bearer(token)).json()
    assert (me["name"], me["role"], me["active_tokens"]) == ("j.doe@lab", "user", 1)
    listed = {u["name"]: u for u in api.http.get("/api/v2/users", headers=api.admin).json()}
    assert listed["j.doe@lab"]["active_tokens"] == 1
    assert api.http.delete("/api/v2/users/j.doe@lab", headers=api.admin).status_code == 204
    assert api.http.get("/api/v2/users/me", headers=bearer(token)).status_code == 401
    resp = api.http.delete("/api/v2/users/j.doe@lab", headers=api.admin)
    assert resp.status_code == 404 and "no user is named 'j.doe@lab'" in resp.json()["detail"]
    resp = api.http.post("/api/v2/users/nobody/tokens", json={}, headers=api.admin)
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "../etc"}, "name: '../etc' is not allowed"),
        ({"name": "has space"}, "name: 'has space' is not allowed"),
        ({"name": "x" * 129}, "must be 1 to 128 letters"),
        ({"name": "ok", "role": "root"}, "role: 'root' is not allowed; allowed: admin, user"),
        ({"name": "ok", "email": "not-an-address"}, "email: 'not-an-address' is not an e-mail"),
        ({"name": "scientist"}, "name: a user named 'scientist' already exists"),
        ({"email": "a@b.c"}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "email": "a\x00@b.org"}, "email:"),
    ],
)
def test_bad_users_are_refused_naming_the_field(api, body, message):
    resp = api.http.post("/api/v2/users", json=body, headers=api.admin)
    assert resp.status_code == 422, resp.text
    assert message in str(resp.json()["detail"])


def test_an_admin_cannot_remove_themselves(api):
    resp = api.http.delete("/api/v2/users/root-admin", headers=api.admin)
    assert resp.status_code == 422 and "cannot remove themselves" in resp.json()["detail"]


def test_tokens_are_shown_once_and_stored_hashed(api):
    resp = api.http.post(
        "/api/v2/tokens", json={"label": "laptop", "expires_in_days": 30}, headers=api.user
    )
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["token"].startswith("nf_") and made["user"] == "scientist"
    assert made["label"] == "laptop" and made["state"] == "active" and made["revoked"] is None
    expires = datetime.fromisoformat(made["expires"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    with api.engine.connect() as conn:
        hashes = conn.execute(select(api_tokens.c.hash)).scalars().all()
    assert hash_token(made["token"]) in hashes and made["token"] not in hashes
    listed = api.http.get("/api/v2/tokens", headers=api.user).json()
    assert [t["label"] for t in listed] == ["", "laptop"]
    assert all("token" not in t for t in listed)
    assert made["token"] not in api.http.get("/api/v2/tokens", headers=api.user).text
    assert api.http.get("/api/v2/users/me", headers=bearer(made["token"])).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 3651}, "expires_in_days"),
        ({"expires_in_days": "soon"}, "expires_in_days"),
        ({"label": "x" * 129}, "label"),
        ({"secret": "mine"}, "secret"),
        ({"label": "a\x00b"}, "label: 'a\\x00b' contains control characters"),
    ],
)
def test_bad_token_requests_name_the_field(api, body, field):
    resp = api.http.post("/api/v2/tokens", json=body, headers=api.user)
    assert resp.status_code == 422, resp.text
    assert field in str(resp.json()["detail"])


def test_users_see_and_revoke_only_their_own_tokens(api):
    mine = api.http.post("/api/v2/tokens", json={"label": "mine"}, headers=api.user).json()
    theirs = api.http.post("/api/v2/tokens", json={"label": "admin's"}, headers=api.admin).json()
    assert "admin's" not in [
        t["label"] for t in api.http.get("/api/v2/tokens", headers=api.user).json()
    ]
    resp = api.http.get("/api/v2/tokens", params={"user": "root-admin"}, headers=api.user)
    assert resp.status_code == 403 and "another user's tokens" in resp.json()["detail"]
    resp = api.http.delete(f"/api/v2/tokens/{theirs['id']}", headers=api.user)
    assert resp.status_code == 404 and f"no token with id {theirs['id']}" in resp.json()["detail"]
    assert api.http.get("/api/v2/users/me", headers=bearer(theirs["token"])).status_code == 200
    assert api.http.delete("/api/v2/tokens/99999", headers=api.user).status_code == 404
    assert api.http.delete("/api/v2/tokens/abc", headers=api.user).status_code == 422

    assert api.http.delete(f"/api/v2/tokens/{mine['id']}", headers=api.user).status_code == 204
    resp = api.http.get("/api/v2/users/me", headers=bearer(mine["token"]))
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]
    states = {
        t["label"]: t["state"] for t in api.http.get("/api/v2/tokens", headers=api.user).json()
    }
    assert states == {"": "active", "mine": "revoked"}
    # revoking again changes nothing
    assert api.http.delete(f"/api/v2/tokens/{mine['id']}", headers=api.user).status_code == 204


def test_admins_see_and_revoke_anyones_tokens(api):
    theirs = api.http.post("/api/v2/tokens", json={"label": "lab pc"}, headers=api.user).json()
    listed = api.http.get("/api/v2/tokens", params={"user": "scientist"}, headers=api.admin)
    assert [t["label"] for t in listed.json()] == ["", "lab pc"]
    resp = api.http.get("/api/v2/tokens", params={"user": "nobody"}, headers=api.admin)
    assert resp.status_code == 404
    assert api.http.delete(f"/api/v2/tokens/{theirs['id']}", headers=api.admin).status_code == 204
    assert api.http.get("/api/v2/users/me", headers=bearer(theirs["token"])).status_code == 401


def test_admins_make_tokens_for_scripts(api):
    resp = api.http.post(
        "/api/v2/users/scientist/tokens",
        json={"label": "nightly", "expires_in_days": 1},
        headers=api.admin,
    )
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["user"] == "scientist" and made["expires"] is not None
    me = api.http.get("/api/v2/users/me", headers=bearer(made["token"])).json()
    assert me["name"] == "scientist"
    labels = [t["label"] for t in api.http.get("/api/v2/tokens", headers=api.user).json()]
    assert "nightly" in labels  # the user sees it and may revoke it


def test_expired_tokens_are_refused(api):
    scientist = create_user(api.engine, "night-owl")
    old = create_token(api.engine, scientist, "old", datetime.now(UTC) - timedelta(seconds=1))
    resp = api.http.get("/api/v2/users/me", headers=bearer(old))
    assert resp.status_code == 401 and "expired" in resp.json()["detail"]
    live = bearer(create_token(api.engine, scientist, "new"))
    states = {t["label"]: t["state"] for t in api.http.get("/api/v2/tokens", headers=live).json()}
    assert states == {"old": "expired", "new": "active"}
    users = {u["name"]: u for u in api.http.get("/api/v2/users", headers=api.admin).json()}
    assert users["night-owl"]["active_tokens"] == 1


def test_names_no_user_can_have_are_not_found(api):
    for path in ("/api/v2/users/a%00b", "/api/v2/users/..%2Fetc"):
        assert api.http.delete(path, headers=api.admin).status_code == 404
    resp = api.http.get("/api/v2/tokens", params={"user": "a\x00b"}, headers=api.admin)
    assert resp.status_code == 404


def test_a_worker_account_reads_the_cluster_and_nothing_else(database_url, tmp_path):
    from distributed.security import Security

    made = Security.temporary()
    files = {}
    for setting, pem in (
        ("dask_tls_ca_file", made.tls_ca_file),
        ("dask_tls_cert_file", made.tls_client_cert),
        ("dask_tls_key_file", made.tls_client_key),
    ):
        (tmp_path / f"{setting}.pem").write_text(pem)
        files[setting] = str(tmp_path / f"{setting}.pem")
    settings = get_settings(
        database_url=database_url,
        store_url=tmp_path.as_uri(),
        dask_scheduler="tls://127.0.0.1:8786",  # a web-only process names it, never connects
        **files,
    )
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as http:
        admin = bearer(create_token(held.engine, create_user(held.engine, "root-admin", "admin")))
        user = bearer(create_token(held.engine, create_user(held.engine, "scientist", "user")))
        added = http.post("/api/v2/users", json={"name": "rig-9", "role": "worker"}, headers=admin)
        assert added.status_code == 201 and added.json()["role"] == "worker"
        made_token = http.post("/api/v2/users/rig-9/tokens", json={}, headers=admin)
        worker = bearer(made_token.json()["token"])

        found = http.get("/api/v2/cluster", headers=worker)
        assert found.status_code == 200, found.text
        assert found.json()["scheduler"] == "tls://127.0.0.1:8786"
        assert found.json()["tls"] == {
            "ca": made.tls_ca_file,
            "cert": made.tls_client_cert,
            "key": made.tls_client_key,
        }
        assert http.get("/api/v2/cluster", headers=admin).status_code == 200
        refused = http.get("/api/v2/cluster", headers=user)
        assert refused.status_code == 403
        assert "scientist" in refused.json()["detail"] and "8786" not in refused.text

        for method, path, body in [
            ("GET", "/api/v2/users/me", None),
            ("GET", "/api/v2/tokens", None),
            ("POST", "/api/v2/tokens", {}),
            ("GET", "/api/v2/jobs", None),
            ("POST", "/api/v2/catalog/find", {"filter": {}}),
        ]:
            resp = http.request(method, path, json=body, headers=worker)
            assert resp.status_code == 403, (method, path, resp.text)
            assert "worker account" in resp.json()["detail"]
