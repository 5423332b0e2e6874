"""Where tasks run: an embedded Dask LocalCluster, or an existing scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from neuroferry.config import Settings
from neuroferry.engine._dask_tls import (
    Credentials,
    credentials,
    scheduler_security,
    temporary_security,
)
from neuroferry.errors import ExecutorError

log = logging.getLogger(__name__)

#: Dask's HTTP servers (scheduler and workers) answer only their health check: their other
#: pages (cluster layout, logs, exceptions) need no credentials, unlike the TLS ports.
_HTTP_HEALTH_ONLY = {
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
}


@dataclass
class Executor:
    """A Dask client and, for the embedded default, the LocalCluster it owns."""

    client: Any
    cluster: Any | None
    kind: str
    security: Any | None = None
    """The ``distributed.security.Security`` the cluster's peers authenticate with (TLS),
    or None where nothing listens (thread workers) or an insecure scheduler is allowed."""

    @classmethod
    def start(cls, settings: Settings) -> Executor:
        """Connect to ``FERRY_DASK_SCHEDULER``, start an adaptive ``FERRY_CLUSTER`` (SLURM,
        PBS, LSF) cluster, or start an embedded LocalCluster on loopback; every cluster
        that listens on a network speaks Dask TLS."""
        import dask
        from distributed import Client, LocalCluster

        from neuroferry.errors import ConfigError, FerryError

        if settings.dask_scheduler and settings.cluster:
            raise ConfigError(
                f"dask_scheduler ({settings.dask_scheduler}) and cluster ({settings.cluster}) "
                "are both set; set one of them"
            )
        try:
            if settings.dask_scheduler:
                security = scheduler_security(settings)
                client = Client(settings.dask_scheduler, timeout="10s", security=security)
                return cls(client, None, "scheduler", security)
            if settings.cluster:
                from neuroferry.engine._clusters import make_cluster

                hpc = make_cluster(settings, adapt=True)
                try:
                    return cls(
                        Client(hpc, security=hpc.security), hpc, settings.cluster, hpc.security
                    )
                except Exception:
                    hpc.close()
                    raise
            embedded: dict[str, Any] = {
                "n_workers": settings.dask_workers,
                "threads_per_worker": settings.dask_threads_per_worker,
                # Dask's HTTP server (health, metrics) would otherwise listen on every
                # interface at :8787 even with the dashboard off
                "dashboard_address": "127.0.0.1:0",
                "scheduler_kwargs": {"dashboard": False},
            }
            if not settings.dask_processes:
                # thread workers talk in-process (inproc://): nothing listens for peers
                cluster = LocalCluster(**embedded, processes=False)
                return cls(Client(cluster), cluster, "local")
            # Worker processes and the scheduler listen on loopback only, and only peers
            # holding this process's temporary certificates may connect.
            security = temporary_security()
            with dask.config.set(_HTTP_HEALTH_ONLY):  # workers' nannies keep this config
                cluster = LocalCluster(
                    **embedded,
                    processes=True,
                    host="127.0.0.1",
                    protocol="tls://",
                    security=security,
                    preload=["neuroferry.engine._worker_setup"],
                )
            try:
                return cls(Client(cluster, security=security), cluster, "local", security)
            except Exception:
                cluster.close()
                raise
        except FerryError:
            raise
        except Exception as exc:  # distributed raises OSError, TimeoutError, RuntimeError
            where = (
                settings.dask_scheduler
                or (settings.cluster and f"a {settings.cluster} cluster")
                or "an embedded LocalCluster"
            )
            raise ExecutorError(f"cannot start or reach the Dask cluster ({where}): {exc}") from exc

    def credentials(self) -> Credentials | None:
        """What a worker needs to join this cluster over TLS (PEM texts), or None."""
        return credentials(self.security)

    def status(self) -> dict[str, Any]:
        """What the health endpoint reports: reachable, address, workers and threads."""
        try:
            info = self.client.scheduler_info()
        except Exception as exc:  # any failure to talk to the scheduler means "down"
            return {"ok": False, "kind": self.kind, "error": str(exc)}
        workers = info.get("workers", {})
        return {
            # an adaptive HPC cluster has no workers while there is no work
            "ok": bool(workers) or self.kind in ("slurm", "pbs", "lsf"),
            "kind": self.kind,
            "address": info.get("address"),
            "workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        }

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
