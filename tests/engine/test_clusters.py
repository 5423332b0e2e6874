"""HPC clusters through dask-jobqueue: checked by their job scripts, never by submitting.

Every cluster here is built with adaptivity off (or with submission made to fail loudly)
and its scheduler on 127.0.0.1, and is closed before the test ends.
"""

import sys
from pathlib import Path

import dask
import dask_jobqueue
import pytest
from test_dask_tls import write_tls_files

from neuroferry.config import get_settings
from neuroferry.engine._clusters import make_cluster, resources_for, worker_resources
from neuroferry.engine._executor import Executor
from neuroferry.errors import ConfigError, InvalidInput

PROLOGUE = ["module load python/3.11", "source /opt/ferry/bin/activate"]


def _settings(kind, extra, **overrides):
    values = {
        "cluster": kind,
        "cluster_queue": "bigmem",
        "cluster_account": "lab42",
        "cluster_cores": 8,
        "cluster_memory": "64GB",
        "cluster_walltime": "06:30:00",
        "cluster_max_jobs": 3,
        "cluster_job_extra": extra,
        "cluster_job_script_prologue": PROLOGUE,
    }
    return get_settings(**{**values, **overrides})


@pytest.fixture
def no_submit(monkeypatch):
    """Record (and refuse) any attempt to submit a batch job."""
    submitted = []

    async def refuse(self, script_filename):
        submitted.append(script_filename)
        raise RuntimeError("tests must not submit batch jobs")

    monkeypatch.setattr(dask_jobqueue.core.Job, "_submit_job", refuse)
    return submitted


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        (
            "slurm",
            ["--gres=gpu:1"],
            [
                "#SBATCH -J ferry-worker",
                "#SBATCH -p bigmem",
                "#SBATCH -A lab42",
                "#SBATCH --cpus-per-task=8",
                "#SBATCH --mem=60G",  # 64e9 bytes, rounded up to GiB
                "#SBATCH -t 06:30:00",
                "#SBATCH --gres=gpu:1",
            ],
        ),
        (
            "pbs",
            ["-l ngpus=1"],
            [
                "#PBS -N ferry-worker",
                "#PBS -q bigmem",
                "#PBS -A lab42",
                "#PBS -l select=1:ncpus=8:mem=60GB",
                "#PBS -l walltime=06:30:00",
                "#PBS -l ngpus=1",
            ],
        ),
        (
            "lsf",
            ['-gpu "num=1"'],
            [
                "#BSUB -J ferry-worker",
                "#BSUB -q bigmem",
                '#BSUB -P "lab42"',
                "#BSUB -n 8",
                "#BSUB -M 64000",  # LSF_UNIT_FOR_LIMITS=MB below
                "#BSUB -W 06:30",  # LSF takes hours:minutes
                '#BSUB -gpu "num=1"',
            ],
        ),
    ],
)
def test_job_script_has_every_setting(kind, extra, expected, monkeypatch, tmp_path, no_submit):
    (tmp_path / "lsf.conf").write_text("LSF_UNIT_FOR_LIMITS=MB\n")
    monkeypatch.setenv("LSF_ENVDIR", str(tmp_path))
    monkeypatch.delenv("LSF_CONFDIR", raising=False)

    settings = _settings(kind, extra, staging_dir=tmp_path / "staging")
    cluster = make_cluster(settings, adapt=False, host="127.0.0.1")
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        script = cluster.job_script()
        header = script.splitlines()
        for line in expected:
            assert line in header, f"{line!r} missing from\n{script}"
        body = script[script.index(PROLOGUE[0]) :]
        assert body.startswith("\n".join(PROLOGUE))
        worker = body.splitlines()[-1]
        assert f"-m distributed.cli.dask_worker {cluster.scheduler_address} " in worker
        assert "--nthreads 8 " in worker
        assert "--nworkers" not in worker  # one worker per batch job
        assert "--resources cpus=8,memory=64000000000 " in worker
        assert_tls_worker(worker, tmp_path / "staging" / ".dask-tls")
        assert cluster.workers == {}
    finally:
        cluster.close()
    assert no_submit == []


def assert_tls_worker(worker: str, folder) -> None:
    """The batch job's worker speaks TLS with the temporary certificates that the service
    wrote to ``folder``, which only the service's user can read."""
    options = worker.split()
    assert options[options.index("--protocol") + 1] == "tls://"
    assert folder.stat().st_mode & 0o777 == 0o700
    pems = {}
    for option in ("--tls-ca-file", "--tls-cert", "--tls-key"):
        path = Path(options[options.index(option) + 1])
        assert path.parent == folder and path.stat().st_mode & 0o077 == 0
        pems[option] = path.read_text()
    assert pems["--tls-ca-file"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in pems["--tls-key"]


def test_job_scripts_use_the_admins_certificate_files(tmp_path, no_submit):
    files = write_tls_files(tmp_path)
    settings = get_settings(cluster="pbs", staging_dir=tmp_path / "staging", **files)
    cluster = make_cluster(settings, adapt=False, host="127.0.0.1")
    try:
        worker = cluster.job_script().splitlines()[-1]
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
    finally:
        cluster.close()
    assert f"--tls-ca-file {files['dask_tls_ca_file']} " in worker
    assert f"--tls-cert {files['dask_tls_cert_file']} " in worker
    assert worker.endswith(f"--tls-key {files['dask_tls_key_file']}")
    assert not (tmp_path / "staging" / ".dask-tls").exists()  # no temporary certificates


def test_optional_directives_are_left_out(no_submit):
    settings = get_settings(cluster="slurm", cluster_cores=2, cluster_memory="4GiB")
    cluster = make_cluster(settings, adapt=False, host="127.0.0.1")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p" not in script and "#SBATCH -A" not in script
    assert "#SBATCH -t 04:00:00" in script
    assert "--resources cpus=2,memory=4294967296" in script


def test_walltime_for_lsf_rounds_up_to_minutes(no_submit):
    settings = get_settings(cluster="lsf", cluster_walltime="1-02:30:01")
    cluster = make_cluster(settings, adapt=False, host="127.0.0.1")
    try:
        assert "#BSUB -W 26:31" in cluster.job_script().splitlines()
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [
        ("cluster_memory", "lots", "cluster_memory 'lots'"),
        ("cluster_walltime", "four hours", "cluster_walltime 'four hours'"),
    ],
)
def test_bad_cluster_settings_are_config_errors(setting, value, match):
    settings = get_settings(cluster="lsf", **{setting: value})
    with pytest.raises(ConfigError, match=match):
        make_cluster(settings, adapt=False, host="127.0.0.1")


