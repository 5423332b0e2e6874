"""A volume for viewers: the objects of an asset's OME-Zarr (for a viewer in the browser,
with byte ranges), and slices of its levels rendered to PNG (thumbnails and the asset
page's slice viewer).

A volume is reached through its catalog document, found as the caller (only assets the
caller may see), never through a URL the caller gives; object keys are checked before any
store is asked, and a local store's file is served only if it lies inside the volume.
"""

from __future__ import annotations

import io
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
import numpy.typing as npt

from neuroferry.catalog import Catalog
from neuroferry.config import Settings
from neuroferry.errors import InvalidInput, NotFound, StoreNotFound, UnsafePath
from neuroferry.stores import Store, open_store

MAX_KEY = 1024
"""Characters an object key may have."""
MAX_PLANE = 4096 * 4096
"""The most voxels of one slice of a level that is rendered; larger levels are not."""
THUMBNAIL_SIDE = 256
"""The longest side of a thumbnail, in pixels."""
SLICE_SIDE = 1024
"""The longest side of a slice of the asset page's viewer, in pixels."""
CACHE_ENTRIES = 256
"""Rendered slices kept in memory."""
MAX_RESPONSE = 64 * 1024 * 1024
"""The most bytes of an object one response carries; larger parts are asked for by range."""
MAX_SLICE_BYTES = 128 * 1024 * 1024
"""The most bytes of array data read to render one slice (all channels, after striding)."""

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class VolumeAsset:
    """An asset that is an OME-Zarr volume: its name, where it lies, its image facts."""

    name: str
    location: str
    image: Mapping[str, Any]

    @property
    def levels(self) -> list[Mapping[str, Any]]:
        found = self.image.get("levels")
        return [lv for lv in found if isinstance(lv, Mapping)] if isinstance(found, list) else []

    @property
    def time_axis(self) -> bool:
        """Whether the arrays have a ``t`` axis (volumes of 3-D stacks need not)."""
        axes = self.image.get("axes")
        return not isinstance(axes, list) or "t" in axes

    def shape(self, level: int) -> list[int]:
        """The level's shape (t, c, z, y, x), with t 1 for arrays without the axis; empty
        when the document's shape is not a list of positive integers."""
        found = _positive_shape(self.levels[level].get("shape"))
        if not found:
            return []
        return found if self.time_axis else [1, *found]

    @property
    def paths(self) -> list[str]:
        """The paths of its levels inside the volume."""
        return [str(lv.get("path", i)) for i, lv in enumerate(self.levels)]

    def renderable(self, level: int) -> bool:
        """Whether a slice of the level is small enough to render."""
        shape = self.shape(level)
        return len(shape) == 5 and shape[3] * shape[4] <= MAX_PLANE


def _positive_shape(shape: Any) -> list[int]:
    """``shape`` as a list of positive integers, or empty when it is not one."""
    if not isinstance(shape, list | tuple) or not shape:
        return []
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        return []
    return [int(n) for n in shape]


def is_volume(doc: Mapping[str, Any]) -> bool:
    """Whether a catalog document is an OME-Zarr volume neuroferry can show: one written by
    the ingest job's register step (``type`` ``ome-zarr``, an ``ingest`` block and the
    ``image`` facts; an upload may not set these fields, see
    :data:`neuroferry.pipelines.upload._tasks.RESERVED_FIELDS`)."""
    image = doc.get("image")
    return (
        doc.get("type") == "ome-zarr"
        and isinstance(doc.get("ingest"), Mapping)
        and isinstance(image, Mapping)
        and image.get("format") == "ome-zarr"
        and isinstance(doc.get("location"), str)
        and isinstance(image.get("levels"), list)
    )


def volume_asset(catalog: Catalog, name: str, viewer: Any) -> VolumeAsset:
    """The volume asset ``name`` as ``viewer`` may see it; NotFound when there is none
    (also for an asset of another user, so that its existence is not told)."""
    found = catalog.find({"name": name}, limit=1, viewer=viewer)
    if not found or not is_volume(found[0]):
        raise NotFound(
            f"no OME-Zarr volume named {name!r} that you may read; search the catalog for it"
        )
    doc = found[0]
    return VolumeAsset(str(doc["name"]), str(doc["location"]), doc["image"])


