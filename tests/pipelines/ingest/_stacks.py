"""Small image stacks in every source format the ingest readers read, for tests.

Arrays are numpy arrays in C order (z, y, x), (t, z, y, x) or any tczyx subset; a
trailing axis of 3 or 4 samples makes RGB(A) images where a format has them.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image


def make_volume(shape: Sequence[int], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """A deterministic random volume over the whole range of ``dtype``."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(kind)
    info = np.iinfo(kind)
    return rng.integers(info.min, info.max, size=tuple(shape), dtype=kind, endpoint=True)


def _write_plane(path: Path, plane: np.ndarray) -> None:
    """One 2-D image (or RGB(A) image) as TIFF, PNG or JPEG by ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    rgb = plane.ndim == 3
    if suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, plane, photometric="rgb" if rgb else "minisblack")
    elif suffix == ".png":
        Image.fromarray(plane).save(path)
    elif suffix in (".jpg", ".jpeg"):
        if plane.dtype != np.uint8:
            raise ValueError("JPEG holds uint8 only")
        Image.fromarray(plane).save(path, quality=95)
    else:
        raise ValueError(f"unknown image suffix {suffix}")


def read_plane(path: Path) -> np.ndarray:
    """What a 2-D image file holds (for lossy JPEG: the decoded pixels)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return np.asarray(tifffile.imread(path))
    with Image.open(path) as img:
        return np.asarray(img)


def write_image_folder(
    folder: Path, array_zyx: np.ndarray, ext: str = "tif", name: str = "slice_{z:04d}"
) -> list[Path]:
    """One image per z-slice: ``{folder}/{name}.{ext}`` (``name`` formatted with ``z``).
    A trailing axis of 3 or 4 samples gives RGB(A) files."""
    paths = []
    for z, plane in enumerate(array_zyx):
        path = folder / f"{name.format(z=z)}.{ext}"
        _write_plane(path, plane)
        paths.append(path)
    return paths


def write_image_series(
    folder: Path, array_tczyx: np.ndarray, ext: str = "tif", name: str = "t{t}_c{c}_z{z:03d}"
) -> dict[tuple[int, int, int], Path]:
    """One 2-D image per time point, channel and z-slice; returns {(t, c, z): path}."""
    paths = {}
    for t, c, z in np.ndindex(*array_tczyx.shape[:3]):
        path = folder / f"{name.format(t=t, c=c, z=z)}.{ext}"
        _write_plane(path, array_tczyx[t, c, z])
        paths[(t, c, z)] = path
    return paths


