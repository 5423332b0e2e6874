"""Dask is not an open door: only admins and worker accounts learn where the scheduler is
and how to connect, and the scheduler speaks only TLS with the cluster's certificates, so a
user who finds the address anyway cannot run code on the workers or in the service.

The Dask clients here give up after a few seconds; a refused one fails at once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from distributed import Client
from distributed.security import Security

from .conftest import Deployment

WORKER = "rig-7"
TIMEOUT = "3s"


@pytest.fixture(scope="module")
def worker_token(hostile: Deployment) -> str:
    """A worker account's token, made by the admin as ``ferry users add --role worker``."""
    made = hostile.api("POST", "/users", "admin", json={"name": WORKER, "role": "worker"})
    assert made.status_code == 201, made.text
    token = hostile.api("POST", f"/users/{WORKER}/tokens", "admin", json={"label": "join"})
    assert token.status_code == 201, token.text
    value: str = token.json()["token"]
    return value


def as_worker(hostile: Deployment, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{hostile.url}{path}", headers=headers, timeout=60, **kw)


def scheduler(hostile: Deployment) -> dict[str, Any]:
    found = hostile.api("GET", "/cluster", "admin")
    assert found.status_code == 200, found.text
    cluster: dict[str, Any] = found.json()
    return cluster


def pwn(address: str, marker: Path, security: Security | None = None) -> None:
    """What a hostile user would do with the address: connect and run a function inside
    the service's process."""

    async def attack() -> None:
        client = Client(
            address, timeout=TIMEOUT, security=security, asynchronous=True, set_as_default=False
        )
        try:
            await client
            await client.run_on_scheduler(marker.write_text, "ran in the service")
        finally:
            await client.close()

    asyncio.run(attack())


def test_users_get_no_scheduler_address(hostile: Deployment) -> None:
    address = scheduler(hostile)["scheduler"]
    for who in ("alice", "bob"):
        refused = hostile.api("GET", "/cluster", who)
        assert refused.status_code == 403, refused.text
        assert "only admins and worker accounts" in refused.json()["detail"]
        assert address.split("://")[1] not in refused.text
        assert "PRIVATE KEY" not in refused.text


def test_a_worker_token_gets_the_address_and_credentials(
    hostile: Deployment, worker_token: str
) -> None:
    found = as_worker(hostile, worker_token, "GET", "/api/v2/cluster")
    assert found.status_code == 200, found.text
    assert found.headers["cache-control"] == "no-store"
    cluster = found.json()
    assert cluster["scheduler"] == scheduler(hostile)["scheduler"]
    assert cluster["scheduler"].startswith("tls://127.0.0.1:")  # TLS, on loopback
    assert cluster["tls"]["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in cluster["tls"]["key"]


def test_a_worker_token_reads_nothing_else(hostile: Deployment, worker_token: str) -> None:
    jobs = hostile.api("GET", "/jobs", "admin").json()["jobs"]
    some = jobs[0]["id"] if jobs else 1
    attempts = [
        ("GET", "/api/v2/jobs", {}),
        ("GET", f"/api/v2/jobs/{some}", {}),
        ("GET", f"/api/v2/ingest/{some}", {}),
        ("POST", "/api/v2/ingest", {"json": {"version": 1, "name": "x"}}),
        ("POST", "/api/v2/submit_jobs", {"json": {"upload_jobs": []}}),
        ("POST", f"/api/v2/jobs/{some}/cancel", {}),
        ("POST", "/api/v2/catalog/find", {"json": {"filter": {}}}),
        ("GET", "/api/v2/users/me", {}),
        ("POST", "/api/v2/tokens", {"json": {"label": "more"}}),
        ("GET", "/jobs", {}),
    ]
    for method, path, kw in attempts:
        refused = as_worker(hostile, worker_token, method, path, **kw)
        assert refused.status_code == 403, (method, path, refused.status_code, refused.text)
    signed_in = httpx.post(
        f"{hostile.url}/sign-in", data={"token": worker_token}, timeout=60, follow_redirects=False
    )
    assert signed_in.status_code == 403 and "ferry_session" not in signed_in.cookies


def test_a_client_without_the_certificates_cannot_connect(
    hostile: Deployment, tmp_path: Path
) -> None:
    address = scheduler(hostile)["scheduler"]
    host_port = address.split("://", 1)[1]
    marker = tmp_path / "pwned"
    attempts: list[tuple[str, Security | None]] = [
        (address, None),  # no certificates at all
        (f"tcp://{host_port}", None),  # plain TCP on the same port
        (address, Security.temporary()),  # certificates of one's own making
    ]
    for target, security in attempts:
        with pytest.raises((OSError, TypeError)):  # TypeError: TLS without certificates
            pwn(target, marker, security)
    assert not marker.exists()


def test_a_tls_client_that_shows_no_certificate_is_refused(hostile: Deployment) -> None:
    host, port = scheduler(hostile)["scheduler"].split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust the server blindly, show no certificate
    assert host and int(port) and scheduler(hostile)["scheduler"].startswith("tls://")
    with (
        pytest.raises(ssl.SSLError),  # a certificate-required alert, or the line cut
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"\x00" * 16)
        tls.recv(1)


def test_the_credentials_a_worker_gets_are_what_connects(
    hostile: Deployment, worker_token: str, tmp_path: Path
) -> None:
    """TLS, not luck, is what stops the others: with the credentials a client connects."""
    cluster = as_worker(hostile, worker_token, "GET", "/api/v2/cluster").json()
    tls = cluster["tls"]
    security = Security(
        require_encryption=True,
        tls_ca_file=tls["ca"],
        tls_client_cert=tls["cert"],
        tls_client_key=tls["key"],
    )

    async def connect() -> dict[str, Any]:
        async with Client(
            cluster["scheduler"],
            timeout="10s",
            security=security,
            asynchronous=True,
            set_as_default=False,
        ) as client:
            info: dict[str, Any] = await client.scheduler.identity()
            return info

    info = asyncio.run(connect())
    assert info["address"] == cluster["scheduler"]
    assert len(info["workers"]) == 1
