"""``POST /api/v2/dropboxes/{name}/presign`` against a real S3 server: a member's presigned
PUT and GET work with plain HTTP and no credentials, under the files API's rules; another
group's folder, a GET of inputs/ and bad paths are refused, naming why; a local-folder
drop-box has no presigned URLs. Admins register a group's storage bypass over HTTP; its
secret never comes back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from neuroferry.auth import create_token, create_user
from neuroferry.config import get_settings
from neuroferry.dropbox import add_group, publish_dropbox
from neuroferry.services import Services
from neuroferry.stores import open_store
from neuroferry.web import create_app


@dataclass
class Api:
    http: TestClient
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]
    url: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start(store: str, tmp_path: Path, **overrides: Any) -> Iterator[Api]:
    settings = get_settings(
        database_url=f"sqlite:///{tmp_path / 'ferry.db'}", store_url=tmp_path.as_uri(), **overrides
    )
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as client:
        engine = held.engine
        root = create_user(engine, "root", "admin")
        alice, bob = create_user(engine, "alice"), create_user(engine, "bob")
        publish_dropbox(engine, settings, root, "box", "file-summary", store)
        add_group(engine, settings, root, "user1", "box", ["alice"])
        add_group(engine, settings, root, "user2", "box", ["bob"])
        yield Api(
            client,
            bearer(create_token(engine, alice)),
            bearer(create_token(engine, bob)),
            bearer(create_token(engine, root)),
            store,
        )


@pytest.fixture
def s3_api(s3_env: str, tmp_path: Path) -> Iterator[Api]:
    yield from start(s3_env, tmp_path, presign_seconds=7200)


def presign(api: Api, who: dict[str, str], **body: Any) -> httpx.Response:
    return api.http.post("/api/v2/dropboxes/box/presign", json=body, headers=who)


@pytest.mark.s3
def test_a_presigned_put_then_get_works_with_plain_http(s3_api: Api) -> None:
    made = presign(s3_api, s3_api.alice, path="configs/big.yaml", method="PUT")
    assert made.status_code == 200, made.text
    assert "X-Amz-Signature=" in made.json()["url"] and made.json()["expires"]
    body = b"scale: 2\n" * 1000
    put = httpx.put(made.json()["url"], content=body)
    assert put.status_code == 200, put.text
    assert open_store(s3_api.url).get("user1/configs/big.yaml") == body
    got = presign(s3_api, s3_api.alice, path="configs/big.yaml", method="GET", expires_in=60)
    assert got.status_code == 200, got.text
    assert httpx.get(got.json()["url"]).content == body
    # the signature is what lets it in: a changed one, or another key, is refused
    forged = got.json()["url"].replace("big.yaml", "other.yaml")
    assert httpx.get(forged).status_code == 403
    inputs = presign(s3_api, s3_api.alice, path="inputs/data.bin", method="PUT")
    assert httpx.put(inputs.json()["url"], content=b"DATA").status_code == 200
    assert open_store(s3_api.url).get("user1/inputs/data.bin") == b"DATA"


@pytest.mark.s3
def test_presigning_follows_the_files_rules(s3_api: Api) -> None:
    def refused(who: dict[str, str], status: int, text: str, **body: Any) -> None:
        resp = presign(s3_api, who, **body)
        assert resp.status_code == status, (body, resp.text)
        assert text in resp.text, (body, resp.text)

    refused(
        s3_api.alice, 403, "downloading is not allowed in inputs/", path="inputs/x", method="GET"
    )
    refused(
        s3_api.alice,
        403,
        "downloading is not allowed in submissions/",
        path="submissions/s",
        method="GET",
    )
    refused(
        s3_api.alice, 403, "uploading is not allowed in results/", path="results/r", method="PUT"
    )
    refused(
        s3_api.bob,
        403,
        "'user1' is not a group of drop-box 'box' of yours",
        path="configs/c.yaml",
        method="GET",
        group="user1",
    )
    refused(s3_api.alice, 422, "segment '..'", path="configs/../../user2/configs/c", method="GET")
    refused(s3_api.alice, 422, "path: 'user2/configs/c'", path="user2/configs/c", method="GET")
    refused(s3_api.alice, 422, "method", path="configs/c", method="DELETE")
    refused(
        s3_api.alice,
        422,
        "expires_in: 9000; give 1 to 7200 seconds",
        path="configs/c",
        method="GET",
        expires_in=9000,
    )
    refused({}, 401, "API token", path="configs/c", method="GET")


def test_a_local_folder_dropbox_has_no_presigned_urls(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    for api in start(str(tmp_path / "box"), tmp_path):
        resp = presign(api, api.alice, path="configs/c.yaml", method="PUT")
        assert resp.status_code == 400, resp.text
        assert "lies in a local folder, which has no presigned URLs" in resp.text
        assert str(tmp_path) not in resp.text


def test_admins_register_a_groups_bypass_and_its_secret_never_comes_back(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    for api in start(str(tmp_path / "box"), tmp_path):
        path = "/api/v2/dropboxes/box/groups/user1/bypass"
        body = {
            "endpoint": "http://127.0.0.1:9",
            "access_key_id": "groupkey",
            "secret_access_key": "the-groups-own-secret-42",
        }
        assert api.http.put(path, json=body, headers=api.alice).status_code == 403
        assert api.http.put(path, json=body).status_code == 401
        made = api.http.put(path, json=body, headers=api.admin)
        assert made.status_code == 200, made.text
        assert made.json() == {
            "endpoint": "http://127.0.0.1:9",
            "region": None,
            "access_key_id": "groupkey",
            "signed": True,
            "allow_service_buckets": False,
        }
        for who in (api.admin, api.alice):
            listed = api.http.get("/api/v2/dropboxes/box", headers=who)
            assert "the-groups-own-secret-42" not in listed.text
            groups = {g["name"]: g["bypass"] for g in listed.json()["groups"]}
            assert groups["user1"] == "http://127.0.0.1:9, the group's key"
            assert groups.get("user2") is None
        bad = api.http.put(
            path, json={**body, "endpoint": "https://k:s@host.example"}, headers=api.admin
        )
        assert bad.status_code == 422 and "without credentials" in bad.text
        assert "the-groups-own-secret-42" not in (tmp_path / "ferry.db").read_bytes().decode(
            errors="replace"
        )
        gone = api.http.delete(path, headers=api.admin)
        assert gone.status_code == 204
        listed = api.http.get("/api/v2/dropboxes/box", headers=api.admin).json()
        assert [g["bypass"] for g in listed["groups"]] == [None, None]
        missing = api.http.put(
            "/api/v2/dropboxes/box/groups/nope/bypass", json=body, headers=api.admin
        )
        assert missing.status_code == 404
