"""create_app(settings): the FastAPI service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from neuroferry import __version__
from neuroferry.config import Settings, get_settings
from neuroferry.db import make_engine, upgrade
from neuroferry.engine import Executor
from neuroferry.stores import open_store
from neuroferry.web import errors
from neuroferry.web._services import Services
from neuroferry.web.api import router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, start_executor: bool = True) -> FastAPI:
    """The service: migrates the database and starts the executor when it starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        await asyncio.to_thread(upgrade, engine)
        store = open_store(settings.store_url, create=True, settings=settings)
        executor = await asyncio.to_thread(Executor.start, settings) if start_executor else None
        app.state.services = Services(settings, engine, store, executor)
        try:
            yield
        finally:
            if executor is not None:
                await asyncio.to_thread(executor.close)
            engine.dispose()

    app = FastAPI(
        title="neuroferry",
        version=__version__,
        description="Move neuroscience data into object storage with its metadata.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(router)
    return app
