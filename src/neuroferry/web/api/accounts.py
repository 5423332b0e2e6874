"""/api/v2/users and /api/v2/tokens: accounts, roles and API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from neuroferry.auth import (
    MAX_EXPIRY_DAYS,
    MAX_LABEL,
    MAX_PASSWORD,
    MIN_PASSWORD,
    ROLES,
    TokenInfo,
    User,
    create_user,
    delete_user,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
    user_summary,
)
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services

router = APIRouter(tags=["accounts"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="1 to 128 letters, digits, '.', '-', '_' or '@'", examples=["jdoe"]
    )
    email: str | None = Field(None, examples=["jdoe@lab.example.org"])
    role: str = Field("user", description=f"one of: {', '.join(ROLES)}")
    password: str | None = Field(
        None,
        max_length=MAX_PASSWORD,
        description=f"to sign in to the web pages; at least {MIN_PASSWORD} characters",
    )


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(
        ..., max_length=MAX_PASSWORD, description=f"at least {MIN_PASSWORD} characters"
    )
    current_password: str | None = Field(
        None,
        max_length=MAX_PASSWORD,
        description="one's own current password, if one is set (admins setting another "
        "user's password leave it out)",
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # made from a UserSummary

    name: str
    role: str
    email: str | None
    created: datetime
    active_tokens: int = Field(description="tokens that are neither revoked nor expired")
    has_password: bool = Field(False, description="whether they can sign in with a password")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=MAX_LABEL, examples=["laptop"])
    expires_in_days: int | None = Field(
        None, ge=1, le=MAX_EXPIRY_DAYS, description="empty: valid until revoked"
    )


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # made from a TokenInfo

    id: int
    user: str
    label: str
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    state: str = Field(description="active, expired or revoked")


class CreatedToken(TokenOut):
    token: str = Field(description="the token itself: shown this once, never stored")


def _created(info: TokenInfo, token: str) -> CreatedToken:
    return CreatedToken(**TokenOut.model_validate(info).model_dump(), token=token)


# -- users ------------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], summary="Every user (admins)")
def users_list(
    held: Services = Depends(services), _admin: User = Depends(admin_user)
) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in list_users(held.engine)]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a user (admins)",
)
def users_add(
    req: NewUser, held: Services = Depends(services), _admin: User = Depends(admin_user)
) -> UserOut:
    user = create_user(held.engine, req.name, req.role, req.email, req.password)
    return UserOut.model_validate(user_summary(held.engine, user.name))


@router.get("/users/me", response_model=UserOut, summary="The user behind the token")
def users_me(held: Services = Depends(services), me: User = Depends(current_user)) -> UserOut:
    return UserOut.model_validate(user_summary(held.engine, me.name))


@router.delete(
    "/users/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a user and their tokens (admins)",
)
def users_remove(
    name: str, held: Services = Depends(services), admin: User = Depends(admin_user)
) -> None:
    delete_user(held.engine, name, admin)


@router.put(
    "/users/{name}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a password: your own (with the current one, if set) or (admins) anyone's",
)
def users_password(
    name: str,
    req: NewPassword,
    request: Request,
    held: Services = Depends(services),
    me: User = Depends(current_user),
) -> None:
    set_password(
        held.engine,
        name,
        req.password,
        me,
        current=req.current_password,
        keep_token=getattr(request.state, "session", None),
    )


@router.post(
    "/users/{name}/tokens",
    response_model=CreatedToken,
    status_code=status.HTTP_201_CREATED,
    summary="Create a token for a user, e.g. for a script (admins); shown once",
)
def users_token(
    name: str,
    req: NewToken,
    held: Services = Depends(services),
    _admin: User = Depends(admin_user),
) -> CreatedToken:
    info, token = issue_token(
        held.engine, get_user(held.engine, name), req.label, req.expires_in_days
    )
    return _created(info, token)


# -- tokens -----------------------------------------------------------------------------


@router.get("/tokens", response_model=list[TokenOut], summary="Your tokens (never the secrets)")
def tokens_list(
    user: str | None = Query(None, description="another user's tokens (admins)"),
    held: Services = Depends(services),
    me: User = Depends(current_user),
) -> list[TokenOut]:
    whose = me
    if user is not None and user != me.name:
        me.require_admin("list another user's tokens")
        whose = get_user(held.engine, user)
    return [TokenOut.model_validate(t) for t in list_tokens(held.engine, whose)]


@router.post(
    "/tokens",
    response_model=CreatedToken,
    status_code=status.HTTP_201_CREATED,
    summary="Create a token for yourself; the token is shown once",
)
def tokens_create(
    req: NewToken, held: Services = Depends(services), me: User = Depends(current_user)
) -> CreatedToken:
    info, token = issue_token(held.engine, me, req.label, req.expires_in_days)
    return _created(info, token)


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a token: your own, or (admins) anyone's",
)
def tokens_revoke(
    token_id: int, held: Services = Depends(services), me: User = Depends(current_user)
) -> None:
    revoke_token(held.engine, token_id, me)
