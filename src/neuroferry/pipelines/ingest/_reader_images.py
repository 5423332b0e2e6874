"""Readers of 2-D image files: a folder of slices (``image-folder``) and a CATMAID file
image stack of tiles (``catmaid``)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._imageio import (
    PlaneInfo,
    Unreadable,
    image_info,
    read_image,
    same_kind,
)
from neuroferry.pipelines.ingest._params import IMAGE_EXTENSIONS, CatmaidParams, ImageFolderParams
from neuroferry.pipelines.ingest._pattern import Template, is_template, natural_key
from neuroferry.pipelines.ingest._readers import (
    Range,
    Reader,
    check_region,
    describe_index,
    shown_range,
    source_error,
)

_SHOW_MISSING = 5


def _listing(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def missing_files(
    wanted: Iterable[tuple[Path, dict[str, int]]],
) -> list[tuple[Path, dict[str, int]]]:
    """The wanted files that do not exist, looking at each folder once."""
    by_folder: dict[Path, list[tuple[Path, dict[str, int]]]] = defaultdict(list)
    for path, index in wanted:
        by_folder[path.parent].append((path, index))
    missing: list[tuple[Path, dict[str, int]]] = []
    for folder, files in by_folder.items():
        present = _listing(folder)
        missing.extend((p, i) for p, i in files if p.name not in present)
    return missing


def _raise_missing(
    missing: list[tuple[Path, dict[str, int]]], what: str, hint: str = "", total: int = 0
) -> None:
    """SourceDataError naming the first missing files (of ``total``, default: all given)."""
    if not missing:
        return
    total = max(total, len(missing))
    path, index = missing[0]
    others = "; ".join(f"{p} ({describe_index(i)})" for p, i in missing[1:_SHOW_MISSING])
    more = f"; also missing: {others}" if others else ""
    rest = total - min(len(missing), _SHOW_MISSING)
    more += f" and {rest} more" if rest > 0 else ""
    count = f" ({total} {what}s are missing)" if total > 1 else ""
    raise source_error(path, index, f"{what} is missing{count}{more}{hint}")


def check_dtype(path: Path, index: dict[str, int], info: PlaneInfo, dtype: np.dtype[Any]) -> None:
    """Refuse an image whose pixels are not of the config's data type."""
    if not same_kind(info.dtype, dtype):
        raise source_error(
            path,
            index,
            f"the data type is {info.dtype}, but the config says dtype {dtype}; "
            f"set dtype: {info.dtype} (or convert the files)",
        )


def check_within(path: Path, index: dict[str, int], info: PlaneInfo, y: Range, x: Range) -> None:
    """Refuse a region that does not lie inside the image."""
    if y[1] > info.height or x[1] > info.width:
        raise source_error(
            path,
            index,
            f"the region {shown_range('y', y)}, {shown_range('x', x)} lies beyond the "
            f"image ({info.height}x{info.width} pixels); check extent.y and extent.x",
        )


