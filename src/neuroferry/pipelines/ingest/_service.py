"""What the API (and so the CLI) does with ingest jobs: submit a config, report progress,
cancel and clean up."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from neuroferry.config import Settings
from neuroferry.engine import (
    SUCCEEDED,
    TERMINAL,
    Viewer,
    cancel_job,
    get_job,
    job_tasks,
    owner_access,
    submit_job,
    unfinished_jobs,
)
from neuroferry.errors import FerryError, InvalidInput, NotFound
from neuroferry.pipelines.ingest._config import IngestConfig, load_config
from neuroferry.pipelines.ingest._kind import KIND_NAME, destination_of, under_destination
from neuroferry.pipelines.ingest._plan import shard_totals
from neuroferry.pipelines.ingest._writer import (
    ShardRecord,
    Volume,
    cleanup_volume,
    read_json,
    record_key,
    shards_of,
)
from neuroferry.pipelines.ingest._zarr import Layout
from neuroferry.stores import Store, open_store

CANCEL_WAIT = 30.0
"""Seconds a cancel waits for the job's running tasks to stop before it cleans up."""


# -- submit -----------------------------------------------------------------------------------


def check_ingest(
    engine: Engine, settings: Settings, source: Mapping[str, Any], viewer: Viewer | None
) -> IngestConfig:
    """The validated config of an ingest request (an ingest config or a Boss ingest client
    config), checked as a job of ``viewer``: the destination is one they may write to, the
    reader's parameters and source folders are allowed, and no unfinished job ingests the
    same volume. InvalidInput lists each problem (``problems``: field and message)."""
    config = load_config(source)
    base, name = destination_of(config, settings)
    outside = name is None and not under_destination(base, settings)
    if outside and viewer is not None and not viewer.is_admin:
        raise InvalidInput(
            f"destination: {config.destination} is not inside a destination of this "
            f"service; give one of {', '.join(sorted(settings.destinations))} (or a URL "
            "inside one); only admins may write elsewhere",
            [{"field": "destination", "message": "not inside a destination of this service"}],
        )
    from neuroferry.pipelines.ingest._readers import open_reader

    access = owner_access(engine, viewer.id if viewer is not None else None, settings)
    access.check_write_url("destination", base)
    open_reader(config, settings=settings, access=access)
    busy = unfinished_jobs(engine, KIND_NAME, [config.name]).get(config.name)
    if busy is not None:
        raise InvalidInput(
            f"name: the volume {config.name} is being ingested by job {busy}; add workers to "
            f"it with `ferry ingest join {busy}`, or cancel it first",
            [{"field": "name", "message": f"being ingested by job {busy}"}],
        )
    return config


def submit_ingest(
    engine: Engine, settings: Settings, source: Mapping[str, Any], viewer: Viewer | None
) -> tuple[int, IngestConfig]:
    """Check an ingest request and create its job; the job's id and the config."""
    config = check_ingest(engine, settings, source, viewer)
    owner = viewer.id if viewer is not None else None
    job_id = submit_job(engine, KIND_NAME, config, owner_id=owner, settings=settings)
    return job_id, config


def ingest_job(engine: Engine, job_id: int, viewer: Viewer | None) -> dict[str, Any]:
    """An ingest job's row; NotFound for a job of another kind (or of another user)."""
    job = get_job(engine, job_id, viewer)
    if job["kind"] != KIND_NAME:
        raise NotFound(
            f"job {job_id} is an {job['kind']} job, not an ingest job; see `ferry jobs show "
            f"{job_id}`"
        )
    return job


# -- progress -----------------------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return max(((end or datetime.now(UTC)) - start).total_seconds(), 0.0)


def _region_bytes(layout: Layout, key: str) -> int:
    """The full-resolution bytes (one channel) of the level-0 shard at ``key``."""
    z, y, x = (int(p) for p in key.split("/")[-3:])
    size = layout.itemsize
    for s in layout.shard_region(0, (z, y, x)):
        size *= s.stop - s.start
    return size


