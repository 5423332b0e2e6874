"""Dask TLS: the rules for external schedulers and certificate files, and real clusters
(on 127.0.0.1) that only clients holding the certificates reach."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from distributed import Client, LocalCluster
from distributed.security import Security

from neuroferry.config import get_settings
from neuroferry.engine import Executor, scheduler_credentials
from neuroferry.engine._dask_tls import file_security, scheduler_security
from neuroferry.errors import ConfigError


def write_tls_files(folder: Path) -> dict[str, str]:
    """A CA, certificate and key (one self-signed certificate) as the admin's files, by
    the names of their settings."""
    made = Security.temporary()
    pems = {
        "dask_tls_ca_file": made.tls_ca_file,
        "dask_tls_cert_file": made.tls_client_cert,
        "dask_tls_key_file": made.tls_client_key,
    }
    files = {}
    for setting, pem in pems.items():
        path = folder / f"{setting}.pem"
        path.write_text(pem)
        path.chmod(0o600)
        files[setting] = str(path)
    return files


def refused(address: str, security: Security | None = None) -> bool:
    """Whether a client is refused by the scheduler at ``address``."""

    async def attempt() -> None:
        client = Client(
            address, timeout="3s", security=security, asynchronous=True, set_as_default=False
        )
        try:
            await client
        finally:
            await client.close()

    try:
        asyncio.run(attempt())
    except (OSError, TypeError):  # TypeError: TLS without certificates
        return True
    return False


# -- the rules ----------------------------------------------------------------------------


def test_production_refuses_a_plain_external_scheduler():
    settings = get_settings(mode="production", dask_scheduler="tcp://10.0.0.5:8786")
    with pytest.raises(ConfigError, match=r"tcp://10\.0\.0\.5:8786 is plain TCP.*dask_tls_ca_file"):
        scheduler_security(settings)
    allowed = get_settings(
        mode="production", dask_scheduler="tcp://10.0.0.5:8786", dask_allow_insecure=True
    )
    assert scheduler_security(allowed) is None
    assert scheduler_credentials(allowed) is None
    assert scheduler_security(get_settings(dask_scheduler="10.0.0.5:8786")) is None  # development


def test_a_tls_scheduler_needs_every_file(tmp_path):
    with pytest.raises(ConfigError, match="set dask_tls_ca_file, dask_tls_cert_file"):
        scheduler_security(get_settings(dask_scheduler="tls://10.0.0.5:8786"))
    files = write_tls_files(tmp_path)
    partial = {"dask_tls_ca_file": files["dask_tls_ca_file"]}
    with pytest.raises(ConfigError, match="dask_tls_cert_file, dask_tls_key_file must be set"):
        file_security(get_settings(**partial))
    missing = {**files, "dask_tls_key_file": str(tmp_path / "absent.pem")}
    with pytest.raises(ConfigError, match=r"dask_tls_key_file: .*absent\.pem is not a readable"):
        file_security(get_settings(**missing))


def test_certificate_files_with_a_plain_address_are_a_mistake(tmp_path):
    settings = get_settings(dask_scheduler="tcp://10.0.0.5:8786", **write_tls_files(tmp_path))
    with pytest.raises(ConfigError, match=r"write it as tls://10\.0\.0\.5:8786"):
        scheduler_security(settings)


def test_the_credentials_are_the_files_contents(tmp_path):
    files = write_tls_files(tmp_path)
    found = scheduler_credentials(
        get_settings(mode="production", dask_scheduler="tls://10.0.0.5:8786", **files)
    )
    assert found is not None
    assert found.ca == Path(files["dask_tls_ca_file"]).read_text()
    assert found.cert == Path(files["dask_tls_cert_file"]).read_text()
    assert found.key == Path(files["dask_tls_key_file"]).read_text()


# -- real clusters ------------------------------------------------------------------------


def test_the_executor_reaches_an_external_tls_scheduler_with_the_files(tmp_path):
    files = write_tls_files(tmp_path)
    cluster_security = file_security(get_settings(**files))
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=cluster_security,
        dashboard_address=None,
    ) as external:
        address = external.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        executor = Executor.start(get_settings(mode="production", dask_scheduler=address, **files))
        try:
            assert executor.kind == "scheduler"
            assert executor.client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
            credentials = executor.credentials()
            assert credentials is not None
            assert credentials.cert == Path(files["dask_tls_cert_file"]).read_text()
        finally:
            executor.close()
        assert refused(address)
        assert refused(address, Security.temporary())


def test_the_embedded_cluster_speaks_tls_on_loopback():
    executor = Executor.start(get_settings(dask_workers=1, dask_threads_per_worker=1))
    try:
        address = executor.status()["address"]
        assert address.startswith("tls://127.0.0.1:")
        assert executor.client.submit(sum, [2, 3]).result(timeout=30) == 5
        assert refused(address)
        assert refused(address.replace("tls://", "tcp://"))
        assert refused(address, Security.temporary())
        credentials = executor.credentials()
        assert credentials is not None
        own = Security(
            require_encryption=True,
            tls_ca_file=credentials.ca,
            tls_client_cert=credentials.cert,
            tls_client_key=credentials.key,
        )
        assert not refused(address, own)
        # Dask's HTTP servers (plain, unauthenticated) answer their health check only
        http = [executor.cluster.scheduler.http_server.port]
        for worker in executor.client.scheduler_info()["workers"].values():
            http.append(worker["services"]["dashboard"])
        for port in http:
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/health").status_code == 200
            for page in ("/json/identity.json", "/info/main/logs.html", "/metrics"):
                assert httpx.get(base + page).status_code == 404, page
    finally:
        executor.close()


def test_thread_workers_listen_on_nothing():
    executor = Executor.start(get_settings(dask_processes=False, dask_workers=1))
    try:
        assert executor.status()["address"].startswith("inproc://")
        assert executor.credentials() is None
    finally:
        executor.close()
