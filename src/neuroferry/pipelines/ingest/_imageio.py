"""2-D images and TIFF pages: their shape and dtype from the header, and a crop of their
pixels as (ny, nx, samples), memory-mapped where the file allows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from neuroferry.errors import FerryError, first_line

Range = tuple[int, int]

TIFF_SUFFIXES = (".tif", ".tiff")

_PIL_DTYPES = {
    "1": "uint8",
    "L": "uint8",
    "P": "uint8",
    "LA": "uint8",
    "RGB": "uint8",
    "RGBA": "uint8",
    "CMYK": "uint8",
    "YCbCr": "uint8",
    "I;16": "uint16",
    "I;16L": "uint16",
    "I;16B": "uint16",
    "I": "int32",
    "F": "float32",
}
_PAGE_AXES = ("YX", "YXS", "SYX")


class Unreadable(Exception):
    """A file that exists but cannot be decoded (truncated, corrupt, not an image)."""


@dataclass(frozen=True)
class PlaneInfo:
    """A 2-D image's height, width, samples per pixel (3 for RGB) and data type."""

    height: int
    width: int
    samples: int
    dtype: np.dtype[Any]

    def shown(self) -> str:
        samples = f"x{self.samples}" if self.samples > 1 else ""
        return f"{self.height}x{self.width}{samples} {self.dtype}"


def same_kind(found: np.dtype[Any], wanted: np.dtype[Any]) -> bool:
    """Whether two dtypes hold the same values (byte order aside)."""
    return found.kind == wanted.kind and found.itemsize == wanted.itemsize


def _unreadable(exc: BaseException) -> Unreadable:
    return Unreadable(first_line(exc, typed=True))


# -- TIFF pages --------------------------------------------------------------------------


def page_info(page: Any) -> PlaneInfo:
    """The shape and dtype of a TIFF page (or frame)."""
    axes, shape = page.axes, page.shape
    if axes not in _PAGE_AXES or page.dtype is None:
        raise Unreadable(f"a page with axes {axes} and shape {shape} is not a 2-D image")
    sizes = dict(zip(axes, shape, strict=True))
    return PlaneInfo(sizes["Y"], sizes["X"], sizes.get("S", 1), np.dtype(page.dtype))


def crop_plane(
    data: Any, axes: str, y: Range, x: Range, out: np.ndarray | None = None
) -> np.ndarray:
    """A crop (ny, nx, samples), in native byte order, of a page's pixels laid out as
    ``axes`` (``YX``, ``YXS`` or ``SYX``), copied into ``out`` when given; only the crop is
    read from a memory map."""
    if axes == "YX":
        crop = data[y[0] : y[1], x[0] : x[1], np.newaxis]
    elif axes == "YXS":
        crop = data[y[0] : y[1], x[0] : x[1], :]
    else:  # planar samples
        crop = np.moveaxis(data[:, y[0] : y[1], x[0] : x[1]], 0, -1)
    if out is None:
        return np.array(crop, dtype=crop.dtype.newbyteorder("="))
    np.copyto(out, crop, casting="equiv")
    return out


def read_page(
    tif: tifffile.TiffFile, page: Any, y: Range, x: Range, out: np.ndarray | None = None
) -> np.ndarray:
    """A crop (ny, nx, samples) of a page of the open TIFF ``tif`` (into ``out``)."""
    end = max(
        (o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0
    )
    if end > tif.filehandle.size:
        raise Unreadable(
            f"the file is cut short: the page's data end at byte {end}, the file has "
            f"{tif.filehandle.size} bytes"
        )
    data: Any
    if page.is_memmappable and page.dtype is not None:
        dtype = np.dtype(tif.byteorder + page.dtype.char)
        data = np.memmap(
            tif.filehandle.path, dtype, "r", page.dataoffsets[0], page.shape, order="C"
        )
    else:
        data = page.asarray()
    return crop_plane(data, page.axes, y, x, out)


# -- single images -----------------------------------------------------------------------


def image_info(path: Path) -> PlaneInfo:
    """Header facts of a 2-D image file (TIFF: its first page). FileNotFoundError when it
    is missing, Unreadable when it cannot be decoded."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                return page_info(tif.pages.first)
        with Image.open(path) as img:
            dtype = _PIL_DTYPES.get(img.mode)
            if dtype is None:
                raise Unreadable(f"image mode {img.mode} is not supported")
            return PlaneInfo(img.height, img.width, len(img.getbands()), np.dtype(dtype))
    except (FileNotFoundError, Unreadable):
        raise
    except Exception as exc:
        raise _unreadable(exc) from exc


def read_image(
    path: Path,
    y: Range,
    x: Range,
    check: Callable[[PlaneInfo], None] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A crop (ny, nx, samples) of a 2-D image file (TIFF: its first page), copied into
    ``out`` when given; ``check`` sees the file's header facts before any pixel is read."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                if check is not None:
                    check(page_info(tif.pages.first))
                return read_page(tif, tif.pages.first, y, x, out)
        with Image.open(path) as img:
            dtype = _PIL_DTYPES.get(img.mode)
            if check is not None:
                if dtype is None:
                    raise Unreadable(f"image mode {img.mode} is not supported")
                check(PlaneInfo(img.height, img.width, len(img.getbands()), np.dtype(dtype)))
            crop = img.crop((x[0], y[0], x[1], y[1]))
            data = np.asarray(crop)
            if img.mode == "I;16B" or data.dtype != np.dtype(dtype or "uint8"):
                data = data.astype(dtype or "uint8")
            data = data[:, :, np.newaxis] if data.ndim == 2 else data
            if out is None:
                return np.array(data)
            np.copyto(out, data)
            return out
    except (FileNotFoundError, Unreadable, FerryError):
        raise
    except Exception as exc:
        raise _unreadable(exc) from exc
