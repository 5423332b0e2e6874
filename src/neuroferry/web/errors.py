"""The one place that maps FerryError to HTTP responses.

The API (``/api/…``, ``/metrics``, ``/openapi.json``, ``/docs``) answers with JSON. The
pages answer with an HTML page that says what went wrong and where to go; a page that
needs a signed-in user sends the browser to the sign-in page instead of a 401.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import (
    http_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from neuroferry.db import UNAVAILABLE, unavailable
from neuroferry.errors import FerryError, InvalidInput, first_line, validation_problems

#: Paths that belong to the API and machines, never to the pages.
NOT_PAGES = ("/api/", "/metrics", "/openapi.json", "/docs", "/redoc", "/static/")

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not possible here",
    409: "Conflict",
    422: "Not accepted",
    500: "Something went wrong",
    502: "A store failed",
    503: "Unavailable",
}


def is_page(request: Request) -> bool:
    """Whether ``request`` is for a page (HTML) rather than the API (JSON)."""
    path = request.url.path
    return not any(path == p.rstrip("/") or path.startswith(p) for p in NOT_PAGES)


async def error_page(
    request: Request, status: int, message: str, problems: list[str] | None = None
) -> Response:
    """The HTML page for an error: its title, the message and a way back."""
    from neuroferry.web.pages import identify, render

    held = getattr(request.app.state, "services", None)
    if held is not None:
        with contextlib.suppress(Exception):  # the database is away: no user, still a page
            await run_in_threadpool(identify, request, held.engine)
    title = _TITLES.get(status, "Error" if status >= 400 else "Notice")
    return render(
        request,
        "error.html",
        status,
        title=title,
        code=status,
        message=message,
        problems=problems or [],
    )


def _sign_in_redirect(request: Request) -> Response:
    from neuroferry.web._deps import SESSION_COOKIE
    from neuroferry.web.pages import sign_in_url

    response = RedirectResponse(sign_in_url(request), status_code=303)
    if SESSION_COOKIE in request.cookies:  # expired or revoked: forget it
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def ferry_error(request: Request, exc: Exception) -> Response:
    """The response for a :class:`FerryError`: JSON for the API, a page for the pages."""
    assert isinstance(exc, FerryError)
    problems = exc.problems if isinstance(exc, InvalidInput) else []
    if is_page(request):
        if exc.status_code == 401:
            return _sign_in_redirect(request)
        lines = [
            " ".join(f"{k} {p[k]}:" for k in ("job", "row", "field") if p.get(k) is not None)
            + f" {p.get('message', '')}"
            for p in problems
        ]
        return await error_page(request, exc.status_code, str(exc), [s.strip() for s in lines])
    content: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    if problems:
        content["problems"] = problems
    if exc.envelope:
        content = {**exc.envelope, **content}
    return JSONResponse(status_code=exc.status_code, content=content)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not is_page(request):
        return await http_exception_handler(request, exc)
    if exc.status_code == 404:
        message = f"There is no page at {request.url.path}."
    else:
        message = str(exc.detail)
    return await error_page(request, exc.status_code, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not is_page(request):
        # FastAPI's shape, without echoing the values sent (a password, a huge body)
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)
    problems = validation_problems(exc, "request", skip=1)
    return await error_page(request, 422, "Part of the request is not valid:", problems)


async def _database_error(request: Request, exc: Exception) -> Response:
    return await ferry_error(request, unavailable(exc))


async def _overflow(request: Request, exc: Exception) -> Response:
    # a whole number (path, query or body) the database cannot hold
    message = "a number in the request is too large: whole numbers lie within ±(2^63-1)"
    return await ferry_error(request, InvalidInput(message))


async def _data_error(request: Request, exc: Exception) -> Response:
    # a value the database refuses to store or compare (out of range, a NUL in text)
    cause = first_line(getattr(exc, "orig", None) or exc)
    message = f"a value in the request does not fit the database: {cause}"
    return await ferry_error(request, InvalidInput(message))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FerryError, ferry_error)
    for database_error in UNAVAILABLE:
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(OverflowError, _overflow)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
