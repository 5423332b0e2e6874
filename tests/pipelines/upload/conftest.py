"""Fixtures of the upload pipeline's tests: a generated session and a job harness."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from neuroferry.catalog import Catalog
from neuroferry.config import get_settings
from neuroferry.db import make_engine, upgrade
from neuroferry.grants import access_for
from neuroferry.pipelines.upload import UploadJobSpec, prepare

from .helpers import PROCEDURES, SESSION, SUBJECT, Harness, MakeTree, Session, record_project


@pytest.fixture
def session(tmp_path: Path, make_tree: MakeTree) -> Session:
    root = tmp_path / "rig" / "session_123456_2024-06-19"
    files: dict[str, dict[str, bytes]] = {
        "ecephys": {
            "Record Node 101/continuous.dat": secrets.token_bytes(20_000),
            "Record Node 101/events.npy": secrets.token_bytes(300),
            "settings.xml": b"<SETTINGS/>\n",
        },
        "behavior": {"trials.csv": b"trial,outcome\n1,hit\n2,miss\n"},
        "behavior-videos": {"face camera.avi": secrets.token_bytes(9_000)},
        "metadata": {
            "subject.json": json.dumps(SUBJECT).encode(),
            "procedures.json": json.dumps(PROCEDURES).encode(),
            "session.json": json.dumps(SESSION).encode(),
            "notes.txt": b"not metadata: stays behind\n",
            "old/rig.json": b"{}",
        },
        "derivatives": {"sorting/units.csv": b"unit,depth\n1,200\n"},
    }
    for name, tree in files.items():
        make_tree(root / name, tree)
    return Session(root, files)


@pytest.fixture
def project_catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A catalog whose database records the sessions' project with its facts."""
    engine = make_engine(f"sqlite:///{tmp_path / 'projects.db'}")
    upgrade(engine)
    record_project(engine)
    yield Catalog(engine)
    engine.dispose()


@pytest.fixture
def harness(project_catalog: Catalog) -> Callable[..., Harness]:
    """Prepare a job from a spec (with settings overrides) and return its harness; its
    local tasks get a catalog whose database records the project (tests may replace it)."""

    def make(spec: dict[str, Any], *, user: str | None = None, **settings: Any) -> Harness:
        """``user``: the job's owner, an ordinary user of that name (default: no owner)."""
        config = get_settings(**settings)
        validated = UploadJobSpec.model_validate(spec)
        access = access_for(config, user, "user") if user else None
        job = Harness(config, validated.model_dump(mode="json"), prepare(validated, config))
        job.access = access
        job.catalog = project_catalog
        return job

    return make