def write_catmaid(
    root: Path,
    array_zyx: np.ndarray,
    tile: tuple[int, int] = (64, 64),
    ext: str = "png",
    *,
    zoom_level: int | None = None,
    pad: bool = True,
) -> list[Path]:
    """A CATMAID file image stack: ``{root}/{z}/{row}_{col}[_{zoom}].{ext}``. Edge tiles are
    padded with zeros to the full tile (as CATMAID writes them) unless ``pad`` is false."""
    ty, tx = tile
    _, height, width = array_zyx.shape[:3]
    zoom = f"_{zoom_level}" if zoom_level is not None else ""
    paths = []
    for z, plane in enumerate(array_zyx):
        for row in range(-(-height // ty)):
            for col in range(-(-width // tx)):
                part = plane[row * ty : (row + 1) * ty, col * tx : (col + 1) * tx]
                if pad and part.shape[:2] != (ty, tx):
                    full = np.zeros((ty, tx, *part.shape[2:]), dtype=part.dtype)
                    full[: part.shape[0], : part.shape[1]] = part
                    part = full
                path = root / str(z) / f"{row}_{col}{zoom}.{ext}"
                _write_plane(path, np.ascontiguousarray(part))
                paths.append(path)
    return paths


def write_multipage_tiff_per_z(
    folder: Path,
    array_tzyx: np.ndarray,
    *,
    compression: str | None = None,
    name: str = "plane_{z:02d}.tif",
) -> dict[int, Path]:
    """One multipage TIFF per z-slice whose pages are the time points; returns {z: path}.
    Uncompressed files can be memory-mapped, compressed ones (``"zlib"``) cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for z in range(array_tzyx.shape[1]):
        path = folder / name.format(z=z)
        stack = np.ascontiguousarray(array_tzyx[:, z])
        rgb = stack.ndim == 4
        tifffile.imwrite(
            path, stack, photometric="rgb" if rgb else "minisblack", compression=compression
        )
        paths[z] = path
    return paths


def write_tiff(
    path: Path,
    array: np.ndarray,
    *,
    ome: bool = False,
    imagej: bool = False,
    axes: str | None = None,
    compression: str | None = None,
) -> Path:
    """One multi-dimensional TIFF; ``ome`` writes OME-TIFF and ``imagej`` an ImageJ
    hyperstack, each with ``axes`` (e.g. ``TCZYX``, ``TZCYX``) in its metadata; without
    either, the pages carry no axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"photometric": "minisblack", "compression": compression}
    if ome:
        kwargs.update(ome=True, metadata={"axes": axes} if axes else None)
    elif imagej:
        kwargs.update(imagej=True, metadata={"axes": axes} if axes else None)
    else:
        kwargs.update(metadata=None)
    tifffile.imwrite(path, array, **kwargs)
    return path


def write_zarr(
    path: Path,
    array: np.ndarray,
    *,
    chunks: Sequence[int] | None = None,
    zarr_format: int = 3,
    dimension_names: Sequence[str] | None = None,
    array_path: str = "",
) -> Path:
    """A Zarr array (v3 or v2) at ``path`` (or at ``array_path`` inside a group there)."""
    import zarr
    from zarr.storage import LocalStore

    chunks = tuple(chunks) if chunks else tuple(min(8, n) for n in array.shape)
    kwargs: dict[str, Any] = {}
    if dimension_names is not None and zarr_format == 3:
        kwargs["dimension_names"] = tuple(dimension_names)
    if array_path:
        group = zarr.open_group(LocalStore(path), mode="a", zarr_format=zarr_format)  # type: ignore[arg-type]
        target = group.create_array(
            array_path, shape=array.shape, chunks=chunks, dtype=array.dtype, **kwargs
        )
    else:
        target = zarr.create_array(
            store=LocalStore(path),
            shape=array.shape,
            chunks=chunks,
            dtype=array.dtype,
            zarr_format=zarr_format,  # type: ignore[arg-type]
            **kwargs,
        )
    target[...] = array
    return path


def write_n5(
    path: Path,
    array: np.ndarray,
    *,
    block: Sequence[int] | None = None,
    compression: str = "gzip",
    dataset: str = "",
    axes: Sequence[str] | None = None,
) -> Path:
    """An N5 dataset (raw or gzip blocks) at ``dataset`` inside the container ``path``;
    ``axes`` (C order) are written as the ``axes`` attribute (N5 order)."""
    block = tuple(block) if block else tuple(min(8, n) for n in array.shape)
    path.mkdir(parents=True, exist_ok=True)
    (path / "attributes.json").write_text(json.dumps({"n5": "2.5.1"}))
    root = path / dataset if dataset else path
    root.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "dimensions": list(reversed(array.shape)),
        "blockSize": list(reversed(block)),
        "dataType": str(array.dtype),
        "compression": {"type": compression}
        if compression == "raw"
        else {"type": "gzip", "level": -1},
    }
    if dataset:
        meta["n5"] = "2.5.1"
    if axes is not None:
        meta["axes"] = list(reversed(list(axes)))
    attrs = (
        json.loads((root / "attributes.json").read_text())
        if (root / "attributes.json").exists()
        else {}
    )
    (root / "attributes.json").write_text(json.dumps({**attrs, **meta}))
    grid = [-(-n // b) for n, b in zip(array.shape, block, strict=True)]
    for at in np.ndindex(*grid):
        part = array[tuple(slice(g * b, (g + 1) * b) for g, b in zip(at, block, strict=True))]
        header = struct.pack(">HH", 0, part.ndim) + struct.pack(
            f">{part.ndim}I", *reversed(part.shape)
        )
        body = np.ascontiguousarray(part).astype(part.dtype.newbyteorder(">")).tobytes()
        if compression != "raw":
            body = gzip.compress(body)
        target = root.joinpath(*(str(g) for g in reversed(at)))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(header + body)
    return path