def volume_key(path: str) -> str:
    """An object key of a volume as a request names it, decoded until it no longer
    changes and checked: ``/``-separated parts of letters, digits, ``.``, ``-``, ``_``,
    none of them ``.`` or ``..``, nothing under neuroferry's own ``.ferry`` prefix.
    UnsafePath names the problem."""
    key = path
    for _ in range(4):
        decoded = unquote(key)
        if decoded == key:
            break
        key = decoded
    else:
        raise UnsafePath(f"{path!r} is encoded too many times")
    key = unicodedata.normalize("NFC", key)
    if not key or len(key) > MAX_KEY:
        raise UnsafePath(f"an object key is 1 to {MAX_KEY} characters")
    for part in key.split("/"):
        if part in ("", ".", "..") or not set(part) <= _KEY_CHARS:
            raise UnsafePath(
                f"{path!r}: part {part!r} is not allowed; a volume's keys are parts of "
                "letters, digits, '.', '-' or '_' separated by '/' (no '.' or '..' parts)"
            )
    if key.split("/")[0].startswith(".ferry"):
        raise UnsafePath(f"{path!r} is not part of the volume")
    return key


def _served(volume: VolumeAsset, key: str) -> bool:
    """Whether ``key`` is an object a viewer reads: a ``zarr.json``, or a key under one of
    the volume's levels or its ``labels`` group."""
    if key.rsplit("/", 1)[-1] == "zarr.json":
        return True
    return any(key.startswith(f"{prefix}/") for prefix in (*volume.paths, "labels"))


def _store(volume: VolumeAsset, settings: Settings) -> Store:
    try:
        return open_store(volume.location, settings=settings)
    except StoreNotFound as exc:
        raise NotFound(f"the data of {volume.name} are not in their store: {exc}") from exc


def _inside(store: Store, key: str, name: str) -> None:
    """Refuse a local file that a link takes outside the volume; NotFound for a key that
    is no file (a folder, or below a file)."""
    root = store.local_root
    if root is None:
        return
    target = (root / key).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafePath(f"{key!r} leads outside the volume")
    if not target.is_file():
        raise NotFound(f"{name} has no object {key!r}")


