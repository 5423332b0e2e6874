"""create_app(settings): the FastAPI service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from neuroferry import __version__
from neuroferry.config import Settings, get_settings
from neuroferry.errors import DatabaseError
from neuroferry.services import Services
from neuroferry.web import errors, pages
from neuroferry.web._body import CheckJSONBodies
from neuroferry.web._limits import BodyLimit
from neuroferry.web.api import metrics, router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The service. Unless ``services`` are given, starting it migrates the database, opens
    the default store and starts the executor; stopping it closes what it holds.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        held = (
            services if services is not None else await asyncio.to_thread(Services.start, settings)
        )
        app.state.services = held
        try:
            yield
        finally:
            await asyncio.to_thread(held.close)

    app = FastAPI(
        title="neuroferry",
        version=__version__,
        description="Move neuroscience data into object storage with its metadata.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(CheckJSONBodies)
    app.add_middleware(RefuseWritesWithoutDatabase)
    app.add_middleware(
        BodyLimit,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.include_router(router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    return app


class RefuseWritesWithoutDatabase:
    """ASGI middleware: while the service's database watch reports a problem (the SQLite
    file was removed, replaced or cannot be written), every request that may change
    something (any method but GET, HEAD and OPTIONS) is refused with 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = getattr(scope["app"].state, "services", None) if "app" in scope else None
        if (
            scope["type"] == "http"
            and scope["method"] not in ("GET", "HEAD", "OPTIONS")
            and held is not None
            and (problem := held.watch.problem())
        ):
            response = await errors.ferry_error(Request(scope, receive), DatabaseError(problem))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
