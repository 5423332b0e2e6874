"""GET /metrics: Prometheus text format (jobs and tasks by state, task durations, bytes
transferred, queue depth)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from neuroferry.engine import METRICS

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    text = await asyncio.to_thread(METRICS.render, request.app.state.services.engine)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
