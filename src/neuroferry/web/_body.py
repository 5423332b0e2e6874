"""Every JSON request body is checked once, before any route sees it: it must be UTF-8 and
valid JSON with finite numbers, whole numbers that fit in 64 bits, no unpaired surrogates
(``"\\ud800"``) and at most :data:`MAX_DEPTH` levels of nesting. Anything else is refused
with 422 naming the problem and where it is, instead of failing later in a route, in the
database or while the error itself is being written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Deepest nesting of arrays and objects accepted in a request body.
MAX_DEPTH = 64
#: Largest magnitude of a whole number (it must fit in a signed 64-bit integer).
MAX_INT = 2**63 - 1

#: A JSON string, or an unterminated one up to the end: a scan never restarts inside one,
#: so it stays linear whatever the body.
_STRING = rb'"(?:[^"\\]|\\.)*"?'
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BRACKETS = re.compile(_STRING + rb"|[\[\]{}]", re.DOTALL)


class BodyError(ValueError):
    """Why a request body is refused, and where (``where``: a JSON path or a position)."""

    def __init__(self, message: str, where: str, path: str | None = None) -> None:
        super().__init__(f"{message} ({where})")
        self.message = message
        self.where = where
        self.field = path[1:].lstrip(".") if path and path != "$" else "body"
        """The field the problem is in (``query.x``), or ``body``."""


def _is_json(scope: Scope) -> bool:
    """Whether the service would read this request's body as JSON: a JSON content type,
    or none at all (FastAPI then tries JSON)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _locate(text: str, token: str) -> str:
    """Where ``token`` first appears outside a JSON string."""
    pattern = re.compile(r'"(?:[^"\\]|\\.)*"?|' + re.escape(token), re.DOTALL)
    for found in pattern.finditer(text):
        if not found.group().startswith('"'):
            return _position(text, found.start())
    return "in the body"


class _Number(ValueError):
    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.message, self.token = message, token


def _constant(token: str) -> Any:
    raise _Number(f"{token} is not a number JSON allows; send a finite number or null", token)


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _Number(f"{token} is too large for a number; send a finite number", token)
    return value


def _int(token: str) -> int:
    if len(token) > 18:
        value = int(token) if len(token) <= 40 else MAX_INT + 1
        if abs(value) > MAX_INT:
            raise _Number(
                f"{token[:24]}{'…' if len(token) > 24 else ''} is too large for a whole "
                "number (at most 2^63-1 either way)",
                token,
            )
        return value
    return int(token)


def _depth(body: bytes) -> int | None:
    """The offset at which nesting first goes deeper than :data:`MAX_DEPTH`, if it does."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return None
    depth = 0
    for found in _BRACKETS.finditer(body):
        mark = found.group()
        if mark in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return found.start()
        elif mark in (b"]", b"}"):
            depth -= 1
    return None


def _find(value: Any, bad: Callable[[Any], bool], path: str = "$") -> str | None:
    """The JSON path of the first value (or key) that is ``bad``."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if found := _find(item, bad, f"{path}[{i}]"):
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"
            if bad(key):
                return path
            if found := _find(item, bad, inner):
                return found
    elif bad(value):
        return path
    return None


def _surrogate(value: Any) -> str | None:
    """The JSON path of the first string (or key) holding an unpaired surrogate."""
    return _find(value, lambda v: isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v))


class _Refused:
    """Where a number JSON does not allow was, in a body parsed again to find its path."""


_REFUSED = _Refused()


def _number_path(text: str) -> str | None:
    """The JSON path of the first number :func:`check_json` refuses (NaN, an infinity, a
    float or whole number too large), if the body parses with those numbers marked."""

    def marked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        def parse_or_mark(token: str) -> Any:
            try:
                return parse(token)
            except _Number:
                return _REFUSED

        return parse_or_mark

    try:
        value = json.loads(
            text,
            parse_constant=lambda _token: _REFUSED,
            parse_float=marked(_float),
            parse_int=marked(_int),
        )
    except (ValueError, RecursionError):
        return None
    return _find(value, lambda v: v is _REFUSED)


def check_json(body: bytes) -> Any:
    """The value of a JSON request body; :class:`BodyError` if it is not acceptable."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError("the body is not UTF-8 text", f"byte {exc.start}") from exc
    deep = f"the body nests arrays or objects deeper than {MAX_DEPTH} levels"
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Number as exc:
        where = _locate(text, exc.token)
        path = _number_path(text)
        raise BodyError(exc.message, f"{path}, {where}" if path else where, path) from exc
    except json.JSONDecodeError as exc:
        raise BodyError(f"the body is not valid JSON: {exc.msg}", _position(text, exc.pos)) from exc
    except RecursionError as exc:  # far deeper than MAX_DEPTH
        offset = _depth(body)
        where = "in the body" if offset is None else _position(text, offset)
        raise BodyError(deep, where) from exc
    except ValueError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}", "in the body") from exc
    if (offset := _depth(body)) is not None:
        raise BodyError(deep, _position(text, len(body[:offset].decode("utf-8"))))
    if _SURROGATE_ESCAPE.search(body) and (path := _surrogate(value)):
        raise BodyError(
            "a string holds an unpaired surrogate (\\ud800-\\udfff), which is not text", path
        )
    return value


class CheckJSONBodies:
    """ASGI middleware: refuse a request whose JSON body :func:`check_json` refuses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.strip():
            try:
                check_json(body)
            except BodyError as exc:
                await _refuse(scope, receive, send, exc)
                return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BodyError) -> None:
    from starlette.responses import JSONResponse

    content = {
        "detail": f"the request body is not accepted: {exc}",
        "error": "InvalidInput",
        "problems": [{"field": exc.field, "where": exc.where, "message": exc.message}],
    }
    await JSONResponse(content, status_code=422)(scope, receive, send)
