"""The ingest's task functions, each called with a
:class:`~neuroferry.engine.TaskContext` and returning a small JSON-able result.

Every function can run again after a crash: shards recorded as written are skipped, the
metadata documents are rewritten whole, and the volume's group ``zarr.json`` (what makes
it an OME-Zarr image) is written last, only after every shard was verified.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from neuroferry.engine import (
    AssetClaim,
    Cancelled,
    TaskContext,
    TaskFailed,
    owner_of_job,
    recheck_asset_owner,
)
from neuroferry.errors import FerryError, Forbidden, InvalidInput
from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._plan import Unit, plan_units, shard_totals
from neuroferry.pipelines.ingest._writer import (
    MANIFEST_KEY,
    PLAN_KEY,
    PROBLEMS_SHOWN,
    Volume,
    forget_units,
    put_json,
    read_json,
    tune_allocator,
    write_unit,
)
from neuroferry.pipelines.ingest._zarr import Layout, dumps
from neuroferry.stores import Store, open_store

# -- helpers ----------------------------------------------------------------------------------


def config_of(ctx: TaskContext) -> IngestConfig:
    """The job's ingest config."""
    try:
        return IngestConfig.model_validate(ctx.spec)
    except ValueError as exc:
        raise TaskFailed(f"the job's config no longer validates: {exc}") from exc


def fingerprint_of(config: IngestConfig, layout: Layout) -> str:
    """The fingerprint of the volume a config writes (its layout and its source)."""
    return layout.fingerprint(config.source.model_dump(mode="json"))


def _volume(ctx: TaskContext) -> str:
    value = ctx.summary.get("volume")
    if not isinstance(value, str) or not value:
        raise TaskFailed("the job's summary has no 'volume'; submit the job again")
    return value


def _open(ctx: TaskContext, url: str) -> Store:
    try:
        return open_store(url, create=True, settings=ctx.config)
    except FerryError as exc:
        raise TaskFailed(f"cannot open the store {url}: {exc}") from exc


def _stores(ctx: TaskContext) -> Volume:
    progress = ctx.summary.get("progress")
    if not isinstance(progress, str) or not progress:
        raise TaskFailed("the job's summary has no 'progress'; submit the job again")
    return Volume(_open(ctx, _volume(ctx)), _open(ctx, progress))


def _units(ctx: TaskContext) -> list[Unit]:
    planned = (ctx.upstream.get("plan") or {}).get("units")
    if not isinstance(planned, dict):
        raise TaskFailed("the plan task's result has no units; run the job again")
    return [Unit.from_params(params) for params in planned.values()]


def _reader(config: IngestConfig, ctx: TaskContext) -> Any:
    from neuroferry.pipelines.ingest._readers import open_reader

    return open_reader(config, settings=ctx.config, access=ctx.grants)


# -- the tasks, in the order they run -----------------------------------------------------------


def check_asset_owner(ctx: TaskContext) -> dict[str, Any]:
    """Fail before anything is written if the volume's location (or a folder around or
    inside it) or its catalog name now belongs to another user's asset."""
    volume = _volume(ctx)
    recheck_asset_owner(
        ctx, AssetClaim(volume, "name", catalog_name=catalog_name(config_of(ctx).name))
    )
    return {"volume": volume}


def check_source(ctx: TaskContext) -> dict[str, Any]:
    """Look at the whole source before any data moves: the files the extent needs exist,
    the first slice has the configured shape and type, the extent lies within the data.
    Nothing is written."""
    config = config_of(ctx)
    reader = _reader(config, ctx)
    reader.checkpoint = ctx.check_cancelled  # a large stack's check stops when cancelled
    reader.check()
    t, c, z, y, x = config.volume_shape()
    ctx.log.info(
        "source %s: %d time points, %d channels, %d x %d x %d voxels (z, y, x) of %s",
        config.source.plugin,
        t,
        c,
        z,
        y,
        x,
        config.dtype,
    )
    return {"source": config.source.plugin, "shape": [t, c, z, y, x]}


