"""The SQLAlchemy engine for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    InternalError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from neuroferry.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

#: SQLAlchemy errors that mean the database cannot be reached or written (unreachable,
#: read-only, disk full, a missing file or table), not that the request was wrong.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    InternalError,
    PoolTimeout,
)

#: What callers are told; the cause goes to the service's log, never to the caller (it
#: may name the database host and user).
UNAVAILABLE_MESSAGE = (
    "the database is unavailable: it cannot be reached or written; try again later, "
    "or ask an admin to look at the service's health (/api/v2/health)"
)


def unavailable(exc: BaseException) -> DatabaseError:
    """The :class:`DatabaseError` (503) for a database that cannot be reached or written;
    the cause is logged."""
    cause = str(getattr(exc, "orig", None) or exc).splitlines()
    log.error("database unavailable: %s: %s", type(exc).__name__, cause[0] if cause else "")
    return DatabaseError(UNAVAILABLE_MESSAGE)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs; reject schemes neuroferry does not support."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not a valid SQLAlchemy URL") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise ConfigError(
        f"database URL {parsed.render_as_string()!r} uses {backend!r}; "
        "supported: sqlite:///path and postgresql://user@host/db"
    )


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL (``sqlite:///path``, or a ``file:`` URI with
    ``uri=true``); None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    database = parsed.database
    if parsed.query.get("uri") in ("true", "1", "True"):
        if not database.startswith("file:"):
            return None
        database = unquote(urlsplit(database).path)
        if not database or parsed.query.get("mode") == "memory":
            return None
    return None if database == ":memory:" else Path(database)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class _NoNewFile:
    """Once the SQLite file exists, a new connection must not make an empty one in its
    place (the file was removed while the service ran): it fails instead."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.existed = path.exists()

    def __call__(self, *_args: Any) -> None:
        if self.existed and not self.path.exists():
            raise sqlite3.OperationalError(f"the database file {self.path} is gone")
        self.existed = True


def make_engine(url: str) -> Engine:
    """An engine with the right settings for the URL's backend (SQLite pragmas, PG pool)."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if (path := sqlite_file(url)) is not None and not parsed.query.get("uri"):
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        if path is not None:
            event.listen(engine, "do_connect", _NoNewFile(path))
        return engine
    # JIT compilation costs 0.1-0.3 s per query and pays off only for long analytic
    # queries; the service's queries (catalog filters, job rows) are short.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"options": "-c jit=off"},
    )


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and health reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
