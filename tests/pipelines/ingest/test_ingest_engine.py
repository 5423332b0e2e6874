"""Ingest jobs through the engine (an in-process Dask cluster and orchestrator): a folder of
TIFF slices into a local store and into the real S3 server, registered in the catalog; a
missing slice stops the job before anything is written; a cancel keeps what is recorded
and removes what is not; a retry resumes without writing a recorded shard again."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from _rig import Rig, running_rig
from neuroferry.engine import read_log, retry_job
from neuroferry.pipelines.ingest import cancel_ingest, ingest_status, load_config
from neuroferry.pipelines.ingest._reader_images import ImageFolderReader

from ._stacks import make_volume, write_image_folder

SHAPE = (21, 70, 90)  # z, y, x: no size a multiple of the chunk or the shard


class SlowReader(ImageFolderReader):
    """The image-folder reader, slowed down (``FERRY_TEST_READ_DELAY`` seconds a read) so
    that a job can be cancelled, killed or joined mid-way."""

    name = "slow-image-folder"

    def read(self, t: int, z: Any, y: Any, x: Any) -> np.ndarray:
        time.sleep(float(os.environ.get("FERRY_TEST_READ_DELAY", "0.4")))
        return super().read(t, z, y, x)


def ingest_config(
    source: Path, destination: str, name: str = "lab/em", plugin: str = "image-folder"
) -> dict[str, Any]:
    z, y, x = SHAPE
    return {
        "version": 1,
        "name": name,
        "destination": destination,
        "source": {
            "plugin": plugin,
            "params": {"path": str(source), "pattern": "slice_{z:04d}.tif"},
        },
        "extent": {"x": [0, x], "y": [0, y], "z": [0, z]},
        "dtype": "uint16",
        "voxel_size": {"x": 0.5, "y": 0.5, "z": 2.0, "unit": "micrometer"},
        "chunk": [4, 16, 16],
        "shard": [8, 32, 32],
        "levels": 3,
    }


def stack(tmp_path: Path) -> tuple[np.ndarray, Path]:
    volume = make_volume(SHAPE, "uint16", seed=4)
    folder = tmp_path / "slices"
    write_image_folder(folder, volume)
    return volume, folder


def check_volume(root: Path, volume: np.ndarray) -> None:
    group = zarr.open_group(str(root), mode="r")
    assert group.attrs["ome"]["version"] == "0.5"
    level0 = group["0"][...]
    assert level0.shape == (1, *SHAPE)  # a 3-D stack has no time axis: (c, z, y, x)
    np.testing.assert_array_equal(level0[0], volume)
    for level in (1, 2):
        assert group[str(level)].shape[1:] == tuple(-(-n // 2**level) for n in SHAPE)


def shard_files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "/c/" in p.relative_to(root).as_posix() and "#" not in p.name
    }


def test_a_stack_is_ingested_into_a_local_store_and_registered(tmp_path: Path) -> None:
    volume, folder = stack(tmp_path)
    lake = tmp_path / "lake"
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        destinations={"lab": lake.as_uri()},
        ingest_memory_budget=40_000,
    ) as rig:
        rig.start()
        job_id = rig.submit("ingest", load_config(ingest_config(folder, "lab")))
        job = rig.wait(job_id, timeout=120)
        assert job["state"] == "succeeded", rig.states(job_id)
        assert job["name"] == "lab/em"
        writes = [k for k in rig.tasks(job_id) if k.startswith("write[")]
        assert len(writes) > 4  # the budget cut the volume into many units
        check_volume(lake / "lab" / "em.ome.zarr", volume)

        [doc] = rig.catalog.find({"name": "lab:em"})
        assert doc["location"] == (lake / "lab" / "em.ome.zarr").as_uri()
        assert doc["image"]["shape"] == [1, *SHAPE]
        assert doc["image"]["axes"] == ["c", "z", "y", "x"]
        assert [lv["shape"][1:] for lv in doc["image"]["levels"]] == [
            [21, 70, 90],
            [11, 35, 45],
            [6, 18, 23],
        ]
        manifest = doc["ingest"]["manifest"]
        assert manifest == (lake / ".ferry/ingest/lab/em.ome.zarr/manifest.json").as_uri()
        status = ingest_status(rig.engine, job_id, settings=rig.settings)
        assert status["shards_done"] == status["shards_total"] == 81
        assert status["chunks_done"] == status["chunks_total"]
        assert status["bytes_done"] == status["bytes_total"] == volume.nbytes
        assert status["units"]["succeeded"] == len(writes)

        # the same config again: every shard is recorded, nothing is written
        before = shard_files(lake / "lab" / "em.ome.zarr")
        again = rig.submit("ingest", load_config(ingest_config(folder, "lab")))
        assert rig.wait(again, timeout=120)["state"] == "succeeded", rig.states(again)
        assert shard_files(lake / "lab" / "em.ome.zarr") == before
        results = [t["result"] for k, t in rig.tasks(again).items() if k.startswith("write[")]
        assert sum(r["written"] for r in results) == 0
        assert sum(r["recorded"] for r in results) == 81


@pytest.mark.s3
def test_a_stack_is_ingested_into_s3(tmp_path: Path, s3_server: Any, s3_env: str) -> None:
    volume, folder = stack(tmp_path)
    bucket = s3_env.removeprefix("s3://")
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        destinations={"lab": f"{s3_env}/lake"},
        ingest_memory_budget=100_000,
    ) as rig:
        rig.start()
        job_id = rig.submit("ingest", load_config(ingest_config(folder, "lab", name="s3/em")))
        job = rig.wait(job_id, timeout=120)
        assert job["state"] == "succeeded", rig.states(job_id)
        # the server keeps objects as files: read them back with zarr-python
        check_volume(s3_server.root / bucket / "lake" / "s3" / "em.ome.zarr", volume)
        [doc] = rig.catalog.find({"name": "s3:em"})
        assert doc["location"] == f"{s3_env}/lake/s3/em.ome.zarr"


def test_a_missing_slice_fails_the_check_and_writes_nothing(tmp_path: Path) -> None:
    _volume, folder = stack(tmp_path)
    (folder / "slice_0007.tif").unlink()
    lake = tmp_path / "lake"
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}", destinations={"lab": lake.as_uri()}
    ) as rig:
        rig.start()
        job_id = rig.submit("ingest", load_config(ingest_config(folder, "lab")))
        job = rig.wait(job_id, timeout=60)
        assert job["state"] == "failed"
        states = rig.states(job_id)
        assert states["check_source"].startswith("failed")
        assert "slice_0007.tif" in states["check_source"], states
        assert "z=7" in states["check_source"] or "7" in states["check_source"]
        assert rig.tasks(job_id)["plan"]["state"] in ("pending", "cancelled")
        assert not (lake / "lab").exists()


def wait_for(rig: Rig, job_id: int, done: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        tasks = rig.tasks(job_id)
        finished = [
            k for k, t in tasks.items() if k.startswith("write[") and t["state"] == "succeeded"
        ]
        if len(finished) >= done:
            return
        assert time.monotonic() < deadline, rig.states(job_id)
        time.sleep(0.05)


def test_cancel_keeps_recorded_shards_and_retry_resumes(tmp_path: Path) -> None:
    volume, folder = stack(tmp_path)
    lake = tmp_path / "lake"
    root = lake / "lab" / "em.ome.zarr"
    config = load_config(ingest_config(folder, "lab", plugin=f"{__name__}:SlowReader"))
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        destinations={"lab": lake.as_uri()},
        ingest_memory_budget=20_000,
        dask_threads_per_worker=2,
    ) as rig:
        rig.start()
        job_id = rig.submit("ingest", config)
        wait_for(rig, job_id, 2)
        units = [k for k in rig.tasks(job_id) if k.startswith("write[")]
        assert len(units) >= 12
        # what a put whose record never came would leave: an object in a unit that has
        # not run, and a local store's temporary file
        stray = root / "0/c/0/2/2/2"  # level 0, c 0, shard z 2, y 2, x 2
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not recorded")
        (root / "0/c/0/2/2/1#5").write_bytes(b"half a put")

        done = cancel_ingest(rig.engine, rig.log_store, rig.settings, job_id)
        assert done["job"]["state"] == "cancelled"
        cleanup = done["cleanup"]
        assert cleanup["removed"] >= 1 and cleanup["staging_removed"] == 1
        assert not stray.exists() and not (root / "0/c/0/2/2/1#5").exists()
        kept = shard_files(root)
        assert cleanup["kept"] == len(kept) > 0
        states = {k: t["state"] for k, t in rig.tasks(job_id).items() if k.startswith("write[")}
        assert "cancelled" in states.values() and "succeeded" in states.values()
        assert not (root / "zarr.json").exists()  # not committed

        retry_job(rig.engine, rig.log_store, job_id)
        rig.wake()
        job = rig.wait(job_id, timeout=120)
        assert job["state"] == "succeeded", rig.states(job_id)
        after = shard_files(root)
        assert all(after[k] == v for k, v in kept.items()), "a recorded shard was written again"
        check_volume(root, volume)
        results = [t["result"] for k, t in rig.tasks(job_id).items() if k.startswith("write[")]
        # every shard written once over both runs (a stopped unit's result counts what its
        # second run wrote; the units that finished before keep their first result)
        assert sum(r["written"] for r in results) == len(after) == 81
        assert sum(r["same"] for r in results) == 0
        log = read_log(rig.engine, rig.log_store, job_id, "verify")
        assert "verified 81 shards" in log