def plan(ctx: TaskContext) -> dict[str, Any]:
    """Write each level's array metadata and the plan's record into the volume and split
    the work into units (the ``write`` task's items). A volume that holds a partial or
    finished ingest of other settings is refused, not mixed with this one."""
    config = config_of(ctx)
    layout = Layout.of(config)
    fingerprint = fingerprint_of(config, layout)
    stores = _stores(ctx)
    volume = _volume(ctx)
    before = read_json(stores.progress, PLAN_KEY)
    if before is not None and before.get("fingerprint") != fingerprint:
        with_time = dataclasses.replace(layout, time_axis=True)
        if not layout.time_axis and before.get("fingerprint") == fingerprint_of(config, with_time):
            raise TaskFailed(
                f"{volume} holds a partial ingest of this config written with a time axis "
                "(t, c, z, y, x), as volumes were before 'time_axis' existed: add "
                "'time_axis: always' to the config to resume it"
            )
        raise TaskFailed(
            f"{volume} already holds an ingest with other settings (job "
            f"{before.get('job_id')}, layout {before.get('fingerprint')}, this job's "
            f"{fingerprint}): give the volume another name, or remove it first"
        )
    if before is None and read_json(stores.data, "zarr.json") is not None:
        raise TaskFailed(
            f"{volume} already holds a Zarr group that neuroferry did not write: give the "
            "volume another name, or remove it first"
        )
    for level in range(layout.levels):
        stores.data.put(f"{level}/zarr.json", dumps(layout.array_metadata(level)))
    totals = shard_totals(layout)
    put_json(
        stores.progress,
        PLAN_KEY,
        {
            "fingerprint": fingerprint,
            "job_id": ctx.job_id,
            "name": config.name,
            "levels": totals["levels"],
        },
    )
    budget = int(ctx.config.ingest_memory_budget)
    units = plan_units(layout, budget, ctx.check_cancelled)
    ctx.log.info(
        "%s: %d levels, %d shards, %.1f MiB at full resolution, in %d units of at most %.0f MiB%s",
        volume,
        layout.levels,
        totals["shards"],
        totals["bytes"] / 2**20,
        len(units),
        budget / 2**20,
        " (resuming a partial volume)" if before is not None else "",
    )
    return {
        "volume": volume,
        "fingerprint": fingerprint,
        "units": {u.name: u.params() for u in units},
        **totals,
    }


_UNIT_SLOT = threading.Semaphore(1)
"""One unit at a time per worker process: a unit compresses its chunks on every core, so a
second one would only add its data to memory, whatever the worker's thread count."""


def write(ctx: TaskContext) -> dict[str, Any]:
    """Read one unit of the source and write its shards at every level (skipping those
    its progress record holds); stops between shards when the job is cancelled."""
    tune_allocator()
    config = config_of(ctx)
    layout = Layout.of(config)
    fingerprint = fingerprint_of(config, layout)
    unit = Unit.from_params(ctx.params)
    stores = _stores(ctx)
    reader = _reader(config, ctx)
    t0, zs, ys, xs = layout.start

    def read(u: Unit) -> Any:
        (z0, z1), (y0, y1), (x0, x1) = u.region(layout)
        return reader.read(t0 + u.t, (zs + z0, zs + z1), (ys + y0, ys + y1), (xs + x0, xs + x1))

    def check(result: dict[str, Any]) -> None:
        ctx.check_cancelled(result)

    while not _UNIT_SLOT.acquire(timeout=1.0):
        ctx.check_cancelled({})
    try:
        return write_unit(
            stores, layout, fingerprint, unit, read, log=ctx.log, check_cancelled=check
        )
    except Cancelled as exc:
        ctx.log.info("stopped: every shard written so far is recorded")
        raise Cancelled(str(exc), exc.result) from exc
    finally:
        _UNIT_SLOT.release()


def verify(ctx: TaskContext) -> dict[str, Any]:
    """Check that every shard of every level is recorded with its checksum and stored
    with its recorded size; then write the volume's manifest. Units whose shards are
    missing lose their progress record, so that an ingest of the same config writes them
    again."""
    config = config_of(ctx)
    layout = Layout.of(config)
    fingerprint = fingerprint_of(config, layout)
    stores = _stores(ctx)
    units = _units(ctx)
    results = ctx.upstream.get("write") or {}
    from neuroferry.pipelines.ingest._writer import verify_volume

    checked = verify_volume(stores, layout, fingerprint, units, results)
    if checked.staging_removed:
        ctx.log.info("removed %d temporary files of interrupted writes", checked.staging_removed)
    if not checked.ok:
        for problem in checked.problems:
            ctx.log.error("%s", problem)
        forget_units(stores.progress, checked.bad_units)
        shown = "; ".join(checked.problems[:PROBLEMS_SHOWN])
        more = len(checked.problems) - PROBLEMS_SHOWN
        raise TaskFailed(
            f"{_volume(ctx)} is incomplete: {len(checked.problems)} shards are not as "
            f"recorded ({shown}" + (f"; and {more} more" if more > 0 else "") + "). "
            "Their units' records were removed: create the ingest again with the same "
            "config to write them"
        )
    stored = {k: v for k, v in checked.shards.items() if v.sha256 is not None}
    put_json(
        stores.progress,
        MANIFEST_KEY,
        {
            "version": 1,
            "fingerprint": fingerprint,
            "job_id": ctx.job_id,
            "shards": {k: {"size": v.size, "sha256": v.sha256} for k, v in sorted(stored.items())},
        },
    )
    size = sum(v.size for v in stored.values())
    ctx.log.info(
        "verified %d shards (%d stored, %d empty), %.1f MiB",
        len(checked.shards),
        len(stored),
        len(checked.shards) - len(stored),
        size / 2**20,
    )
    return {
        "shards": len(checked.shards),
        "stored": len(stored),
        "empty": len(checked.shards) - len(stored),
        "bytes": size,
        "manifest": MANIFEST_KEY,
    }


