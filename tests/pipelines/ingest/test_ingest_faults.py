"""Ingest jobs under `ferry serve` when things go wrong or get busy: kill -9 of the service
mid-ingest, then a restart, completes the job without writing any shard a second time;
two `ferry ingest join` processes add workers to one job, every shard is written once and
both exit 0 when the job ends.

"Written a second time" is checked on the files: a shard stored before the kill keeps its
inode and modification time to the nanosecond, which a second put would change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import neuroferry
from _service import Service, running_service
from neuroferry.client import Client

from ._stacks import make_volume, write_image_folder

TESTS = Path(__file__).resolve().parents[2]
SLOW = "ingest.test_ingest_engine:SlowReader"
SRC = Path(neuroferry.__file__).resolve().parents[1]  # the neuroferry under test
SHAPE = (16, 64, 64)  # 4 x 2 x 2 = 16 full-resolution shards of (4, 32, 32)


def environment(**more: str) -> dict[str, str]:
    return {
        "FERRY_DASK_WORKERS": "1",
        "FERRY_ORCHESTRATOR_LEASE": "2",
        "FERRY_ORCHESTRATOR_POLL": "0.1",
        "FERRY_INGEST_MEMORY_BUDGET": "4096",  # one shard a unit
        # the slow test reader must be importable by the service and every worker
        "PYTHONPATH": f"{TESTS / 'pipelines'}:{TESTS}:{SRC}",
        **more,
    }


def config(tmp_path: Path, name: str) -> tuple[np.ndarray, dict[str, Any], Path]:
    volume = make_volume(SHAPE, "uint8", seed=11)
    write_image_folder(tmp_path / "slices", volume)
    lake = tmp_path / "lake"
    z, y, x = SHAPE
    spec = {
        "version": 1,
        "name": name,
        "destination": lake.as_uri(),
        "source": {
            "plugin": SLOW,
            "params": {"path": str(tmp_path / "slices"), "pattern": "slice_{z:04d}.tif"},
        },
        "extent": {"x": [0, x], "y": [0, y], "z": [0, z]},
        "dtype": "uint8",
        "voxel_size": {"x": 4, "y": 4, "z": 40, "unit": "nanometer"},
        "chunk": [4, 16, 16],
        "shard": [4, 32, 32],
        "levels": 2,
    }
    return volume, spec, lake / f"{name}.ome.zarr"


def client_of(service: Service) -> Client:
    token = json.loads((service.home / "token.json").read_text())["token"]
    return Client(service.url, token)


def shard_files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "/c/" in p.relative_to(root).as_posix() and "#" not in p.name
    }


def wait_state(client: Client, job_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.ingest_status(job_id)
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def write_tasks(client: Client, job_id: int) -> list[dict[str, Any]]:
    return [t for t in client.job_tasks(job_id) if t["name"] == "write" and t["map_index"] >= 0]


def test_kill_9_of_the_service_mid_ingest_rewrites_nothing(tmp_path: Path) -> None:
    volume, spec, root = config(tmp_path, "faults/killed")
    home = tmp_path / "home"
    home.mkdir()
    with running_service(home, **environment(FERRY_TEST_READ_DELAY="1.0")) as service:
        client = client_of(service)
        job_id = client.ingest_create(spec)["id"]
        deadline = time.monotonic() + 120
        while client.ingest_status(job_id)["units"].get("succeeded", 0) < 3:
            assert time.monotonic() < deadline, client.ingest_status(job_id)
            time.sleep(0.1)
        service.kill()
        before = shard_files(root)
        assert 0 < len(before) < 32

        service.start()
        client = client_of(service)
        status = wait_state(client, job_id)
        assert status["state"] == "succeeded", status["errors"]
        after = shard_files(root)
        changed = [k for k, v in before.items() if after.get(k) != v]
        assert not changed, f"written again after the restart: {changed}"
        assert len(after) == status["shards_total"] == 32
        np.testing.assert_array_equal(zarr.open_group(str(root), mode="r")["0"][0], volume)
        attempts = [t["attempt"] for t in write_tasks(client, job_id)]
        assert max(attempts) == 2  # the units running at the kill ran again
        results = [t["result"] for t in write_tasks(client, job_id)]
        assert sum(r["written"] for r in results) == 32 - sum(r["same"] for r in results)


def test_two_join_processes_share_one_job_and_write_every_shard_once(tmp_path: Path) -> None:
    volume, spec, root = config(tmp_path, "faults/joined")
    home = tmp_path / "home"
    home.mkdir()
    with running_service(
        home, **environment(FERRY_TEST_READ_DELAY="0.7", FERRY_DASK_THREADS_PER_WORKER="1")
    ) as service:
        client = client_of(service)
        job_id = client.ingest_create(spec)["id"]
        env = {**service.env, "FERRY_URL": service.url}
        joins = [
            subprocess.Popen(
                [sys.executable, "-m", "neuroferry", "ingest", "join", str(job_id), "-p", "1"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [j.communicate(timeout=240) for j in joins]
        for join, (out, err) in zip(joins, outputs, strict=True):
            assert join.returncode == 0, out + err
            assert f"job {job_id} faults/joined: succeeded" in out
            assert "retiring this machine's workers" in err
        status = client.ingest_status(job_id)
        assert status["state"] == "succeeded"
        tasks = write_tasks(client, job_id)
        assert len(tasks) == 16
        assert all(t["attempt"] == 1 for t in tasks), [t["attempt"] for t in tasks]
        results = [t["result"] for t in tasks]
        assert sum(r["written"] for r in results) == len(shard_files(root)) == 32
        assert sum(r["same"] for r in results) == sum(r["recorded"] for r in results) == 0
        np.testing.assert_array_equal(zarr.open_group(str(root), mode="r")["0"][0], volume)
        # the joined workers took part: some units ran in processes that are not the service's
        service_pids = {service.proc.pid, *service.children()} if service.proc else set()
        pids = {int(str(t["worker"]).rsplit(":", 1)[1]) for t in tasks}
        assert pids - service_pids, f"every unit ran on the service's own worker: {pids}"
        deadline = time.monotonic() + 30  # and they are gone
        while any(Path(f"/proc/{p}").exists() for p in pids - service_pids):
            assert time.monotonic() < deadline
            time.sleep(0.2)