def test_missing_dask_jobqueue_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "dask_jobqueue"]:
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(ConfigError, match=r'pip install "neuroferry\[hpc\]"'):
        make_cluster(get_settings(cluster="slurm"), adapt=False, host="127.0.0.1")


def test_no_cluster_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="slurm, pbs or lsf"):
        make_cluster(get_settings(), adapt=False, host="127.0.0.1")


def test_worker_resources_follow_cores_and_memory():
    settings = get_settings(cluster="pbs", cluster_cores=16, cluster_memory="128GB")
    assert worker_resources(settings) == {"cpus": 16.0, "memory": 128e9}


# -- resources_for ------------------------------------------------------------------------


def test_resources_for_maps_the_seed_keys():
    seed = {"cpus_per_task": 8, "memory_per_node": 64000, "time_limit": 360, "qos": "x"}
    assert resources_for(seed) == {"cpus": 8.0, "memory": 64e9}


@pytest.mark.parametrize(
    ("image_resources", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"time_limit": 30}, {}),
        ({"cpus_per_task": 2}, {"cpus": 2.0}),
        ({"memory_per_node": 512.5}, {"memory": 512.5e6}),
        ({"cpus_per_task": None, "memory_per_node": 0}, {}),
    ],
)
def test_resources_for_keeps_only_what_is_asked(image_resources, expected):
    assert resources_for(image_resources) == expected


@pytest.mark.parametrize(
    ("image_resources", "match"),
    [
        ({"cpus_per_task": -1}, r"image_resources\.cpus_per_task .*CPUs.*0 or more.*-1"),
        ({"cpus_per_task": "8"}, r"image_resources\.cpus_per_task .*'8'"),
        ({"cpus_per_task": True}, r"image_resources\.cpus_per_task .*True"),
        ({"memory_per_node": float("nan")}, r"image_resources\.memory_per_node .*megabytes"),
        ({"memory_per_node": float("inf")}, r"image_resources\.memory_per_node"),
        ({"time_limit": -5}, r"image_resources\.time_limit .*minutes.*-5"),
        ({"time_limit": [1]}, r"image_resources\.time_limit"),
        ([("cpus_per_task", 1)], r"image_resources must be a mapping"),
    ],
)
def test_resources_for_refuses_bad_values(image_resources, match):
    with pytest.raises(InvalidInput, match=match):
        resources_for(image_resources)


def test_resources_for_refuses_what_no_worker_has():
    available = worker_resources(get_settings(cluster="slurm", cluster_cores=4))
    assert resources_for({"cpus_per_task": 4, "memory_per_node": 16000}, available) == {
        "cpus": 4.0,
        "memory": 16e9,
    }
    with pytest.raises(InvalidInput, match=r"cpus_per_task asks for 8 CPUs .* has 4 CPUs"):
        resources_for({"cpus_per_task": 8}, available)
    with pytest.raises(InvalidInput, match=r"memory_per_node asks for 16001 MB .* 16000 MB"):
        resources_for({"memory_per_node": 16001}, available)
    with pytest.raises(InvalidInput, match="has none"):
        resources_for({"cpus_per_task": 1}, {})


# -- Executor.start -----------------------------------------------------------------------


def test_executor_starts_an_adaptive_cluster_without_submitting(no_submit):
    settings = get_settings(cluster="slurm", cluster_max_jobs=5)
    with dask.config.set({"jobqueue.slurm.scheduler-options": {"host": "127.0.0.1"}}):
        executor = Executor.start(settings)
    try:
        assert executor.kind == "slurm"
        assert isinstance(executor.cluster, dask_jobqueue.SLURMCluster)
        assert executor.cluster.scheduler_address.startswith("tls://127.0.0.1:")
        assert executor.credentials() is not None
        adaptive = executor.cluster._adaptive
        assert (adaptive.minimum, adaptive.maximum) == (0, 5)
        status = executor.status()
        assert status["kind"] == "slurm" and status["workers"] == 0
    finally:
        executor.close()
    assert no_submit == []


def test_executor_refuses_both_a_scheduler_and_a_cluster():
    settings = get_settings(cluster="pbs", dask_scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="set one of them"):
        Executor.start(settings)


def test_executor_without_cluster_setting_starts_a_local_cluster():
    executor = Executor.start(get_settings(dask_processes=False, dask_workers=1))
    try:
        assert executor.kind == "local"
        assert type(executor.cluster).__name__ == "LocalCluster"
    finally:
        executor.close()
