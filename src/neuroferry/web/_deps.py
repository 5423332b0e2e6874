"""Request dependencies: the service's state and the user behind the API token."""

from __future__ import annotations

from fastapi import Depends, Header, Request

from neuroferry.auth import User, authenticate
from neuroferry.web._services import Services


def services(request: Request) -> Services:
    held: Services = request.app.state.services
    return held


def current_user(
    authorization: str | None = Header(None, description="Bearer <API token>"),
    held: Services = Depends(services),
) -> User:
    """The user whose token came in ``Authorization: Bearer …``; 401 otherwise."""
    scheme, _, token = (authorization or "").partition(" ")
    return authenticate(held.engine, token.strip() if scheme.lower() == "bearer" else None)


def admin_user(request: Request, user: User = Depends(current_user)) -> User:
    """The current user, who must be an admin (403 otherwise)."""
    user.require_admin(f"{request.method} {request.url.path}")
    return user
