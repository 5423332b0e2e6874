"""Readers of TIFF files: one multipage TIFF per z-slice whose pages are time points
(``multipage-tiff``), and one multi-dimensional TIFF or OME-TIFF (``tiff``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from neuroferry.errors import InvalidInput, SourceDataError, first_line
from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._imageio import (
    PlaneInfo,
    Unreadable,
    crop_plane,
    page_info,
    read_page,
)
from neuroferry.pipelines.ingest._params import MultipageTiffParams, TiffParams
from neuroferry.pipelines.ingest._pattern import Template
from neuroferry.pipelines.ingest._reader_images import (
    _raise_missing,
    check_dtype,
    check_within,
    missing_files,
)
from neuroferry.pipelines.ingest._readers import Range, Reader, shown_range, source_error


@contextmanager
def open_tiff(path: Path, index: dict[str, int]) -> Iterator[tifffile.TiffFile]:
    """The open TIFF at ``path``; SourceDataError when it is missing or cannot be read
    (also for errors while its pixels are decoded)."""
    try:
        tif = tifffile.TiffFile(path)
    except FileNotFoundError:
        raise source_error(path, index, "TIFF file is missing") from None
    except Exception as exc:
        reason = first_line(exc, typed=True)
        raise source_error(path, index, f"cannot read the TIFF: {reason}") from None
    try:
        with tif:
            yield tif
    except (SourceDataError, InvalidInput):
        raise
    except Exception as exc:
        reason = first_line(exc, typed=True)
        raise source_error(path, index, f"cannot read the TIFF: {reason}") from None


def _check_plane(
    path: Path, index: dict[str, int], info: PlaneInfo, dtype: np.dtype[Any], y: Range, x: Range
) -> None:
    check_dtype(path, index, info, dtype)
    check_within(path, index, info, y, x)


class MultipageTiffReader(Reader):
    """One multipage TIFF per z-slice; its pages are the time points (calcium imaging)."""

    name = "multipage-tiff"
    params_model = MultipageTiffParams
    transient = ("_first",)

    def __init__(self, params: Any, config: IngestConfig) -> None:
        super().__init__(params, config)
        p: MultipageTiffParams = params
        if p.pattern is not None:
            self.absolute("source.params.pattern", p.pattern)
        for key, path in (p.files or {}).items():
            self.absolute(f"source.params.files.{key}", path)
        self._first: PlaneInfo | None = None

    def source_paths(self) -> list[tuple[str, str]]:
        p: MultipageTiffParams = self.params  # type: ignore[assignment]
        if p.pattern is not None:
            return [("source.params.pattern", p.pattern)]
        return [(f"source.params.files.{k}", v) for k, v in (p.files or {}).items()]

    def file_for(self, z: int) -> Path:
        """The file of slice ``z``."""
        p: MultipageTiffParams = self.params  # type: ignore[assignment]
        try:
            name = p.file_for(z)
        except ValueError as exc:
            raise source_error(
                p.pattern or "", {"z": z}, f"no file for this slice: {exc}"
            ) from None
        if name is None:
            known = ", ".join(sorted(p.files or {}, key=lambda k: int(k[2:])))
            raise source_error(
                "source.params.files", {"z": z}, f"no file for this slice; the files are {known}"
            )
        return self.local_file(name)

    @staticmethod
    def _page(
        tif: tifffile.TiffFile, path: Path, t: int, index: dict[str, int]
    ) -> tuple[Any, PlaneInfo]:
        """Page ``t`` (time point ``t``) of the file and its size and type."""
        try:
            page = tif.pages[t]
        except IndexError:
            pages = len(tif.pages)
            raise source_error(
                path, index, f"has {pages} pages (time points), so no time point {t}"
            ) from None
        try:
            return page, page_info(page)
        except Unreadable as exc:
            raise source_error(path, index, str(exc)) from None

    def _page_info(self, tif: tifffile.TiffFile, path: Path, t: int, index: dict[str, int]) -> Any:
        page, info = self._page(tif, path, t, index)
        if info.samples != self.config.channels:
            raise source_error(
                path,
                index,
                f"has {info.samples} samples per pixel, expected {self.config.channels} (channels)",
            )
        first = self._first_info()
        if (info.height, info.width) != (first.height, first.width):
            raise source_error(
                path,
                index,
                f"the page is {info.height}x{info.width} pixels, but the first page of the "
                f"extent is {first.height}x{first.width}; every page must have the same size",
            )
        return page, info

    def _first_info(self) -> PlaneInfo:
        if self._first is None:
            e = self.config.extent
            path = self.file_for(e.z[0])
            index = {"t": e.t[0], "z": e.z[0]}
            with open_tiff(path, index) as tif:
                self._first = self._page(tif, path, e.t[0], index)[1]
        return self._first

    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        out = self.new_block(z, y, x)
        for zi in range(*z):
            path = self.file_for(zi)
            index = {"t": t, "z": zi}
            with open_tiff(path, index) as tif:
                page, info = self._page_info(tif, path, t, index)
                _check_plane(path, index, info, self.dtype, y, x)
                out[:, zi - z[0]] = np.moveaxis(read_page(tif, page, y, x), -1, 0)
        return out

    def check(self) -> None:
        e = self.config.extent
        wanted = [(self.file_for(z), {"z": z}) for z in range(*e.z)]
        _raise_missing(missing_files(wanted), "TIFF file")
        path = wanted[0][0]
        index = {"t": e.t[1] - 1, "z": e.z[0]}
        with open_tiff(path, index) as tif:
            _, info = self._page_info(tif, path, e.t[1] - 1, index)
            _check_plane(path, index, info, self.dtype, e.y, e.x)


# -- one multi-dimensional TIFF ------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How a TIFF series' pages map to t, c, z: the page-indexing (leading) axes with their
    role (``t``, ``c``, ``z``, or ``""`` for a size-1 axis) and size."""

    roles: tuple[str, ...]
    sizes: tuple[int, ...]
    page_axes: str
    plane: PlaneInfo

    def size(self, role: str) -> int:
        if role == "c" and "c" not in self.roles:
            return self.plane.samples
        return self.sizes[self.roles.index(role)] if role in self.roles else 1

    def page(self, **coords: int) -> int:
        """The page number (within the series) of the given t, c, z."""
        if not self.sizes:
            return 0
        index = tuple(coords.get(role, 0) if role else 0 for role in self.roles)
        return int(np.ravel_multi_index(index, self.sizes))


