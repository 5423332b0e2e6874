"""GET /api/v2/health: ok or not ok for everyone; the details (database, store, executor)
for admins only, since they name paths, hosts and addresses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from neuroferry.auth import User, authenticate
from neuroferry.web._deps import _bearer, session_token

router = APIRouter(tags=["health"])


def _admin(request: Request) -> bool:
    token = _bearer(request.headers.get("authorization")) or session_token(request)
    if token is None:
        return False
    try:
        user: User = authenticate(request.app.state.services.engine, token)
    except Exception:  # unknown token, or the database is away: the short answer
        return False
    return user.is_admin


@router.get(
    "/health",
    summary="Service health: ok or not ok; admins also get the database, store and executor",
)
async def health(request: Request) -> JSONResponse:
    report: dict[str, Any] = await request.app.state.services.health()
    status = 200 if report["status"] == "ok" else 503
    if not await run_in_threadpool(_admin, request):
        report = {"status": "ok" if status == 200 else "not ok"}
    return JSONResponse(report, status_code=status)