class _PlaneReader(Reader):
    """Shared checks of 2-D image files against the config."""

    def _want_samples(self, per_channel: bool) -> int:
        return 1 if per_channel else self.config.channels

    def _check_info(self, path: Path, index: dict[str, int], info: PlaneInfo, samples: int) -> None:
        check_dtype(path, index, info, self.dtype)
        if info.samples != samples:
            if samples == 1 and info.samples > 1:
                hint = f"; set channels: {info.samples} to read its samples as channels"
            else:
                hint = ""
            raise source_error(
                path,
                index,
                f"has {info.samples} samples per pixel, expected {samples} (channels)" + hint,
            )

    def _info(self, path: Path, index: dict[str, int], what: str) -> PlaneInfo:
        self.local_file(path)
        try:
            return image_info(path)
        except FileNotFoundError:
            raise source_error(path, index, f"{what} is missing") from None
        except Unreadable as exc:
            raise source_error(path, index, f"cannot read the {what}: {exc}") from None

    def _read(
        self,
        path: Path,
        index: dict[str, int],
        what: str,
        y: Range,
        x: Range,
        check: Callable[[PlaneInfo], None] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        try:
            return read_image(path, y, x, check, out)
        except FileNotFoundError:
            raise source_error(path, index, f"{what} is missing") from None
        except Unreadable as exc:
            raise source_error(path, index, f"cannot read the {what}: {exc}") from None


class ImageFolderReader(_PlaneReader):
    """A folder of 2-D images (TIFF, PNG, JPEG), one per z-slice; one per channel with
    ``{c}`` in the pattern, one per time point with ``{t}``; RGB files give 3 channels."""

    name = "image-folder"
    params_model = ImageFolderParams
    transient = ("_files", "_first")

    def __init__(self, params: Any, config: IngestConfig) -> None:
        super().__init__(params, config)
        p: ImageFolderParams = params
        self.folder = self.absolute("source.params.path", p.path)
        self.template = (
            Template.parse(p.pattern, ("z", "c", "t"))
            if p.pattern and is_template(p.pattern)
            else None
        )
        fields = self.template.fields if self.template else frozenset()
        self.per_channel = "c" in fields
        if "t" not in fields and config.extent.t != (0, 1):
            raise InvalidInput(
                f"extent.t: {list(config.extent.t)}, but an image folder without {{t}} in its "
                "pattern holds one time point; use [0, 1] or put {t} in source.params.pattern"
            )
        self._files: list[Path] | None = None
        self._first: PlaneInfo | None = None

    def source_paths(self) -> list[tuple[str, str]]:
        return [("source.params.path", str(self.folder))]

    def _sorted_files(self) -> list[Path]:
        if self._files is None:
            p: ImageFolderParams = self.params  # type: ignore[assignment]
            self.local_folder(self.folder, "the image folder")
            if p.pattern:
                found = [f for f in self.folder.glob(p.pattern) if f.is_file()]
            else:
                found = [
                    f
                    for f in self.folder.iterdir()
                    if f.suffix.lower() in IMAGE_EXTENSIONS
                    and not f.name.startswith(".")
                    and f.is_file()
                ]
            rel = [f.relative_to(self.folder).as_posix() for f in found]
            self._files = [self.folder / r for r in sorted(rel, key=natural_key)]
        return self._files

    def file_for(self, t: int, c: int, z: int) -> tuple[Path, dict[str, int]]:
        """The file of time point ``t``, channel ``c`` (with ``{c}``) and slice ``z``."""
        p: ImageFolderParams = self.params  # type: ignore[assignment]
        index = {"t": t, "c": c, "z": z} if self.per_channel else {"t": t, "z": z}
        if self.template is None or "t" not in self.template.fields:
            del index["t"]
        number = z + p.z_offset
        if self.template is not None:
            try:
                return self.folder / self.template.format(z=number, c=c, t=t), index
            except ValueError as exc:
                raise source_error(
                    self.folder, index, f"no file name for this slice: {exc}"
                ) from None
        files = self._sorted_files()
        if not 0 <= number < len(files):
            which = f"matching {p.pattern!r}" if p.pattern else "image files"
            raise source_error(
                self.folder,
                index,
                f"no file for this slice: the folder has {len(files)} {which}, and slice z is "
                f"file number z + z_offset = {number} (counting from 0)",
            )
        return files[number], index

    def _planes(self, t: int, z: Range) -> Iterator[tuple[int, int | None, Path, dict[str, int]]]:
        channels: list[int | None] = (
            list(range(self.config.channels)) if self.per_channel else [None]
        )
        for zi in range(*z):
            for c in channels:
                path, index = self.file_for(t, c or 0, zi)
                yield zi, c, path, index

    def _first_info(self) -> PlaneInfo:
        if self._first is None:
            e = self.config.extent
            path, index = self.file_for(e.t[0], 0, e.z[0])
            info = self._info(path, index, "image")
            self._check_info(path, index, info, self._want_samples(self.per_channel))
            self._first = info
        return self._first

    def _check_plane(
        self, path: Path, index: dict[str, int], info: PlaneInfo, y: Range, x: Range
    ) -> None:
        first = self._first_info()
        self._check_info(path, index, info, self._want_samples(self.per_channel))
        if (info.height, info.width) != (first.height, first.width):
            raise source_error(
                path,
                index,
                f"the image is {info.height}x{info.width} pixels, but the first slice of the "
                f"extent is {first.height}x{first.width}; every slice must have the same size",
            )
        check_within(path, index, info, y, x)

    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        out = self.new_block(z, y, x)
        for zi, c, path, index in self._planes(t, z):
            self.local_file(path)
            # one open per file, and the pixels go straight into the block
            plane = (
                np.moveaxis(out[:, zi - z[0]], 0, -1)
                if c is None
                else out[c, zi - z[0], :, :, np.newaxis]
            )
            self._read(
                path, index, "image", y, x, partial(self._check_plane, path, index, y=y, x=x), plane
            )
        return out

    def check(self) -> None:
        e = self.config.extent
        self.local_folder(self.folder, "the image folder")
        wanted = [(path, index) for t in range(*e.t) for _, _, path, index in self._planes(t, e.z)]
        _raise_missing(missing_files(wanted), "image")
        path, index = wanted[0]
        self._check_plane(path, index, self._first_info(), e.y, e.x)


class CatmaidReader(_PlaneReader):
    """A CATMAID file image stack (tile source type 1): ``{root_dir}/{z}/{row}_{col}.{ext}``
    tiles of ``tile_size``; reads only the tiles a region touches."""

    name = "catmaid"
    params_model = CatmaidParams
    transient = ("_first",)

    def __init__(self, params: Any, config: IngestConfig) -> None:
        super().__init__(params, config)
        p: CatmaidParams = params
        self.root = self.absolute("source.params.root_dir", p.root_dir)
        size = p.tile_size or config.tile_size or {}
        if "x" not in size or "y" not in size:
            raise InvalidInput(
                "source.params.tile_size: required: the tiles' width and height "
                "({x: …, y: …}), here or as the config's tile_size"
            )
        self.tile = (int(size["y"]), int(size["x"]))
        if config.extent.t != (0, 1):
            raise InvalidInput(
                f"extent.t: {list(config.extent.t)}, but a CATMAID stack holds one time point; "
                "use [0, 1]"
            )
        if p.pattern is not None:
            text = p.pattern
        else:
            zoom = f"_{p.zoom_level}" if p.zoom_level is not None else ""
            text = f"{{z}}/{{row}}_{{col}}{zoom}.{p.filetype}"
        self.template = Template.parse(text, ("z", "row", "col"))
        self._first: PlaneInfo | None = None

    def source_paths(self) -> list[tuple[str, str]]:
        return [("source.params.root_dir", str(self.root))]

    def tile_path(self, z: int, row: int, col: int) -> tuple[Path, dict[str, int]]:
        """The file of tile (``row``, ``col``) of slice ``z``."""
        return self.root / self.template.format(z=z, row=row, col=col), {
            "z": z,
            "row": row,
            "col": col,
        }

    def _tiles(self, z: Range, y: Range, x: Range) -> Iterator[tuple[int, int, int]]:
        ty, tx = self.tile
        for zi in range(*z):
            for row in range(y[0] // ty, (y[1] - 1) // ty + 1):
                for col in range(x[0] // tx, (x[1] - 1) // tx + 1):
                    yield zi, row, col

    def _check_tile(self, path: Path, index: dict[str, int], info: PlaneInfo) -> None:
        self._check_info(path, index, info, self.config.channels)
        ty, tx = self.tile
        e = self.config.extent
        row, col = index["row"], index["col"]
        # an edge tile may be cut short, as long as it covers the extent
        ok_h = info.height == ty or (info.height < ty and row * ty + info.height >= e.y[1])
        ok_w = info.width == tx or (info.width < tx and col * tx + info.width >= e.x[1])
        if not (ok_h and ok_w):
            raise source_error(
                path,
                index,
                f"the tile is {info.height}x{info.width} pixels, expected {ty}x{tx} "
                "(tile_size y, x)",
            )

    def _tile_info(self, path: Path, index: dict[str, int]) -> PlaneInfo:
        self.local_file(path)
        try:
            return image_info(path)
        except FileNotFoundError:
            raise source_error(path, index, "tile is missing" + self._hint(path, index)) from None
        except Unreadable as exc:
            raise source_error(path, index, f"cannot read the tile: {exc}") from None

    def _hint(self, path: Path, index: dict[str, int]) -> str:
        """Why a tile might be missing: the stack names its tiles with the zoom level."""
        p: CatmaidParams = self.params  # type: ignore[assignment]
        if p.pattern is None and p.zoom_level is None:
            zoomed = path.with_name(f"{index['row']}_{index['col']}_0.{p.filetype}")
            if zoomed.exists():
                return f"; the stack has {zoomed.name}: set source.params.zoom_level: 0"
        return ""

    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        p: CatmaidParams = self.params  # type: ignore[assignment]
        if t != 0:
            raise source_error(self.root, {"t": t}, "a CATMAID stack has only time point 0")
        out = self.new_block(z, y, x)
        ty, tx = self.tile
        for zi, row, col in self._tiles(z, y, x):
            path, index = self.tile_path(zi, row, col)
            if p.missing == "zero" and not self.local_file(path).exists():
                continue
            info = self._tile_info(path, index)
            self._check_tile(path, index, info)
            # the part of the region inside this tile, in tile and in output coordinates
            y0, y1 = max(y[0], row * ty), min(y[1], (row + 1) * ty)
            x0, x1 = max(x[0], col * tx), min(x[1], (col + 1) * tx)
            if y1 - row * ty > info.height or x1 - col * tx > info.width:
                raise source_error(
                    path,
                    index,
                    f"the region {shown_range('y', (y0, y1))}, {shown_range('x', (x0, x1))} "
                    f"lies beyond the tile ({info.height}x{info.width} pixels); check the "
                    "extent",
                )
            plane = self._read(
                path, index, "tile", (y0 - row * ty, y1 - row * ty), (x0 - col * tx, x1 - col * tx)
            )
            out[:, zi - z[0], y0 - y[0] : y1 - y[0], x0 - x[0] : x1 - x[0]] = np.moveaxis(
                plane, -1, 0
            )
        return out

    def check(self) -> None:
        p: CatmaidParams = self.params  # type: ignore[assignment]
        e = self.config.extent
        check_region(e.z, e.y, e.x)
        self.local_folder(self.root, "the CATMAID stack folder")
        sample: list[tuple[Path, dict[str, int]]] = []
        total = 0
        first: tuple[Path, dict[str, int]] | None = None
        for zi in range(*e.z):  # one slice at a time: a stack may have millions of tiles
            self.checkpoint()
            wanted = [self.tile_path(*tile) for tile in self._tiles((zi, zi + 1), e.y, e.x)]
            missing = missing_files(wanted)
            total += len(missing)
            sample.extend(missing[: max(0, _SHOW_MISSING - len(sample))])
            if first is None:
                gone = {path for path, _ in missing}
                first = next((w for w in wanted if w[0] not in gone), None)
        if p.missing == "error":
            hint = self._hint(*sample[0]) if sample else ""
            _raise_missing(sample, "tile", hint, total)
        if first is None:
            raise source_error(self.root, {}, "no tile of the extent exists")
        path, index = first
        self._check_tile(path, index, self._tile_info(path, index))
