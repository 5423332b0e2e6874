"""The ingest config (version 1): which source to read, which part of it, and how the
OME-Zarr volume is laid out. Boss ingest client configs are read too (mapped by ``_boss``).

Every error names the field (as a dotted path) and what is allowed there.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from neuroferry.catalog import RECORD_NAME
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest._params import BUILTIN_PARAMS

CONFIG_VERSION = 1

DType = Literal[
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "float32", "float64"
]
Codec = Literal["blosc-zstd", "blosc-lz4", "zstd", "gzip", "none"]

_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*")
_LEVEL_RANGE = {"blosc-zstd": (0, 9), "blosc-lz4": (0, 9), "zstd": (1, 22), "gzip": (1, 9)}
_MAX_FILE_BYTES = 1 << 20
_RGB = re.compile(r"[0-9A-Fa-f]{6}")
_RGBA = re.compile(r"[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?")
_NAMED = re.compile(r"([a-z_]+(?:\.[a-z_]+)*): (.*)", re.DOTALL)


def _error(message: str) -> PydanticCustomError:
    # the message goes in as context so that braces in values are not format fields
    return PydanticCustomError("ingest_config", "{message}", {"message": message})


def _volume_name(value: str) -> str:
    """A volume name, checked."""
    segments = value.split("/")
    if not 1 <= len(segments) <= 4 or ".." in value:
        raise _error(
            f"{value!r} is not allowed; give 1 to 4 parts separated by '/', without '..' "
            "(e.g. 'lab/mouse12/em')"
        )
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or set(segment) == {"."}:
            raise _error(
                f"{value!r}: part {segment!r} is not allowed; parts are 1 to 128 letters, "
                "digits, '.', '-' or '_' (no leading or trailing '/')"
            )
    if RECORD_NAME.fullmatch(value):
        raise _error(
            f"{value!r} has the form of an analysis result's provenance record name (64 "
            "hexadecimal digits, optionally '.' and a user id), which is reserved for "
            "those records; choose another name"
        )
    return value


class SourceConfig(BaseModel):
    """Where the image data come from: a reader and its parameters."""

    model_config = ConfigDict(extra="forbid")

    plugin: str = Field(min_length=1)
    """A reader name (``image-folder``, ``catmaid``, ``multipage-tiff``, ``tiff``, ``zarr``,
    ``n5``, or one installed as a plugin) or a ``package.module:Class`` path."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The reader's parameters (see the reader)."""

    @field_validator("params")
    @classmethod
    def _builtin_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        model = BUILTIN_PARAMS.get(info.data.get("plugin", ""))
        if model is None:
            return value  # a plugin's reader checks its own parameters when it is opened
        try:
            model.model_validate(value)
        except ValidationError as exc:
            problems = [
                [_where(err["loc"]), _message(err, model, err["loc"])] for err in exc.errors()
            ]
            raise PydanticCustomError(
                "reader_params",
                "{message}",
                {
                    "message": "; ".join(f"{w}: {m}" if w else m for w, m in problems),
                    "problems": problems,
                },
            ) from None
        return value


Range = tuple[int, int]

MAX_COORDINATE = 2**31 - 1
"""The largest voxel coordinate an extent may reach along any axis."""


class Extent(BaseModel):
    """The part of the source to ingest: half-open voxel ranges ``[start, stop)`` in source
    coordinates. The volume's voxel (0, 0, 0) is the source's (z[0], y[0], x[0])."""

    model_config = ConfigDict(extra="forbid")

    x: Range
    y: Range
    z: Range
    t: Range = (0, 1)

    @field_validator("x", "y", "z", "t")
    @classmethod
    def _range(cls, value: Range) -> Range:
        start, stop = value
        if start < 0:
            raise _error(f"start {start} is negative; ranges are [start, stop) with start >= 0")
        if stop <= start:
            raise _error(f"stop {stop} must be greater than start {start} ([start, stop))")
        if stop > MAX_COORDINATE:
            raise _error(f"stop {stop} is beyond the largest coordinate, {MAX_COORDINATE}")
        return value

    @property
    def shape_tzyx(self) -> tuple[int, int, int, int]:
        """The sizes along t, z, y and x."""
        return (
            self.t[1] - self.t[0],
            self.z[1] - self.z[0],
            self.y[1] - self.y[0],
            self.x[1] - self.x[0],
        )


