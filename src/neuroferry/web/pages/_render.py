"""Rendering pages: the Jinja2 environment, ``render()``, who is signed in, paging, and
reading the JSON a form field holds."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from neuroferry import __version__
from neuroferry.auth import User, authenticate
from neuroferry.errors import InvalidInput, Unauthorized
from neuroferry.services import Services
from neuroferry.web._deps import CSRF_FIELD, csrf_token, current_user, services, session_token
from neuroferry.web.pages import _format

TEMPLATES = Path(__file__).parent / "templates"
#: Served at ``/static``: ferry.css, ferry.js and each page's own script.
STATIC = Path(__file__).parent / "static"

#: The header's navigation: (path, label); a page under a path marks it current.
NAV = (
    ("/submit", "Submit"),
    ("/jobs", "Jobs"),
    ("/job-types", "Job types"),
    ("/catalog", "Catalog"),
    ("/analyses", "Analyses"),
    ("/dropboxes", "Drop-boxes"),
    ("/help", "Help"),
)

#: Every page's headers: no external resources, no inline scripts or style attributes,
#: no framing, and no caching of pages that show a user's data.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The pages' Jinja2 environment over ``pages/templates`` (autoescaped, strict)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_format.time_tag,
        time=_format.format_time,
        ago=_format.format_ago,
        duration=_format.format_duration,
        bytes=_format.format_bytes,
        state_class=_format.state_class,
        state=_format.state_badge,
    )
    env.globals.update(elapsed=_format.elapsed, version=__version__)
    return env


def local_path(target: str | None, default: str = "/jobs") -> str:
    """``target`` if it is a path on this site (``/jobs?state=running``), else ``default``:
    never another host (``//evil.example``, ``https://…``, ``/\\evil``)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def url_with(request: Request, **params: Any) -> str:
    """The current page's path and query with ``params`` replaced (``None`` removes one, a
    list repeats it); repeated parameters such as ``state`` are kept, ``partial`` never."""
    items = [
        (k, v) for k, v in request.query_params.multi_items() if k not in params and k != "partial"
    ]
    for key, value in params.items():
        if value is None or value == "":
            continue
        values = value if isinstance(value, list | tuple) else [value]
        items.extend((key, str(v)) for v in values)
    return request.url.path + (f"?{urlencode(items)}" if items else "")


def sign_in_url(request: Request) -> str:
    """The sign-in page, coming back to this page (for GET) afterwards."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        back = request.headers.get("referer", "")
        back = urlsplit(back).path if back else "/jobs"
    return f"/sign-in?next={quote(local_path(back), safe='')}"


@dataclass(frozen=True)
class Pager:
    """Where one page of a long list is: rows ``offset`` to ``offset + shown`` of
    ``total``, ``limit`` a page, with the links to the first, previous, next and last
    pages (None where there is no such page)."""

    offset: int
    limit: int
    total: int
    shown: int
    first_url: str | None
    prev_url: str | None
    next_url: str | None
    last_url: str | None

    @property
    def page(self) -> int:
        """This page's number, from 1."""
        return self.offset // self.limit + 1

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.limit))

    @property
    def first(self) -> int:
        """The number of this page's first row, from 1 (0 if it shows none)."""
        return self.offset + 1 if self.shown else 0

    @property
    def last(self) -> int:
        return self.offset + self.shown

    @property
    def summary(self) -> str:
        if not self.total:
            return "nothing found"
        return f"{self.offset + 1:,} to {self.offset + self.shown:,} of {self.total:,}"


def pager(
    request: Request, total: int, offset: int, limit: int, shown: int, *, param: str = "offset"
) -> Pager:
    """The :class:`Pager` of this page; its links keep the query and change ``param``:
    ``offset`` (the first row's, from 0) or ``page`` (the page's number, from 1), left out
    for the first page."""

    def to(row: int) -> str:
        value = (row // limit + 1 if param == "page" else row) if row > 0 else None
        return url_with(request, **{param: value})

    before, after = offset > 0, offset + shown < total
    return Pager(
        offset,
        limit,
        total,
        shown,
        first_url=to(0) if before else None,
        prev_url=to(max(0, offset - limit)) if before else None,
        next_url=to(offset + limit) if after else None,
        last_url=to((math.ceil(total / limit) - 1) * limit) if after else None,
    )


def json_field(field: str, text: str) -> Any:
    """The JSON value typed in form field ``field``; InvalidInput says where it breaks,
    and refuses NaN and infinities (JSON has no such numbers)."""

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise InvalidInput(f"{field}: {token} is not a finite number; give one")
        return value

    def constant(token: str) -> Any:
        raise InvalidInput(f"{field}: {token} is not a number JSON allows; give a finite number")

    try:
        return json.loads(text, parse_constant=constant, parse_float=finite)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{field}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def identify(request: Request, engine: Any) -> User | None:
    """The user of the request's session cookie, or None; sets ``request.state``."""
    if (user := getattr(request.state, "user", None)) is not None:
        return user  # type: ignore[no-any-return]
    session = session_token(request)
    if session is None:
        return None
    try:
        user = authenticate(engine, session)
    except Unauthorized:
        return None
    if user.is_worker:  # a machine's account, for the Dask cluster only
        return None
    request.state.user, request.state.session = user, session
    return user


def page_user(request: Request, user: User = Depends(current_user)) -> User:
    """The signed-in user of a page; not signed in, the page redirects to the sign-in
    page (303), which comes back here afterwards."""
    return user


def admin_page_user(request: Request, user: User = Depends(page_user)) -> User:
    """The signed-in user, who must be an admin: others get the 403 page."""
    user.require_admin(f"open {request.url.path}")
    return user


def optional_page_user(request: Request, held: Services = Depends(services)) -> User | None:
    """The signed-in user, or None for a page that anyone may see."""
    return identify(request, held.engine)


def render(
    request: Request,
    template: str,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page ``template`` with ``context`` and what every page shows: ``user``,
    ``csrf_token`` (and ``csrf_field()``), ``nav``, ``version``, ``path``,
    ``url_with(**params)``."""
    user: User | None = getattr(request.state, "user", None)
    session: str | None = getattr(request.state, "session", None)
    csrf = csrf_token(session) if session else None
    path = request.url.path
    nav = [
        {"href": href, "label": label, "current": path == href or path.startswith(href + "/")}
        for href, label in NAV
    ]
    html = (
        environment()
        .get_template(template)
        .render(
            {
                "request": request,
                "user": user,
                "csrf_token": csrf,
                "csrf_field": lambda: _csrf_field(csrf),
                "nav": nav,
                "path": path,
                "url_with": functools.partial(url_with, request),
                **context,
            }
        )
    )
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _csrf_field(csrf: str | None) -> Markup:
    if not csrf:
        return Markup("")
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf)


def redirect(url: str) -> RedirectResponse:
    """303 See Other to a path of this site: where a form POST sends the browser next."""
    return RedirectResponse(local_path(url, "/"), status_code=303, headers=SECURITY_HEADERS)
