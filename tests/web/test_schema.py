"""The whole API, fuzzed from its OpenAPI schema against a real `ferry serve`: whatever a
client sends, the answer is never a server error (5xx)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _service import Service, running_service

EXAMPLES = int(os.environ.get("FERRY_TEST_EXAMPLES", "25"))


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HUGE = "\x00huge\x00"  # stands for 1e999, which no float can hold; written as is
#: Values a hostile client puts in a JSON body: not numbers JSON allows, numbers too large
#: for a float or a 64-bit integer, unpaired surrogates, deep nesting.
HOSTILE: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    HUGE,
    10**30,
    -(2**63),
    "\ud800",
    "x\udfffy",
    {"\udc00": 1},
    _nested(100),
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    # web only: fuzzed jobs stay queued instead of touching the machine's folders
    home = tmp_path_factory.mktemp("schema-home")
    with contextlib.ExitStack() as stack:
        env = {}
        if request.param == "postgresql":  # PostgreSQL refuses values SQLite keeps
            fresh = request.getfixturevalue("fresh_postgres_database")
            env["FERRY_DATABASE_URL"] = stack.enter_context(fresh())
        yield stack.enter_context(running_service(home, "--no-orchestrator", **env))


def test_no_request_makes_a_server_error(service: Service) -> None:
    token = json.loads((service.home / "token.json").read_text())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    errors: list[str] = []
    tried = 0
    calls = 0

    for result in schema.get_all_operations():
        operation: Any = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=headers, timeout=60)
            if response.status_code >= 500:
                errors.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:200]}"
                )

        call()
        tried += 1
    assert tried >= 40  # every operation of the API, not a part of it
    assert calls >= tried * 5, f"only {calls} requests for {tried} operations"
    assert not errors, "\n".join(errors[:10])


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where a value could be put, in document order."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


def _poison(body: Any, where: tuple[Any, ...], bad: Any) -> Any:
    if not where:
        return bad if not isinstance(body, dict) or not body else {**body, "_": bad}
    head, rest = where[0], where[1:]
    if isinstance(body, dict):
        return {**body, head: _poison(body[head], rest, bad)}
    return [_poison(v, rest, bad) if i == head else v for i, v in enumerate(body)]


def _raw(body: Any) -> bytes:
    text = json.dumps(body, allow_nan=True)
    return text.replace(json.dumps(HUGE), "1e999").encode()


def test_hostile_json_bodies_are_refused_without_a_server_error(service: Service) -> None:
    """Every operation with a JSON body, with a schema-valid body in which one value (at
    any depth) is replaced by a hostile one: always a 4xx, never a 5xx, and never accepted."""
    token = json.loads((service.home / "token.json").read_text())["token"]
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    errors: list[str] = []
    operations = 0
    calls = 0

    for result in schema.get_all_operations():
        operation: Any = result.ok()
        if "application/json" not in {b.media_type for b in operation.body}:
            continue
        operations += 1

        @given(case=operation.as_strategy(media_type="application/json"), data=st.data())
        @settings(
            max_examples=max(EXAMPLES // 2, 10),
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any, data: st.DataObject) -> None:
            nonlocal calls
            where = data.draw(st.sampled_from(_paths(case.body)))
            bad = data.draw(st.sampled_from(HOSTILE))
            raw = _raw(_poison(case.body, where, bad))
            calls += 1
            response = httpx.request(
                case.method,
                service.url + case.formatted_path,
                params=case.query,
                headers=headers,
                content=raw,
                timeout=60,
            )
            if not 400 <= response.status_code < 500:
                errors.append(
                    f"{case.method} {case.formatted_path} {raw[:120]!r}: "
                    f"{response.status_code} {response.text[:200]}"
                )

        call()
    assert operations >= 15  # every operation that takes JSON, not a part of them
    assert calls >= operations * 10
    assert not errors, "\n".join(errors[:10])
