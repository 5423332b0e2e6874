"""The OME-Zarr layout of a volume: Zarr v3 array and group metadata (NGFF 0.5) and the
bytes of one shard.

A volume is a Zarr v3 group ``{name}.ome.zarr`` whose arrays ``0``, ``1`` … are the
pyramid's levels, full resolution first, each with the axes t, c, z, y, x. Every array is
sharded (codec ``sharding_indexed``): a shard, one object in the store, holds the chunks of
one block of the volume, compressed one by one, followed by an index of where each chunk
lies. Shards are built here in memory, so that each can be written with one atomic put.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np
import numpy.typing as npt
from numcodecs import GZip, Zstd
from numcodecs.abc import Codec
from numcodecs.blosc import Blosc

from neuroferry.pipelines.ingest._pyramid import Method

if TYPE_CHECKING:
    from neuroferry.pipelines.ingest._config import IngestConfig

NGFF_VERSION = "0.5"
EMPTY = np.uint64(2**64 - 1)
"""Offset and length in a shard index of a chunk that is not stored (all fill value)."""

_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
_INDEX_CODECS = [_BYTES, {"name": "crc32c"}]


# -- chunk compression ----------------------------------------------------------------


@dataclass(frozen=True)
class ChunkCodec:
    """How each chunk's bytes are compressed: the Zarr v3 codecs after ``bytes``."""

    codec: str
    """``blosc-zstd``, ``blosc-lz4``, ``zstd``, ``gzip`` or ``none``."""
    level: int
    itemsize: int

    def codecs_json(self) -> list[dict[str, Any]]:
        """The inner codecs of the sharding codec, as the array's ``zarr.json`` lists them."""
        if self.codec.startswith("blosc-"):
            shuffle = "bitshuffle" if self.itemsize == 1 else "shuffle"
            config = {
                "cname": self.codec.removeprefix("blosc-"),
                "clevel": self.level,
                "shuffle": shuffle,
                "typesize": self.itemsize,
                "blocksize": 0,
            }
            return [_BYTES, {"name": "blosc", "configuration": config}]
        if self.codec == "zstd":
            return [
                _BYTES,
                {"name": "zstd", "configuration": {"level": self.level, "checksum": False}},
            ]
        if self.codec == "gzip":
            return [_BYTES, {"name": "gzip", "configuration": {"level": self.level}}]
        if self.codec == "none":
            return [_BYTES]
        raise ValueError(f"unknown codec {self.codec!r}")

    def bound(self, nbytes: int) -> int:
        """The most bytes a chunk of ``nbytes`` can take compressed (with room to spare)."""
        return nbytes if self.codec == "none" else nbytes + nbytes // 64 + 1024

    @cached_property
    def compressor(self) -> Codec | None:
        """The numcodecs codec that makes the bytes those Zarr codecs describe."""
        if self.codec.startswith("blosc-"):
            return Blosc(
                cname=self.codec.removeprefix("blosc-"),
                clevel=self.level,
                shuffle=Blosc.BITSHUFFLE if self.itemsize == 1 else Blosc.SHUFFLE,
                blocksize=0,
                typesize=self.itemsize,
            )
        if self.codec == "zstd":
            return Zstd(level=self.level, checksum=False)
        if self.codec == "gzip":
            return GZip(level=self.level)
        return None

    def encode(self, data: npt.NDArray[Any]) -> bytes:
        """A contiguous chunk's bytes as the Zarr codecs of :meth:`codecs_json` store them."""
        if self.compressor is None:
            return data.tobytes()
        return bytes(self.compressor.encode(data))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """One pool per process for compression (the codecs release the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2), "ferry-compress")
        return _pool


@dataclass(frozen=True)
class Shard:
    """One encoded shard: its bytes (``None`` when every chunk is fill value: nothing is
    stored), how many chunks it covers inside the array and how many it stores."""

    data: memoryview | None
    chunks: int
    stored: int

    @property
    def size(self) -> int:
        return self.data.nbytes if self.data is not None else 0

    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None


_scratch = threading.local()


def _chunk_buffer(shape: tuple[int, int, int], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """This thread's buffer for one chunk (made once per shape and type, then reused: no
    large allocation per chunk)."""
    key = (shape, dtype.str)
    found: npt.NDArray[Any] | None = getattr(_scratch, "buffers", {}).get(key)
    if found is None:
        found = np.empty(shape, dtype=dtype)
        _scratch.buffers = {key: found}
    return found


def encode_shard(
    block: npt.NDArray[np.generic],
    shard: Sequence[int],
    chunk: Sequence[int],
    codec: ChunkCodec,
    fill_value: int | float = 0,
) -> Shard:
    """The bytes of a shard of shape ``shard`` (z, y, x) whose data, from its corner, is
    ``block`` (smaller at the array's far edges). Chunks that are all fill value, and
    chunks wholly outside the array, are not stored (the index marks them empty); chunks
    cut by the array's edge are padded with fill value, as Zarr stores them.

    Chunks are compressed in parallel and copied, in order, into one buffer as they come:
    a shard takes about its compressed size in memory."""
    sz, sy, sx = shard
    cz, cy, cx = chunk
    if block.ndim != 3 or any(b > s for b, s in zip(block.shape, shard, strict=True)):
        raise ValueError(f"a shard block is at most {tuple(shard)} (z, y, x), not {block.shape}")
    grid = (sz // cz, sy // cy, sx // cx)
    nz, ny, nx = (-(-b // c) for b, c in zip(block.shape, chunk, strict=True))
    dtype = block.dtype.newbyteorder("<")
    origins = [(z, y, x) for z in range(nz) for y in range(ny) for x in range(nx)]
    index = np.full((*grid, 2), EMPTY, dtype="<u8")
    tail = index.nbytes + 4
    # untouched pages of a large buffer take no memory: only what is written counts
    size = len(origins) * codec.bound(cz * cy * cx * dtype.itemsize) + tail
    buffer = np.empty(size, dtype=np.uint8)
    view = buffer.data  # a memoryview of the buffer

    def one(origin: tuple[int, int, int]) -> bytes | None:
        z, y, x = origin
        piece = block[z * cz : (z + 1) * cz, y * cy : (y + 1) * cy, x * cx : (x + 1) * cx]
        if fill_value == 0:
            if not piece.any():
                return None
        elif (piece == fill_value).all():
            return None
        data = _chunk_buffer((cz, cy, cx), dtype)
        if piece.shape != (cz, cy, cx):
            data.fill(fill_value)
            data[: piece.shape[0], : piece.shape[1], : piece.shape[2]] = piece
        else:
            np.copyto(data, piece, casting="same_kind")
        return codec.encode(data)

    results = _threads().map(one, origins) if len(origins) > 1 else map(one, origins)
    offset = 0
    stored = 0
    for origin, data in zip(origins, results, strict=True):
        if data is None:
            continue
        view[offset : offset + len(data)] = data
        index[origin] = (offset, len(data))
        offset += len(data)
        stored += 1
    if not stored:
        return Shard(None, len(origins), 0)
    index_bytes = index.tobytes()
    view[offset : offset + index.nbytes] = index_bytes
    checksum = np.array([google_crc32c.value(index_bytes)], dtype="<u4")
    view[offset + index.nbytes : offset + tail] = checksum.tobytes()
    return Shard(view[: offset + tail], len(origins), stored)


# -- the layout of a volume -------------------------------------------------------------


Shape5 = tuple[int, int, int, int, int]
Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Layout:
    """Where every level, shard and chunk of a volume lies, and its metadata."""

    name: str
    dtype: str
    shapes: tuple[Shape5, ...]
    """Each level's shape (t, c, z, y, x), full resolution first."""
    chunks: tuple[Triple, ...]
    """Each level's chunk shape (z, y, x)."""
    shards: tuple[Triple, ...]
    """Each level's shard shape (z, y, x)."""
    factors: Triple
    method: Method
    codec: ChunkCodec
    image_kind: str
    voxel: tuple[float, float, float]
    """Voxel size (z, y, x) at full resolution, in ``unit``."""
    unit: str
    time_step: float
    time_unit: str
    start: tuple[int, int, int, int]
    """The source index (t, z, y, x) of the volume's voxel (0, 0, 0)."""
    time_axis: bool = True
    """Whether the arrays have the ``t`` axis (t, c, z, y, x) or not (c, z, y, x)."""

    @classmethod
    def of(cls, config: IngestConfig) -> Layout:
        """The layout an ingest config asks for."""
        levels = range(config.levels)
        vs = config.voxel_size
        ext = config.extent
        return cls(
            name=config.name,
            dtype=np.dtype(config.dtype).name,
            shapes=tuple(tuple(s) for s in config.level_shapes()),  # type: ignore[misc]
            chunks=tuple(config.level_chunk(k) for k in levels),
            shards=tuple(config.level_shard(k) for k in levels),
            factors=config.downsample_factors,
            method=config.method(),
            codec=ChunkCodec(
                config.compression.codec, config.compression.level, np.dtype(config.dtype).itemsize
            ),
            image_kind=config.image_kind,
            voxel=(vs.z, vs.y, vs.x),
            unit=vs.unit,
            time_step=vs.t,
            time_unit=vs.t_unit,
            start=(ext.t[0], ext.z[0], ext.y[0], ext.x[0]),
            time_axis=config.time_axis == "always" or ext.t[1] - ext.t[0] > 1,
        )

    @property
    def axes(self) -> list[str]:
        """The arrays' axes, in order."""
        return ["t", "c", "z", "y", "x"] if self.time_axis else ["c", "z", "y", "x"]

    def stored_shape(self, level: int) -> list[int]:
        """The level's array shape, along :attr:`axes`."""
        shape = list(self.shapes[level])
        return shape if self.time_axis else shape[1:]

    def _lead(self, values: list[Any]) -> list[Any]:
        """``values`` (for t, c, z, y, x) along :attr:`axes`."""
        return values if self.time_axis else values[1:]

    @property
    def levels(self) -> int:
        return len(self.shapes)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def shard_grid(self, level: int) -> Triple:
        """How many shards the level has along z, y and x (the same at every level)."""
        _, _, z, y, x = self.shapes[level]
        sz, sy, sx = self.shards[level]
        return (-(-z // sz), -(-y // sy), -(-x // sx))

    def chunks_in_shard(self, level: int, zyx: Triple) -> int:
        """How many chunks of shard ``zyx`` (shard indices) lie inside the level's array."""
        _, _, *size = self.shapes[level]
        count = 1
        for i, n, s, c in zip(zyx, size, self.shards[level], self.chunks[level], strict=True):
            inside = min(s, n - i * s)
            count *= -(-inside // c)
        return count

    def shard_key(self, level: int, t: int, c: int, z: int, y: int, x: int) -> str:
        """The shard's key in the volume (Zarr v3 default chunk key encoding)."""
        if not self.time_axis:
            return f"{level}/c/{c}/{z}/{y}/{x}"
        return f"{level}/c/{t}/{c}/{z}/{y}/{x}"

    def shard_region(self, level: int, zyx: Triple) -> tuple[slice, slice, slice]:
        """The voxels (z, y, x) of the level that shard ``zyx`` holds."""
        _, _, *size = self.shapes[level]
        return tuple(  # type: ignore[return-value]
            slice(i * s, min((i + 1) * s, n))
            for i, s, n in zip(zyx, self.shards[level], size, strict=True)
        )

    # -- metadata -----------------------------------------------------------------------

    def array_metadata(self, level: int) -> dict[str, Any]:
        """The ``zarr.json`` of the level's array."""
        cz, cy, cx = self.chunks[level]
        sz, sy, sx = self.shards[level]
        fill: int | float = 0.0 if np.dtype(self.dtype).kind == "f" else 0
        return {
            "zarr_format": 3,
            "node_type": "array",
            "shape": self.stored_shape(level),
            "data_type": self.dtype,
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": self._lead([1, 1, sz, sy, sx])},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": self._lead([1, 1, cz, cy, cx]),
                        "codecs": self.codec.codecs_json(),
                        "index_codecs": _INDEX_CODECS,
                        "index_location": "end",
                    },
                }
            ],
            "attributes": {},
            "dimension_names": self.axes,
            "storage_transformers": [],
        }

    def scale(self, level: int) -> list[float]:
        """The level's voxel size (along :attr:`axes`): full resolution times the factors."""
        return self._lead(
            [
                self.time_step,
                1.0,
                *(v * f**level for v, f in zip(self.voxel, self.factors, strict=True)),
            ]
        )

    def translation(self, level: int) -> list[float]:
        """Where the level's voxel (0, 0, 0) centre lies: the extent's start and, for block
        methods (mean, mode), half a block less half a voxel, since a lower level's voxel
        stands for the centre of the block it summarises."""
        shift = [
            (f**level - 1) / 2 * v if self.method != "stride" else 0.0
            for v, f in zip(self.voxel, self.factors, strict=True)
        ]
        t0, *zyx = self.start
        origin = [i * v for i, v in zip(zyx, self.voxel, strict=True)]
        return self._lead(
            [t0 * self.time_step, 0.0, *(o + s for o, s in zip(origin, shift, strict=True))]
        )

    def multiscales(self) -> dict[str, Any]:
        """The NGFF 0.5 ``multiscales`` entry of the volume."""
        axes = self._lead(
            [
                {"name": "t", "type": "time", "unit": self.time_unit},
                {"name": "c", "type": "channel"},
                *({"name": a, "type": "space", "unit": self.unit} for a in ("z", "y", "x")),
            ]
        )
        datasets = []
        for level in range(self.levels):
            transforms: list[dict[str, Any]] = [{"type": "scale", "scale": self.scale(level)}]
            translation = self.translation(level)
            if any(translation):
                transforms.append({"type": "translation", "translation": translation})
            datasets.append({"path": str(level), "coordinateTransformations": transforms})
        return {
            "name": self.name,
            "axes": axes,
            "datasets": datasets,
            "type": self.method,
            "metadata": {
                "method": f"neuroferry {self.method} over blocks of {list(self.factors)} (z, y, x)",
                "downsample_factors": list(self.factors),
            },
        }

    def group_metadata(self, display: dict[str, Any] | None = None) -> dict[str, Any]:
        """The volume's ``zarr.json``: a group with NGFF 0.5 ``ome`` attributes, with
        ``display`` (an ``omero`` block, or an ``image-label`` one) added; a label image has
        an ``image-label`` entry in any case."""
        ome: dict[str, Any] = {"version": NGFF_VERSION, "multiscales": [self.multiscales()]}
        if self.image_kind == "label":
            ome["image-label"] = {}
        ome.update(display or {})
        return {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}}

    def fingerprint(self, source: Any = None) -> str:
        """A digest of everything that decides the volume's bytes (and of ``source``): a
        partial volume can be resumed only by an ingest with the same fingerprint."""
        facts = {
            "shapes": self.shapes,
            "dtype": self.dtype,
            "chunks": self.chunks,
            "shards": self.shards,
            "factors": self.factors,
            "method": self.method,
            "codecs": self.codec.codecs_json(),
            "start": self.start,
            "source": source,
        }
        if not self.time_axis:  # volumes with a time axis keep the fingerprint they had
            facts["axes"] = self.axes
        text = json.dumps(facts, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def dumps(document: dict[str, Any]) -> bytes:
    """A metadata document as stored."""
    return json.dumps(document, indent=2).encode()
