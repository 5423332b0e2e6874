"""The worked example kind of docs/development.md runs end to end on a real orchestrator,
Dask cluster and database, and uses only public names."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import checksum_kind
from _rig import Rig, running_rig
from neuroferry.catalog import Catalog
from neuroferry.engine import NewJob, register_kind, submit_jobs
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.grants import access_for

register_kind(checksum_kind.KIND)


@pytest.fixture
def rig(database_url: str) -> Iterator[Rig]:
    with running_rig(database_url) as r:
        yield r


def test_the_example_kind_hashes_each_file_and_records_the_sums(rig: Rig, tmp_path: Path) -> None:
    source = tmp_path / "data"  # beside the test database, which no job may read
    files = {"a.bin": b"alpha", "sub/b.bin": b"beta" * 1000, "c.txt": b""}
    for key, data in files.items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
    rig.start()
    job_id = rig.submit("checksums", {"name": "sums-1", "source": source.as_uri()})
    assert rig.wait(job_id)["state"] == "succeeded", str(rig.states(job_id))

    states = rig.states(job_id)
    assert sorted(k for k in states if k.startswith("checksum[")) == [
        f"checksum[{key}]" for key in sorted(files)
    ]
    doc = Catalog(rig.engine).find({"name": "sums-1"})[0]
    assert doc["location"] == source.as_uri()
    assert doc["files"] == [
        {"path": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for key, data in sorted(files.items())
    ]
    assert rig.tasks(job_id)["record"]["result"] == {"id": doc["_id"], "files": 3}


def test_the_engine_checks_the_example_spec_and_the_owners_grants(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="invalid checksums job: name"):
        rig.submit("checksums", {"name": "no spaces", "source": tmp_path.as_uri()})
    # a user without a grant for the source may not submit it (PreparedJob.reads)
    alice = access_for(rig.settings, "alice", "user")
    job = NewJob("checksums", {"name": "sums-2", "source": tmp_path.as_uri()})
    with pytest.raises(Forbidden, match="source"):
        submit_jobs(rig.engine, [job], owner_id=None, settings=rig.settings, access=alice)


def test_the_example_imports_only_public_names() -> None:
    tree = ast.parse(Path(checksum_kind.__file__).read_text(encoding="utf-8"))
    imported = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neuroferry")
        for alias in node.names
    ]
    assert imported and not [name for name in imported if "._" in name]
