"""Dask clusters whose workers are batch jobs of an HPC scheduler (SLURM, PBS, LSF).

Built on dask-jobqueue (the ``hpc`` extra). One batch job runs one Dask worker, so a job's
size is a worker's size, and every worker advertises Dask resources ``cpus`` and
``memory`` (bytes) that tasks may require through their ``image_resources``.
"""

from __future__ import annotations

import math
import re
import signal
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neuroferry.config import Settings
from neuroferry.engine._dask_tls import file_security, private_folder, temporary_security
from neuroferry.errors import ConfigError, ExecutorError, InvalidInput

if TYPE_CHECKING:
    from dask_jobqueue.core import JobQueueCluster

#: Name of the batch jobs, so that ``squeue -n ferry-worker`` lists them.
JOB_NAME = "ferry-worker"

_MB = 1_000_000
_HMS = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2}):(\d{2})$")
_LSF_NATIVE = re.compile(r"^\d+(?::\d{2})?$")


def worker_resources(settings: Settings) -> dict[str, float]:
    """The Dask resources each batch-job worker advertises: ``cpus`` and ``memory`` (bytes).

    ``memory`` is ``cluster_memory`` counted as Dask does ("16GB" is 16 x 10^9 bytes,
    "16GiB" is 16 x 2^30), the same number the worker gets as its memory limit.
    """
    from dask.utils import parse_bytes

    try:
        memory = parse_bytes(settings.cluster_memory)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"cluster_memory {settings.cluster_memory!r} is not an amount of memory; "
            'use e.g. "16GB" or "64GiB"'
        ) from exc
    if memory <= 0:
        raise ConfigError(f"cluster_memory {settings.cluster_memory!r} must be more than 0")
    return {"cpus": float(settings.cluster_cores), "memory": float(memory)}


