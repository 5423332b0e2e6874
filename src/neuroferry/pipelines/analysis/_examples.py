"""Two example analyses, installed with neuroferry: ``file-summary`` and ``volume-stats``.

* ``file-summary``: for every input file, its size and sha256 and, for TIFF images, NumPy
  ``.npy`` files and Zarr arrays, the array's shape, type and value statistics.
* ``volume-stats``: for every OME-Zarr volume (``*.ome.zarr``, as ingest writes them),
  each channel's intensity statistics and histogram at one pyramid level.

Both read their inputs only through ``run.open_store`` and write one JSON file to
``run.results``; their small outputs are counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from neuroferry.errors import FerryError, InvalidInput
from neuroferry.pipelines.analysis._registry import Analysis, AnalysisRun
from neuroferry.stores import RESERVED_PREFIX, Store, zarr_store

BLOCK_BYTES = 64 * 2**20
"""The most bytes of an array read at once."""
READ_BYTES = 16 * 2**20
"""The most bytes of a file read at once to hash it."""
ARRAY_SUFFIXES = (".tif", ".tiff", ".npy")
ZARR_ARRAY_KEYS = ("zarr.json", ".zarray")
VOLUME_SUFFIX = ".ome.zarr"


# -- statistics -------------------------------------------------------------------------


@dataclass
class Statistics:
    """Count, minimum, maximum, mean and standard deviation of the finite values added so
    far, block by block (Chan's parallel update of the mean and the squared deviations)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: npt.NDArray[np.float64]) -> None:
        n = int(values.size)
        if not n:
            return
        block_mean = float(values.mean())
        block_m2 = float(np.square(values - block_mean).sum())
        total = self.count + n
        delta = block_mean - self.mean
        self.mean += delta * n / total
        self.m2 += block_m2 + delta * delta * self.count * n / total
        self.count = total
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))

    def json(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0, "min": None, "max": None, "mean": None, "std": None}
        return {
            "count": self.count,
            "min": self.low,
            "max": self.high,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.count),
        }


@dataclass
class Histogram:
    """Counts of values in ``bins`` equal bins from ``low`` to ``high``."""

    bins: int
    low: float
    high: float
    counts: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.bins, dtype=np.int64)

    def add(self, values: npt.NDArray[np.float64]) -> None:
        counts, _ = np.histogram(values, bins=self.bins, range=(self.low, self.high))
        self.counts += counts

    def json(self) -> dict[str, Any]:
        edges = np.histogram_bin_edges([], bins=self.bins, range=(self.low, self.high))
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in self.counts]}


Blocks = Callable[[], Iterable[npt.NDArray[Any]]]
"""Reads an array's values block by block (called once per pass)."""


def _go_on() -> None:
    """A cancel check that never stops."""


def summarise(
    blocks: Blocks, bins: int, scale: float = 1.0, check_cancelled: Callable[[], None] = _go_on
) -> dict[str, Any]:
    """Statistics and a histogram of the finite values of an array, times ``scale``: one
    pass for the statistics, one for the histogram over their range."""

    def values() -> Iterator[npt.NDArray[np.float64]]:
        for block in blocks():
            check_cancelled()
            data = np.asarray(block, dtype=np.float64).ravel() * scale
            yield data[np.isfinite(data)]

    stats = Statistics()
    for data in values():
        stats.add(data)
    found = stats.json()
    if not stats.count:
        return {**found, "histogram": None}
    histogram = Histogram(bins, stats.low, stats.high)
    for data in values():
        histogram.add(data)
    return {**found, "histogram": histogram.json()}


def numeric(dtype: np.dtype[Any]) -> bool:
    """Whether values of ``dtype`` have statistics (integers and real floats)."""
    return dtype.kind in "iuf"


