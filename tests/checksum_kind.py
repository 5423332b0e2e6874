"""The worked example of docs/development.md ("Write a job kind"): the ``checksums`` kind
lists the files under a store URL, hashes each file on the cluster (one mapped task
instance per file) and records the sums in the catalog. It uses only the public API of
neuroferry's packages. Importable by Dask worker processes (tests/ is on their path)."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from neuroferry.config import Settings
from neuroferry.engine import JobKind, PreparedJob, TaskContext, owner_of_job, task_maker
from neuroferry.stores import open_store


class ChecksumSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[\w.-]+$")
    source: str
    """A store URL: ``file:///…``, ``s3://bucket/prefix`` …"""


def prepare(spec: ChecksumSpec, settings: Settings) -> PreparedJob:
    # what the job reads is checked against its owner's grants before it is created
    return PreparedJob(name=spec.name, reads=(("source", spec.source),))


def list_files(ctx: TaskContext) -> dict[str, Any]:
    url = ctx.grants.check_read_url("source", ctx.spec["source"])  # checked again on the worker
    files = {e.path: {"size": e.size} for e in open_store(url, settings=ctx.config).list()}
    ctx.log.info("%d files under %s", len(files), url)
    return {"files": files}


def checksum(ctx: TaskContext) -> dict[str, Any]:
    assert ctx.item is not None  # a mapped instance: its item is the file's key
    data = open_store(ctx.spec["source"], settings=ctx.config).get(ctx.item)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def record(ctx: TaskContext) -> dict[str, Any]:
    sums = ctx.upstream["checksum"]  # a mapped task's result: {item: the instance's result}
    files = [{"path": path, **result} for path, result in sorted(sums.items())]
    document = {"name": ctx.spec["name"], "location": ctx.spec["source"], "files": files}
    doc_id, _ = ctx.catalog.upsert(document, owner_of_job(ctx.db, ctx.owner_id))
    return {"id": doc_id, "files": len(files)}


task = task_maker(__name__)

KIND = JobKind(
    name="checksums",
    spec_model=ChecksumSpec,
    prepare=prepare,
    description="Hash every file under a store URL and record the sums in the catalog.",
    tasks=(
        task("list_files"),
        task("checksum", "list_files", map_over="list_files.files", retries=2),
        task("record", "checksum", placement="local"),
    ),
)