def resources_for(
    image_resources: Mapping[str, Any] | None,
    available: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Map a task's ``image_resources`` to Dask resource restrictions.

    ``cpus_per_task`` becomes ``cpus``; ``memory_per_node`` (megabytes of 10^6 bytes)
    becomes ``memory`` in bytes; ``time_limit`` (minutes) is checked but is no Dask
    resource. Other keys, missing keys, ``None`` and zero ask for nothing. With
    ``available`` (e.g. :func:`worker_resources`), a request no worker could ever meet is
    refused instead of waiting forever.
    """
    if not image_resources:
        return {}
    if not isinstance(image_resources, Mapping):
        raise InvalidInput(
            f"image_resources must be a mapping with cpus_per_task, memory_per_node and "
            f"time_limit, not {type(image_resources).__name__}"
        )
    cpus = _amount(image_resources, "cpus_per_task", "a number of CPUs")
    memory_mb = _amount(image_resources, "memory_per_node", "megabytes")
    _amount(image_resources, "time_limit", "minutes")
    wanted: dict[str, float] = {}
    if cpus:
        wanted["cpus"] = cpus
    if memory_mb:
        wanted["memory"] = memory_mb * _MB
    if available is not None:
        _check_fits(wanted, available)
    return wanted


def _amount(resources: Mapping[str, Any], key: str, unit: str) -> float | None:
    value = resources.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidInput(
            f"image_resources.{key} must be a number of {unit} that is 0 or more, not {value!r}"
        )
    return float(value)


def _check_fits(wanted: Mapping[str, float], available: Mapping[str, float]) -> None:
    for name, amount in wanted.items():
        most = available.get(name)
        if most is None or amount > most:
            key = "cpus_per_task" if name == "cpus" else "memory_per_node"
            have = "none" if most is None else _show(name, most)
            raise InvalidInput(
                f"image_resources.{key} asks for {_show(name, amount)} but a worker has "
                f"{have}; ask for less or give the workers more (cluster_cores, cluster_memory)"
            )


def _show(name: str, amount: float) -> str:
    if name == "memory":
        return f"{amount / _MB:g} MB"
    return f"{amount:g} CPUs"


def _resources_arg(resources: Mapping[str, float]) -> str:
    return ",".join(f"{name}={amount:.0f}" for name, amount in resources.items())


def _keep_ctrl_c(handler: Any) -> None:
    """Put back the SIGINT handler that importing dask-jobqueue replaced (its runner
    module makes Ctrl-C a bare ``sys.exit()``)."""
    main = threading.current_thread() is threading.main_thread()
    if main and handler is not None and signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)


def _lsf_walltime(walltime: str) -> str:
    """LSF's ``-W`` takes ``[hours:]minutes``; ``[D-]HH:MM:SS`` is rounded up to a minute."""
    text = walltime.strip()
    if _LSF_NATIVE.match(text):
        return text
    match = _HMS.match(text)
    if match is None:
        raise ConfigError(
            f"cluster_walltime {walltime!r} is not a duration; use HH:MM:SS, e.g. '04:00:00'"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = (days * 24 + hours) * 60 + minutes + (seconds > 0)
    return f"{total // 60:02d}:{total % 60:02d}"


def make_cluster(
    settings: Settings, *, adapt: bool = True, host: str | None = None
) -> JobQueueCluster:
    """Start a scheduler whose workers are ``settings.cluster`` batch jobs (one per worker).

    The scheduler runs in this process and listens on this host (on ``host`` if given, else
    on the interface that Dask's ``jobqueue`` config names, else on every interface), so
    that workers on compute nodes can reach it, over Dask TLS (see ``_dask_tls``). With
    ``adapt`` the cluster submits between 0 and ``cluster_max_jobs`` batch jobs as work
    comes and goes; without it, nothing is ever submitted (``job_script()`` shows what
    would be).
    """
    if settings.cluster is None:
        raise ConfigError("no HPC scheduler configured; set cluster to slurm, pbs or lsf")
    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        import dask
        from dask_jobqueue.lsf import LSFCluster
        from dask_jobqueue.pbs import PBSCluster
        from dask_jobqueue.slurm import SLURMCluster
    except ImportError as exc:
        raise ConfigError(
            f"cluster = {settings.cluster!r} needs dask-jobqueue; "
            'install it with: pip install "neuroferry[hpc]"'
        ) from exc
    finally:
        _keep_ctrl_c(ctrl_c)

    resources = worker_resources(settings)
    walltime = settings.cluster_walltime
    options: dict[str, Any] = {}
    if settings.cluster == "slurm":
        cluster_cls: type[JobQueueCluster] = SLURMCluster
        options["account"] = settings.cluster_account
    elif settings.cluster == "pbs":
        cluster_cls = PBSCluster
        options["account"] = settings.cluster_account
    else:
        cluster_cls = LSFCluster
        options["project"] = settings.cluster_account
        walltime = _lsf_walltime(walltime)

    scheduler_options = dict(
        dask.config.get(f"jobqueue.{settings.cluster}.scheduler-options", None) or {}
    )
    scheduler_options.setdefault("dashboard_address", None)
    if host is not None:
        scheduler_options.pop("interface", None)
        scheduler_options["host"] = host

    # Dask TLS: the admin's certificate files, else temporary certificates that the batch
    # jobs read from a folder on the shared staging_dir only the service's user can read
    security = file_security(settings)
    shared: dict[str, Any] = {}
    if security is None:
        security = temporary_security()
        assert settings.staging_dir is not None
        shared["shared_temp_directory"] = str(private_folder(settings.staging_dir / ".dask-tls"))

    try:
        cluster = cluster_cls(
            cores=settings.cluster_cores,
            memory=settings.cluster_memory,
            processes=1,
            walltime=walltime,
            queue=settings.cluster_queue,
            job_name=JOB_NAME,
            job_extra_directives=list(settings.cluster_job_extra),
            job_script_prologue=list(settings.cluster_job_script_prologue),
            worker_extra_args=["--resources", _resources_arg(resources)],
            scheduler_options=scheduler_options,
            security=security,
            protocol="tls://",
            **shared,
            **options,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid {settings.cluster} cluster settings: {exc}") from exc
    except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        raise ExecutorError(
            f"cannot start the Dask scheduler for the {settings.cluster} cluster: {exc}"
        ) from exc
    if adapt:
        try:
            cluster.adapt(minimum_jobs=0, maximum_jobs=settings.cluster_max_jobs)
        except Exception:
            cluster.close()
            raise
    return cluster
