"""Ingest jobs (image stacks to OME-Zarr): submit a config, follow, cancel; and the Dask
scheduler that ``ferry ingest join`` adds workers to (admins and worker accounts only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from neuroferry.auth import User
from neuroferry.errors import NotFound
from neuroferry.services import Services
from neuroferry.web._deps import cluster_user, current_user, services

router = APIRouter(tags=["ingest"])


class IngestCreated(BaseModel):
    id: int
    name: str
    volume: str
    url: str


class IngestCancelled(BaseModel):
    job: dict[str, Any]
    cleanup: dict[str, Any] | None
    """What was removed from the volume; ``None`` while running tasks are still stopping
    (cancel again to clean up)."""


class ClusterTLS(BaseModel):
    """Dask TLS credentials, as PEM text: what ``dask worker --tls-ca-file/--tls-cert/
    --tls-key`` (or a ``distributed.security.Security``) needs to connect."""

    ca: str = Field(description="the CA that signed the cluster's certificates (PEM)")
    cert: str = Field(description="a certificate the CA signed, for a worker (PEM)")
    key: str = Field(description="that certificate's private key (PEM)")


class ClusterJob(BaseModel):
    id: int
    state: str


class Cluster(BaseModel):
    scheduler: str
    kind: str
    workers: int
    threads: int
    tls: ClusterTLS | None = Field(
        None, description="credentials to connect with; none for a plain tcp:// scheduler"
    )
    job: ClusterJob | None = Field(
        None,
        description="the state of the job asked about (?job=ID), so that joined "
        "workers know when to leave",
    )


@router.post(
    "/ingest", status_code=201, response_model=IngestCreated, summary="Submit an ingest job"
)
def create(
    request: Request,
    config: dict[str, Any] = Body(
        ..., description="An ingest config, or a Boss ingest client config (v0.1, v0.2)"
    ),
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> IngestCreated:
    """Validate the config and create its job; 422 with every problem by field."""
    from neuroferry.pipelines.ingest import submit_ingest

    job_id, checked = submit_ingest(held.engine, held.settings, config, user)
    held.wake()
    from neuroferry.engine import get_job

    job = get_job(held.engine, job_id)
    return IngestCreated(
        id=job_id,
        name=checked.name,
        volume=str(job["summary"].get("volume", "")),
        url=str(request.url_for("ingest_status", job_id=job_id)),
    )


@router.get("/ingest/{job_id}", summary="An ingest job's progress", name="ingest_status")
def status(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> dict[str, Any]:
    """Shards and chunks done per level, bytes, rates, time left, units and errors."""
    from neuroferry.pipelines.ingest import ingest_status

    return ingest_status(held.engine, job_id, user, settings=held.settings)


@router.post(
    "/ingest/{job_id}/cancel", response_model=IngestCancelled, summary="Cancel an ingest job"
)
def cancel(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> IngestCancelled:
    """Stop the job; keep every shard that is recorded as written and remove the rest of
    what it left in the volume. A stopped job is only cleaned up."""
    from neuroferry.pipelines.ingest import cancel_ingest

    done = cancel_ingest(held.engine, held.log_store, held.settings, job_id, user)
    return IngestCancelled.model_validate(done)


@router.get(
    "/cluster",
    response_model=Cluster,
    summary="The Dask scheduler that runs tasks, and its credentials (admins and workers)",
)
def cluster(
    response: Response,
    job: int | None = Query(
        None, description="also report this job's state (only its state)", ge=1
    ),
    held: Services = Depends(services),
    _account: User = Depends(cluster_user),
) -> Cluster:
    """Where workers connect to add themselves to the cluster (``ferry ingest join``), and
    the TLS credentials they connect with. Only admins and worker accounts may ask: whoever
    holds them can run code on the workers and in the service's process."""
    response.headers["Cache-Control"] = "no-store"
    from neuroferry.engine import get_job, scheduler_credentials

    state = None
    if job is not None:
        state = ClusterJob(id=job, state=str(get_job(held.engine, job)["state"]))
    if held.executor is None:
        if held.settings.dask_scheduler:
            return Cluster(
                scheduler=held.settings.dask_scheduler,
                kind="scheduler",
                workers=0,
                threads=0,
                tls=_tls(scheduler_credentials(held.settings)),
                job=state,
            )
        raise NotFound(
            "this service process runs no Dask cluster (it was started with "
            "--no-orchestrator); ask the service process that runs jobs"
        )
    info = held.executor.status()
    address = str(info.get("address") or "")
    if not info.get("ok", False) and not address:
        raise NotFound(f"the Dask scheduler cannot be reached: {info.get('error', 'no answer')}")
    if not address.startswith(("tcp://", "tls://", "ws://", "wss://")):
        raise NotFound(
            f"the service's Dask workers run as threads in its process ({address or 'no address'});"
            " workers of other processes cannot join. Set dask_processes = true, or use a "
            "Dask scheduler (FERRY_DASK_SCHEDULER)"
        )
    return Cluster(
        scheduler=address,
        kind=str(info.get("kind", "")),
        workers=int(info.get("workers", 0)),
        threads=int(info.get("threads", 0)),
        tls=_tls(held.executor.credentials()),
        job=state,
    )


def _tls(found: Any) -> ClusterTLS | None:
    return None if found is None else ClusterTLS(ca=found.ca, cert=found.cert, key=found.key)
