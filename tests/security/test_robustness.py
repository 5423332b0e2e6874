"""Errors and a watched database: malformed bodies are 422, health tells strangers only ok
or not ok, the sign-in throttle holds under parallel guesses and across processes, and a
SQLite file that is removed or read-only stops the service from taking work (503) instead
of letting it write into the void or overwrite ``token.json`` when it starts again."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _service import Service, running_service
from _session import make_session, upload_spec
from conftest import free_port

from .conftest import Deployment

MALFORMED = {
    "NaN": b'{"label": NaN}',
    "Infinity": b'{"label": "x", "expires_in_days": Infinity}',
    "-Infinity": b'{"label": -Infinity}',
    "1e999": b'{"label": "x", "expires_in_days": 1e999}',
    "surrogate": b'{"label": "\\ud800"}',
    "huge whole number": b'{"label": "x", "expires_in_days": 1' + b"0" * 40 + b"}",
    "nesting": b'{"label": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not UTF-8": b'{"label": "\xff\xfe"}',
}
ROUTES = [
    ("POST", "/tokens"),
    ("POST", "/catalog/find"),
    ("POST", "/catalog/count"),
    ("POST", "/submit_jobs"),
    ("POST", "/validate_json"),
    ("PUT", "/users/alice/password"),
    ("POST", "/ingest"),
]


@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_json_bodies_are_422_naming_the_problem_and_where(
    hostile: Deployment, what: str
) -> None:
    body = MALFORMED[what]
    for method, path in ROUTES:
        answer = hostile.api(
            method, path, "alice", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, f"{method} {path} {what}: {answer.text[:300]}"
        found = answer.json()
        assert found["error"] == "InvalidInput", found
        (problem,) = found["problems"]
        assert problem["where"], problem
        assert "Traceback" not in answer.text
    if what == "surrogate":
        assert problem["where"] == "$.label"
    elif what in ("nesting", "not UTF-8"):
        assert problem["field"] == "body", problem
    else:  # a number JSON does not allow: its field is named, and where it is in the body
        field = "label" if what in ("NaN", "-Infinity") else "expires_in_days"
        assert problem["field"] == field, problem
        assert problem["where"].startswith(f"$.{field}, line 1, column "), problem


def test_huge_numbers_and_nul_characters_in_paths_and_queries_are_422(
    hostile: Deployment,
) -> None:
    huge = "9" * 30
    for method, path in [
        ("GET", f"/jobs/{huge}"),
        ("GET", f"/jobs/{huge}/tasks"),
        ("POST", f"/jobs/{huge}/cancel"),
        ("GET", f"/ingest/{huge}"),
        ("DELETE", f"/tokens/{huge}"),
        ("GET", f"/jobs?offset={huge}"),
        ("GET", "/jobs?name=%00"),
        ("GET", "/jobs?owner=a%00b"),
        ("GET", "/catalog/%00"),
    ]:
        answer = hostile.api(method, path, "alice")
        if hostile.database == "sqlite" and "%00" in path:
            assert answer.status_code < 500, f"{method} {path}: {answer.text[:300]}"
            continue  # SQLite stores and compares NUL characters
        assert answer.status_code == 422, f"{method} {path}: {answer.text[:300]}"
        assert "too large" in answer.text or "does not fit the database" in answer.text


def test_health_tells_strangers_and_users_only_ok(hostile: Deployment) -> None:
    secrets = (str(hostile.home), "sqlite", "postgres", "tcp://", "127.0.0.1")
    for who in (None, "alice"):
        answer = hostile.api("GET", "/health", who)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert not any(s in answer.text for s in secrets), answer.text
    bad = httpx.get(
        f"{hostile.url}/api/v2/health", headers={"Authorization": "Bearer nf_nope"}, timeout=30
    )
    assert bad.status_code == 200 and bad.json() == {"status": "ok"}
    admin = hostile.api("GET", "/health", "admin").json()
    assert admin["status"] == "ok" and admin["database"]["backend"] == hostile.database
    assert "address" in admin["executor"]


def _guesses(urls: list[str], name: str, n: int = 20) -> list[httpx.Response]:
    """``n`` wrong passwords for ``name`` at once, spread over the services at ``urls``."""

    def guess(i: int) -> httpx.Response:
        data = {"name": name, "password": f"guess-{i}-wrong"}
        return httpx.post(f"{urls[i % len(urls)]}/sign-in", data=data, timeout=60)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(guess, range(n)))


def _checked(answers: list[httpx.Response]) -> int:
    """How many guesses had their password checked (401); the others were refused
    unchecked (429, with Retry-After, the same message whoever the user is)."""
    for answer in answers:
        assert answer.status_code in (401, 429), answer.text[:300]
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            assert "too many sign-in attempts" in answer.text
    return sum(a.status_code == 401 for a in answers)


def test_parallel_password_guesses_are_mostly_refused_unchecked(hostile: Deployment) -> None:
    # people who sign in at once from one address (an office behind NAT) all get in...
    people = [("alice", "alice-pw-secret"), ("bob", "bob-pw-secret"), ("admin", "admin-pw-secret")]

    def sign_in(person: tuple[str, str]) -> httpx.Response:
        data = {"name": person[0], "password": person[1]}
        return httpx.post(f"{hostile.url}/sign-in", data=data, timeout=60)

    with ThreadPoolExecutor(len(people)) as pool:
        signed = list(pool.map(sign_in, people))
    assert [a.status_code for a in signed] == [303] * len(people), signed[0].text[:300]
    # ...but of 20 guesses at one name sent at once, only one or two are checked
    answers = _guesses([hostile.url], "bob")
    assert _checked(answers) <= 3, [a.status_code for a in answers]
    # an unknown name is throttled the same way: the answers tell nothing about who exists
    unknown = _guesses([hostile.url], "nobody-here")
    assert _checked(unknown) <= 3


@pytest.mark.postgres
def test_the_throttle_holds_across_service_processes(hostile: Deployment) -> None:
    if hostile.database != "postgresql":
        pytest.skip("more than one service process needs PostgreSQL")
    env = {k: v for k, v in hostile.service.env.items() if k.startswith("FERRY_")}
    with running_service(hostile.home, "--no-orchestrator", **env) as second:
        answers = _guesses([hostile.url, second.url], "alice")
    assert _checked(answers) <= 3, [a.status_code for a in answers]


# -- the database is watched (own services: these break their database) ----------------


def _admin_token(home: Path) -> dict[str, str]:
    token = json.loads((home / "token.json").read_text())["token"]
    return {"Authorization": f"Bearer {token}"}


def _submit(service: Service, session: Path, headers: dict[str, str]) -> httpx.Response:
    body = {
        "user_email": "scientist@example.org",
        "email_notification_types": ["fail"],
        "upload_jobs": [upload_spec(session)],
    }
    return httpx.post(f"{service.url}/api/v2/submit_jobs", json=body, headers=headers, timeout=60)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    """A production-mode service on a new SQLite database, whose first start wrote
    token.json; and a session folder it may read."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    session = make_session(data / "session")
    (home / "ferry.toml").write_text(f"source_roots = {json.dumps([str(data)])}\n")
    env = {"FERRY_MODE": "production", "FERRY_ORCHESTRATOR_POLL": "0.1"}
    with running_service(home, "--no-orchestrator", **env) as service:
        yield service, session


