"""/sign-in and /sign-out: a web session is an API token in an HttpOnly cookie."""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from neuroferry.auth import (
    SIGN_IN_FAILED,
    User,
    authenticate,
    check_password,
    end_session,
    start_session,
)
from neuroferry.errors import Forbidden, Unauthorized
from neuroferry.services import Services
from neuroferry.web._deps import CSRF_FIELD, SESSION_COOKIE, csrf_token, services, session_token
from neuroferry.web.pages._render import (
    local_path,
    optional_page_user,
    redirect,
    render,
)
from neuroferry.web.pages._throttle import Busy, Throttle, sign_in_keys

router = APIRouter()
MAX_FIELD = 4096
_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Android", "Android"),
    ("Linux", "Linux"),
)


def client_name(user_agent: str) -> str:
    """``Firefox on Linux``: enough of the User-Agent to tell one's sessions apart."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "browser")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    return f"{browser} on {system}" if system else browser


def _throttle(request: Request, held: Services) -> Throttle:
    found: Throttle | None = getattr(request.app.state, "sign_in_throttle", None)
    if found is None:
        found = request.app.state.sign_in_throttle = Throttle(held.engine)
    return found


async def _take_turn(throttle: Throttle, keys: list[str]) -> float | None:
    """Take the attempt's turn; None when taken, else the seconds until the next turn.
    A name whose password is being checked right now, or whose wait after recent failures
    has not passed, refuses at once (parallel or repeated guesses); an address waits for
    its turn if it comes within ``throttle.most`` seconds (people signing in at once from
    one office)."""
    deadline = time.monotonic() + throttle.most + 1.0
    while True:
        try:
            await run_in_threadpool(throttle.take, keys)
            return None
        except Busy as busy:
            wait = min(busy.wait, throttle.most)
            if busy.key.startswith("user:"):
                return wait
            pause = 0.25 if busy.held else busy.wait
            if pause > deadline - time.monotonic():
                return wait
            await asyncio.sleep(pause)


def _secure(request: Request, held: Services) -> bool:
    return request.url.scheme == "https" or held.settings.mode == "production"


@router.get("/sign-in")
def sign_in_page(
    request: Request,
    next_: str = Query("/jobs", alias="next"),
    signed_out: bool = False,
    me: User | None = Depends(optional_page_user),
) -> Response:
    """The sign-in form; someone already signed in goes on to ``next``."""
    target = local_path(next_)
    if me is not None and not signed_out:
        return redirect(target)
    notice = "You are signed out." if signed_out else None
    return render(request, "sign_in.html", next=target, name="", error=None, notice=notice)


@router.post("/sign-in")
async def sign_in(request: Request, held: Services = Depends(services)) -> Response:
    """Check a user name and password, or a token; start a session or say, always the
    same way, that it failed (401). Each attempt first takes its turn for its user name and
    address (shared by every service process); an attempt that finds the turn taken, or
    the wait after recent failures long, is refused (429, Retry-After) unchecked. A form
    sent from another site is refused, so no other site can sign a browser in to an account
    of its choosing."""
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none") or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise Forbidden("sign in on the sign-in page of this site")
    form = await request.form()
    fields: dict[str, str] = {
        k: v[:MAX_FIELD] if isinstance(v, str) else "" for k, v in form.items()
    }
    name, password = fields.get("name", "").strip(), fields.get("password", "")
    token, target = fields.get("token", "").strip(), local_path(fields.get("next"))
    address = request.client.host if request.client else ""
    keys = sign_in_keys(name, address, token=bool(token))
    throttle = _throttle(request, held)
    context: dict[str, Any] = {"next": target, "name": name, "notice": None}
    if (wait := await _take_turn(throttle, keys)) is not None:
        seconds = math.ceil(wait)
        error = f"too many sign-in attempts; try again in {seconds} s"
        page = render(request, "sign_in.html", 429, error=error, **context)
        page.headers["Retry-After"] = str(seconds)
        return page
    try:
        if token:
            user = await run_in_threadpool(authenticate, held.engine, token)
        else:
            user = await run_in_threadpool(check_password, held.engine, name, password)
    except Unauthorized:
        await run_in_threadpool(throttle.failed, keys)
        return render(request, "sign_in.html", 401, error=SIGN_IN_FAILED, **context)
    except BaseException:
        await run_in_threadpool(throttle.release, keys)  # not a guess: free the turn
        raise
    await run_in_threadpool(throttle.succeeded, keys)
    hours = held.settings.session_hours
    client = client_name(request.headers.get("user-agent", ""))
    _info, session = await run_in_threadpool(start_session, held.engine, user, hours, client)
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=int(hours * 3600),
        path="/",
        secure=_secure(request, held),
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, held: Services = Depends(services)) -> Response:
    """End the session (its token is revoked) and forget the cookie."""
    session = session_token(request)
    if session is not None:
        form = await request.form()
        sent = form.get(CSRF_FIELD)
        sent = sent if isinstance(sent, str) else request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
            raise Forbidden("the sign-out form has expired; reload the page and sign out again")
        await run_in_threadpool(end_session, held.engine, session)
    response = redirect("/sign-in?signed_out=1")
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request, held), httponly=True, samesite="lax"
    )
    return response
