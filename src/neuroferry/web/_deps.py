"""Request dependencies: the service's state and the user behind the request, who shows
an API token (``Authorization: Bearer …``) or the session cookie of a web sign-in.

A request authenticated by the cookie that may change something (any method but GET,
HEAD and OPTIONS) must also carry the session's CSRF token, in the ``X-CSRF-Token``
header or the ``csrf_token`` form field: another site can make a browser send the cookie,
but cannot read the page that holds the CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, Header, Request

from neuroferry.auth import User, authenticate
from neuroferry.errors import Forbidden
from neuroferry.services import Services

#: The cookie that holds the token of a web sign-in.
SESSION_COOKIE = "ferry_session"
#: Where a cookie-authenticated request that changes something puts the CSRF token.
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def services(request: Request) -> Services:
    held: Services = request.app.state.services
    return held


def csrf_token(session_token: str) -> str:
    """The CSRF token of a web session: derived from its token, so nothing is stored."""
    return hashlib.sha256(b"neuroferry csrf\0" + session_token.encode()).hexdigest()


def session_token(request: Request) -> str | None:
    """The token in the request's session cookie, if it has one."""
    return request.cookies.get(SESSION_COOKIE) or None


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


async def _form_csrf(request: Request) -> str | None:
    """The ``csrf_token`` form field, read only when the CSRF check will need it."""
    if (
        request.method in SAFE_METHODS
        or _bearer(request.headers.get("authorization"))
        or CSRF_HEADER.lower() in request.headers
        or not session_token(request)
        or not request.headers.get("content-type", "").startswith(_FORMS)
    ):
        return None
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def signed_in(
    request: Request,
    authorization: str | None = Header(None, description="Bearer <API token>"),
    form_csrf: str | None = Depends(_form_csrf),
    held: Services = Depends(services),
) -> User:
    """The account whose token came in ``Authorization: Bearer …`` or, failing that, in
    the session cookie (with the CSRF token unless the method is safe), whatever its role;
    401 or 403 otherwise. Also sets ``request.state.user`` and, for a cookie,
    ``request.state.session``. Routes use :func:`current_user` or :func:`cluster_user`."""
    token = _bearer(authorization)
    session = None
    if token is None and (session := session_token(request)):
        token = session
    user = authenticate(held.engine, token)
    if session is not None and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER) or form_csrf or ""
        if not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
            raise Forbidden(
                f"the CSRF token is missing or wrong: a request signed in by the session "
                f"cookie must send the page's token in the {CSRF_HEADER} header or the "
                f"{CSRF_FIELD} form field; reload the page and try again"
            )
    request.state.user = user
    request.state.session = session
    return user


def current_user(request: Request, account: User = Depends(signed_in)) -> User:
    """The signed-in user (an admin or a user); a ``worker`` account is refused (403):
    it may only read where the Dask cluster is (:func:`cluster_user`)."""
    if account.is_worker:
        raise Forbidden(
            f"{account.name!r} is a worker account: it may only read /api/v2/cluster "
            f"(to join the Dask cluster), not {request.method} {request.url.path}"
        )
    return account


def cluster_user(request: Request, account: User = Depends(signed_in)) -> User:
    """An admin or a ``worker`` account: who may learn the Dask scheduler's address and
    credentials (403 for everyone else)."""
    if not (account.is_admin or account.is_worker):
        raise Forbidden(
            f"only admins and worker accounts may {request.method} {request.url.path} "
            f"(the Dask cluster's address and credentials); {account.name!r} is a "
            f"{account.role}. Ask an admin for a worker token to add workers"
        )
    return account


def admin_user(request: Request, user: User = Depends(current_user)) -> User:
    """The current user, who must be an admin (403 otherwise)."""
    user.require_admin(f"{request.method} {request.url.path}")
    return user