_TIFF_ROLES = {"T": "t", "C": "c", "Z": "z"}


class TiffReader(Reader):
    """One multi-dimensional TIFF or OME-TIFF (axes from its OME or ImageJ metadata), or a
    time series split over several; reads only the pages a region needs, memory-mapped
    where the file allows."""

    name = "tiff"
    params_model = TiffParams
    transient = ("_first",)

    def __init__(self, params: Any, config: IngestConfig) -> None:
        super().__init__(params, config)
        p: TiffParams = params
        self.absolute("source.params.path", p.path)
        self.template = Template.parse(p.path, ("i",))
        self._first: tuple[Path, PlaneInfo] | None = None
        if p.axes is not None:
            lead = p.axes.removesuffix("s").removesuffix("yx")
            missing = [a for a in lead[1:] if a not in p.sizes]
            if missing:
                raise InvalidInput(
                    f"source.params.sizes: give the size of {', '.join(missing)} (the axes "
                    f"after the first of {p.axes!r}), e.g. {{{missing[0]}: 3}}"
                )
        if p.channel is not None and config.channels != 1:
            raise InvalidInput(
                f"channels: {config.channels}, but source.params.channel reads one channel; "
                "use channels: 1"
            )

    def source_paths(self) -> list[tuple[str, str]]:
        p: TiffParams = self.params  # type: ignore[assignment]
        return [("source.params.path", p.path)]

    def file_for(self, t: int) -> tuple[Path, int]:
        """The file holding time point ``t``, and ``t``'s position in it."""
        p: TiffParams = self.params  # type: ignore[assignment]
        if p.t_per_file is None:
            return self.local_file(p.path), t
        number, local = divmod(t, p.t_per_file)
        return self.local_file(self.template.format(i=number)), local

    def _layout(self, tif: tifffile.TiffFile, path: Path, index: dict[str, int]) -> _Layout:
        p: TiffParams = self.params  # type: ignore[assignment]
        if not tif.series:
            raise source_error(path, index, "cannot read the TIFF: it holds no image")
        try:
            series = tif.series[p.series]
        except IndexError:
            raise source_error(
                path, index, f"has {len(tif.series)} image series, so no series {p.series}"
            ) from None
        page = series.keyframe
        try:
            plane = page_info(page)
        except Unreadable as exc:
            raise source_error(path, index, str(exc)) from None
        page_axes = page.axes
        shape, axes = tuple(series.shape), str(series.axes)
        if not axes.endswith(page_axes) or tuple(shape[len(shape) - len(page_axes) :]) != tuple(
            page.shape
        ):
            raise source_error(
                path, index, f"series axes {axes} with pages of {page_axes}: not supported"
            )
        lead_axes, lead_sizes = axes[: -len(page_axes)], shape[: len(shape) - len(page_axes)]
        if p.axes is not None:
            return self._given_layout(path, index, page_axes, plane, math.prod(lead_sizes))
        roles: list[str] = []
        for axis, size in zip(lead_axes, lead_sizes, strict=True):
            role = _TIFF_ROLES.get(axis, "")
            if (role and role in roles) or (not role and size > 1):
                role = "?"  # an axis the metadata do not name (e.g. a plain page sequence)
            roles.append(role)
        for i, role in enumerate(roles):
            if role == "?":
                free = next((r for r in ("z", "t") if r not in roles), None)
                if free is None:
                    raise source_error(
                        path,
                        index,
                        f"cannot tell what axis {lead_axes[i]!r} of {axes} is; give "
                        "source.params.axes (e.g. 'tzcyx')",
                    )
                roles[i] = free
        if "c" in roles and plane.samples > 1:
            raise source_error(
                path, index, f"has both channels and {plane.samples} samples per pixel ({axes})"
            )
        return _Layout(tuple(roles), tuple(lead_sizes), page_axes, plane)

    def _given_layout(
        self, path: Path, index: dict[str, int], page_axes: str, plane: PlaneInfo, pages: int
    ) -> _Layout:
        p: TiffParams = self.params  # type: ignore[assignment]
        given = p.axes or ""
        if given.endswith("yxs") != ("S" in page_axes):
            raise source_error(
                path,
                index,
                f"its pages are {page_axes}, but source.params.axes {given!r} ends with "
                f"{'yxs' if 'S' in page_axes else 'yx'!r}",
            )
        lead = given.removesuffix("s").removesuffix("yx")
        if not lead:
            return _Layout((), (), page_axes, plane)
        sizes: dict[str, int] = {str(k): v for k, v in p.sizes.items()}
        rest = [sizes[a] for a in lead[1:]]
        per_first = math.prod(rest)
        if pages % per_first:
            raise source_error(
                path,
                index,
                f"has {pages} pages, not a multiple of {per_first} (the sizes of "
                f"{', '.join(lead[1:])} in source.params.sizes)",
            )
        return _Layout(tuple(lead), (pages // per_first, *rest), page_axes, plane)

    def _check_layout(
        self,
        path: Path,
        index: dict[str, int],
        layout: _Layout,
        t: int,
        z: Range,
        y: Range,
        x: Range,
    ) -> None:
        p: TiffParams = self.params  # type: ignore[assignment]
        if p.t_per_file is not None:
            first_path, first = self._first_plane()
            if path != first_path and first != layout.plane:
                raise source_error(
                    path,
                    index,
                    f"its pages are {layout.plane.shown()}, but those of {first_path} (the "
                    f"first file of the extent) are {first.shown()}; every file must match",
                )
        channels = layout.size("c")
        if p.channel is not None:
            if p.channel >= channels:
                raise source_error(
                    path, index, f"has {channels} channels, so no channel {p.channel}"
                )
        elif channels != self.config.channels:
            raise source_error(
                path,
                index,
                f"has {channels} channels, but the config says channels: {self.config.channels}",
            )
        if t >= layout.size("t"):
            raise source_error(
                path, index, f"has {layout.size('t')} time points, so no time point {t}"
            )
        if z[1] > layout.size("z"):
            raise source_error(
                path,
                index,
                f"the region {shown_range('z', z)} lies beyond the data ({layout.size('z')} "
                "z-slices); check extent.z",
            )
        _check_plane(path, index, layout.plane, self.dtype, y, x)

    def _first_plane(self) -> tuple[Path, PlaneInfo]:
        """The first file of the extent and the size and type of its pages."""
        if self._first is None:
            t = self.config.extent.t[0]
            path, _ = self.file_for(t)
            with open_tiff(path, {"t": t}) as tif:
                self._first = (path, self._layout(tif, path, {"t": t}).plane)
        return self._first

    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        p: TiffParams = self.params  # type: ignore[assignment]
        out = self.new_block(z, y, x)
        path, local_t = self.file_for(t)
        index = {"t": t}
        with open_tiff(path, index) as tif:
            layout = self._layout(tif, path, index)
            self._check_layout(path, index, layout, local_t, z, y, x)
            series = tif.series[p.series]
            channels = [p.channel] if p.channel is not None else list(range(layout.size("c")))
            mapped: Any = None
            if series.dataoffset is not None and series.keyframe.dtype is not None:
                dtype = np.dtype(tif.byteorder + series.keyframe.dtype.char)
                mapped = np.memmap(
                    path,
                    dtype,
                    "r",
                    series.dataoffset,
                    (math.prod(layout.sizes), *series.keyframe.shape),
                    order="C",
                )
            sample_channels = "c" not in layout.roles
            for zi in range(*z):
                for slot, c in enumerate([0] if sample_channels else channels):
                    number = layout.page(t=local_t, c=c, z=zi)
                    index = {"t": t, "z": zi} if sample_channels else {"t": t, "c": c, "z": zi}
                    if mapped is not None:
                        plane = crop_plane(mapped[number], layout.page_axes, y, x)
                    else:
                        page = series.pages[number]
                        if page is None:
                            raise source_error(path, index, f"page {number} is missing")
                        plane = read_page(tif, page, y, x)
                    if sample_channels:
                        out[:, zi - z[0]] = np.moveaxis(plane[:, :, channels], -1, 0)
                    else:
                        out[slot, zi - z[0]] = plane[:, :, 0]
        return out

    def check(self) -> None:
        p: TiffParams = self.params  # type: ignore[assignment]
        e = self.config.extent
        needed: dict[Path, list[tuple[int, int]]] = {}  # file: [(t, t in the file)]
        for t in range(*e.t) if p.t_per_file is not None else (e.t[0], e.t[1] - 1):
            path, local = self.file_for(t)
            needed.setdefault(path, []).append((t, local))
        files = list(needed)
        _raise_missing(missing_files((f, {"t": needed[f][0][0]}) for f in files), "TIFF file")
        for path in dict.fromkeys((files[0], files[-1])):
            t, local = max(needed[path], key=lambda pair: pair[1])
            index = {"t": t}
            with open_tiff(path, index) as tif:
                layout = self._layout(tif, path, index)
                self._check_layout(path, index, layout, local, e.z, e.y, e.x)