def test_a_removed_sqlite_file_stops_the_service_and_a_restart_refuses(
    watched: tuple[Service, Path],
) -> None:
    service, session = watched
    home, token_file = service.home, service.home / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    kept = token_file.read_bytes()
    admin = _admin_token(home)
    assert _submit(service, session, admin).status_code == 200
    for suffix in ("", "-wal", "-shm"):
        (home / f"ferry.db{suffix}").unlink(missing_ok=True)

    health = httpx.get(f"{service.url}/api/v2/health", timeout=30)
    assert health.status_code == 503 and health.json() == {"status": "not ok"}
    refused = _submit(service, session, admin)
    assert refused.status_code == 503, refused.text
    assert "removed or replaced" in refused.json()["detail"]
    assert "restart" in refused.json()["detail"]
    token = httpx.post(f"{service.url}/api/v2/tokens", json={"label": "x"}, headers=admin)
    assert token.status_code == 503
    assert not (home / "ferry.db").exists()  # nothing made an empty file in its place
    service.stop()

    again = subprocess.run(
        [sys.executable, "-m", "neuroferry", "serve", "--port", str(free_port())],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode != 0
    assert f"{token_file} exists, but the database has no users" in again.stderr
    assert "move" in again.stderr and "Traceback" not in again.stderr
    assert token_file.read_bytes() == kept
    assert not (home / "ferry.db").exists()


def test_a_replaced_sqlite_file_stops_the_service(watched: tuple[Service, Path]) -> None:
    service, session = watched
    db = service.home / "ferry.db"
    copy = db.with_name("copy.db")
    copy.write_bytes(db.read_bytes())
    os.replace(copy, db)  # same content, another file: not the one the service opened
    health = httpx.get(f"{service.url}/api/v2/health", timeout=30)
    assert health.status_code == 503
    refused = _submit(service, session, _admin_token(service.home))
    assert refused.status_code == 503 and "removed or replaced" in refused.json()["detail"]


@contextlib.contextmanager
def _read_only(
    request: pytest.FixtureRequest, home: Path, database: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """A database with users alice (a password) and admin (a token), and the URL on which
    the service sees it read-only."""
    from neuroferry.auth import create_token, create_user
    from neuroferry.db import make_engine, upgrade

    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{home / 'ferry.db'}"
            seen = f"sqlite:///file:{home / 'ferry.db'}?mode=ro&uri=true"
        else:
            url = seen = stack.enter_context(request.getfixturevalue("fresh_postgres_database")())
        engine = make_engine(url)
        upgrade(engine)
        create_user(engine, "alice", "user", password="alice-pw-secret")
        admin = create_token(engine, create_user(engine, "admin", "admin"), "tests")
        if database == "postgresql":  # every new connection is read-only
            with engine.connect() as conn:
                name = conn.exec_driver_sql("SELECT current_database()").scalar()
                conn.exec_driver_sql(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
                )
                conn.commit()
        engine.dispose()
        yield seen, {"Authorization": f"Bearer {admin}"}


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_read_only_database_is_503_on_sign_in_token_creation_and_health(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with _read_only(request, home, database) as (url, admin):
        env = {"FERRY_MODE": "production", "FERRY_DATABASE_URL": url}
        with running_service(home, "--no-orchestrator", healthy=False, **env) as service:
            health = httpx.get(f"{service.url}/api/v2/health", timeout=30)
            assert health.status_code == 503 and health.json() == {"status": "not ok"}
            detail = httpx.get(f"{service.url}/api/v2/health", headers=admin, timeout=30)
            assert detail.json()["database"]["ok"] is False
            assert "cannot be written" in detail.json()["database"]["error"]
            form = {"name": "alice", "password": "alice-pw-secret"}
            signed = httpx.post(f"{service.url}/sign-in", data=form, timeout=30)
            assert signed.status_code == 503, signed.text[:300]
            assert "database is unavailable" in signed.text
            made = httpx.post(
                f"{service.url}/api/v2/tokens", json={"label": "x"}, headers=admin, timeout=30
            )
            assert made.status_code == 503, made.text[:300]
            assert made.json()["error"] == "DatabaseError"
            assert "database is unavailable" in made.json()["detail"]
            assert "Traceback" not in service.log.read_text()
