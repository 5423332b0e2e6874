"""Bounds on a request's work: the request-body limit (no request makes the service read,
or spool to disk, more than ``max_request_bytes``, and no spreadsheet upload, a
``multipart/form-data`` body, more than ``max_upload_bytes`` and a little room for the
form's other fields), and queries that stop when their client goes away."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuroferry.db import interrupt_thread

T = TypeVar("T")
#: Seconds between two looks whether the client of a running query is still there.
DISCONNECT_POLL = 0.5

#: Room for the form fields that come with an uploaded file.
FORM_ROOM = 64 * 1024


class BodyLimit:
    """ASGI middleware: a body larger than its limit is a 413 that names the limit (raised
    where the body is read, so the application's error handlers answer it)."""

    def __init__(self, app: ASGIApp, max_request_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"multipart/form-data":
            limit = min(self.max_request_bytes, self.max_upload_bytes + FORM_ROOM)
            what = f"the upload is larger than {size_text(self.max_upload_bytes)}"
            allowed = f"at most {size_text(self.max_upload_bytes)} (setting max_upload_bytes)"
        else:
            limit = self.max_request_bytes
            what = f"the request body is larger than {size_text(limit)}"
            allowed = f"at most {size_text(limit)} (setting max_request_bytes)"
        try:
            declared: int | None = int(headers.get(b"content-length", b""))
        except ValueError:
            declared = None
        seen = 0

        def too_large() -> HTTPException:
            return HTTPException(413, f"{what}; {allowed} are allowed here")

        if declared is not None and declared > limit:
            await _refuse(too_large(), send)
            return
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large()
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except HTTPException as exc:
            # raised where a middleware (not a route) read the body: answer it here
            if exc.status_code != 413 or started:
                raise
            await _refuse(exc, send)


async def _refuse(exc: HTTPException, send: Send) -> None:
    """Answer 413 in the service's error format, without reading the body."""
    response = JSONResponse({"detail": exc.detail, "error": "PayloadTooLarge"}, 413)
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def size_text(size: int) -> str:
    """A byte count as people write it: ``10 MiB``, or ``50000 bytes``."""
    for unit, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


async def until_disconnected(request: Request, engine: Engine, work: Callable[[], T]) -> T:
    """``work()`` in a worker thread, as a route's database work; if the client goes away
    meanwhile, the database statement it runs is stopped (then nobody reads the answer)."""
    threads: list[int] = []

    def run() -> T:
        threads.append(threading.get_ident())
        return work()

    task = asyncio.ensure_future(run_in_threadpool(run))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL)
        if done:
            return task.result()
        if await request.is_disconnected():
            if threads:
                interrupt_thread(engine, threads[0])
            return await task
