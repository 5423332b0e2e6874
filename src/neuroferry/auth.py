"""Users with roles, their API tokens (stored as sha256 hashes, shown once), their
passwords (scrypt hashes) and web sessions (short-lived tokens made at sign-in)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.db import api_tokens, jobs, users, utc
from neuroferry.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)

#: Job states after which nothing runs (the engine's terminal states).
_FINISHED = ("succeeded", "failed", "skipped", "cancelled")
ROLES = ("admin", "user", "worker")
#: A ``worker`` is a machine that adds Dask workers to the service's cluster (``ferry
#: ingest join``): its token reads the cluster's address and TLS credentials, nothing else.
WORKER = "worker"
TOKEN_PREFIX = "nf_"
MAX_LABEL = 128
MAX_EXPIRY_DAYS = 3650
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
#: An address's local part of the characters RFC 5322 allows unquoted, and a host name.
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: What every failed sign-in says, whether the user exists or not.
SIGN_IN_FAILED = "wrong user name, password or token"
#: The label of every token made by signing in to the web pages starts with this.
SESSION_LABEL = "web sign-in"
_SCRYPT = (2**14, 8, 1)  # n, r, p: about 50 ms and 16 MiB per hash
_SCRYPT_MAX_MEM = 128 * 1024 * 1024


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

    @property
    def is_worker(self) -> bool:
        """A machine's account for joining the Dask cluster, not a person's."""
        return self.role == WORKER

    def require_admin(self, action: str) -> None:
        """Raise :class:`Forbidden` unless this user is an admin."""
        if not self.is_admin:
            raise Forbidden(f"only admins may {action}; {self.name!r} is a {self.role}")


@dataclass(frozen=True)
class UserSummary:
    """A user as listed: who, since when, and how many tokens can still be used."""

    name: str
    role: str
    email: str | None
    created: datetime
    active_tokens: int
    has_password: bool = False


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never the token itself, which only its owner saw once."""

    id: int
    user: str
    label: str
    created: datetime
    expires: datetime | None
    revoked: datetime | None

    @property
    def is_session(self) -> bool:
        """Whether this token was made by signing in to the web pages."""
        return self.label.startswith(SESSION_LABEL + " (")

    @property
    def state(self) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= datetime.now(UTC):
            return "expired"
        return "active"


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens are 256 random bits, so one sha256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_user_name(name: str) -> str:
    """``name`` if it may name a user; :class:`InvalidInput` naming the field otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"name: {name!r} is not allowed; a user name must be 1 to 128 letters, digits, "
            "'_', '.', '@' or '-', starting with a letter or digit"
        )
    return name


def _check_email(email: str | None) -> str | None:
    email = email.strip() if isinstance(email, str) else email
    if not email:
        return None
    if len(email) > 320 or not EMAIL.fullmatch(email) or _CONTROL.search(email):
        raise InvalidInput(f"email: {email!r} is not an e-mail address")
    return email


def create_user(
    engine: Engine,
    name: str,
    role: str = "user",
    email: str | None = None,
    password: str | None = None,
) -> User:
    """Add a user; names are 1-128 letters, digits, '_', '.', '@' or '-'. With a
    ``password`` (see :func:`check_password_policy`) they can sign in to the web pages."""
    check_user_name(name)
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} is not allowed; allowed: {', '.join(ROLES)}")
    email = _check_email(email)
    hashed = None
    if password is not None:
        hashed = hash_password(check_password_policy(password, name))
    try:
        with engine.begin() as conn:
            user_id = conn.execute(
                insert(users)
                .values(
                    name=name,
                    role=role,
                    email=email,
                    created=datetime.now(UTC),
                    password_hash=hashed,
                )
                .returning(users.c.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise InvalidInput(f"name: a user named {name!r} already exists") from exc
    return User(user_id, name, role, email)


def get_user(engine: Engine, name: str) -> User:
    """The user named ``name``; :class:`NotFound` if there is none."""
    row = None
    if isinstance(name, str) and _NAME.fullmatch(name):  # others cannot exist (nor be queried)
        with engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"no user is named {name!r}; `ferry users list` shows who there is")
    return User(row["id"], row["name"], row["role"], row["email"])


def _live(now: datetime) -> ColumnElement[bool]:
    return api_tokens.c.revoked.is_(None) & (
        api_tokens.c.expires.is_(None) | (api_tokens.c.expires > now)
    )


def list_users(engine: Engine, name: str | None = None) -> list[UserSummary]:
    """Every user (or only the one named ``name``), by name, with their live token count."""
    live = (
        select(func.count())
        .select_from(api_tokens)
        .where(api_tokens.c.user_id == users.c.id, _live(datetime.now(UTC)))
        .scalar_subquery()
    )
    query = select(users, live.label("active_tokens")).order_by(users.c.name)
    if name is not None:
        query = query.where(users.c.name == name)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        UserSummary(
            r["name"],
            r["role"],
            r["email"],
            utc(r["created"]),
            r["active_tokens"],
            r["password_hash"] is not None,
        )
        for r in rows
    ]


def user_summary(engine: Engine, name: str) -> UserSummary:
    """One user as :func:`list_users` shows them; :class:`NotFound` if there is none."""
    found = list_users(engine, name)
    if not found:
        raise NotFound(f"no user is named {name!r}; `ferry users list` shows who there is")
    return found[0]


def delete_user(engine: Engine, name: str, by: User) -> None:
    """Remove a user and their tokens (admins only; never oneself). Their finished jobs
    stay, without an owner; a user with unfinished jobs is not removed, since a job
    without an owner would run with the service's own rights instead of the user's."""
    by.require_admin("remove users")
    if name == by.name:
        raise InvalidInput(
            f"name: {name!r} is you; an admin cannot remove themselves (ask another admin)"
        )
    user = get_user(engine, name)
    try:
        with engine.begin() as conn:
            unfinished = conn.execute(
                select(jobs.c.id)
                .where(jobs.c.owner_id == user.id, jobs.c.state.not_in(_FINISHED))
                .order_by(jobs.c.id)
                .limit(10)
            ).scalars()
            if ids := list(unfinished):
                raise Conflict(
                    f"name: {name!r} still has unfinished jobs ({', '.join(map(str, ids))}); "
                    "cancel them or wait until they end, then remove the user"
                )
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user.id))
            conn.execute(delete(users).where(users.c.id == user.id))
    except IntegrityError as exc:
        raise InvalidInput(
            f"name: {name!r} is still referred to ({type(exc.orig).__name__}); "
            "revoke their tokens instead"
        ) from exc


def _insert_token(
    engine: Engine, user: User, label: str, expires: datetime | None
) -> tuple[int, str, datetime]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = datetime.now(UTC)
    with engine.begin() as conn:
        token_id = conn.execute(
            insert(api_tokens)
            .values(
                user_id=user.id,
                hash=hash_token(token),
                label=label[:MAX_LABEL],
                created=created,
                expires=expires,
            )
            .returning(api_tokens.c.id)
        ).scalar_one()
    return token_id, token, created


def create_token(
    engine: Engine, user: User, label: str = "", expires: datetime | None = None
) -> str:
    """A new API token for ``user``; only its hash is stored, so show it now or never."""
    return _insert_token(engine, user, label, expires)[1]


def issue_token(
    engine: Engine, user: User, label: str = "", expires_in_days: int | None = None
) -> tuple[TokenInfo, str]:
    """A new API token for ``user``, valid for ``expires_in_days`` (or until revoked):
    what it is, and the token itself, which is not stored and cannot be shown again."""
    label = (label or "").strip()
    if len(label) > MAX_LABEL:
        raise InvalidInput(f"label: {len(label)} characters is too long; at most {MAX_LABEL}")
    if _CONTROL.search(label):
        raise InvalidInput(f"label: {label!r} contains control characters")
    expires = None
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(
                f"expires_in_days: {expires_in_days} is not allowed; "
                f"give 1 to {MAX_EXPIRY_DAYS} days, or none for a token that does not expire"
            )
        expires = datetime.now(UTC) + timedelta(days=expires_in_days)
    token_id, token, created = _insert_token(engine, user, label, expires)
    return TokenInfo(token_id, user.name, label, created, expires, None), token


def _token_query() -> Select[Any]:
    return (
        select(api_tokens, users.c.name.label("user_name"))
        .join(users, users.c.id == api_tokens.c.user_id)
        .order_by(api_tokens.c.id)
    )


def _token_info(row: Row[Any]) -> TokenInfo:
    r = row._mapping
    return TokenInfo(
        r["id"],
        r["user_name"],
        r["label"],
        utc(r["created"]),
        utc(r["expires"]),
        utc(r["revoked"]),
    )


def list_tokens(engine: Engine, user: User) -> list[TokenInfo]:
    """The tokens of ``user``, oldest first, revoked and expired ones included."""
    with engine.connect() as conn:
        rows = conn.execute(_token_query().where(api_tokens.c.user_id == user.id)).all()
    return [_token_info(r) for r in rows]


def token_info(engine: Engine, token: str) -> TokenInfo | None:
    """What a token is (by the token itself), or None if there is no such token."""
    with engine.connect() as conn:
        row = conn.execute(_token_query().where(api_tokens.c.hash == hash_token(token))).first()
    return None if row is None else _token_info(row)


def revoke_token(engine: Engine, token_id: int, by: User) -> TokenInfo:
    """Revoke one token: one's own, or (admins) anyone's. Revoking a revoked token
    changes nothing. :class:`NotFound` if no such token is visible to ``by``."""
    query = _token_query().where(api_tokens.c.id == token_id)
    if not by.is_admin:
        query = query.where(api_tokens.c.user_id == by.id)
    with engine.begin() as conn:
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"you have no token with id {token_id}; `ferry tokens list` shows yours")
        info = _token_info(row)
        if info.revoked is None:
            now = datetime.now(UTC)
            conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked=now))
            info = TokenInfo(info.id, info.user, info.label, info.created, info.expires, now)
    return info


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
    expires = utc(row["expires"])
    if expires is not None and expires <= datetime.now(UTC):
        raise Unauthorized("the API token has expired; create a new one")
    return User(row["id"], row["name"], row["role"], row["email"])


def first_admin(engine: Engine) -> User | None:
    """The oldest admin, if there is one."""
    with engine.connect() as conn:
        row = (
            conn.execute(select(users).where(users.c.role == "admin").order_by(users.c.id))
            .mappings()
            .first()
        )
    return None if row is None else User(row["id"], row["name"], row["role"], row["email"])


def ensure_first_admin(engine: Engine, home: Path) -> Path | None:
    """On an empty database, create the user ``admin`` and write its token to
    ``{home}/token.json`` (created, never overwritten, readable by its owner only); the
    file, or None if users exist. :class:`ConfigError` if there are no users but the file
    exists: the database it belonged to may have been lost."""
    path = home / "token.json"
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(users)).scalar_one():
            _make_private(path)
            return None
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(lost_database_message(path)) from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        admin = create_user(engine, "admin", "admin")
        token = create_token(engine, admin, "created by the first ferry serve")
        with os.fdopen(fd, "w") as f:
            json.dump({"user": admin.name, "token": token}, f)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _make_private(path: Path) -> None:
    """A token file others may read (an older version, a copy) becomes owner-only."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:  # absent, or not ours: nothing to do here
        pass


