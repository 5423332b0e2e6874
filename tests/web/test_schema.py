"""The whole API, fuzzed from its OpenAPI schema against a real `ferry serve`: whatever a
client sends, the answer is never a server error (5xx)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from _service import Service, running_service

EXAMPLES = int(os.environ.get("FERRY_TEST_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # web only: fuzzed jobs stay queued instead of touching the machine's folders
    with running_service(tmp_path_factory.mktemp("schema-home"), "--no-orchestrator") as svc:
        yield svc


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
