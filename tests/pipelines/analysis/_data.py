"""Sample inputs of the analysis tests: dispatch models and OME-Zarr volumes written by the
ingest pipeline's writer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from neuroferry.pipelines.analysis import DispatchModel
from neuroferry.pipelines.ingest import IngestConfig, Layout, Unit, plan_units
from neuroferry.pipelines.ingest._writer import PLAN_KEY, Volume, progress_url, put_json, write_unit
from neuroferry.pipelines.ingest._zarr import dumps
from neuroferry.stores import open_store


def dispatch(
    s3_location: list[str], file_location: list[str] | None = None, **extra: Any
) -> DispatchModel:
    """A dispatch model over ``s3_location`` (asset names from the URLs, record ids made
    up)."""
    return DispatchModel(
        s3_location=s3_location,
        asset_name=[url.rstrip("/").rpartition("/")[2] for url in s3_location],
        docdb_record_id=[f"record-{i}" for i in range(len(s3_location))],
        file_location=file_location,
        **extra,
    )


def write_volume(
    destination: str, name: str, volume: np.ndarray, levels: int = 2, time_axis: str = "auto"
) -> Layout:
    """``volume`` (t, c, z, y, x) written by the ingest writer, unit by unit, as
    ``{destination}/{name}.ome.zarr`` (progress records beside it, under ``.ferry/``);
    ``time_axis="always"`` writes it as volumes were written before that field."""
    t, c, z, y, x = volume.shape
    config = IngestConfig.model_validate(
        {
            "name": name,
            "source": {"plugin": "tests:Unused"},
            "extent": {"t": [0, t], "z": [0, z], "y": [0, y], "x": [0, x]},
            "channels": c,
            "dtype": volume.dtype.name,
            "voxel_size": {"x": 0.5, "y": 0.5, "z": 2.0, "unit": "micrometer"},
            "chunk": (4, 8, 8),
            "shard": (8, 16, 16),
            "levels": levels,
            "time_axis": time_axis,
        }
    )
    layout = Layout.of(config)
    fingerprint = layout.fingerprint()
    data = open_store(f"{destination}/{name}.ome.zarr", create=True)
    progress = open_store(progress_url(destination, name), create=True)
    for level in range(layout.levels):
        data.put(f"{level}/zarr.json", dumps(layout.array_metadata(level)))
    put_json(progress, PLAN_KEY, {"fingerprint": fingerprint})

    def read(unit: Unit) -> np.ndarray:
        (z0, z1), (y0, y1), (x0, x1) = unit.region(layout)
        return volume[unit.t, :, z0:z1, y0:y1, x0:x1].copy()

    for unit in plan_units(layout, volume[0].nbytes // 3):
        write_unit(
            Volume(data, progress),
            layout,
            fingerprint,
            unit,
            read,
            log=logging.getLogger("test-analysis-volume"),
            check_cancelled=lambda _result: None,
        )
    data.put("zarr.json", dumps(layout.group_metadata()))
    return layout
