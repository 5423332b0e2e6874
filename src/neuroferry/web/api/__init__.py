"""REST API v2: one router module per resource."""

from fastapi import APIRouter

from neuroferry.web.api import (
    accounts,
    analyses,
    catalog,
    command_analyses,
    dropboxes,
    health,
    ingest,
    job_types,
    jobs,
    lists,
    volumes,
)

router = APIRouter(prefix="/api/v2")
router.include_router(health.router)
router.include_router(accounts.router)
router.include_router(catalog.router)
router.include_router(jobs.router)
router.include_router(job_types.router)
router.include_router(lists.router)
router.include_router(ingest.router)
router.include_router(analyses.router)
router.include_router(command_analyses.router)
router.include_router(dropboxes.router)
router.include_router(volumes.router)

__all__ = ["router"]
