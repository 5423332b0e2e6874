"""/users (admins): every user; add one with a role and a first password; reset a password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from neuroferry.auth import MIN_PASSWORD, ROLES, User, create_user, list_users, set_password
from neuroferry.errors import InvalidInput
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._render import admin_page_user, redirect, render

router = APIRouter()


def _page(request: Request, held: Services, status: int = 200, **context: Any) -> Response:
    values: dict[str, Any] = {
        "users": list_users(held.engine),
        "roles": ROLES,
        "min_password": MIN_PASSWORD,
        "error": None,
        "reset_error": None,
        "form": {"name": "", "email": "", "role": "user"},
        "added": request.query_params.get("added"),
        "reset": request.query_params.get("reset"),
    }
    return render(request, "users.html", status, **(values | context))


@router.get("/users")
def users_page(
    request: Request, held: Services = Depends(services), _admin: User = Depends(admin_page_user)
) -> Response:
    """Every user, with their role and how many live tokens they have."""
    return _page(request, held)


@router.post("/users")
def users_add(
    request: Request,
    name: str = Form(""),
    email: str = Form(""),
    role: str = Form("user"),
    password: str = Form(""),
    held: Services = Depends(services),
    _admin: User = Depends(admin_page_user),
) -> Response:
    """Add a user, with a first password unless it is left empty (token sign-in only)."""
    try:
        create_user(held.engine, name.strip(), role, email or None, password or None)
    except InvalidInput as exc:
        form = {"name": name, "email": email, "role": role}
        return _page(request, held, 422, error=str(exc), form=form)
    return redirect(f"/users?added={name.strip()}")


@router.post("/users/{name}/password")
def users_reset_password(
    request: Request,
    name: str,
    password: str = Form(""),
    held: Services = Depends(services),
    admin: User = Depends(admin_page_user),
) -> Response:
    """Give a user a new password (their web sessions end)."""
    try:
        set_password(held.engine, name, password, admin, keep_token=request.state.session)
    except InvalidInput as exc:
        return _page(request, held, 422, reset_error=(name, str(exc)))
    return redirect(f"/users?reset={name}")
