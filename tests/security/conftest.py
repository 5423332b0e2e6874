"""The hostile user's view: one real ``ferry serve`` in production mode per database
(SQLite and PostgreSQL), probed over HTTP by ordinary users.

``hostile`` (module scope, once per database) is a :class:`Deployment`:

* users ``admin`` (an admin), ``alice`` and ``bob`` (users), each with an API token;
  ``d.api(method, path, who="alice", **kw)`` calls ``/api/v2{path}`` as that user
  (``who=None``: without a token);
* ``d.shared``: a folder every user may read (``FERRY_SOURCE_ROOTS``);
  ``d.own["alice"]``/``d.own["bob"]``: each user's own granted folder (``[grants.NAME]``);
  ``d.outside``: a folder nobody was granted;
* ``d.home``: the service's FERRY_HOME (database, token.json, ferry.toml, lake, logs);
* ``d.wait(job_id, who)``: waits for a job to end and returns its detail.

A test module's ``SERVICE_ENV`` dict (if any) adds to the service's environment.

A probe must show that the attack is refused (a 4xx naming the field) or harmless (and
check that nothing outside the grant was read, written, removed or run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from _service import Service, running_service

USERS = {"admin": "admin", "alice": "user", "bob": "user"}
TERMINAL = {"succeeded", "failed", "cancelled", "skipped"}


@dataclass
class Deployment:
    """A production-mode ``ferry serve`` and its users' tokens."""

    url: str
    home: Path
    service: Service
    database: str
    tokens: dict[str, str]
    shared: Path
    outside: Path
    own: dict[str, Path] = field(default_factory=dict)

    def api(self, method: str, path: str, who: str | None = "alice", **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kw)

    def wait(self, job_id: int, who: str = "alice", limit: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        while True:
            job: dict[str, Any] = self.api("GET", f"/jobs/{job_id}", who).json()
            if job["state"] in TERMINAL:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
            time.sleep(0.3)


def _toml_list(paths: list[Path]) -> str:
    return json.dumps([str(p) for p in paths])


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    from neuroferry.auth import create_token, create_user
    from neuroferry.db import make_engine, upgrade

    home = tmp_path_factory.mktemp("hostile-home")
    data = tmp_path_factory.mktemp("hostile-data")
    shared, outside = data / "shared", data / "outside"
    own = {name: data / "rigs" / name for name in ("alice", "bob")}
    for folder in (shared, outside, *own.values()):
        folder.mkdir(parents=True)
    grants = "".join(
        f"[grants.{name}]\nsource_roots = {_toml_list([path])}\n\n" for name, path in own.items()
    )
    (home / "ferry.toml").write_text(
        f"source_roots = {_toml_list([shared])}\n\n{grants}", encoding="utf-8"
    )
    with _database(request, home) as url:
        engine = make_engine(url)
        upgrade(engine)
        # the project the tests' uploads name, with the facts their data descriptions need
        from neuroferry.pipelines.upload import add_project, set_project_facts

        add_project(engine, "Ephys Platform", None)
        facts = {"institution": "AIND", "funding_source": ["AIND"], "investigators": ["Jane Doe"]}
        set_project_facts(engine, "Ephys Platform", facts)
        tokens = {}
        for name, role in USERS.items():
            user = create_user(engine, name, role, f"{name}@lab.example.org", f"{name}-pw-secret")
            tokens[name] = create_token(engine, user, "security tests")
        engine.dispose()
        env = {
            "FERRY_MODE": "production",
            "FERRY_DATABASE_URL": url,
            "FERRY_ORCHESTRATOR_POLL": "0.1",
            "FERRY_DASK_WORKERS": "1",
            "FERRY_DASK_THREADS_PER_WORKER": "2",
            **getattr(request.module, "SERVICE_ENV", {}),
        }
        with running_service(home, **env) as service:
            yield Deployment(
                service.url, home, service, request.param, tokens, shared, outside, own
            )


def _database(request: pytest.FixtureRequest, home: Path) -> Any:
    if request.param == "sqlite":
        from contextlib import nullcontext

        return nullcontext(f"sqlite:///{home / 'ferry.db'}")
    return request.getfixturevalue("fresh_postgres_database")()


def tiff_stack(folder: Path) -> dict[str, Any]:
    """Four 16x16 TIFF slices in ``folder``, and the ingest source that reads them."""
    import numpy as np
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for z in range(4):
        tifffile.imwrite(folder / f"slice_{z:04d}.tif", np.full((16, 16), z, dtype=np.uint8))
    return {
        "plugin": "image-folder",
        "params": {"path": str(folder), "pattern": "slice_{z:04d}.tif"},
    }


def ingest_config(
    name: str, source: dict[str, Any], destination: str = "default"
) -> dict[str, Any]:
    """An ingest config of the volume ``name`` from a :func:`tiff_stack` source."""
    return {
        "version": 1,
        "name": name,
        "destination": destination,
        "source": source,
        "extent": {"x": [0, 16], "y": [0, 16], "z": [0, 4]},
        "dtype": "uint8",
        "voxel_size": {"x": 1, "y": 1, "z": 1},
        "chunk": [4, 16, 16],
        "shard": [4, 16, 16],
        "levels": 1,
    }