def _samples(store: Store, layout: Layout) -> list[Any]:
    """Each channel's sample of the lowest level (see :func:`_display.sample_region`)."""
    import zarr

    from neuroferry.pipelines.ingest._display import sample_region
    from neuroferry.stores import zarr_store

    top = layout.levels - 1
    array = zarr.open_array(store=zarr_store(store), path=str(top), mode="r")
    z, y, x = sample_region(layout.shapes[top])
    lead = (0,) if layout.time_axis else ()
    return [array[(*lead, c, z, y, x)] for c in range(layout.shapes[top][1])]


def display_metadata(config: IngestConfig, layout: Layout, store: Store) -> dict[str, Any]:
    """The ``omero`` block of an intensity image, or the ``image-label`` block of a label
    image, with what the config does not give computed from the volume's lowest level."""
    from neuroferry.pipelines.ingest import _display

    if config.image_kind == "label":
        sample = _samples(store, layout)[0] if config.label_colors is None else None
        return {"image-label": _display.image_label(config, sample)}
    return {"omero": _display.omero(config, layout, _samples(store, layout))}


def commit(ctx: TaskContext) -> dict[str, Any]:
    """Write the volume's group ``zarr.json`` with its OME-Zarr (NGFF 0.5) metadata and
    how viewers show it (``omero``, or ``image-label``): from now on readers see a complete
    image. A label image of another volume is then listed in that volume's ``labels``
    group."""
    from neuroferry.pipelines.ingest._display import labels_group

    config = config_of(ctx)
    layout = Layout.of(config)
    stores = _stores(ctx)
    display = display_metadata(config, layout, stores.data)
    stores.data.put("zarr.json", dumps(layout.group_metadata(display)))
    if config.label_of is not None:
        labels = _open(ctx, _volume(ctx).rsplit("/", 1)[0])
        listed = labels_group(read_json(labels, "zarr.json"), config.label_name)
        labels.put("zarr.json", dumps(listed))
        ctx.log.info("listed %s in the labels of %s", config.label_name, config.label_of)
    ctx.log.info("committed %s", _volume(ctx))
    return {"volume": _volume(ctx), "levels": layout.levels}


def _display_names(config: IngestConfig) -> list[str]:
    from neuroferry.pipelines.ingest._display import channel_names

    return channel_names(config)


def catalog_name(name: str) -> str:
    """The catalog document's name of a volume (``lab/mouse12/em`` is ``lab:mouse12:em``:
    document names hold no ``/``)."""
    return name.replace("/", ":")


def register(ctx: TaskContext) -> dict[str, Any]:
    """Record the volume in the catalog: where it lies, its levels, shape, type, voxel
    size and the manifest of its shards."""
    config = config_of(ctx)
    layout = Layout.of(config)
    volume = _volume(ctx)
    verified = ctx.upstream.get("verify") or {}
    totals = shard_totals(layout)
    document: dict[str, Any] = {
        "name": catalog_name(config.name),
        "location": volume,
        "type": "ome-zarr",
        "image": {
            "format": "ome-zarr",
            "ngff_version": "0.5",
            "axes": layout.axes,
            "shape": layout.stored_shape(0),
            "dtype": layout.dtype,
            "image_kind": config.image_kind,
            **({"label_of": config.label_of} if config.label_of is not None else {}),
            "channel_names": _display_names(config),
            "voxel_size": config.voxel_size.model_dump(mode="json"),
            "levels": [
                {
                    "path": str(level),
                    "shape": layout.stored_shape(level),
                    "chunk": list(layout.chunks[level]),
                    "shard": list(layout.shards[level]),
                    "scale": layout.scale(level),
                }
                for level in range(layout.levels)
            ],
            "downsample": layout.method,
            "compression": config.compression.model_dump(mode="json"),
        },
        "ingest": {
            "job_id": ctx.job_id,
            "volume_name": config.name,
            "source": config.source.model_dump(mode="json"),
            "extent": config.extent.model_dump(mode="json"),
            "manifest": f"{ctx.summary.get('progress')}/{verified.get('manifest', MANIFEST_KEY)}",
            "shards": totals["shards"],
            "bytes_stored": verified.get("bytes"),
            "bytes": totals["bytes"],
        },
    }
    try:
        doc_id, inserted = ctx.catalog.upsert(
            document, owner_of_job(ctx.catalog.engine, ctx.owner_id)
        )
    except (InvalidInput, Forbidden) as exc:
        raise TaskFailed(f"the catalog refused the document of {config.name}: {exc}") from exc
    ctx.log.info(
        "%s %s in the catalog (%s)",
        "registered" if inserted else "updated",
        document["name"],
        doc_id,
    )
    return {"name": document["name"], "location": volume, "id": doc_id}