def lost_database_message(token_file: Path) -> str:
    """Why a service with ``token_file`` but an empty or missing database refuses to start."""
    return (
        f"{token_file} exists, but the database has no users: it may have been lost or "
        "replaced. Restore the database (or set FERRY_DATABASE_URL to it), or, to start "
        f"with an empty one, move {token_file} away first; ferry serve does not overwrite it"
    )


# -- passwords ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # NFC: the same password typed on two keyboards may arrive composed or decomposed
    secret = unicodedata.normalize("NFC", password).encode()
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAX_MEM, dklen=32)


def check_password_policy(password: str, name: str | None = None) -> str:
    """``password`` if it may be used (8 to 1024 characters, no control characters, not
    the user's name); :class:`InvalidInput` naming the field and the rule otherwise."""
    if not isinstance(password, str):
        raise InvalidInput("password: a password must be text")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"password: {len(password)} characters is too short; "
            f"use at least {MIN_PASSWORD} (a few words make a good one)"
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(
            f"password: {len(password)} characters is too long; at most {MAX_PASSWORD}"
        )
    if _CONTROL.search(password):
        raise InvalidInput("password: control characters (tabs, newlines …) are not allowed")
    if name is not None and password.strip().casefold() == name.casefold():
        raise InvalidInput("password: must not be the user name")
    return password