@dataclass(frozen=True)
class Piece:
    """Bytes of an object: ``data`` from ``start`` to ``end`` (excluded) of ``size``."""

    data: bytes
    start: int
    end: int
    size: int
    etag: str | None

    @property
    def partial(self) -> bool:
        return (self.start, self.end) != (0, self.size)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` a ``Range`` header asks of an object of ``size``
    bytes; ``None`` for the whole object (no header, or one of another unit or of several
    ranges, which a server may ignore). InvalidInput (416) when it lies outside."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError(spec)
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise ValueError(spec)
            return (max(0, size - suffix), size) if size else _unsatisfiable(header, size)
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None  # a malformed range is ignored, as HTTP says
    if start < 0 or (last and end <= start):
        return None
    if start >= size:
        return _unsatisfiable(header, size)
    return (start, min(end, size))


class RangeNotSatisfiable(InvalidInput):
    """The range asked for lies outside the object."""

    status_code = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def _unsatisfiable(header: str, size: int) -> tuple[int, int]:
    raise RangeNotSatisfiable(f"Range {header!r} lies outside the object of {size} bytes", size)


class TooLarge(InvalidInput):
    """The bytes asked for are more than one response carries."""

    status_code = 413


def read_object(
    volume: VolumeAsset,
    key: str,
    settings: Settings,
    range_header: str | None = None,
    *,
    body: bool = True,
) -> Piece:
    """The object ``key`` of the volume, or the part a ``Range`` header asks for; without
    ``body`` (HEAD) only its size and tag (no byte is read). Only the OME-Zarr's own
    objects are served (``zarr.json`` files, keys under a level or ``labels``); TooLarge
    (413) for more than :data:`MAX_RESPONSE` bytes at once."""
    key = volume_key(key)
    if not _served(volume, key):
        raise NotFound(
            f"{volume.name} has no object {key!r}; a volume serves its zarr.json files and "
            f"the keys under its levels ({', '.join(volume.paths)}) or labels"
        )
    store = _store(volume, settings)
    _inside(store, key, volume.name)
    try:
        entry = store.head(key)
        wanted = parse_range(range_header, entry.size)
        start, end = wanted if wanted is not None else (0, entry.size)
        if not body:
            return Piece(b"", start, end, entry.size, entry.etag)
        if end - start > MAX_RESPONSE:
            raise TooLarge(
                f"{key!r} of {volume.name}: {end - start} bytes asked for, at most "
                f"{MAX_RESPONSE} are sent at once; ask for parts with a Range header "
                f"(bytes=START-END)"
            )
        data = store.get_range(key, start, end) if end > start else b""
    except StoreNotFound as exc:
        raise NotFound(f"{volume.name} has no object {key!r}") from exc
    return Piece(data, start, start + len(data), entry.size, entry.etag)


# -- slices as PNG ------------------------------------------------------------------------


def _attributes(store: Store) -> dict[str, Any]:
    import json

    try:
        found = json.loads(store.get("zarr.json"))
    except (StoreNotFound, ValueError):
        return {}
    ome = (found.get("attributes") or {}).get("ome") if isinstance(found, dict) else None
    return ome if isinstance(ome, dict) else {}


def _hex_rgb(color: Any) -> tuple[float, float, float]:
    text = str(color) if isinstance(color, str) and len(color) >= 6 else "FFFFFF"
    try:
        return tuple(int(text[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return (1.0, 1.0, 1.0)


def _intensity(planes: npt.NDArray[Any], ome: Mapping[str, Any]) -> npt.NDArray[np.uint8]:
    """The channels (c, y, x) composed into RGB with the ``omero`` windows and colours
    (without them: each channel's own 0.1-99.9 percentiles, grey or a palette)."""
    channels = (ome.get("omero") or {}).get("channels") if isinstance(ome, Mapping) else None
    channels = channels if isinstance(channels, list) else []
    rgb = np.zeros((*planes.shape[1:], 3), dtype=np.float32)
    for c, plane in enumerate(planes):
        info = channels[c] if c < len(channels) and isinstance(channels[c], Mapping) else {}
        if info.get("active") is False:
            continue
        win = info.get("window") if isinstance(info.get("window"), Mapping) else {}
        values = plane.astype(np.float32)
        finite = values[np.isfinite(values)]
        start = win.get("start") if win else None
        end = win.get("end") if win else None
        if not isinstance(start, int | float) or not isinstance(end, int | float):
            start, end = np.percentile(finite, [0.1, 99.9]) if finite.size else (0.0, 1.0)
        scaled = np.clip((values - start) / max(float(end) - float(start), 1e-12), 0, 1)
        scaled = np.nan_to_num(scaled)
        default = "FFFFFF" if len(planes) == 1 else ("00FF00", "FF00FF", "00FFFF")[c % 3]
        color = _hex_rgb(info.get("color", default))
        rgb += scaled[..., None] * np.array(color, dtype=np.float32)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _labels(plane: npt.NDArray[Any], ome: Mapping[str, Any]) -> npt.NDArray[np.uint8]:
    """A label slice in the ``image-label`` colours (other values: a colour of their own,
    0 black)."""
    from neuroferry.pipelines.ingest._display import label_color

    given: dict[int, list[int]] = {}
    block = ome.get("image-label") if isinstance(ome, Mapping) else None
    for entry in (block or {}).get("colors") or [] if isinstance(block, Mapping) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("rgba"), list):
            given[int(entry.get("label-value", 0))] = [int(v) for v in entry["rgba"]][:4]
    values, inverse = np.unique(plane, return_inverse=True)
    table = np.zeros((len(values), 3), dtype=np.uint8)
    for i, value in enumerate(values.tolist()):
        if value in given:
            r, g, b, a = (given[value] + [255] * 4)[:4]
            table[i] = [r * a // 255, g * a // 255, b * a // 255]
        elif value != 0:
            text = label_color(int(value))
            table[i] = [int(text[j : j + 2], 16) for j in (0, 2, 4)]
    out: npt.NDArray[np.uint8] = table[inverse.reshape(plane.shape)]
    return out


def _png(rgb: npt.NDArray[np.uint8]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class _Cache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_cache = _Cache(CACHE_ENTRIES)


def render_slice(
    volume: VolumeAsset,
    level: int,
    settings: Settings,
    *,
    z: int | None = None,
    side: int = THUMBNAIL_SIDE,
) -> tuple[bytes, str]:
    """The PNG of slice ``z`` (default: the middle one) of the level at time 0, its
    longest side at most ``side`` pixels, and a tag that changes with the volume; cached.
    InvalidInput for a level or slice the volume does not have, or a level too large."""
    levels = volume.levels
    if not 0 <= level < len(levels):
        raise NotFound(f"{volume.name} has levels 0 to {len(levels) - 1}, not {level}")
    shape = volume.shape(level)
    if len(shape) != 5:
        raise InvalidInput(
            f"level {level} of {volume.name} is not a readable volume: its catalog document "
            "gives no shape of positive sizes (t, c, z, y, x or c, z, y, x)"
        )
    if not volume.renderable(level):
        raise InvalidInput(
            f"level {level} of {volume.name} is too large to render a slice of "
            f"({shape[3]} x {shape[4]} voxels); choose a lower resolution level"
        )
    store = _store(volume, settings)
    try:
        tag = store.head("zarr.json").etag or ""
    except StoreNotFound as exc:
        raise NotFound(f"{volume.name} has no OME-Zarr metadata (not committed yet?)") from exc
    key = (volume.location, tag, level, z, side)
    found = _cache.get(key)
    if found is not None:
        return found, f"{tag}-{level}-{z}-{side}"
    import zarr

    from neuroferry.stores import zarr_store

    ome = _attributes(store)
    path = str(levels[level].get("path", level))
    volume_key(path)
    try:
        array = zarr.open_array(store=zarr_store(store), path=path, mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise NotFound(f"level {level} of {volume.name} is not a readable array: {exc}") from exc
    real = _positive_shape(list(array.shape))
    lead = (0,) if volume.time_axis else ()
    if len(real) != 4 + len(lead):
        raise InvalidInput(
            f"level {level} of {volume.name} is not a readable volume: its array has shape "
            f"{list(array.shape)}, not {4 + len(lead)} positive sizes"
        )
    channels, depth, height, width = real[-4:]
    if height * width > MAX_PLANE:
        raise InvalidInput(
            f"level {level} of {volume.name} is too large to render a slice of "
            f"({height} x {width} voxels); choose a lower resolution level"
        )
    z = depth // 2 if z is None else z
    if not 0 <= z < depth:
        raise InvalidInput(f"z: level {level} has slices 0 to {depth - 1}, not {z}")
    step = max(1, -(-max(height, width) // side))
    needed = channels * -(-height // step) * -(-width // step) * array.dtype.itemsize
    if needed > MAX_SLICE_BYTES:
        raise InvalidInput(
            f"level {level} of {volume.name} is too large to render a slice of ({channels} "
            f"channels of {height} x {width} {array.dtype}: {needed} bytes, at most "
            f"{MAX_SLICE_BYTES}); choose a lower resolution level"
        )
    planes = np.asarray(
        array[(*lead, slice(None), z, slice(None, None, step), slice(None, None, step))]
    )
    if "image-label" in ome or volume.image.get("image_kind") == "label":
        rgb = _labels(planes[0], ome)
    else:
        rgb = _intensity(planes, ome)
    png = _png(rgb)
    _cache.put(key, png)
    return png, f"{tag}-{level}-{z}-{side}"
