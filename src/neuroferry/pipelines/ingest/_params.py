"""The parameters of the built-in readers (``source.params``), validated with the config."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from neuroferry.pipelines.ingest._pattern import Template, check_relative, is_template

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
"""File types the image readers decode (TIFF with tifffile, the others with Pillow)."""

_AXES = re.compile(r"[tczyxs]+")
_Z_KEY = re.compile(r"z_(\d+)")


def check_axes(value: str | None, *, pages: bool = False) -> str | None:
    """Axes in array order, lower case: letters of ``tczyx`` (``s`` for samples), once each,
    with ``y`` and ``x``; ``pages``: ``y`` and ``x`` (and ``s``) come last, as in a TIFF."""
    if value is None:
        return None
    axes = value.strip().lower()
    if not _AXES.fullmatch(axes) or len(set(axes)) != len(axes):
        raise ValueError(f"{value!r}: give each of the letters t, c, z, y, x (s) at most once")
    if "y" not in axes or "x" not in axes:
        raise ValueError(f"{value!r} has no y or no x axis")
    if pages and not axes.endswith(("yx", "yxs")):
        raise ValueError(f"{value!r}: a TIFF's axes end with 'yx' (or 'yxs' for RGB samples)")
    if not pages and "s" in axes:
        raise ValueError(f"{value!r}: use 'c' for channels")
    return axes


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageFolderParams(_Params):
    """A folder of 2-D images, one per z (and per channel or time point with ``{c}``/``{t}``)."""

    path: str
    """The folder (an absolute path)."""
    pattern: str | None = None
    """A template relative to ``path`` such as ``slice_{z:04d}.tif`` (fields ``z``, ``c``,
    ``t``), or a glob such as ``*.png`` (z = position in natural order); default: every
    image file in the folder, in natural order."""
    z_offset: int = 0
    """The file of source slice ``z`` is number (or position) ``z + z_offset``."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_relative(value)
        if is_template(value):
            template = Template.parse(value, ("z", "c", "t"))
            if "z" not in template.fields:
                raise ValueError(f"{value!r} has no {{z}} field")
        return value


class CatmaidParams(_Params):
    """A CATMAID file image stack (tile source type 1): ``{root_dir}/{z}/{row}_{col}.{ext}``."""

    root_dir: str
    filetype: Literal["png", "jpg", "jpeg", "tif", "tiff"] = "png"
    tile_size: dict[Literal["x", "y"], int] | None = None
    """Tile width and height; default: the config's ``tile_size``."""
    zoom_level: int | None = Field(None, ge=0)
    """Tiles are named ``{row}_{col}_{zoom_level}.{ext}`` (as CATMAID writes them)."""
    pattern: str | None = None
    """Another tile layout below ``root_dir``, e.g. ``{z}/{row}/{col}.jpg``."""
    missing: Literal["error", "zero"] = "error"
    """A missing tile is an error, or reads as zeros."""

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None:
            if set(value) != {"x", "y"}:
                raise ValueError("give both x and y")
            if min(value.values()) < 1:
                raise ValueError("tile sizes must be at least 1")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            check_relative(value)
            fields = Template.parse(value, ("z", "row", "col")).fields
            if fields != {"z", "row", "col"}:
                raise ValueError(f"{value!r} needs the fields {{z}}, {{row}} and {{col}}")
        return value


class MultipageTiffParams(_Params):
    """One multipage TIFF per z-slice whose pages are the time points."""

    files: dict[str, str] | None = None
    """``{"z_0": "/data/slice0.tif", "z_1": …}``, as the Boss ingest client has them."""
    pattern: str | None = None
    """Or an absolute path template with ``{z}``, e.g. ``/data/plane_{z:02d}.tif``."""

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            bad = [k for k in value if not _Z_KEY.fullmatch(k)]
            if bad:
                raise ValueError(f"key {bad[0]!r} is not z_<index> (e.g. z_0)")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and Template.parse(value, ("z",)).fields != {"z"}:
            raise ValueError(f"{value!r} has no {{z}} field")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.files is None) == (self.pattern is None):
            raise ValueError("give either files or pattern")
        return self

    def file_for(self, z: int) -> str | None:
        """The file of slice ``z`` (None: the files do not name one)."""
        if self.pattern is not None:
            return Template.parse(self.pattern, ("z",)).format(z=z)
        return (self.files or {}).get(f"z_{z}")


class TiffParams(_Params):
    """One multi-dimensional TIFF or OME-TIFF (or a time series split over several)."""

    path: str
    """The file, or a path template with ``{i}`` when the time points are split over files
    of ``t_per_file`` time points each (file ``i`` holds t = i*t_per_file …)."""
    t_per_file: int | None = Field(None, ge=1)
    series: int = Field(0, ge=0)
    """Which image series of the file."""
    axes: str | None = None
    """The data's axes (e.g. ``tzcyx``) when the file's metadata do not say."""
    sizes: dict[Literal["t", "c", "z"], int] = Field(default_factory=dict)
    """With ``axes``: the sizes of the axes after the first (e.g. ``{"z": 3, "c": 2}``)."""
    channel: int | None = Field(None, ge=0)
    """Read only this channel."""

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: str | None) -> str | None:
        return check_axes(value, pages=True)

    @model_validator(mode="after")
    def _path(self) -> Self:
        fields = Template.parse(self.path, ("i",)).fields
        if fields and self.t_per_file is None:
            raise ValueError("a path with {i} needs t_per_file")
        if self.t_per_file is not None and not fields:
            raise ValueError("t_per_file needs a path with {i}")
        return self


class ArrayParams(_Params):
    """A chunked array: ``path`` (a folder or store URL) and the array inside it."""

    path: str
    axes: str | None = None
    """The array's axes (e.g. ``czyx``); default: from its metadata, else by its number of
    dimensions (``yx``, ``zyx``, ``czyx``, ``tczyx``)."""
    channel: int | None = Field(None, ge=0)
    """Read only this channel."""

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: str | None) -> str | None:
        return check_axes(value)


class ZarrParams(ArrayParams):
    """A Zarr v2 or v3 array (an OME-Zarr image's first level when ``path`` is its group)."""

    array: str | None = None
    """The array's path inside the group at ``path``."""


class N5Params(ArrayParams):
    """An N5 dataset."""

    dataset: str = ""
    """The dataset's path inside the N5 container at ``path``."""


BUILTIN_PARAMS: dict[str, type[BaseModel]] = {
    "image-folder": ImageFolderParams,
    "catmaid": CatmaidParams,
    "multipage-tiff": MultipageTiffParams,
    "tiff": TiffParams,
    "zarr": ZarrParams,
    "n5": N5Params,
}