class VoxelSize(BaseModel):
    """The physical size of a voxel (and of a time step)."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(gt=0, allow_inf_nan=False)
    y: float = Field(gt=0, allow_inf_nan=False)
    z: float = Field(gt=0, allow_inf_nan=False)
    unit: Literal["nanometer", "micrometer", "millimeter", "meter"] = "micrometer"
    t: float = Field(1.0, gt=0, allow_inf_nan=False)
    t_unit: Literal["millisecond", "second", "minute", "hour"] = "second"


class Compression(BaseModel):
    """How chunks are compressed."""

    model_config = ConfigDict(extra="forbid")

    codec: Codec = "blosc-zstd"
    level: int = 5

    @model_validator(mode="after")
    def _level(self) -> Self:
        bounds = _LEVEL_RANGE.get(self.codec)
        if bounds and not bounds[0] <= self.level <= bounds[1]:
            raise _error(
                f"level {self.level} is not allowed for {self.codec}; "
                f"allowed: {bounds[0]} to {bounds[1]}"
            )
        return self


Triple = tuple[int, int, int]
_ZYX = ("z", "y", "x")


class IngestConfig(BaseModel):
    """One ingest: a source volume (or part of it) into ``{destination}/{name}.ome.zarr``."""

    model_config = ConfigDict(extra="forbid", title="neuroferry ingest config, version 1")

    version: Literal[1] = 1
    name: str
    """The volume's name: 1 to 4 ``/``-separated parts of letters, digits, ``.``, ``-``,
    ``_`` (e.g. ``lab/mouse12/em``)."""
    destination: str = "default"
    """A store URL, or the name of a destination the service knows (``default``)."""
    source: SourceConfig
    extent: Extent
    channels: int = Field(1, ge=1, le=4096)
    dtype: DType
    image_kind: Literal["intensity", "label"] = "intensity"
    voxel_size: VoxelSize
    tile_size: dict[str, int] | None = None
    """The source's natural tile (x, y, z, t), for information."""
    chunk: Triple = (64, 128, 128)
    """Chunk shape (z, y, x): the unit a reader of the volume fetches."""
    shard: Triple = (64, 1024, 1024)
    """Shard shape (z, y, x): the unit stored as one object; a multiple of ``chunk``."""
    compression: Compression = Field(default_factory=Compression)
    levels: int = Field(4, ge=1, le=8)
    """Resolution levels, full resolution included (1: no pyramid)."""
    downsample: Literal["auto", "mean", "mode", "stride"] = "auto"
    """How lower levels are computed; ``auto``: mean for intensity, mode for labels."""
    downsample_factors: Triple = (2, 2, 2)
    """The factor (1 or 2) along z, y and x from one level to the next."""
    time_axis: Literal["auto", "always"] = "auto"
    """``auto``: the volume has a ``t`` axis only when the extent has several time points
    (a 3-D stack is (c, z, y, x)); ``always``: (t, c, z, y, x) in any case, as volumes
    written before this field were."""
    channel_names: list[str] | None = None
    """Each channel's name, as viewers show it (default: the volume name's last part for
    one channel, ``c0``, ``c1``, … for several)."""
    channel_colors: list[str] | None = None
    """Each channel's colour as six hexadecimal digits ``RRGGBB`` (default: grey for one
    channel, green, magenta, cyan, red, blue, yellow for several)."""
    contrast_limits: list[tuple[float, float]] | None = None
    """Each channel's display window ``[start, end]`` (default: computed from the data)."""
    label_of: str | None = None
    """For ``image_kind: label``: the name of the intensity volume (same destination) whose
    ``labels/`` group holds this one, as ``labels/{last part of name}``."""
    label_colors: dict[int, str] | None = None
    """For ``image_kind: label``: label value → colour ``RRGGBB`` or ``RRGGBBAA`` (default:
    a colour for each value found in the data, up to 256 values)."""
    label_properties: dict[int, dict[str, Any]] | None = None
    """For ``image_kind: label``: label value → properties (e.g. ``{"class": "soma"}``)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _volume_name(value)

    @field_validator("label_of")
    @classmethod
    def _label_of(cls, value: str | None) -> str | None:
        return None if value is None else _volume_name(value)

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if _URL.fullmatch(value) or _DESTINATION_NAME.fullmatch(value):
            return value
        raise _error(
            f"{value!r} is neither a store URL (file://, s3://, gs://, az://) nor the name of "
            "a destination (letters, digits, '.', '-', '_')"
        )

    @field_validator("channel_names")
    @classmethod
    def _channel_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for i, name in enumerate(value):
            if not 1 <= len(name) <= 128 or not name.isprintable():
                raise _error(
                    f"item {i}: {name!r} is not allowed; a channel name is 1 to 128 printable "
                    "characters"
                )
        return value

    @field_validator("channel_colors")
    @classmethod
    def _channel_colors(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for i, color in enumerate(value):
            if not _RGB.fullmatch(color):
                raise _error(
                    f"item {i}: {color!r} is not a colour; give six hexadecimal digits "
                    "RRGGBB (e.g. 00FF00)"
                )
        return [c.upper() for c in value]

    @field_validator("contrast_limits")
    @classmethod
    def _contrast_limits(
        cls, value: list[tuple[float, float]] | None
    ) -> list[tuple[float, float]] | None:
        if value is None:
            return None
        for i, (start, end) in enumerate(value):
            if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
                raise _error(
                    f"item {i}: [{start}, {end}] is not a window; give [start, end] with "
                    "finite start < end"
                )
        return value

    @field_validator("label_colors")
    @classmethod
    def _label_colors(cls, value: dict[int, str] | None) -> dict[int, str] | None:
        if value is None:
            return None
        for label, color in value.items():
            if not _RGBA.fullmatch(color):
                raise _error(
                    f"{label}: {color!r} is not a colour; give RRGGBB or RRGGBBAA "
                    "(hexadecimal, e.g. FF000080)"
                )
        return {k: v.upper() for k, v in value.items()}

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        unknown = [k for k in value if k not in ("x", "y", "z", "t")]
        if unknown:
            raise _error(f"unknown axis {unknown[0]!r}; allowed: x, y, z, t")
        small = [k for k, v in value.items() if v < 1]
        if small:
            raise _error(f"{small[0]}: tile sizes must be at least 1")
        return value

    @field_validator("chunk", "shard")
    @classmethod
    def _positive(cls, value: Triple) -> Triple:
        if min(value) < 1:
            raise _error(f"{list(value)}: every size (z, y, x) must be at least 1")
        return value

    @field_validator("downsample_factors")
    @classmethod
    def _factors(cls, value: Triple) -> Triple:
        if any(f not in (1, 2) for f in value):
            raise _error(f"{list(value)}: each factor (z, y, x) must be 1 or 2")
        return value

    @model_validator(mode="after")
    def _layout(self) -> Self:
        if self.image_kind == "label":
            if self.dtype.startswith("float"):
                raise _error(
                    f"dtype: {self.dtype} cannot hold labels; use an integer type (e.g. uint32)"
                )
            if self.downsample == "mean":
                raise _error(
                    "downsample: 'mean' invents label values; use 'mode' or 'stride' (or "
                    "'auto') for image_kind 'label'"
                )
        for field in ("channel_names", "channel_colors", "contrast_limits"):
            given = getattr(self, field)
            if given is not None and len(given) != self.channels:
                raise _error(
                    f"{field}: {len(given)} given for {self.channels} channels; give one "
                    "per channel"
                )
        if self.image_kind != "label":
            for field in ("label_of", "label_colors", "label_properties"):
                if getattr(self, field) is not None:
                    raise _error(f"{field}: only for image_kind 'label'")
        if self.label_of is not None and self.label_of == self.name:
            raise _error("label_of: a label image cannot be a label of itself; name another")
        for axis, c, s in zip(_ZYX, self.chunk, self.shard, strict=True):
            if s % c:
                raise _error(
                    f"shard: {s} along {axis} is not a multiple of chunk {c}; "
                    f"use e.g. {max(1, s // c) * c}"
                )
        top = self.levels - 1
        for axis, f, s in zip(_ZYX, self.downsample_factors, self.shard, strict=True):
            if s % f**top:
                raise _error(
                    f"shard: {s} along {axis} is not divisible by {f}**{top} = {f**top} "
                    f"(downsample_factors {f}, levels {self.levels}), so lower levels' shards "
                    "would not line up; use a larger shard or fewer levels"
                )
        for k in range(1, self.levels):
            for axis, c, s in zip(_ZYX, self.level_chunk(k), self.level_shard(k), strict=True):
                if s % c:
                    raise _error(
                        f"shard: at level {k} a shard is {s} along {axis}, not a multiple of "
                        f"the chunk {c}; choose a shard that is chunk times a power of 2"
                    )
        return self

    def volume_path(self) -> str:
        """The volume's path under its destination: ``{name}.ome.zarr``, or for a label
        image of another volume ``{label_of}.ome.zarr/labels/{last part of name}``."""
        if self.label_of is not None:
            return f"{self.label_of}.ome.zarr/labels/{self.label_name}"
        return f"{self.name}.ome.zarr"

    @property
    def label_name(self) -> str:
        """The name of a label image in its image's ``labels/`` group."""
        return self.name.rsplit("/", 1)[-1]

    def volume_shape(self) -> tuple[int, int, int, int, int]:
        """The output volume's shape (t, c, z, y, x)."""
        t, z, y, x = self.extent.shape_tzyx
        return (t, self.channels, z, y, x)

    def method(self) -> Literal["mean", "mode", "stride"]:
        """The downsampling method, ``auto`` resolved by the image kind."""
        if self.downsample != "auto":
            return self.downsample
        return "mean" if self.image_kind == "intensity" else "mode"

    def level_shapes(self) -> list[tuple[int, int, int, int, int]]:
        """The 5-D shape (t, c, z, y, x) of every level, full resolution first."""
        t, c, z, y, x = self.volume_shape()
        fz, fy, fx = self.downsample_factors
        return [
            (
                t,
                c,
                math.ceil(z / fz**k),
                math.ceil(y / fy**k),
                math.ceil(x / fx**k),
            )
            for k in range(self.levels)
        ]

    def level_shard(self, k: int) -> Triple:
        """The shard shape (z, y, x) of level ``k``: the level-0 shard over the factors."""
        sz, sy, sx = (s // f**k for s, f in zip(self.shard, self.downsample_factors, strict=True))
        return (sz, sy, sx)

    def level_chunk(self, k: int) -> Triple:
        """The chunk shape (z, y, x) of level ``k``: the chunk, no larger than its shard."""
        cz, cy, cx = (min(c, s) for c, s in zip(self.chunk, self.level_shard(k), strict=True))
        return (cz, cy, cx)


def config_schema() -> dict[str, Any]:
    """The JSON schema of the ingest config (this version)."""
    schema = IngestConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# -- errors --------------------------------------------------------------------------


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The field names of the model found by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = info.annotation
        args = getattr(current, "__args__", ())
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            current = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None
            )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _message(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        if allowed is not None:
            return f"unknown field; allowed: {', '.join(allowed)}"
        return "unknown field"
    if err["type"] == "missing":
        return "required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def config_problems(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> list[dict[str, str]]:
    """Each problem of the validation of a ``model`` (default: the ingest config):
    ``field`` (a dotted path) and ``message``."""
    model = model or IngestConfig
    problems: list[dict[str, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "reader_params" and "problems" in ctx:
            for where, message in ctx["problems"]:
                field = _where((*loc, where)) if where else _where(loc)
                problems.append({"field": field, "message": message})
            continue
        message = _message(err, model, loc)
        named = _NAMED.match(message) if not loc else None
        if named and named.group(1).split(".")[0] in model.model_fields:
            # a check across fields names the field it is about first
            problems.append({"field": named.group(1), "message": named.group(2)})
            continue
        problems.append({"field": _where(loc), "message": message})
    return problems


def _invalid(exc: ValidationError, origin: str | None) -> InvalidInput:
    problems = config_problems(exc)
    lines = "; ".join(
        f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems
    )
    prefix = f"{origin}: " if origin else ""
    if origin:
        for p in problems:
            p["file"] = origin
    return InvalidInput(f"{prefix}invalid ingest config: {lines}", list(problems))


# -- loading -------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _parse_text(text: str, origin: str | None, suffix: str = "") -> Any:
    prefix = f"{origin}: " if origin else ""
    if suffix == ".json" or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{prefix}not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                [{"field": "", "message": f"not valid JSON: {exc}", **_file(origin)}],
            ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            f"{prefix}not valid YAML: {problem}{where}",
            [{"field": "", "message": f"not valid YAML: {problem}{where}", **_file(origin)}],
        ) from exc


def _file(origin: str | None) -> dict[str, str]:
    return {"file": origin} if origin else {}


def _read_file(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not a config file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_FILE_BYTES:
        raise InvalidInput(f"{path}: a config file is at most {_MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not a text file (not UTF-8): {exc.reason}") from exc


def validate_config(data: Mapping[str, Any], *, origin: str | None = None) -> IngestConfig:
    """The validated config of a mapping: an ingest config or a Boss ingest client config
    (mapped); InvalidInput names each wrong field (and ``origin``, the file)."""
    from neuroferry.pipelines.ingest._boss import boss_to_config, is_boss_config

    if is_boss_config(data):
        data = boss_to_config(data, origin=origin)
    try:
        return IngestConfig.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, origin) from exc


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    origin: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``data`` (an ingest config, or a Boss ingest client config, mapped) with
    ``overrides`` merged over it, checked: InvalidInput names each wrong field and, for a
    field an override set, where it came from (``names``: field → e.g. ``--levels``)."""
    from neuroferry.pipelines.ingest._boss import boss_to_config, is_boss_config

    if is_boss_config(data):
        data = boss_to_config(data, origin=origin)
    merged = _merge(dict(data), overrides)
    try:
        validate_config(merged, origin=origin)
    except InvalidInput as exc:
        options: list[str] = []
        for problem in exc.problems:
            root = str(problem.get("field", "")).split(".")[0]
            named = (names or {}).get(root)
            if root in overrides and named:
                problem["message"] = f"{problem['message']} (set by {named})"
                options.append(named)
        shown = f" (set by {', '.join(dict.fromkeys(options))})" if options else ""
        raise InvalidInput(f"{exc}{shown}", exc.problems) from None
    return merged


def load_config(
    source: str | Path | Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
) -> IngestConfig:
    """The ingest config in ``source``: a file (JSON or YAML), the text of one, or a
    mapping. Boss ingest client configs (``boss-v0.1-schema``, ``boss-v0.2-schema``) are
    mapped to ingest configs. ``overrides`` (nested keys, e.g. ``{"voxel_size": {…}}``) are
    merged over the result before it is validated. InvalidInput names the file and each
    wrong field."""
    origin: str | None = None
    if isinstance(source, Mapping):
        data: Any = source
    else:
        text: str
        suffix = ""
        if isinstance(source, Path) or ("\n" not in source and not source.lstrip().startswith("{")):
            path = Path(source).expanduser()
            origin = str(path)
            suffix = path.suffix.lower()
            text = _read_file(path)
        else:
            text = source
        data = _parse_text(text, origin, suffix)
    if not isinstance(data, Mapping):
        prefix = f"{origin}: " if origin else ""
        raise InvalidInput(
            f"{prefix}an ingest config is a mapping of fields (name, source, extent, …), "
            f"not {type(data).__name__}"
        )
    if overrides:
        from neuroferry.pipelines.ingest._boss import boss_to_config, is_boss_config

        if is_boss_config(data):
            data = boss_to_config(data, origin=origin)
        data = _merge(dict(data), overrides)
    return validate_config(data, origin=origin)
