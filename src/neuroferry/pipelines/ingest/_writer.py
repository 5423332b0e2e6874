"""Writing a unit's shards to the volume's store, recording them, verifying a volume and
removing what an unfinished ingest left behind.

Every shard is one object written with one atomic put. After each full-resolution shard
(with its lower levels) the unit's progress record is rewritten with every shard written
so far (key, size, sha256), so that a unit run again after a crash or a cancel skips what
is recorded. A shard found in the store but not recorded (the run stopped between the put
and the record) is compared with what would be written and kept when it is the same.

Records, the plan and the manifest of a volume ``{destination}/{name}.ome.zarr`` lie
beside it, under ``{destination}/.ferry/ingest/{name}.ome.zarr/`` (neuroferry's own
prefix of a store), so that the volume holds nothing but its Zarr hierarchy.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from neuroferry.errors import SourceDataError, StoreNotFound
from neuroferry.pipelines.ingest._plan import Unit
from neuroferry.pipelines.ingest._pyramid import downsample
from neuroferry.pipelines.ingest._zarr import Layout, Shard, encode_shard
from neuroferry.stores import Store

PROGRESS_PREFIX = ".ferry/ingest"
"""Where, in a volume's destination, the progress of its ingests is kept."""
PLAN_KEY = "plan.json"
MANIFEST_KEY = "manifest.json"
UNITS_PREFIX = "units"
PROBLEMS_SHOWN = 5

_SHARD_KEY = re.compile(r"^(\d+)/c/\d+/\d+/\d+/\d+(?:/\d+)?$")


def record_key(unit: str) -> str:
    """Where a unit's progress record lies in the volume's progress store."""
    return f"{UNITS_PREFIX}/{unit}.json"


def progress_url(destination: str, name: str) -> str:
    """The store URL of the progress of volume ``name`` in ``destination``."""
    return f"{destination.rstrip('/')}/{PROGRESS_PREFIX}/{name}.ome.zarr"


@dataclass(frozen=True)
class Volume:
    """A volume's store and the store of its progress (records, plan, manifest)."""

    data: Store
    progress: Store


# -- store access -----------------------------------------------------------------------


def read_json(store: Store, key: str) -> dict[str, Any] | None:
    """A JSON object stored at ``key``; ``None`` if there is none or it is unreadable."""
    try:
        data = store.get(key)
    except StoreNotFound:
        return None
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def put_json(store: Store, key: str, document: Mapping[str, Any]) -> None:
    """Write a JSON object in one atomic put."""
    store.put(key, json.dumps(document, separators=(",", ":")).encode())


def _size(store: Store, key: str) -> int | None:
    try:
        return store.head(key).size
    except StoreNotFound:
        return None


def list_sizes(store: Store, prefix: str) -> dict[str, int]:
    """Every object below ``prefix`` with its size."""
    try:
        return {entry.path: entry.size for entry in store.list(prefix)}
    except StoreNotFound:
        return {}


# -- the process ------------------------------------------------------------------------------

_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 256 * 1024 * 1024
_tuned = False


def tune_allocator() -> None:
    """Let this process's C allocator reuse freed chunk-sized buffers.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``: glibc then keeps its
    mmap threshold at 128 KiB and gives freed heap back to the system at once, so every
    buffer a codec or numpy makes for a chunk is a fresh mapping, zeroed page by page and
    unmapped again; that halves the throughput of a unit. Buffers up to 32 MiB come from the
    heap again, which keeps up to 256 MiB of freed memory for reuse; a unit's data, larger,
    is still mapped and returned at once."""
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return
    _tuned = True
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return  # glibc tunes the thresholds itself
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardRecord:
    """A shard that is written: its size and sha256 (``None``: all fill value, not
    stored) and the chunks it covers."""

    size: int
    sha256: str | None
    chunks: int

    def json(self) -> list[Any]:
        return [self.size, self.sha256, self.chunks]

    @classmethod
    def of(cls, value: Any) -> ShardRecord | None:
        if (
            isinstance(value, list | tuple)
            and len(value) == 3
            and isinstance(value[0], int)
            and (value[1] is None or isinstance(value[1], str))
            and isinstance(value[2], int)
        ):
            return cls(value[0], value[1], value[2])
        return None


def shards_of(result: Any) -> dict[str, ShardRecord]:
    """The shards recorded in a unit's result or progress record."""
    found: dict[str, ShardRecord] = {}
    shards = result.get("shards") if isinstance(result, Mapping) else None
    if isinstance(shards, Mapping):
        for key, value in shards.items():
            record = ShardRecord.of(value)
            if record is not None:
                found[str(key)] = record
    return found


def load_record(store: Store, unit: str, fingerprint: str) -> dict[str, ShardRecord]:
    """The shards a unit has recorded for this plan (none for another plan's record)."""
    found = read_json(store, record_key(unit))
    if found is None or found.get("fingerprint") != fingerprint:
        return {}
    return shards_of(found)


