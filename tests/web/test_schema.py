"""The whole API, fuzzed from its OpenAPI schema against a real `ferry serve`: whatever a
client sends, the answer is never a server error (5xx)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from _service import Service

EXAMPLES = int(os.environ.get("FERRY_TEST_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("schema-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "AWS_"))}
    # web only: fuzzed jobs stay queued instead of touching the machine's folders
    env.update(FERRY_HOME=str(home))
    svc = Service(home, env, "--no-orchestrator")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def api_schema(service: Service) -> Any:
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_a_server_error(case: Any, service: Service) -> None:
    token = json.loads((service.home / "token.json").read_text())["token"]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error],
        timeout=60,
    )
