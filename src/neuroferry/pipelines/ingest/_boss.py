"""Boss ingest client configs (schemas ``boss-v0.1-schema`` and ``boss-v0.2-schema``) as
ingest configs.

The Boss resource ``collection/experiment/channel`` becomes the volume's name, the
``ingest_job`` extent and tile size carry over, and the path/tile processor plugins map to
readers. The backend (host, protocol) has no meaning here and is ignored.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any, get_args

from neuroferry.errors import InvalidInput

BOSS_SCHEMAS = ("boss-v0.1-schema", "boss-v0.2-schema")

DEFAULT_VOXEL_SIZE: dict[str, Any] = {"x": 1.0, "y": 1.0, "z": 1.0, "unit": "micrometer"}
"""Boss configs carry no voxel size (the Boss keeps it with the experiment): this one is
used unless the config has ``ingest_job.voxel_size``; give the real one as an override."""

DEFAULT_DTYPE = "uint8"
"""The data type when the config names none (the Boss's default channel type)."""

_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")
_BOSS_FIELD = re.compile(r"<(o:(\d+))?(p:(\d+))?>")


class _Fail(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_boss_config(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is a Boss ingest client config (its ``schema.name`` is ``boss-…``)."""
    schema = data.get("schema")
    return (
        isinstance(schema, Mapping)
        and isinstance(schema.get("name"), str)
        and schema["name"].startswith("boss-")
    )


def _section(
    data: Mapping[str, Any], path: str, *, required: bool = True, prefix: str = ""
) -> dict[str, Any]:
    current: Any = data
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
        if current is None:
            if required:
                raise _Fail(prefix + path, "required")
            return {}
    if not isinstance(current, Mapping):
        raise _Fail(prefix + path, f"must be an object, not {type(current).__name__}")
    return dict(current)


def _processor(client: Mapping[str, Any], key: str) -> tuple[str, dict[str, Any]]:
    section = _section(client, key, prefix="client.")
    cls = section.get("class")
    if not isinstance(cls, str) or not cls:
        raise _Fail(f"client.{key}.class", "required: the plugin's class")
    params = section.get("params", {})
    if not isinstance(params, Mapping):
        raise _Fail(f"client.{key}.params", "must be an object")
    return cls, dict(params)


def _short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def _template(base: str, field: str) -> str:
    """A Boss file name (``<o:200p:4>`` = number + 200, zero-padded to 4) as a template."""
    escaped = base.replace("{", "{{").replace("}", "}}")

    def field_for(match: re.Match[str]) -> str:
        offset = f"+{int(match.group(2))}" if match.group(2) else ""
        pad = f":0{int(match.group(4))}d" if match.group(4) else ""
        return "{" + field + offset + pad + "}"

    return _BOSS_FIELD.sub(field_for, escaped)


def _join(root: Any, name: str) -> str:
    return posixpath.join(root, name) if isinstance(root, str) and root else name


def _ext(*candidates: Any) -> str:
    for value in candidates:
        if isinstance(value, str) and value:
            return value.lstrip(".").lower()
    return ""


def _image_ext(where: str, ext: str) -> str:
    if ext not in ("png", "jpg", "jpeg", "tif", "tiff"):
        raise _Fail(
            where,
            f"{ext or 'no file type'!r} is not an image type we read; "
            "allowed: png, jpg, jpeg, tif, tiff",
        )
    return ext


# -- plugins ---------------------------------------------------------------------------

Mapped = tuple[str, dict[str, Any], dict[str, Any]]
"""(reader name, reader params, config fields the plugin decides, e.g. ``dtype``)."""


def _local_only(tile: Mapping[str, Any], plugin: str) -> None:
    fs = tile.get("filesystem", "local")
    if fs not in ("local", "", None):
        raise _Fail(
            "client.tile_processor.params.filesystem",
            f"{plugin} reads from {fs!r}; neuroferry reads this plugin's files from the "
            "machine that runs the job only (filesystem 'local'): copy them there first",
        )


def _catmaid_filetype(path: dict[str, Any], tile: dict[str, Any]) -> str:
    return _image_ext(
        "client.path_processor.params.filetype", _ext(path.get("filetype"), tile.get("filetype"))
    )


def _catmaid(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    ext = _catmaid_filetype(path, tile)
    return "catmaid", {"root_dir": path.get("root_dir", ""), "filetype": ext, "zoom_level": 0}, {}


def _catmaid_tiles(path: dict[str, Any], tile: dict[str, Any], tiles: str) -> Mapped:
    """A CATMAID stack of zoom level 0 whose tiles lie at ``0/{z}/{tiles}.{ext}``."""
    ext = _catmaid_filetype(path, tile)
    params = {
        "root_dir": path.get("root_dir", ""),
        "filetype": ext,
        "pattern": f"0/{{z}}/{tiles}.{ext}",
    }
    return "catmaid", params, {}


def _catmaid_zoom(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    return _catmaid_tiles(path, tile, "{row}_{col}")


def _catmaid_dirs(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    return _catmaid_tiles(path, tile, "{row}/{col}")


def _zindex(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    _local_only(tile, "ZindexStack")
    base = path.get("base_filename")
    if not isinstance(base, str) or not base:
        raise _Fail("client.path_processor.params.base_filename", "required")
    ext = _image_ext(
        "client.path_processor.params.extension", _ext(path.get("extension"), tile.get("extension"))
    )
    name = _template(base.replace("<z>", "<>"), "z") + "." + ext
    has_x, has_y = "<x>" in base, "<y>" in base
    if has_x or has_y:
        if not (has_x and has_y):
            raise _Fail(
                "client.path_processor.params.base_filename",
                f"{base!r} has only one of <x> and <y>; a file per tile needs both",
            )
        pattern = name.replace("<y>", "{row}").replace("<x>", "{col}")
        return (
            "catmaid",
            {"root_dir": path.get("root_dir", ""), "filetype": ext, "pattern": pattern},
            {},
        )
    return "image-folder", {"path": path.get("root_dir", ""), "pattern": name}, {}


def _single_time_tiff(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    files = {k: v for k, v in path.items() if re.fullmatch(r"z_\d+", k)}
    if not files:
        raise _Fail(
            "client.path_processor.params",
            "SingleTimeTiff needs the file of each z-slice as z_<index>: <path>",
        )
    return "multipage-tiff", {"files": files}, {"dtype": "uint16"}


def _hyperstack(path: dict[str, Any], tile: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    _local_only(tile, "TiffMultiFileHyperStack")
    base = path.get("base_filename")
    if not isinstance(base, str) or not base:
        raise _Fail("client.path_processor.params.base_filename", "required")
    template = _template(base, "i")
    params: dict[str, Any] = {
        "path": _join(path.get("root_dir"), f"{template}.{_ext(path.get('extension')) or 'tif'}"),
        "axes": "tzcyx",
        "sizes": {
            "z": _integer(tile, "tile_processor", "num_z_slices"),
            "c": _integer(tile, "tile_processor", "num_channels"),
        },
        "channel": _integer(tile, "tile_processor", "channel_index", 0),
    }
    if _BOSS_FIELD.search(base):  # the time points are split over files
        params["t_per_file"] = _integer({**tile, **path}, "path_processor", "time_chunk_size")
    return "tiff", params, {"dtype": "uint16"}


def _integer(params: Mapping[str, Any], section: str, key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Fail(f"client.{section}.params.{key}", "required: a whole number")
    return value


def _zarr(path: dict[str, Any], chunk: dict[str, Any], job: Mapping[str, Any]) -> Mapped:
    url, name = chunk.get("cloud_path"), chunk.get("volume_name")
    if not isinstance(url, str) or not url:
        raise _Fail("client.chunk_processor.params.cloud_path", "required: the Zarr store's URL")
    params: dict[str, Any] = {"path": url, "axes": "zyx"}
    if isinstance(name, str) and name:
        params["array"] = name
    return "zarr", params, {}


_Mapper = Callable[[dict[str, Any], dict[str, Any], Mapping[str, Any]], Mapped]

PLUGINS: dict[str, tuple[str, _Mapper]] = {
    "CatmaidFileImageStackPathProcessor": ("tile_processor", _catmaid),
    "CatmaidFileImageStackZoomLevelPathProcessor": ("tile_processor", _catmaid_zoom),
    "CatmaidDirectoryImageStackPathProcessor": ("tile_processor", _catmaid_dirs),
    "ZindexStackPathProcessor": ("tile_processor", _zindex),
    "SingleTimeTiffPathProcessor": ("tile_processor", _single_time_tiff),
    "TiffMultiFileHyperStackPathProcessor": ("tile_processor", _hyperstack),
    "ZarrPathProcessor": ("chunk_processor", _zarr),
}
"""Boss path processors we read, by class name (any module), and their mapping."""

_UNSUPPORTED = {
    "CatmaidURL": "it fetches tiles from a CATMAID web server; download the stack as "
    "files and use CatmaidFileImageStack (reader catmaid)",
    "Hdf5": "HDF5 files are not read; convert the data to TIFF, Zarr or N5 first",
    "Intern": "it copies from another Boss resource over the network",
    "CloudVolume": "it reads Neuroglancer precomputed volumes through CloudVolume",
}


def _unsupported(cls: str) -> str:
    reason = next((r for k, r in _UNSUPPORTED.items() if _short(cls).startswith(k)), None)
    supported = ", ".join(sorted(PLUGINS))
    why = f": {reason}" if reason else ""
    return (
        f"the Boss ingest client plugin {cls} is not supported{why}. Supported path "
        f"processors: {supported}"
    )


# -- the mapping -------------------------------------------------------------------------


def _extent(job: Mapping[str, Any]) -> dict[str, Any]:
    extent = _section(job, "extent", prefix="ingest_job.")
    out: dict[str, Any] = {}
    for axis in ("x", "y", "z", "t"):
        value = extent.get(axis)
        if value is None and axis == "t":
            value = [0, 1]
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise _Fail(f"ingest_job.extent.{axis}", "required: [start, stop] as two integers")
        out[axis] = list(value)
    return out


def _size(job: Mapping[str, Any], key: str, axes: tuple[str, ...]) -> dict[str, int]:
    section = _section(job, key, prefix="ingest_job.")
    for axis in axes:
        value = section.get(axis)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _Fail(f"ingest_job.{key}.{axis}", "required: a positive integer")
    return {axis: int(section[axis]) for axis in section if axis in ("x", "y", "z", "t")}


def _dtype(data: Mapping[str, Any], fallback: str) -> str:
    from neuroferry.pipelines.ingest._config import DType

    allowed = get_args(DType)
    for where in (
        "client.tile_processor.params.datatype",
        "client.chunk_processor.params.datatype",
        "client.path_processor.params.datatype",
        "ingest_job.datatype",
        "database.datatype",
    ):
        section, key = where.rsplit(".", 1)
        value = _section(data, section, required=False).get(key)
        if value is not None:
            if value not in allowed:
                raise _Fail(where, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
            return str(value)
    return fallback


def _name(database: Mapping[str, Any]) -> str:
    parts = []
    for key in ("collection", "experiment", "channel"):
        value = database.get(key)
        if value is None:
            raise _Fail(f"database.{key}", "required")
        if not isinstance(value, str) or not _SEGMENT.fullmatch(value) or set(value) == {"."}:
            raise _Fail(
                f"database.{key}",
                f"{value!r} is not allowed as part of the volume's name; use 1 to 128 "
                "letters, digits, '.', '-' or '_'",
            )
        parts.append(value)
    return "/".join(parts)


def _map(data: Mapping[str, Any]) -> dict[str, Any]:
    schema = str(_section(data, "schema").get("name"))
    if schema not in BOSS_SCHEMAS:
        raise _Fail(
            "schema.name", f"{schema!r} is not supported; supported: {', '.join(BOSS_SCHEMAS)}"
        )
    client = _section(data, "client")
    job = _section(data, "ingest_job")
    name = _name(_section(data, "database"))
    resolution = job.get("resolution", 0)
    if resolution != 0:
        raise _Fail(
            "ingest_job.resolution",
            f"{resolution!r}: only full resolution (0) is ingested; the lower resolutions are "
            "computed from it (levels)",
        )
    ingest_type = job.get("ingest_type", "tile") if schema == "boss-v0.2-schema" else "tile"
    if ingest_type not in ("tile", "volumetric"):
        raise _Fail(
            "ingest_job.ingest_type", f"{ingest_type!r} is not allowed; allowed: tile, volumetric"
        )
    path_cls, path_params = _processor(client, "path_processor")
    second = "tile_processor" if ingest_type == "tile" else "chunk_processor"
    entry = PLUGINS.get(_short(path_cls))
    if entry is None:
        raise _Fail("client.path_processor.class", _unsupported(path_cls))
    wanted, mapper = entry
    if wanted != second:
        raise _Fail(
            "ingest_job.ingest_type",
            f"{path_cls} needs ingest_type "
            f"{'volumetric' if wanted == 'chunk_processor' else 'tile'}",
        )
    other_cls, other_params = _processor(client, second)
    if _short(other_cls).startswith(tuple(_UNSUPPORTED)):
        raise _Fail(f"client.{second}.class", _unsupported(other_cls))
    plugin, params, decided = mapper(path_params, other_params, job)
    tile_size = _size(job, "tile_size" if ingest_type == "tile" else "chunk_size", ("x", "y", "z"))
    voxel = job.get("voxel_size")
    return {
        "version": 1,
        "name": name,
        "source": {"plugin": plugin, "params": params},
        "extent": _extent(job),
        "channels": 1,
        "dtype": _dtype(data, decided.get("dtype", DEFAULT_DTYPE)),
        "voxel_size": dict(voxel) if isinstance(voxel, Mapping) else dict(DEFAULT_VOXEL_SIZE),
        "tile_size": tile_size,
    }


def boss_to_config(data: Mapping[str, Any], *, origin: str | None = None) -> dict[str, Any]:
    """The ingest config (as a mapping, not yet validated) of a Boss ingest client config;
    InvalidInput names the field (and ``origin``, the file) and, for a plugin we do not
    read, the plugin's class and the supported ones."""
    try:
        return _map(data)
    except _Fail as fail:
        prefix = f"{origin}: " if origin else ""
        problem = {"field": fail.field, "message": fail.message}
        if origin:
            problem["file"] = origin
        raise InvalidInput(
            f"{prefix}Boss ingest config: {fail.field}: {fail.message}", [problem]
        ) from None
