"""GET /api/v2/health: database, store and executor status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health: database, store and executor")
async def health(request: Request) -> JSONResponse:
    report: dict[str, Any] = await request.app.state.services.health()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
