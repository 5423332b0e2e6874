"""Read N5 datasets (the format of the N5 Java library): ``attributes.json`` and one file
per block, with raw, gzip, bzip2, xz, blosc or zstd compression.

N5 lists dimensions fastest first (x, y, z); this module presents them in C order
(z, y, x), as Zarr and numpy do. A block that was never written reads as zeros.
"""

from __future__ import annotations

import bz2
import json
import lzma
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = (
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
)
COMPRESSIONS = ("raw", "gzip", "bzip2", "xz", "blosc", "zstd")


class N5Error(Exception):
    """The dataset's metadata or a block is not valid N5; ``path`` names the file."""

    def __init__(self, path: Path, message: str, block: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.block = block


def _decompress(kind: str, data: bytes) -> bytes:
    if kind == "raw":
        return data
    if kind == "gzip":
        return zlib.decompress(data, zlib.MAX_WBITS | 32)  # gzip or zlib header
    if kind == "bzip2":
        return bz2.decompress(data)
    if kind == "xz":
        return lzma.decompress(data)
    import numcodecs

    codec = numcodecs.Blosc() if kind == "blosc" else numcodecs.Zstd()
    return bytes(codec.decode(data))


class N5Dataset:
    """One N5 dataset: shape and block shape in C order, dtype, and region reads."""

    def __init__(self, root: Path, check_file: Callable[[Path], object] | None = None) -> None:
        self.root = root
        self.check_file = check_file
        """Called with each file's path before it is read (refuses what may not be)."""
        meta_path = root / "attributes.json"
        self._check(meta_path)
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise N5Error(meta_path, "no N5 dataset here (attributes.json is missing)") from None
        except (OSError, ValueError) as exc:
            raise N5Error(meta_path, f"cannot read attributes.json: {exc}") from None
        try:
            dims = [int(d) for d in meta["dimensions"]]
            block = [int(b) for b in meta["blockSize"]]
            dtype = str(meta["dataType"])
            compression = meta.get("compression", {"type": meta.get("compressionType", "raw")})
            kind = str(compression.get("type", "raw"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise N5Error(
                meta_path,
                "attributes.json lacks dimensions, blockSize or dataType (is it a group, "
                "not a dataset?)",
            ) from None
        if dtype not in _DTYPES:
            raise N5Error(meta_path, f"dataType {dtype!r} is not supported")
        if kind not in COMPRESSIONS:
            raise N5Error(
                meta_path,
                f"compression {kind!r} is not supported; supported: {', '.join(COMPRESSIONS)}",
            )
        if len(dims) != len(block) or min(block, default=1) < 1:
            raise N5Error(meta_path, "dimensions and blockSize do not match")
        self.shape = tuple(reversed(dims))
        self.blocks = tuple(reversed(block))
        self.dtype = np.dtype(dtype)
        self.compression = kind
        self.attributes: dict[str, Any] = meta

    def _check(self, path: Path) -> None:
        if self.check_file is not None:
            self.check_file(path)

    def block_path(self, grid: Sequence[int]) -> Path:
        """The file of the block at ``grid`` (C order)."""
        return self.root.joinpath(*(str(g) for g in reversed(grid)))

    def read_block(self, grid: Sequence[int]) -> np.ndarray | None:
        """The block at ``grid`` (C order), or None if it was never written."""
        path = self.block_path(grid)
        self._check(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise N5Error(path, f"cannot read block: {exc.strerror or exc}", tuple(grid)) from None
        try:
            mode, ndim = struct.unpack_from(">HH", raw, 0)
            if mode not in (0, 1) or ndim != len(self.shape):
                raise ValueError(f"block header says mode {mode}, {ndim} dimensions")
            sizes = struct.unpack_from(f">{ndim}I", raw, 4)
            offset = 4 + 4 * ndim + (4 if mode == 1 else 0)
            data = _decompress(self.compression, raw[offset:])
            count = math.prod(sizes)
            block = np.frombuffer(data, self.dtype.newbyteorder(">"), count)
        except Exception as exc:
            raise N5Error(
                path, f"corrupt block: {type(exc).__name__}: {exc}", tuple(grid)
            ) from None
        wanted = [min(b, s - g * b) for b, s, g in zip(self.blocks, self.shape, grid, strict=True)]
        found = list(reversed(sizes))
        if any(f < w for f, w in zip(found, wanted, strict=True)):
            raise N5Error(path, f"block is {found}, expected {wanted}", tuple(grid))
        return block.reshape(found)

    def read(self, region: Sequence[slice]) -> np.ndarray:
        """The voxels in ``region`` (one ``slice(start, stop)`` per dimension, C order)."""
        starts = [s.start for s in region]
        stops = [s.stop for s in region]
        out = np.zeros([b - a for a, b in zip(starts, stops, strict=True)], self.dtype)
        ranges = [
            range(a // b, (e - 1) // b + 1)
            for a, e, b in zip(starts, stops, self.blocks, strict=True)
        ]
        for grid in np.ndindex(*(len(r) for r in ranges)):
            at = [r[i] for r, i in zip(ranges, grid, strict=True)]
            block = self.read_block(at)
            if block is None:
                continue
            src, dst = [], []
            for g, b, a, e in zip(at, self.blocks, starts, stops, strict=True):
                lo, hi = max(a, g * b), min(e, (g + 1) * b)
                src.append(slice(lo - g * b, hi - g * b))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = block[tuple(src)]
        return out