def _running_records(
    store: Store | None, running: Iterable[str], fingerprint: str
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if store is None:
        return found
    for unit in running:
        try:
            record = read_json(store, record_key(unit))
        except FerryError:
            continue
        if record is not None and record.get("fingerprint") == fingerprint:
            found[unit] = record
    return found


def ingest_status(
    engine: Engine,
    job_id: int,
    viewer: Viewer | None = None,
    *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """An ingest job's progress: shards and chunks done and in all (per level), bytes
    read and written, rates, an estimate of the time left, the state of its units and
    its errors. Units that are running are read from their progress records in the
    volume (with ``settings`` to open its store)."""
    job = ingest_job(engine, job_id, viewer)
    tasks = job_tasks(engine, job_id)
    config = IngestConfig.model_validate(job["spec"])
    layout = Layout.of(config)
    from neuroferry.pipelines.ingest._tasks import fingerprint_of

    fingerprint = fingerprint_of(config, layout)
    totals = shard_totals(layout)
    volume = str(job["summary"].get("volume") or "")

    writes = [t for t in tasks if t["name"] == "write" and t["map_index"] >= 0]
    units: dict[str, int] = {}
    for t in writes:
        units[t["state"]] = units.get(t["state"], 0) + 1
    results: dict[str, Any] = {
        t["item"]: t["result"] for t in writes if isinstance(t["result"], Mapping)
    }
    running = [t["item"] for t in writes if t["state"] == "running"]
    store = None
    progress = str(job["summary"].get("progress") or "")
    if running and settings is not None and progress:
        try:
            store = open_store(progress, settings=settings)
        except FerryError:
            store = None
    results.update(_running_records(store, running, fingerprint))

    shards: dict[str, ShardRecord] = {}
    bytes_in = bytes_written = chunks_in = 0
    for result in results.values():
        if result.get("fingerprint") != fingerprint:
            continue
        shards.update(shards_of(result))
        bytes_in += int(result.get("bytes_in") or 0)
        bytes_written += int(result.get("bytes_written") or 0)
        chunks_in += int(result.get("chunks_in") or 0)

    levels = []
    for level in totals["levels"]:
        prefix = f"{level['level']}/"
        mine = [r for k, r in shards.items() if k.startswith(prefix)]
        levels.append(
            {
                **level,
                "shards_done": len(mine),
                "chunks_done": sum(r.chunks for r in mine),
                "bytes_stored": sum(r.size for r in mine),
            }
        )
    bytes_done = sum(_region_bytes(layout, k) for k in shards if k.startswith("0/"))
    started = [t["started"] for t in writes if t["started"] is not None]
    first = min(started) if started else None
    end = job["finished"] if job["state"] in TERMINAL else None
    elapsed = _seconds(first, end)
    rate = bytes_in / elapsed if elapsed else 0.0
    remaining = max(totals["bytes"] - bytes_done, 0)
    eta = None
    if job["state"] not in TERMINAL and rate > 0:
        eta = remaining / rate
    errors = [
        f"{t['name']}" + (f" [{t['item']}]" if t["map_index"] >= 0 else "") + f": {t['error']}"
        for t in tasks
        if t["error"] and t["placement"] != "map"
    ]
    plan = next((t for t in tasks if t["name"] == "plan" and t["map_index"] < 0), None)
    planned = (plan or {}).get("result") or {}
    unit_total = len(planned.get("units") or {}) or len(writes)
    return {
        "id": job["id"],
        "name": job["name"],
        "state": job["state"],
        "error": job["error"],
        "volume": volume,
        "job": {
            "id": job["id"],
            "name": job["name"],
            "state": job["state"],
            "owner": job["owner"],
            "created": job["created"],
            "started": job["started"],
            "finished": job["finished"],
            "seconds": _seconds(job["started"], job["finished"])
            if job["state"] in TERMINAL
            else None,
            "error": job["error"],
            "summary": job["summary"],
        },
        "tasks": {t["name"]: t["state"] for t in tasks if t["map_index"] < 0},
        "units": {"total": unit_total, **units},
        "levels": levels,
        "shards_done": len(shards),
        "shards_total": totals["shards"],
        "chunks_done": sum(r.chunks for r in shards.values()),
        "chunks_total": totals["chunks"],
        "bytes_done": bytes_done,
        "bytes_total": totals["bytes"],
        "bytes_in": bytes_in,
        "bytes_written": bytes_written,
        "bytes_stored": sum(r.size for r in shards.values()),
        "seconds": elapsed,
        "chunks_per_second": chunks_in / elapsed if elapsed else 0.0,
        "bytes_per_second": rate,
        "eta_seconds": eta,
        "errors": errors,
    }


# -- cancel -------------------------------------------------------------------------------------


def cancel_ingest(
    engine: Engine,
    log_store: Store,
    settings: Settings,
    job_id: int,
    viewer: Viewer | None = None,
    *,
    wait: float = CANCEL_WAIT,
) -> dict[str, Any]:
    """Cancel an ingest job and, once its running tasks have stopped, remove from its
    volume what no unit recorded (shards of interrupted writes, temporary files); every
    recorded shard stays, so that an ingest of the same config resumes. Cancelling a job
    that has already stopped (failed or cancelled) only cleans up."""
    job = ingest_job(engine, job_id, viewer)
    if job["state"] == SUCCEEDED:
        raise InvalidInput(f"job {job_id} has succeeded; there is nothing to cancel")
    if job["state"] not in TERMINAL:
        job = cancel_job(engine, log_store, job_id, viewer)
    deadline = time.monotonic() + wait
    while job["state"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        job = get_job(engine, job_id)
    cleanup: dict[str, Any] | None = None
    if job["state"] in TERMINAL:
        config = IngestConfig.model_validate(job["spec"])
        layout = Layout.of(config)
        from neuroferry.pipelines.ingest._tasks import fingerprint_of

        volume = str(job["summary"].get("volume") or "")
        progress = str(job["summary"].get("progress") or "")
        try:
            stores = Volume(
                open_store(volume, settings=settings), open_store(progress, settings=settings)
            )
            cleanup = cleanup_volume(stores, layout, fingerprint_of(config, layout))
        except NotFound:
            cleanup = {"removed": 0, "kept": 0, "staging_removed": 0, "note": "no volume"}
        except FerryError as exc:  # the job is cancelled all the same; say what is left
            cleanup = {
                "removed": 0,
                "kept": 0,
                "staging_removed": 0,
                "error": f"{exc}; run the cancel again to clean up",
            }
    return {"job": get_job(engine, job_id), "cleanup": cleanup}