def hash_password(password: str) -> str:
    """The stored form of a password: ``scrypt$n$r$p$salt$hash`` with a random salt."""
    n, r, p = _SCRYPT
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the stored form (compared in constant time). A
    missing or malformed stored form matches nothing."""
    try:
        scheme, n_, r_, p_, salt_, hash_ = (stored or "").split("$")
        n, r, p = int(n_), int(r_), int(p_)
        salt, expected = _unb64(salt_), _unb64(hash_)
    except ValueError:
        return False
    if scheme != "scrypt" or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    try:
        actual = _scrypt(password, salt, n, r, p)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(12))


def _password_row(engine: Engine, name: str) -> Any:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    with engine.connect() as conn:
        return conn.execute(select(users).where(users.c.name == name)).mappings().first()


def check_password(engine: Engine, name: str, password: str) -> User:
    """The user ``name`` if ``password`` is theirs; :class:`Unauthorized` with the same
    message (and about the same delay) whether the user is unknown, has no password, or
    gave a wrong one."""
    row = _password_row(engine, name)
    stored = row["password_hash"] if row is not None else None
    matched = verify_password(password or "", stored or _decoy_hash())
    if row is None or stored is None or not matched:
        raise Unauthorized(SIGN_IN_FAILED)
    return User(row["id"], row["name"], row["role"], row["email"])


def set_password(
    engine: Engine,
    name: str,
    password: str,
    by: User,
    current: str | None = None,
    keep_token: str | None = None,
) -> None:
    """Set the password of ``name``: one's own (giving the ``current`` one, if there is
    one) or, for admins, anyone else's. Ends the user's web sessions, except the one
    whose token is ``keep_token``; their API tokens keep working."""
    if name != by.name:
        by.require_admin("set another user's password")
    row = _password_row(engine, name)
    if row is None:
        raise NotFound(f"no user is named {name!r}; `ferry users list` shows who there is")
    if name == by.name and row["password_hash"] is not None:
        if not current:
            raise InvalidInput(
                "current_password: give your current password to change it "
                "(an admin can reset a forgotten one)"
            )
        if not verify_password(current, row["password_hash"]):
            raise Forbidden(
                "current_password: that is not your current password "
                "(an admin can reset a forgotten one)"
            )
    hashed = hash_password(check_password_policy(password, name))
    sessions = api_tokens.c.label.startswith(SESSION_LABEL + " (", autoescape=True)
    end = update(api_tokens).where(
        api_tokens.c.user_id == row["id"], api_tokens.c.revoked.is_(None), sessions
    )
    if keep_token:
        end = end.where(api_tokens.c.hash != hash_token(keep_token))
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == row["id"]).values(password_hash=hashed))
        conn.execute(end.values(revoked=datetime.now(UTC)))


# -- web sessions -------------------------------------------------------------------------


def start_session(
    engine: Engine, user: User, hours: float, client: str = "browser"
) -> tuple[TokenInfo, str]:
    """A token for a web session of ``user`` that expires after ``hours``, labelled
    ``web sign-in (client)``; what it is, and the token (kept by the browser only).
    A worker account (a machine's) cannot sign in (:class:`Forbidden`)."""
    if user.is_worker:
        raise Forbidden(
            f"{user.name!r} is a worker account: it joins the Dask cluster with an API "
            "token and cannot sign in to the web pages"
        )
    client = _CONTROL.sub("", client).strip()[:64] or "browser"
    label = f"{SESSION_LABEL} ({client})"
    expires = datetime.now(UTC) + timedelta(hours=hours)
    token_id, token, created = _insert_token(engine, user, label, expires)
    return TokenInfo(token_id, user.name, label, created, expires, None), token


def end_session(engine: Engine, token: str) -> bool:
    """Revoke the token of a web session (any token, in fact); whether it was live."""
    with engine.begin() as conn:
        done = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.hash == hash_token(token), api_tokens.c.revoked.is_(None))
            .values(revoked=datetime.now(UTC))
        ).rowcount
    return bool(done)
