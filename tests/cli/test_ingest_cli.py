"""`ferry ingest` against a real `ferry serve`: create (the id first), wait with progress
lines and a summary, status as text and JSON, cancel and resume; bad configs exit 2
naming the field, without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import neuroferry
from _service import Service, running_service
from neuroferry.client import Client
from neuroferry.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from pipelines.ingest._stacks import make_volume, write_image_folder

TESTS = Path(__file__).resolve().parents[1]
SLOW = "ingest.test_ingest_engine:SlowReader"
SRC = Path(neuroferry.__file__).resolve().parents[1]  # the neuroferry under test
_TEXT: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 120}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("ingest-cli-home")
    with running_service(
        home,
        FERRY_DASK_WORKERS="1",
        FERRY_ORCHESTRATOR_POLL="0.1",
        FERRY_INGEST_MEMORY_BUDGET="4096",  # a unit is one shard: 12 units a volume
        FERRY_TEST_READ_DELAY="1.0",
        # the tests' stacks lie in their tmp_path folders: every user may read them
        FERRY_SOURCE_ROOTS=json.dumps([str(tmp_path_factory.getbasetemp())]),
        # the slow test reader must be importable by the service and its workers
        PYTHONPATH=f"{TESTS / 'pipelines'}:{TESTS}:{SRC}",
    ) as svc:
        yield svc


def ferry(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**service.env, "FERRY_URL": service.url, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_config(path: Path, source: Path, lake: Path, name: str, **extra: Any) -> Path:
    config = {
        "version": 1,
        "name": name,
        "destination": lake.as_uri(),
        "source": {
            "plugin": extra.pop("plugin", "image-folder"),
            "params": {"path": str(source), "pattern": "slice_{z:04d}.tif"},
        },
        "extent": {"x": [0, 50], "y": [0, 40], "z": [0, 12]},
        "dtype": "uint8",
        "voxel_size": {"x": 4, "y": 4, "z": 40, "unit": "nanometer"},
        "chunk": [4, 16, 16],
        "shard": [4, 32, 32],
        "levels": 2,
        **extra,
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def stack(tmp_path: Path) -> tuple[np.ndarray, Path]:
    volume = make_volume((12, 40, 50), "uint8", seed=9)
    write_image_folder(tmp_path / "slices", volume)
    return volume, tmp_path / "slices"


def test_create_wait_prints_the_id_progress_and_a_summary(
    service: Service, tmp_path: Path, stack: tuple[np.ndarray, Path]
) -> None:
    volume, source = stack
    lake = tmp_path / "lake"
    config = write_config(tmp_path / "em.json", source, lake, "cli/em")
    done = ferry(service, "ingest", "create", str(config), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    first, *rest = done.stdout.splitlines()
    job_id = int(first)  # the id alone on the first line
    assert f"job {job_id} cli/em: succeeded" in rest[0]
    assert "em.ome.zarr" in done.stdout and "MB/s" in done.stdout
    assert "shards" in done.stderr and "chunks/s" in done.stderr  # plain progress lines

    group = zarr.open_group(str(lake / "cli" / "em.ome.zarr"), mode="r")
    np.testing.assert_array_equal(group["0"][0], volume)  # (c, z, y, x)
    assert group["1"].shape == (1, 6, 20, 25)

    shown = ferry(service, "ingest", "status", str(job_id), "--json")
    status = json.loads(shown.stdout)
    assert status["state"] == "succeeded"
    assert status["shards_done"] == status["shards_total"] == 24
    assert [lv["shards_done"] for lv in status["levels"]] == [12, 12]
    assert status["job"]["seconds"] > 0 and status["eta_seconds"] is None
    text = ferry(service, "ingest", "status", str(job_id))
    assert text.returncode == 0
    assert "level 0: 12/12 shards" in text.stdout and "level 1: 12/12 shards" in text.stdout

    listed = json.loads(
        ferry(service, "jobs", "list", "--kind", "ingest", "--format", "json").stdout
    )
    assert job_id in [j["id"] for j in listed["jobs"]]


def test_cancel_keeps_what_is_done_and_a_retry_resumes(
    service: Service, tmp_path: Path, stack: tuple[np.ndarray, Path]
) -> None:
    volume, source = stack
    lake = tmp_path / "lake"
    config = tmp_path / "slow.yaml"
    write_config(tmp_path / "slow.json", source, lake, "cli/slow", plugin=SLOW)
    import yaml

    config.write_text(yaml.safe_dump(json.loads((tmp_path / "slow.json").read_text())))
    created = ferry(service, "ingest", "create", str(config))
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.splitlines()[0]
    token = json.loads((service.home / "token.json").read_text())["token"]
    client = Client(service.url, token)
    deadline = time.monotonic() + 60
    while True:
        status = client.ingest_status(int(job_id))
        if status["units"].get("succeeded", 0) >= 1:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    cancelled = ferry(service, "ingest", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {job_id} cli/slow: cancelled" in cancelled.stdout
    assert "kept" in cancelled.stdout and "removed 0 unrecorded shards" in cancelled.stdout
    status = json.loads(ferry(service, "ingest", "status", job_id, "--json").stdout)
    assert status["state"] == "cancelled"
    assert 0 < status["shards_done"] < status["shards_total"]

    again = ferry(service, "ingest", "cancel", job_id)  # a stopped job: only cleaned up
    assert again.returncode == 0 and "cancelled" in again.stdout

    assert ferry(service, "jobs", "retry", job_id).returncode == 0
    followed = ferry(service, "ingest", "status", job_id, "--follow")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    group = zarr.open_group(str(lake / "cli" / "slow.ome.zarr"), mode="r")
    np.testing.assert_array_equal(group["0"][0], volume)  # (c, z, y, x)

    done = ferry(service, "ingest", "cancel", job_id)
    assert done.returncode == 2 and "has succeeded" in done.stderr


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dtype": "uint12"}, "dtype"),
        ({"name": "../escape"}, "name"),
        ({"shard": [4, 30, 32]}, "shard"),
        ({"source": {"plugin": "no-such-reader", "params": {}}}, "source.plugin"),
        ({"destination": "nowhere"}, "destination"),
    ],
)
def test_a_bad_config_exits_2_naming_the_field(
    service: Service, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = write_config(tmp_path / "bad.json", tmp_path, tmp_path / "lake", "cli/bad")
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    done = ferry(service, "ingest", "create", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert field in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_unreadable_files_and_unknown_jobs(service: Service, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    broken = ferry(service, "ingest", "create", str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    missing = ferry(service, "ingest", "create", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr
    listed = ferry(
        service, "ingest", "create", str(tmp_path / "broken.json").replace(".json", ".yaml")
    )
    assert listed.returncode == 2
    unknown = ferry(service, "ingest", "status", "999999")
    assert unknown.returncode != 0 and "job 999999 does not exist" in unknown.stderr
    for result in (broken, missing, unknown):
        assert "Traceback" not in result.stderr


# -- the REST API the commands use ------------------------------------------------------------

BOSS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "boss-ingest"


def admin(service: Service) -> Client:
    return Client(service.url, json.loads((service.home / "token.json").read_text())["token"])


def test_the_api_takes_boss_configs_and_refuses_unknown_plugins(
    service: Service, tmp_path: Path
) -> None:
    if not BOSS.is_dir():
        pytest.skip(f"the Boss compatibility fixtures are not here ({BOSS})")
    client = admin(service)
    catmaid = json.loads((BOSS / "boss-v0.1-catmaid-file-stack-example.json").read_text())
    with pytest.raises(InvalidInput, match="root_dir"):  # the example leaves it empty
        client.ingest_create(catmaid)
    catmaid["client"]["path_processor"]["params"]["root_dir"] = str(tmp_path / "tiles")
    created = client.ingest_create(catmaid)
    assert created["id"] > 0 and created["volume"].endswith(".ome.zarr")
    status = wait_for_end(client, created["id"])
    assert status["state"] == "failed"  # its folders are not on this machine
    assert any(e.startswith("check_source:") for e in status["errors"]), status["errors"]
    assert status["shards_done"] == 0

    hdf5 = json.loads((BOSS / "boss-v0.1-hdf5Chunk-example.json").read_text())
    with pytest.raises(InvalidInput) as refused:
        client.ingest_create(hdf5)
    assert "HTTP 422" in str(refused.value)
    assert any(p["field"] == "client.path_processor.class" for p in refused.value.problems)


def wait_for_end(client: Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (status := client.ingest_status(job_id))["state"] not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def test_users_write_only_inside_the_service_destinations(
    service: Service, tmp_path: Path, stack: tuple[np.ndarray, Path]
) -> None:
    _volume, source = stack
    client = admin(service)
    client.users_add("ana", role="user")
    ana = Client(service.url, client.tokens_create(user="ana")["token"])
    spec = json.loads(
        write_config(tmp_path / "a.json", source, tmp_path / "lake", "ana/em").read_text()
    )
    with pytest.raises(InvalidInput) as refused:
        ana.ingest_create(spec)
    assert refused.value.problems[0]["field"] == "destination"
    inside = ana.ingest_create({**spec, "destination": "default"})
    assert wait_for_end(ana, inside["id"])["state"] == "succeeded"
    assert inside["volume"] == (service.home / "lake" / "ana" / "em.ome.zarr").as_uri()
    with pytest.raises(InvalidInput, match="nothing to cancel"):
        ana.ingest_cancel(inside["id"])
    # another user's job is not there for her; an upload job is not an ingest job
    others = admin(service).ingest_create({**spec, "name": "admin/em"})
    with pytest.raises(NotFound):
        ana.ingest_status(others["id"])
    wait_for_end(client, others["id"])


def test_the_cluster_endpoint_names_the_scheduler(service: Service) -> None:
    cluster = admin(service).cluster()
    assert cluster["scheduler"].startswith("tls://127.0.0.1:")
    assert cluster["workers"] == 1 and cluster["threads"] >= 1
    tls = cluster["tls"]
    assert tls["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in tls["key"]
    assert cluster["job"] is None
    with pytest.raises(Unauthorized):
        Client(service.url, "not-a-token").cluster()
    admin(service).users_add("cleo", role="user")
    cleo = Client(service.url, admin(service).tokens_create(user="cleo")["token"])
    with pytest.raises(Forbidden, match="only admins and worker accounts"):
        cleo.cluster()


def test_a_worker_account_joins_a_job_over_tls(service: Service, tmp_path: Path) -> None:
    added = ferry(service, "users", "add", "rig-1", "--role", "worker", "--format", "json")
    assert added.returncode == 0, added.stderr
    worker_token = json.loads(added.stdout)["token"]["token"]
    assert json.loads(added.stdout)["user"]["role"] == "worker"

    volume = make_volume((48, 64, 64), "uint8", seed=5)  # 48 slow units: time to join
    write_image_folder(tmp_path / "slices", volume)
    lake = tmp_path / "lake"
    extent = {"x": [0, 64], "y": [0, 64], "z": [0, 48]}
    config = write_config(
        tmp_path / "slow.json", tmp_path / "slices", lake, "cli/joined", plugin=SLOW, extent=extent
    )
    created = ferry(service, "ingest", "create", str(config))
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout.splitlines()[0])
    env = {**service.env, "FERRY_URL": service.url, "COLUMNS": "250"}
    command = ["ingest", "join", str(job_id), "-p", "1", "--token", worker_token]
    join = subprocess.Popen(
        [sys.executable, "-m", "neuroferry", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = admin(service)
    seen = 0  # the joined worker connects over TLS: the scheduler counts it
    while join.poll() is None and seen < 2:
        seen = max(seen, client.cluster()["workers"])
        time.sleep(0.2)
    out, err = join.communicate(timeout=240)
    assert join.returncode == 0, out + err
    assert seen == 2, f"the joined worker never connected: {err}"
    assert f"job {job_id}: succeeded" in out  # a worker token sees the state only
    assert "to tls://127.0.0.1:" in err and "retiring this machine's workers" in err
    assert "worker processes of this machine stopped" not in err  # none failed to connect
    group = zarr.open_group(str(lake / "cli" / "joined.ome.zarr"), mode="r")
    np.testing.assert_array_equal(group["0"][0], volume)  # (c, z, y, x)

    # the worker token reads where the cluster is, and nothing else
    worker = Client(service.url, worker_token)
    assert worker.cluster(job_id)["job"] == {"id": job_id, "state": "succeeded"}
    for call in (
        lambda: worker.ingest_status(job_id),
        lambda: worker.ingest_create(json.loads(config.read_text())),
        lambda: worker.job_tasks(job_id),
    ):
        with pytest.raises(Forbidden, match="worker account"):
            call()


def test_check_reads_a_config_without_a_service_and_checks_the_source(tmp_path, stack):
    volume, slices = stack
    config = write_config(tmp_path / "c.json", slices, tmp_path / "lake", "lab/checked")
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "COLUMNS": "250",
        "FERRY_HOME": str(tmp_path / "home"),
    }
    run = [sys.executable, "-m", "neuroferry", "ingest", "check"]
    done = subprocess.run([*run, str(config), "--source", "--json"], env=env, **_TEXT)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["config"]["name"] == "lab/checked" and plan["source_checked"]
    assert [v["shape"] for v in plan["levels"]] == [[1, 1, 12, 40, 50], [1, 1, 6, 20, 25]]
    assert plan["bytes"] == volume.nbytes
    text = subprocess.run([*run, str(config)], env=env, **_TEXT)
    assert text.returncode == 0 and "a valid ingest config for volume lab/checked" in text.stdout

    (slices / "slice_0007.tif").unlink()
    missing = subprocess.run([*run, str(config), "--source"], env=env, **_TEXT)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "slice_0007.tif" in missing.stderr and "z" in missing.stderr


def test_options_override_voxel_size_levels_and_chunking(tmp_path: Path) -> None:
    """A Boss config has no voxel size: the options give it (and levels, chunk, shard); a
    wrong value exits 2 naming its option, before anything is sent."""
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "COLUMNS": "250",
        "FERRY_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(SRC),
    }
    run = [sys.executable, "-m", "neuroferry", "ingest"]
    if BOSS.is_dir():
        boss = json.loads((BOSS / "boss-v0.1-catmaid-file-stack-example.json").read_text())
        boss["client"]["path_processor"]["params"]["root_dir"] = str(tmp_path / "tiles")
        config = tmp_path / "boss.json"
        config.write_text(json.dumps(boss))
    else:
        config = write_config(tmp_path / "c.json", tmp_path, tmp_path / "lake", "lab/o")
    given = [
        *("--voxel-size", "4,4.5,40", "--voxel-unit", "nanometer", "--levels", "3"),
        *("--chunk", "32,64,64", "--shard", "64,256,256"),
    ]
    done = subprocess.run([*run, "check", str(config), *given, "--json"], env=env, **_TEXT)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)["config"]
    assert parsed["voxel_size"]["x"] == 4 and parsed["voxel_size"]["y"] == 4.5
    assert parsed["voxel_size"]["z"] == 40 and parsed["voxel_size"]["unit"] == "nanometer"
    assert parsed["levels"] == 3
    assert parsed["chunk"] == [32, 64, 64] and parsed["shard"] == [64, 256, 256]

    bad = [
        (["--voxel-size", "4,4"], "--voxel-size"),
        (["--voxel-size", "4,-4,40"], "--voxel-size"),
        (["--voxel-unit", "parsec"], "--voxel-unit"),
        (["--levels", "9"], "--levels"),
        (["--chunk", "a,b,c"], "--chunk"),
        (["--shard", "64,1000,1024"], "--shard"),
    ]
    for command, cases in (("check", bad), ("create", bad[::2])):
        for options, named in cases:
            refused = subprocess.run(
                [*run, command, str(config), *options],
                env={**env, "FERRY_URL": "http://127.0.0.1:9", "FERRY_TOKEN": "x"},
                **_TEXT,
            )
            assert refused.returncode == 2, (options, refused.stderr)
            assert named in refused.stderr, (options, refused.stderr)
            assert "Traceback" not in refused.stderr and refused.stdout == ""
