"""The one place that maps FerryError to HTTP responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from neuroferry.errors import FerryError, InvalidInput


async def _ferry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FerryError)
    content: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, InvalidInput) and exc.problems:
        content["problems"] = exc.problems
    return JSONResponse(status_code=exc.status_code, content=content)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FerryError, _ferry_error)
