"""Users with roles and their API tokens (stored as sha256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.db import api_tokens, users
from neuroferry.errors import Forbidden, InvalidInput, NotFound, Unauthorized

ROLES = ("admin", "user")
TOKEN_PREFIX = "nf_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


@dataclass(frozen=True)
class User:
    """Someone the service knows."""

    id: int
    name: str
    role: str
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self, action: str) -> None:
        """Raise :class:`Forbidden` unless this user is an admin."""
        if not self.is_admin:
            raise Forbidden(f"only admins may {action}; {self.name!r} is a {self.role}")


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens are 256 random bits, so one sha256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(engine: Engine, name: str, role: str = "user", email: str | None = None) -> User:
    """Add a user; names are 1-128 letters, digits, '_', '.', '@' or '-'."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"user name {name!r} must be 1 to 128 letters, digits, '_', '.', '@' or '-'"
        )
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not allowed; allowed: {', '.join(ROLES)}")
    try:
        with engine.begin() as conn:
            user_id = conn.execute(
                insert(users)
                .values(name=name, role=role, email=email, created=datetime.now(UTC))
                .returning(users.c.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise InvalidInput(f"a user named {name!r} already exists") from exc
    return User(user_id, name, role, email)


def get_user(engine: Engine, name: str) -> User:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"no user is named {name!r}")
    return User(row["id"], row["name"], row["role"], row["email"])


def create_token(
    engine: Engine, user: User, label: str = "", expires: datetime | None = None
) -> str:
    """A new API token for ``user``; only its hash is stored, so show it now or never."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(api_tokens).values(
                user_id=user.id,
                hash=hash_token(token),
                label=label[:128],
                created=datetime.now(UTC),
                expires=expires,
            )
        )
    return token


def revoke_tokens(engine: Engine, user: User) -> int:
    """Revoke every token of ``user``; how many were live."""
    with engine.begin() as conn:
        return conn.execute(
            update(api_tokens)
            .where(api_tokens.c.user_id == user.id, api_tokens.c.revoked.is_(None))
            .values(revoked=datetime.now(UTC))
        ).rowcount


def authenticate(engine: Engine, token: str | None) -> User:
    """The user a token belongs to; :class:`Unauthorized` if it is missing, unknown,
    revoked or expired."""
    if not token:
        raise Unauthorized("an API token is needed: send 'Authorization: Bearer <token>'")
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(users, api_tokens.c.expires, api_tokens.c.revoked)
                .join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.hash == hash_token(token))
            )
            .mappings()
            .first()
        )
    if row is None or row["revoked"] is not None:
        raise Unauthorized("the API token is not valid (unknown or revoked)")
    expires = row["expires"]
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            raise Unauthorized("the API token has expired; create a new one")
    return User(row["id"], row["name"], row["role"], row["email"])


def ensure_first_admin(engine: Engine, home: Path) -> Path | None:
    """On an empty database, create the user ``admin`` and write its token to
    ``{home}/token.json`` (readable by its owner only); the file, or None if users exist."""
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(users)).scalar_one():
            return None
    admin = create_user(engine, "admin", "admin")
    token = create_token(engine, admin, "created by the first ferry serve")
    path = home / "token.json"
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": admin.name, "token": token}, f)
    return path
