"""How viewers show a volume: the ``omero`` block of an intensity image (channel names,
colours, contrast windows) and the ``image-label`` block of a label image (a colour and
properties per label value), both inside the group's NGFF 0.5 ``ome`` attributes.

What the config does not give is computed from the data: from the lowest resolution level,
or from a central block of it of at most :data:`SAMPLE_VOXELS` voxels per channel, so that
the work is bounded whatever the volume's size.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import numpy.typing as npt

from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._zarr import NGFF_VERSION, Layout

SAMPLE_VOXELS = 1 << 24
"""The most voxels of one channel read to compute windows and label colours."""
LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9
MAX_LABEL_COLORS = 256
"""The most label values given a colour when the config names none."""
PALETTE = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00")
"""Default colours of the channels of a multi-channel image, in order."""


def sample_region(shape: tuple[int, ...], limit: int = SAMPLE_VOXELS) -> tuple[slice, ...]:
    """The (z, y, x) region of a level of ``shape`` (t, c, z, y, x) that is sampled: all
    of it, or a central block of at most ``limit`` voxels (fewer z slices first)."""
    z, y, x = shape[2:]
    plane = max(1, y * x)
    if z * plane <= limit:
        return (slice(0, z), slice(0, y), slice(0, x))
    nz = max(1, limit // plane)
    if nz == 1 and plane > limit:
        side = int(np.sqrt(limit))
        ny, nx = min(y, side), min(x, side)
        return (
            slice(z // 2, z // 2 + 1),
            slice((y - ny) // 2, (y - ny) // 2 + ny),
            slice((x - nx) // 2, (x - nx) // 2 + nx),
        )
    z0 = (z - nz) // 2
    return (slice(z0, z0 + nz), slice(0, y), slice(0, x))


def channel_names(config: IngestConfig) -> list[str]:
    """Each channel's name: the config's, or defaults."""
    if config.channel_names is not None:
        return list(config.channel_names)
    if config.channels == 1:
        return [config.name.rsplit("/", 1)[-1]]
    return [f"c{i}" for i in range(config.channels)]


def channel_colors(config: IngestConfig) -> list[str]:
    """Each channel's colour (``RRGGBB``): the config's, or defaults."""
    if config.channel_colors is not None:
        return list(config.channel_colors)
    if config.channels == 1:
        return ["FFFFFF"]
    return [PALETTE[i % len(PALETTE)] for i in range(config.channels)]


def _number(value: Any, integer: bool) -> float | int:
    return int(value) if integer else float(value)


def window(sample: npt.NDArray[Any], integer: bool) -> dict[str, float | int]:
    """A channel's window from a sample of its data: ``min`` and ``max`` of the sample,
    ``start`` and ``end`` at its 0.1 and 99.9 percentiles (``end`` > ``start``)."""
    values = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if values.size == 0:
        return {"min": 0, "max": 1, "start": 0, "end": 1}
    low, high = values.min(), values.max()
    start, end = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if integer:
        start, end = np.floor(start), np.ceil(end)
    if end <= start:
        start, end = low, high
    if end <= start:
        end = start + 1
        high = max(high, end)
    return {
        "min": _number(low, integer),
        "max": _number(high, integer),
        "start": _number(start, integer),
        "end": _number(end, integer),
    }


def omero(config: IngestConfig, layout: Layout, samples: list[npt.NDArray[Any]]) -> dict[str, Any]:
    """The ``omero`` block of an intensity image; ``samples``: each channel's sample."""
    integer = np.dtype(layout.dtype).kind in "iu"
    names = channel_names(config)
    colors = channel_colors(config)
    channels = []
    for c in range(config.channels):
        win = window(samples[c], integer)
        if config.contrast_limits is not None:
            start, end = config.contrast_limits[c]
            win["start"], win["end"] = start, end
            win["min"] = min(win["min"], start)
            win["max"] = max(win["max"], end)
        channels.append(
            {
                "label": names[c],
                "color": colors[c],
                "active": c < 3 or config.channels <= 4,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": win,
            }
        )
    depth = layout.shapes[0][2]
    return {
        "name": config.name,
        "version": NGFF_VERSION,
        "channels": channels,
        "rdefs": {
            "model": "greyscale" if config.channels == 1 else "color",
            "defaultT": 0,
            "defaultZ": depth // 2,
        },
    }


def label_color(value: int) -> str:
    """A distinct, stable colour ``RRGGBBAA`` for a label value (golden-ratio hues)."""
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + 0.35 * ((value >> 3) % 2), 0.95)
    return f"{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}FF"


def _rgba(color: str) -> list[int]:
    color = color if len(color) == 8 else color + "FF"
    return [int(color[i : i + 2], 16) for i in range(0, 8, 2)]


def image_label(config: IngestConfig, sample: npt.NDArray[Any] | None) -> dict[str, Any]:
    """The ``image-label`` block of a label image: the config's colours (or one for each
    value in ``sample``, background 0 transparent, up to :data:`MAX_LABEL_COLORS`) and
    properties; ``source`` points at the image a label image of another volume belongs to."""
    colors: dict[int, str]
    if config.label_colors is not None:
        colors = dict(config.label_colors)
    else:
        values = np.unique(sample) if sample is not None else np.empty(0, dtype=np.int64)
        colors = {
            int(v): ("00000000" if int(v) == 0 else label_color(int(v)))
            for v in values[:MAX_LABEL_COLORS]
        }
    block: dict[str, Any] = {
        "version": NGFF_VERSION,
        "colors": [{"label-value": k, "rgba": _rgba(v)} for k, v in sorted(colors.items())],
    }
    if config.label_properties:
        block["properties"] = [
            {**props, "label-value": k} for k, props in sorted(config.label_properties.items())
        ]
    if config.label_of is not None:
        block["source"] = {"image": "../../"}
    return block


def labels_group(existing: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The ``zarr.json`` of an image's ``labels`` group that lists ``name`` besides the
    label images ``existing`` (the group's current ``zarr.json``) lists."""
    ome = ((existing or {}).get("attributes") or {}).get("ome") or {}
    found = ome.get("labels") if isinstance(ome, dict) else None
    names = [n for n in found if isinstance(n, str)] if isinstance(found, list) else []
    if name not in names:
        names.append(name)
    return {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": NGFF_VERSION, "labels": names}},
    }
