"""REST API v2: one router module per resource."""

from fastapi import APIRouter

from neuroferry.web.api import catalog, health

router = APIRouter(prefix="/api/v2")
router.include_router(health.router)
router.include_router(catalog.router)

__all__ = ["router"]