# -- writing a unit -------------------------------------------------------------------------


@dataclass
class UnitRun:
    """What a unit has done so far; its JSON is the ``write`` task's result."""

    unit: str
    fingerprint: str
    shards: dict[str, ShardRecord] = field(default_factory=dict)
    written: int = 0
    same: int = 0
    recorded: int = 0
    empty: int = 0
    chunks_in: int = 0
    bytes_in: int = 0
    bytes_written: int = 0
    read_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def json(self, **extra: Any) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "fingerprint": self.fingerprint,
            "shards": {k: v.json() for k, v in sorted(self.shards.items())},
            "written": self.written,
            "same": self.same,
            "recorded": self.recorded,
            "empty": self.empty,
            "chunks_in": self.chunks_in,
            "bytes_in": self.bytes_in,
            "bytes_written": self.bytes_written,
            "read_seconds": round(self.read_seconds, 3),
            "seconds": round(time.monotonic() - self.started, 3),
            **extra,
        }

    def save(self, store: Store) -> None:
        put_json(store, record_key(self.unit), self.json())


Reader = Callable[[Unit], npt.NDArray[np.generic]]


def write_unit(
    volume: Volume,
    layout: Layout,
    fingerprint: str,
    unit: Unit,
    read: Reader,
    *,
    log: logging.Logger,
    check_cancelled: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Write every shard of ``unit`` (all levels, all channels) that its progress record
    does not hold yet; the unit's result. ``check_cancelled`` is called with the result so
    far between shards and raises to stop."""
    store = volume.data
    run = UnitRun(unit.name, fingerprint)
    done = load_record(volume.progress, unit.name, fingerprint)
    run.shards.update(done)
    keys = unit.keys(layout)
    if all(k in done for k in keys):
        run.recorded = len(keys)
        log.info("unit %s: all %d shards were written before", unit.name, len(keys))
        return run.json()
    check_cancelled(run.json())
    started = time.monotonic()
    data = read(unit)
    run.read_seconds = time.monotonic() - started
    data = _checked(data, unit, layout)
    (z0, _), (y0, _), (x0, _) = unit.region(layout)
    channels = layout.shapes[0][1]
    for zyx in unit.shards():
        check_cancelled(run.json(interrupted=True))
        region = layout.shard_region(0, zyx)
        block = data[
            :,
            region[0].start - z0 : region[0].stop - z0,
            region[1].start - y0 : region[1].stop - y0,
            region[2].start - x0 : region[2].stop - x0,
        ]
        wanted = [
            (level, c, layout.shard_key(level, unit.t, c, *zyx))
            for level in range(layout.levels)
            for c in range(channels)
        ]
        if all(key in done for _, _, key in wanted):
            run.recorded += len(wanted)
            continue
        shard_started = time.monotonic()
        written_before = run.bytes_written
        level_block = block
        for level in range(layout.levels):
            if level:
                level_block = downsample(level_block, layout.factors, layout.method)
            for c in range(channels):
                key = layout.shard_key(level, unit.t, c, *zyx)
                if key in done:
                    run.recorded += 1
                    continue
                shard = encode_shard(
                    level_block[c], layout.shards[level], layout.chunks[level], layout.codec
                )
                run.shards[key] = _store_shard(store, key, shard, run)
        run.bytes_in += block.nbytes
        run.save(volume.progress)
        log.info(
            "shard %s: %d levels x %d channels, %.1f MiB in, %.1f MiB written, %.2f s",
            "/".join(map(str, zyx)),
            layout.levels,
            channels,
            block.nbytes / 2**20,
            (run.bytes_written - written_before) / 2**20,
            time.monotonic() - shard_started,
        )
    log.info(
        "unit %s: %d shards written, %d the same as stored, %d recorded before, %d empty",
        unit.name,
        run.written,
        run.same,
        run.recorded,
        run.empty,
    )
    return run.json()


def _checked(data: npt.NDArray[np.generic], unit: Unit, layout: Layout) -> npt.NDArray[np.generic]:
    """The unit's data as read, refused unless it has the unit's shape and the volume's type."""
    (z0, z1), (y0, y1), (x0, x1) = unit.region(layout)
    expected = (layout.shapes[0][1], z1 - z0, y1 - y0, x1 - x0)
    t0, zs, ys, xs = layout.start
    where = (
        f"t {t0 + unit.t}, z {zs + z0}-{zs + z1}, y {ys + y0}-{ys + y1}, x {xs + x0}-{xs + x1} "
        "(source coordinates, stop excluded)"
    )
    if not isinstance(data, np.ndarray):
        raise SourceDataError(f"the reader gave {type(data).__name__}, not an array, for {where}")
    if tuple(data.shape) != expected:
        raise SourceDataError(
            f"the reader gave an array of shape {tuple(data.shape)} for {where}; expected "
            f"{expected} (c, z, y, x)",
            index={"t": t0 + unit.t, "z": zs + z0, "y": ys + y0, "x": xs + x0},
        )
    if data.dtype != np.dtype(layout.dtype):
        raise SourceDataError(
            f"the reader gave {data.dtype} data for {where}; the config's dtype is {layout.dtype}",
            index={"t": t0 + unit.t, "z": zs + z0, "y": ys + y0, "x": xs + x0},
        )
    return data


def _store_shard(store: Store, key: str, shard: Shard, run: UnitRun) -> ShardRecord:
    run.chunks_in += shard.chunks
    existing = _size(store, key)
    if shard.data is None:
        if existing is not None:  # left by an earlier volume of this plan: readers must see fill
            store.delete(key)
        run.empty += 1
        return ShardRecord(0, None, shard.chunks)
    digest = shard.sha256()
    assert digest is not None
    if existing == shard.size:
        try:
            current = store.get(key)
        except StoreNotFound:
            current = b""
        if memoryview(current) == shard.data:
            run.same += 1
            return ShardRecord(shard.size, digest, shard.chunks)
    store.put(key, shard.data)
    run.written += 1
    run.bytes_written += shard.size
    return ShardRecord(shard.size, digest, shard.chunks)


# -- verifying and cleaning up ---------------------------------------------------------------


@dataclass
class Verification:
    """What a volume holds compared with what its units recorded."""

    shards: dict[str, ShardRecord]
    problems: list[str]
    bad_units: set[str]
    staging_removed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_volume(
    volume: Volume,
    layout: Layout,
    fingerprint: str,
    units: Iterable[Unit],
    results: Mapping[str, Any],
) -> Verification:
    """Check that every shard of every level is recorded (with its sha256, or as empty)
    and that the store holds it with the recorded size (and holds nothing for an empty
    one). ``results`` are the ``write`` results by unit; a unit without one is read from
    its progress record."""
    staging = remove_staging(volume.data) + remove_staging(volume.progress)
    listing: dict[str, int] = {}
    for level in range(layout.levels):
        listing.update(list_sizes(volume.data, f"{level}/c/"))
    recorded: dict[str, ShardRecord] = {}
    problems: list[str] = []
    bad: set[str] = set()
    for unit in units:
        result = results.get(unit.name)
        if isinstance(result, Mapping) and result.get("fingerprint") == fingerprint:
            found = shards_of(result)
        else:
            found = load_record(volume.progress, unit.name, fingerprint)
        for key in unit.keys(layout):
            record = found.get(key)
            problem = None
            if record is None:
                problem = f"{key}: not recorded as written"
            elif record.sha256 is None:
                if key in listing:
                    problem = f"{key}: recorded as empty but the store holds an object"
            elif key not in listing:
                problem = f"{key}: recorded but missing from the store"
            elif listing[key] != record.size:
                problem = f"{key}: the store holds {listing[key]} bytes, {record.size} were written"
            if problem:
                problems.append(problem)
                bad.add(unit.name)
            elif record is not None:
                recorded[key] = record
    return Verification(recorded, problems, bad, staging)


def forget_units(store: Store, units: Iterable[str]) -> None:
    """Remove units' progress records, so that their shards are written again."""
    for unit in units:
        store.delete(record_key(unit))


def remove_staging(store: Store) -> int:
    """Remove the temporary files a local store's interrupted puts left (``name#N``)."""
    root = store.local_root
    if root is None or not root.exists():
        return 0
    removed = 0
    for path in root.rglob("*#*"):
        if path.is_file() and re.fullmatch(r".+#\d+", path.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def cleanup_volume(volume: Volume, layout: Layout, fingerprint: str) -> dict[str, Any]:
    """After an ingest stopped: remove the shards of this plan that no unit recorded (a
    run stopped between a put and its record) and the staging files of interrupted puts;
    keep every recorded shard. Does nothing to a volume of another plan."""
    plan = read_json(volume.progress, PLAN_KEY)
    if plan is None or plan.get("fingerprint") != fingerprint:
        return {"removed": 0, "kept": 0, "staging_removed": 0, "note": "no partial volume"}
    recorded: set[str] = set()
    for key in list_sizes(volume.progress, f"{UNITS_PREFIX}/"):
        found = read_json(volume.progress, key)
        if found is not None and found.get("fingerprint") == fingerprint:
            recorded.update(k for k, v in shards_of(found).items() if v.sha256 is not None)
    removed = kept = 0
    for level in range(layout.levels):
        for key in list_sizes(volume.data, f"{level}/c/"):
            if not _SHARD_KEY.match(key):
                continue
            if key in recorded:
                kept += 1
            else:
                volume.data.delete(key)
                removed += 1
    staging = remove_staging(volume.data) + remove_staging(volume.progress)
    return {"removed": removed, "kept": kept, "staging_removed": staging}
