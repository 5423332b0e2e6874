"""The ingest benchmark's data, its direct writers and its read-back check.

Imported by ``bench/ingest.py``, and run by it as a subprocess, one tool per process:

    python bench/_ingest_peers.py raw|zarr|tensorstore PLAN.json SRC DEST

* ``raw``: the limit. Every slice read, every chunk compressed with the same codec and
  written as shard files of the same shape, level 0 only, by as many processes as the Dask
  cluster has workers. No pyramid, no metadata beyond what makes it a readable array.
* ``zarr`` / ``tensorstore``: the same 4-level sharded OME-Zarr written directly with the
  library, one z slab (a shard deep) at a time: read the slab (the next one is read in a
  thread meanwhile), write it, downsample it by a rounded mean, pass it one level down;
  a level's slabs are written when a shard's depth of them has gathered.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20260701
DTYPE = np.dtype("uint16")
AXES = ("t", "c", "z", "y", "x")


# -- the plan: what every tool writes -----------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The stack and the output every tool is asked for (z, y, x order throughout)."""

    shape: tuple[int, int, int]
    chunk: tuple[int, int, int] = (64, 128, 128)
    shard: tuple[int, int, int] = (64, 1024, 1024)
    levels: int = 4
    factors: tuple[int, int, int] = (2, 2, 2)
    """Downsampling factor per level and axis (each 1 or 2)."""
    cname: str = "zstd"
    clevel: int = 5
    shuffle: str = "shuffle"
    voxel_size: tuple[float, float, float] = (2.0, 0.5, 0.5)
    unit: str = "micrometer"
    pattern: str = "slice_{z:04d}.tif"
    workers: int = 2
    name: str = "stack"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE.itemsize

    def level_shapes(self) -> list[tuple[int, int, int]]:
        """The shape of every level: each a factor smaller (rounded up) than the last."""
        shapes = [self.shape]
        for _ in range(1, self.levels):
            z, y, x = shapes[-1]
            fz, fy, fx = self.factors
            shapes.append((-(-z // fz), -(-y // fy), -(-x // fx)))
        return shapes

    def level_shard(self, level: int) -> tuple[int, int, int]:
        """The shard shape of a level: the level-0 shard over the factors, so that each
        level-0 shard holds the data of exactly one shard of every level."""
        (sz, fz), (sy, fy), (sx, fx) = zip(self.shard, self.factors, strict=True)
        return (sz // fz**level, sy // fy**level, sx // fx**level)

    def level_chunk(self, level: int) -> tuple[int, int, int]:
        """The chunk shape of a level: the chunk, no larger than the level's shard."""
        shard = self.level_shard(level)
        return (
            min(self.chunk[0], shard[0]),
            min(self.chunk[1], shard[1]),
            min(self.chunk[2], shard[2]),
        )

    def scale(self, level: int) -> list[float]:
        z, y, x = self.voxel_size
        fz, fy, fx = (f**level for f in self.factors)
        return [1.0, 1.0, z * fz, y * fy, x * fx]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        for key in ("shape", "chunk", "shard", "factors", "voxel_size"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def ome_attributes(plan: Plan, levels: int | None = None) -> dict[str, Any]:
    """The group attributes of an NGFF 0.5 multiscale image of the plan."""
    axes: list[dict[str, str]] = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    axes += [{"name": a, "type": "space", "unit": plan.unit} for a in ("z", "y", "x")]
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": plan.name,
                    "axes": axes,
                    "datasets": [
                        {
                            "path": str(k),
                            "coordinateTransformations": [
                                {"type": "scale", "scale": plan.scale(k)}
                            ],
                        }
                        for k in range(plan.levels if levels is None else levels)
                    ],
                }
            ],
        }
    }


# -- the data --------------------------------------------------------------------------------


def slice_path(src: Path, plan: Plan, z: int) -> Path:
    return src / plan.pattern.format(z=z)


@dataclass
class _Cells:
    """Bright blobs at fixed 3-D positions, like nuclei in a cleared brain."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    peak: np.ndarray
    kernel: np.ndarray = field(repr=False)
    radius: int = 16
    sigma_z: float = 3.0

    @classmethod
    def make(cls, shape: tuple[int, int, int]) -> _Cells:
        rng = np.random.default_rng(SEED)
        n = max(1, math.prod(shape) // (64 * 64 * 16))
        r = 16
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        kernel = np.exp(-(yy**2 + xx**2) / (2 * 5.0**2)).astype(np.float32)
        return cls(
            z=rng.uniform(0, shape[0], n),
            y=rng.integers(r, max(r + 1, shape[1] - r), n),
            x=rng.integers(r, max(r + 1, shape[2] - r), n),
            peak=rng.uniform(1500, 9000, n).astype(np.float32),
            kernel=kernel,
            radius=r,
        )

    def stamp(self, image: np.ndarray, z: int) -> None:
        near = np.nonzero(np.abs(self.z - z) < 3 * self.sigma_z)[0]
        r = self.radius
        for i in near:
            weight = self.peak[i] * math.exp(-((self.z[i] - z) ** 2) / (2 * self.sigma_z**2))
            y, x = int(self.y[i]), int(self.x[i])
            region = image[y - r : y + r + 1, x - r : x + r + 1]
            region += weight * self.kernel[: region.shape[0], : region.shape[1]]


def make_slice(plan: Plan, z: int, cells: _Cells) -> np.ndarray:
    """Slice ``z`` of the synthetic stack: a smooth background varying with depth, bright
    blobs, and shot-like noise. The same plan shape and ``z`` always give the same slice."""
    _, ny, nx = plan.shape
    rng = np.random.default_rng([SEED, z])
    waves = np.random.default_rng([SEED, 7])
    fy, fx = waves.uniform(0.5, 6, (2, 6)) * 2 * np.pi
    py, px, speed = waves.uniform(0, 2 * np.pi, (3, 6))
    y = np.linspace(0, 1, ny, dtype=np.float32)
    x = np.linspace(0, 1, nx, dtype=np.float32)
    image = np.full((ny, nx), 400.0, dtype=np.float32)
    for k in range(6):
        a = np.sin(fy[k] * y + py[k] + speed[k] * z / 40).astype(np.float32)
        b = np.cos(fx[k] * x + px[k] - speed[k] * z / 55).astype(np.float32)
        image += 60.0 * np.outer(a, b)
    cells.stamp(image, z)
    noise = rng.standard_normal((ny, nx), dtype=np.float32)
    image += noise * np.sqrt(image) * 1.5
    np.clip(image, 0, 65535, out=image)
    return image.astype(DTYPE)


def _write_slices(args: tuple[str, str, list[int]]) -> None:
    import tifffile

    plan_json, src, zs = args
    plan = Plan.from_json(plan_json)
    cells = _Cells.make(plan.shape)
    for z in zs:
        tifffile.imwrite(slice_path(Path(src), plan, z), make_slice(plan, z, cells))


def generate(plan: Plan, src: Path, say: Callable[[str], None] = print) -> None:
    """Write the stack as one uncompressed 2-D TIFF per z slice (what rigs write), in
    ``plan.workers`` processes."""
    import multiprocessing

    src.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    nz = plan.shape[0]
    batches = [list(range(z, min(z + 32, nz))) for z in range(0, nz, 32)]
    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(plan.workers, mp_context=ctx) as pool:
        work = [(plan.to_json(), str(src), b) for b in batches]
        for done, _ in enumerate(pool.map(_write_slices, work), start=1):
            if done % 4 == 0:
                say(f"  {min(done * 32, nz)} / {nz} slices ({time.monotonic() - started:.0f} s)")


def read_slab(src: Path, plan: Plan, z0: int, z1: int) -> np.ndarray:
    """Slices ``z0`` .. ``z1 - 1`` as one array."""
    import tifffile

    _, ny, nx = plan.shape
    out = np.empty((z1 - z0, ny, nx), dtype=DTYPE)
    for i, z in enumerate(range(z0, z1)):
        tifffile.imread(slice_path(src, plan, z), out=out[i])
    return out


# -- downsampling ----------------------------------------------------------------------------


def _pad_even(a: np.ndarray, axis: int) -> np.ndarray:
    if a.shape[axis] % 2 == 0:
        return a
    last = np.take(a, [-1], axis=axis)
    return np.concatenate([a, last], axis=axis)


def downsample(a: np.ndarray, factors: Sequence[int], block: int = 16) -> np.ndarray:
    """The rounded mean over ``factors`` (1 or 2 per axis) of a 3-D uint16 array; an odd
    edge is padded by repeating its last plane. Worked through ``block`` planes at a time
    to keep the uint32 sums small."""
    fz, fy, fx = factors
    a = _pad_even(a, 0) if fz == 2 else a
    step = block * fz
    parts = []
    for z0 in range(0, a.shape[0], step):
        s = a[z0 : z0 + step]
        s = np.add(s[0::2], s[1::2], dtype=np.uint32) if fz == 2 else s.astype(np.uint32)
        if fy == 2:
            s = _pad_even(s, 1)
            s = s[:, 0::2] + s[:, 1::2]
        if fx == 2:
            s = _pad_even(s, 2)
            s = s[:, :, 0::2] + s[:, :, 1::2]
        n = fz * fy * fx
        parts.append(((s + n // 2) // n).astype(DTYPE))
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


# -- the raw limit -----------------------------------------------------------------------------


def _blosc(plan: Plan) -> Any:
    from numcodecs import Blosc, blosc

    blosc.use_threads = False  # one process per core already
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE}[plan.shuffle]
    return Blosc(cname=plan.cname, clevel=plan.clevel, shuffle=shuffle, blocksize=0)


def _sharding_codec(plan: Plan, chunk: Sequence[int], crc: bool = True) -> dict[str, Any]:
    index_codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if crc:
        index_codecs.append({"name": "crc32c"})
    return {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [1, 1, *chunk],
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {
                    "name": "blosc",
                    "configuration": {
                        "cname": plan.cname,
                        "clevel": plan.clevel,
                        "shuffle": plan.shuffle,
                        "typesize": DTYPE.itemsize,
                        "blocksize": 0,
                    },
                },
            ],
            "index_codecs": index_codecs,
            "index_location": "end",
        },
    }


def _array_metadata(plan: Plan, level: int) -> dict[str, Any]:
    shape, shard = plan.level_shapes()[level], plan.level_shard(level)
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [1, 1, *shape],
        "data_type": DTYPE.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, *shard]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [_sharding_codec(plan, plan.level_chunk(level))],
        "attributes": {},
        "dimension_names": list(AXES),
    }


def _raw_slab(args: tuple[str, str, str, int]) -> int:
    """Read one shard-deep slab, compress its chunks and write its shards; bytes written."""
    from numcodecs import CRC32C

    plan_json, src, dest, zi = args
    plan = Plan.from_json(plan_json)
    codec, crc = _blosc(plan), CRC32C()
    sz, sy, sx = plan.shard
    cz, cy, cx = plan.chunk
    z0 = zi * sz
    slab = read_slab(Path(src), plan, z0, min(z0 + sz, plan.shape[0]))
    written = 0
    for yi in range(-(-plan.shape[1] // sy)):
        for xi in range(-(-plan.shape[2] // sx)):
            parts, index = [], []
            offset = 0
            for z in range(0, sz, cz):
                for y in range(yi * sy, (yi + 1) * sy, cy):
                    for x in range(xi * sx, (xi + 1) * sx, cx):
                        block = slab[z : z + cz, y : y + cy, x : x + cx]
                        if block.shape != plan.chunk:  # an edge chunk is stored whole
                            full = np.zeros(plan.chunk, dtype=DTYPE)
                            full[: block.shape[0], : block.shape[1], : block.shape[2]] = block
                            block = full
                        data = codec.encode(np.ascontiguousarray(block))
                        parts.append(data)
                        index.append((offset, len(data)))
                        offset += len(data)
            table = np.asarray(index, dtype="<u8").tobytes()
            path = Path(dest, "0", "c", "0", "0", str(zi), str(yi), str(xi))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                for data in parts:
                    f.write(data)
                f.write(crc.encode(table))
            written += offset + len(table) + 4
    return written


def run_raw(plan: Plan, src: Path, dest: Path) -> dict[str, Any]:
    """The limit: read, compress and write every byte as shards, no pyramid, in
    ``plan.workers`` processes, one z slab (a shard deep) per unit of work."""
    import multiprocessing

    dest.mkdir(parents=True)
    (dest / "zarr.json").write_text(
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": ome_attributes(plan, levels=1),
            }
        )
    )
    (dest / "0").mkdir()
    (dest / "0" / "zarr.json").write_text(json.dumps(_array_metadata(plan, 0)))
    units = [
        (plan.to_json(), str(src), str(dest), zi)
        for zi in range(-(-plan.shape[0] // plan.shard[0]))
    ]
    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(plan.workers, mp_context=ctx) as pool:
        written = sum(pool.map(_raw_slab, units))
    return {"bytes_written": written}


# -- direct pyramids (zarr-python, tensorstore) ------------------------------------------------


class Pyramid:
    """Slabs in, shard-deep slabs of every level out, each level made from the one above.

    ``write(level, z0, data)`` must return something with ``result()``; at most one write
    is left unfinished while the next slab is prepared, which bounds memory."""

    def __init__(self, plan: Plan, write: Callable[[int, int, np.ndarray], Any]) -> None:
        self.plan, self.write = plan, write
        self.pending: list[np.ndarray] = [np.empty((0, 1, 1), DTYPE)] * plan.levels
        self.done = [0] * plan.levels
        self.inflight: list[Any] = []

    def _emit(self, level: int, data: np.ndarray) -> None:
        self.inflight.append(self.write(level, self.done[level], data))
        self.done[level] += data.shape[0]
        while len(self.inflight) > 1:
            self.inflight.pop(0).result()
        if level + 1 < self.plan.levels:
            self.push(level + 1, downsample(data, self.plan.factors))

    def push(self, level: int, data: np.ndarray) -> None:
        depth = self.plan.level_shard(level)[0]
        have = self.pending[level]
        data = np.concatenate([have, data]) if have.shape[0] else data
        while data.shape[0] >= depth:
            self._emit(level, data[:depth])
            data = data[depth:]
        self.pending[level] = data

    def finish(self) -> None:
        for level in range(self.plan.levels):
            rest = self.pending[level]
            if rest.shape[0]:
                self.pending[level] = np.empty((0, 1, 1), DTYPE)
                self._emit(level, rest)
        for f in self.inflight:
            f.result()
        self.inflight.clear()


def slabs(plan: Plan, src: Path) -> Iterator[np.ndarray]:
    """The stack a shard deep at a time; the next slab is read while the caller works."""
    depth = plan.shard[0]
    starts = list(range(0, plan.shape[0], depth))
    with cf.ThreadPoolExecutor(1) as reader:
        ahead = reader.submit(read_slab, src, plan, 0, min(depth, plan.shape[0]))
        for i, _ in enumerate(starts):
            slab = ahead.result()
            if i + 1 < len(starts):
                z0 = starts[i + 1]
                ahead = reader.submit(read_slab, src, plan, z0, min(z0 + depth, plan.shape[0]))
            yield slab
            del slab


def run_zarr(plan: Plan, src: Path, dest: Path) -> dict[str, Any]:
    """The pyramid written with zarr-python 3 (its own thread pool compresses the chunks)."""
    import zarr
    from zarr.codecs import BloscCodec

    blosc: dict[str, Any] = {
        "cname": plan.cname,
        "clevel": plan.clevel,
        "shuffle": plan.shuffle,
        "typesize": DTYPE.itemsize,
    }
    root = zarr.open_group(str(dest), mode="w", zarr_format=3)
    root.attrs.update(ome_attributes(plan))
    arrays = []
    for level, shape in enumerate(plan.level_shapes()):
        arrays.append(
            root.create_array(
                str(level),
                shape=(1, 1, *shape),
                dtype=DTYPE,
                chunks=(1, 1, *plan.level_chunk(level)),
                shards=(1, 1, *plan.level_shard(level)),
                compressors=BloscCodec(**blosc),
                fill_value=0,
                dimension_names=AXES,
            )
        )
    with cf.ThreadPoolExecutor(1) as writer:

        def write(level: int, z0: int, data: np.ndarray) -> cf.Future[None]:
            def put() -> None:
                arrays[level][0, 0, z0 : z0 + data.shape[0]] = data

            return writer.submit(put)

        pyramid = Pyramid(plan, write)
        for slab in slabs(plan, src):
            pyramid.push(0, slab)
        pyramid.finish()
    return {"zarr": zarr.__version__}


def run_tensorstore(plan: Plan, src: Path, dest: Path) -> dict[str, Any]:
    """The pyramid written with tensorstore (its own thread pool compresses the chunks)."""
    import tensorstore as ts

    dest.mkdir(parents=True)
    (dest / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": ome_attributes(plan)})
    )
    arrays = []
    for level in range(plan.levels):
        meta = _array_metadata(plan, level)
        meta.pop("zarr_format")
        meta.pop("node_type")
        meta.pop("attributes")
        spec = {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(dest / str(level))},
            "metadata": meta,
            "create": True,
        }
        arrays.append(ts.open(spec).result())

    def write(level: int, z0: int, data: np.ndarray) -> Any:
        return arrays[level][0, 0, z0 : z0 + data.shape[0]].write(data)

    pyramid = Pyramid(plan, write)
    for slab in slabs(plan, src):
        pyramid.push(0, slab)
    pyramid.finish()
    return {}


# -- reading an output back -------------------------------------------------------------------


@dataclass
class Level:
    """One level of an output as read back: its shape (z, y, x) and a reader of regions."""

    shape: tuple[int, int, int]
    read: Callable[[tuple[slice, slice, slice]], np.ndarray]


def open_ome_zarr(path: Path) -> list[Level]:
    """The levels of an NGFF 0.5 image, in the order its multiscales list them."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs: dict[str, Any] = dict(group.attrs)
    ome = attrs.get("ome") or {}
    multiscales = ome.get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise ValueError(f"{path}: no multiscales in the group attributes")
    names = [a["name"] for a in multiscales[0]["axes"]]
    levels = []
    for ds in multiscales[0]["datasets"]:
        arr = group[ds["path"]]
        assert isinstance(arr, zarr.Array)
        z, y, x = (arr.shape[names.index(a)] for a in ("z", "y", "x"))
        lead = tuple(0 for a in names if a not in ("z", "y", "x"))

        def read(
            box: tuple[slice, slice, slice], arr: Any = arr, lead: tuple[int, ...] = lead
        ) -> np.ndarray:
            return np.asarray(arr[(*lead, *box)])

        levels.append(Level((z, y, x), read))
    return levels


def open_webknossos(path: Path) -> list[Level]:
    """The mags of a WEBKNOSSOS dataset's single layer (arrays stored c, x, y, z)."""
    import zarr

    props = json.loads((path / "datasource-properties.json").read_text())
    layer = props["dataLayers"][0]
    box = layer["boundingBox"]
    size = (box["depth"], box["height"], box["width"])
    levels = []
    for mag in layer["mags"]:
        m = mag["mag"]  # x, y, z
        where = path / mag.get("path", f"{layer['name']}/{'-'.join(map(str, m))}")
        arr = zarr.open_array(str(where), mode="r")
        shape = (-(-size[0] // m[2]), -(-size[1] // m[1]), -(-size[2] // m[0]))

        def read(b: tuple[slice, slice, slice], arr: Any = arr) -> np.ndarray:
            return np.asarray(arr[0, b[2], b[1], b[0]]).transpose(2, 1, 0)

        levels.append(Level(shape, read))
    return levels


def check_output(levels: list[Level], plan: Plan, src: Path, regions: int = 3) -> dict[str, Any]:
    """Compare a few regions of every level with the source (level 0 exactly; the others
    with the rounded 2x mean of the level above, computed from the source). Reports shapes,
    the largest and mean absolute difference per level, and whether the output holds the
    data: a missing or empty region shows as a large difference."""
    import tifffile

    want_shapes = plan.level_shapes()
    out: dict[str, Any] = {"levels": len(levels), "shapes": [list(lv.shape) for lv in levels]}
    problems: list[str] = []
    if len(levels) < plan.levels:
        problems.append(f"{len(levels)} levels, expected {plan.levels}")
    stack = [tifffile.memmap(slice_path(src, plan, z), mode="r") for z in range(plan.shape[0])]
    rng = np.random.default_rng(SEED + 1)
    per_level: list[dict[str, Any] | None] = []
    for k, level in enumerate(levels[: plan.levels]):
        if level.shape != want_shapes[k]:
            problems.append(f"level {k} shape {level.shape}, expected {want_shapes[k]}")
            per_level.append(None)
            continue
        f = [fa**k for fa in plan.factors]
        worst, total, n, spread = 0, 0.0, 0, 0.0
        for r in range(regions):
            size = [min(s, w) for s, w in zip(level.shape, (16, 64, 64), strict=True)]
            if r == 0:  # the far corner, where edges and partial shards are
                lo = [s - w for s, w in zip(level.shape, size, strict=True)]
            else:
                lo = [
                    int(rng.integers(0, s - w + 1)) for s, w in zip(level.shape, size, strict=True)
                ]
            box = tuple(slice(a, a + w) for a, w in zip(lo, size, strict=True))
            got = level.read(box).astype(np.int64)  # type: ignore[arg-type]
            z0, y0, x0 = (a * fa for a, fa in zip(lo, f, strict=True))
            z1, y1, x1 = (
                min((a + w) * fa, s) for a, w, fa, s in zip(lo, size, f, plan.shape, strict=True)
            )
            src_box = np.stack([stack[z][y0:y1, x0:x1] for z in range(z0, z1)])
            for _ in range(k):
                src_box = downsample(src_box, plan.factors)
            want = src_box.astype(np.int64)
            diff = np.abs(got - want)
            worst = max(worst, int(diff.max()))
            total += float(diff.sum())
            n += diff.size
            spread += float(np.abs(want - want.mean()).mean()) * diff.size
        mean_diff, mean_spread = total / n, spread / n
        per_level.append({"max_diff": worst, "mean_diff": round(mean_diff, 2)})
        if k == 0 and worst:
            problems.append(f"level 0 differs from the source (up to {worst})")
        elif mean_diff > 0.25 * mean_spread:
            problems.append(
                f"level {k} is far from the downsampled source (mean abs. difference "
                f"{mean_diff:.0f}, the data's own mean deviation {mean_spread:.0f})"
            )
    out["per_level"] = per_level
    exact = all(p is not None and p["max_diff"] <= k for k, p in enumerate(per_level))
    if problems:
        out["check"] = "MISMATCH: " + "; ".join(problems)
    elif exact:
        out["check"] = "ok"
    else:
        filt = ", ".join(
            f"L{k} {p['mean_diff']}"
            for k, p in enumerate(per_level)
            if p and k and p["max_diff"] > k
        )
        out["check"] = f"ok (another filter; mean abs. difference from the mean: {filt})"
    return out


def disk_bytes(path: Path) -> int:
    """Bytes of every file below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


RUNNERS: dict[str, Callable[[Plan, Path, Path], dict[str, Any]]] = {
    "raw": run_raw,
    "zarr": run_zarr,
    "tensorstore": run_tensorstore,
}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in RUNNERS:
        print(
            f"usage: _ingest_peers.py {{{','.join(RUNNERS)}}} PLAN.json SRC DEST", file=sys.stderr
        )
        return 2
    tool, plan_file, src, dest = argv
    plan = Plan.from_json(Path(plan_file).read_text())
    if Path(dest).exists():
        shutil.rmtree(dest)
    started = time.perf_counter()
    info = RUNNERS[tool](plan, Path(src), Path(dest))
    info["seconds"] = round(time.perf_counter() - started, 3)
    info["pid"] = os.getpid()
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
