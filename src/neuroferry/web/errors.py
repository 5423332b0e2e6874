"""The one place that maps FerryError to HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from neuroferry.errors import FerryError


async def _ferry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FerryError)
    return JSONResponse(
        status_code=exc.status_code,
        content={"detail": str(exc), "error": type(exc).__name__},
    )


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FerryError, _ferry_error)