def block_slices(shape: Sequence[int], itemsize: int) -> Iterator[tuple[int | slice, ...]]:
    """Indexes that cover an array of ``shape`` in blocks of at most :data:`BLOCK_BYTES`
    (or one row of the last axis), splitting the first axes."""
    if not shape:
        yield ()
        return
    inner = math.prod(shape[1:]) * itemsize
    if inner <= BLOCK_BYTES or len(shape) == 1:
        step = max(1, BLOCK_BYTES // max(inner, 1))
        for i in range(0, shape[0], step):
            yield (slice(i, min(i + step, shape[0])),)
        return
    for i in range(shape[0]):
        for rest in block_slices(shape[1:], itemsize):
            yield (i, *rest)


def array_blocks(array: Any, axis: int | None = None, index: int = 0) -> Blocks:
    """The blocks of a (Zarr) array, or of its slice ``index`` along ``axis``."""
    shape = list(array.shape)
    if axis is not None:
        del shape[axis]

    def blocks() -> Iterator[npt.NDArray[Any]]:
        for where in block_slices(shape, array.dtype.itemsize):
            selection = list(where)
            if axis is not None:
                selection += [slice(None)] * (len(shape) - len(where))
                selection.insert(axis, index)
            yield np.asarray(array[tuple(selection)])

    return blocks


def write_json(folder: Path, name: str, document: Any) -> None:
    (folder / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _split_url(url: str) -> tuple[str, str]:
    """A file's URL as its folder's URL and its name."""
    folder, _, name = url.rstrip("/").rpartition("/")
    if not name or "://" not in folder:
        raise InvalidInput(f"file location {url!r} is not the URL of a file in a store")
    return folder, name


def _inputs(run: AnalysisRun) -> Iterator[tuple[str, Store, list[str]]]:
    """Each input location with its store and the keys of its files: every
    ``file_location``, or every file under each ``s3_location`` when there are none
    (neuroferry's own ``.ferry/`` records left out)."""
    if run.inputs.file_location is not None:
        for url in run.inputs.file_location:
            folder, name = _split_url(url)
            yield url, run.open_store(folder), [name]
        return
    for url in run.inputs.s3_location:
        store = run.open_store(url)
        keys = sorted(e.path for e in store.list() if not e.path.startswith(RESERVED_PREFIX))
        yield url, store, keys


# -- file-summary -----------------------------------------------------------------------


class FileSummaryParameters(BaseModel):
    """Parameters of ``file-summary``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    label: str = ""
    """A label copied into ``summary.json``."""
    bins: int = Field(16, ge=1, le=10_000)
    """The number of bins of each array's histogram."""
    scale: float = Field(1.0, allow_inf_nan=False)
    """A factor applied to every value before its statistics are taken."""


class FileSummaryOutputs(BaseModel):
    """Outputs of ``file-summary``."""

    files: int
    bytes: int
    arrays: int


def _sha256(store: Store, key: str, size: int) -> str:
    """The sha256 of an object, read in pieces of at most :data:`READ_BYTES`."""
    if size <= READ_BYTES:
        return hashlib.sha256(store.get(key)).hexdigest()
    digest = hashlib.sha256()
    for start in range(0, size, READ_BYTES):
        digest.update(store.get_range(key, start, min(start + READ_BYTES, size)))
    return digest.hexdigest()


def _zarr_array(store: Store, key: str) -> Any | None:
    """The Zarr array whose metadata is ``key`` (``None`` if it describes a group)."""
    import zarr

    if key.rpartition("/")[2] == "zarr.json":
        meta = json.loads(store.get(key))
        if meta.get("node_type") != "array":
            return None
    return zarr.open_array(store=zarr_store(store), path=key.rpartition("/")[0], mode="r")


def _file_array(key: str, data: bytes) -> Any:
    import tifffile

    if key.lower().endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    return tifffile.imread(io.BytesIO(data))


def _describe(array: Any, params: FileSummaryParameters, run: AnalysisRun) -> dict[str, Any]:
    found: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if numeric(array.dtype):
        blocks = array_blocks(array)
        found |= summarise(blocks, params.bins, params.scale, run.check_cancelled)
    return found


def file_summary(run: AnalysisRun) -> FileSummaryOutputs:
    """Per input file: its size and sha256; for TIFF, ``.npy`` and Zarr arrays (found by
    their ``zarr.json`` or ``.zarray``) the shape, type, minimum, maximum, mean, standard
    deviation and a histogram of the values times ``scale``. Writes ``summary.json``."""
    params = run.parameters
    assert isinstance(params, FileSummaryParameters)
    files: list[dict[str, Any]] = []
    arrays = 0
    for location, store, keys in _inputs(run):
        for key in keys:
            run.check_cancelled()
            name = key.rpartition("/")[2]
            data = store.get(key) if name.lower().endswith(ARRAY_SUFFIXES) else None
            size = len(data) if data is not None else store.head(key).size
            entry: dict[str, Any] = {
                "location": location,
                "path": key,
                "size": size,
                "sha256": hashlib.sha256(data).hexdigest()
                if data is not None
                else _sha256(store, key, size),
            }
            try:
                array = None
                if data is not None:
                    array = _file_array(key, data)
                elif name in ZARR_ARRAY_KEYS:
                    array = _zarr_array(store, key)
                if array is not None:
                    entry["array"] = _describe(array, params, run)
                    arrays += 1
            except FerryError:  # the store failed: not a property of the file
                raise
            except (ValueError, OSError, KeyError, TypeError) as exc:
                entry["array_error"] = f"{type(exc).__name__}: {exc}"
                run.log.warning("%s %s: not readable as an array: %s", location, key, exc)
            files.append(entry)
        run.log.info("%s: %d files", location, len(keys))
    total = sum(f["size"] for f in files)
    summary = {
        "label": params.label,
        "bins": params.bins,
        "scale": params.scale,
        "files": files,
        "totals": {"files": len(files), "bytes": total, "arrays": arrays},
    }
    write_json(run.results, "summary.json", summary)
    return FileSummaryOutputs(files=len(files), bytes=total, arrays=arrays)


FILE_SUMMARY = Analysis(
    name="file-summary",
    run=file_summary,
    parameters=FileSummaryParameters,
    outputs=FileSummaryOutputs,
    description=(
        "Size and sha256 of every input file; shape, type, statistics and a histogram of "
        "TIFF, .npy and Zarr arrays (summary.json)."
    ),
)


# -- volume-stats -----------------------------------------------------------------------


class VolumeStatsParameters(BaseModel):
    """Parameters of ``volume-stats``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    level: int = Field(0, ge=0)
    """The pyramid level (0: full resolution)."""
    bins: int = Field(32, ge=1, le=10_000)
    """The number of bins of each channel's histogram."""
    channels: list[int] | None = None
    """The channels (from 0) to summarise; ``None``: all."""


class VolumeStatsOutputs(BaseModel):
    """Outputs of ``volume-stats``."""

    volumes: int
    channels: int
    voxels: int


def _volumes(run: AnalysisRun) -> Iterator[tuple[str, Store, str]]:
    """Each OME-Zarr volume of the inputs: its location, store and path in the store. A
    location naming a ``*.ome.zarr`` is that volume; any other holds those found below it."""
    for url in run.inputs.file_location or run.inputs.s3_location:
        store = run.open_store(url)
        if url.rstrip("/").endswith(VOLUME_SUFFIX):
            yield url, store, ""
            continue
        suffix = f"{VOLUME_SUFFIX}/zarr.json"
        for entry in sorted(store.list(), key=lambda e: e.path):
            if entry.path.endswith(suffix) and not entry.path.startswith(RESERVED_PREFIX):
                yield url, store, entry.path.removesuffix("/zarr.json")


def _volume_stats(
    location: str, store: Store, path: str, params: VolumeStatsParameters, run: AnalysisRun
) -> dict[str, Any]:
    import zarr

    where = f"{location.rstrip('/')}/{path}".rstrip("/")
    try:
        group = zarr.open_group(store=zarr_store(store), path=path, mode="r")
        attrs: dict[str, Any] = group.attrs.asdict()
        multiscale = (attrs.get("ome") or attrs)["multiscales"][0]
        datasets = multiscale["datasets"]
        axes = [a["name"] if isinstance(a, dict) else a for a in multiscale["axes"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{where} is not an OME-Zarr volume (no multiscales): {exc}") from None
    if params.level >= len(datasets):
        raise InvalidInput(
            f"{where} has {len(datasets)} levels (0 to {len(datasets) - 1}); "
            f"level {params.level} does not exist"
        )
    array: Any = group[datasets[params.level]["path"]]
    axis = axes.index("c") if "c" in axes else None
    count = array.shape[axis] if axis is not None else 1
    wanted = params.channels if params.channels is not None else list(range(count))
    missing = [c for c in wanted if not 0 <= c < count]
    if missing:
        raise InvalidInput(f"{where} has {count} channels (0 to {count - 1}), not {missing}")
    channels = []
    for c in wanted:
        blocks = array_blocks(array, axis, c)
        stats = summarise(blocks, params.bins, check_cancelled=run.check_cancelled)
        channels.append({"channel": c, **stats})
    run.log.info("%s: level %d, %d channels", where, params.level, len(channels))
    return {
        "location": where,
        "name": multiscale.get("name"),
        "level": params.level,
        "path": datasets[params.level]["path"],
        "axes": axes,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "channels": channels,
    }


def volume_stats(run: AnalysisRun) -> VolumeStatsOutputs:
    """Per OME-Zarr volume and channel: minimum, maximum, mean, standard deviation and a
    histogram of the intensities at pyramid level ``level``. Writes ``stats.json``."""
    params = run.parameters
    assert isinstance(params, VolumeStatsParameters)
    found = [_volume_stats(*volume, params, run) for volume in _volumes(run)]
    if not found:
        places = run.inputs.file_location or run.inputs.s3_location
        raise InvalidInput(f"no OME-Zarr volume (*{VOLUME_SUFFIX}) in {', '.join(places)}")
    write_json(
        run.results, "stats.json", {"level": params.level, "bins": params.bins, "volumes": found}
    )
    return VolumeStatsOutputs(
        volumes=len(found),
        channels=sum(len(v["channels"]) for v in found),
        voxels=sum(c["count"] for v in found for c in v["channels"]),
    )


VOLUME_STATS = Analysis(
    name="volume-stats",
    run=volume_stats,
    parameters=VolumeStatsParameters,
    outputs=VolumeStatsOutputs,
    description=(
        "Per channel of each OME-Zarr volume: intensity minimum, maximum, mean, standard "
        "deviation and histogram at one pyramid level (stats.json)."
    ),
)
