"""/tokens: one's API tokens (list, create, revoke) and one's password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from neuroferry.auth import (
    MAX_EXPIRY_DAYS,
    MIN_PASSWORD,
    TokenInfo,
    User,
    issue_token,
    list_tokens,
    revoke_token,
    set_password,
    token_info,
)
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.services import Services
from neuroferry.web._deps import SESSION_COOKIE, services
from neuroferry.web.pages._render import page_user, redirect, render

router = APIRouter()
DEFAULT_EXPIRY_DAYS = 90


def _this_sign_in(request: Request, held: Services) -> TokenInfo | None:
    """The token of the web sign-in this request comes with, if any."""
    session = getattr(request.state, "session", None)
    return token_info(held.engine, session) if session else None


def _page(
    request: Request, held: Services, me: User, status: int = 200, **context: Any
) -> Response:
    current = _this_sign_in(request, held)
    tokens = list(reversed(list_tokens(held.engine, me)))
    values: dict[str, Any] = {
        "tokens": tokens,
        "session_id": current.id if current else None,
        "created": None,
        "token": None,
        "error": None,
        "password_error": None,
        "label": "",
        "expires_days": str(DEFAULT_EXPIRY_DAYS),
        "max_days": MAX_EXPIRY_DAYS,
        "min_password": MIN_PASSWORD,
        "revoked": request.query_params.get("revoked"),
        "password_changed": request.query_params.get("password") == "changed",
    }
    return render(request, "tokens.html", status, **(values | context))


def _days(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(
            f"expires_days: {text!r} is not a whole number of days; give 1 to "
            f"{MAX_EXPIRY_DAYS}, or leave it empty for a token that does not expire"
        ) from None


@router.get("/tokens")
def tokens_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """Your tokens, newest first: web sessions and API tokens, live or not."""
    return _page(request, held, me)


@router.post("/tokens")
def tokens_create(
    request: Request,
    label: str = Form(""),
    expires_days: str = Form(""),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Create a token and show it, this once."""
    try:
        info, token = issue_token(held.engine, me, label, _days(expires_days))
    except InvalidInput as exc:
        return _page(request, held, me, 422, error=str(exc), label=label, expires_days=expires_days)
    created: TokenInfo = info
    return _page(request, held, me, 201, created=created, token=token)


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(
    request: Request,
    token_id: int,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Revoke one of your tokens; revoking this session's token signs you out."""
    revoke_token(held.engine, token_id, me)
    current = _this_sign_in(request, held)
    if current is not None and current.id == token_id:
        response = redirect("/sign-in?signed_out=1")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return response
    return redirect(f"/tokens?revoked={token_id}")


@router.post("/password")
def password_change(
    request: Request,
    current_password: str = Form(""),
    password: str = Form(""),
    password_again: str = Form(""),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Change your own password (your other web sessions end)."""
    try:
        if password != password_again:
            raise InvalidInput("password_again: the two new passwords differ; type them again")
        set_password(
            held.engine,
            me.name,
            password,
            me,
            current=current_password,
            keep_token=getattr(request.state, "session", None),
        )
    except (InvalidInput, Forbidden) as exc:
        return _page(request, held, me, exc.status_code, password_error=str(exc))
    return redirect("/tokens?password=changed")
