"""The SQLAlchemy engine for SQLite (embedded default) and PostgreSQL.

Every statement of an engine made with a ``statement_timeout`` is stopped once it has run
that long: PostgreSQL stops it itself (the ``statement_timeout`` of each session); SQLite
through a progress handler that interrupts a statement past its deadline. Either way the
caller gets a :class:`~neuroferry.errors.QueryTimeout`. :func:`interrupt_statements` stops
every statement running at once (when the service stops), and
:func:`lift_statement_timeout` lifts the limit for one connection (migrations).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    InternalError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from neuroferry.errors import ConfigError, DatabaseError, QueryTimeout, first_line

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
    cause = first_line(getattr(exc, "orig", None) or exc)
    log.error("database unavailable: %s: %s", type(exc).__name__, cause)
    return DatabaseError(UNAVAILABLE_MESSAGE)


#: SQLite virtual machine instructions between two looks at the deadline.
_SQLITE_CHECK_EVERY = 10_000
_OPTION = "ferry_statement_timeout"  # execution option: seconds, 0 for no limit


@contextlib.contextmanager
def transaction(
    engine: Engine, *, keep: tuple[type[SQLAlchemyError], ...] = ()
) -> Iterator[Connection]:
    """``engine.begin()`` whose database errors become :class:`DatabaseError`, but for
    those of the types in ``keep``, which the caller handles."""
    try:
        with engine.begin() as conn:
            yield conn
    except keep:
        raise
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database error: {first_line(exc)}") from exc


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


class _Limits:
    """An engine's statement timeout and the statements it runs now."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stop_before = 0.0  # statements started before this (monotonic) time stop
        self.closed = False  # every statement stops, and none starts
        self.lock = threading.Lock()
        # DBAPI connections inside a statement (PostgreSQL), and the thread that runs it
        self.running: dict[Any, int] = {}
        # per thread, its latest statement: the SQLite deadline, or the PostgreSQL connection
        self.latest: dict[int, Any] = {}


class _Deadline:
    """One SQLite connection's progress handler: interrupt past the deadline, or when the
    engine stops."""

    __slots__ = ("at", "limits", "started", "stopped", "thread")

    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.at: float | None = None
        self.started = 0.0  # when the current statement started; 0 between statements
        self.stopped = False  # why the last interrupt happened: the service stopping
        self.thread = 0  # the thread that runs the current statement

    def __call__(self) -> int:
        if self.limits.closed or (self.started and self.started < self.limits.stop_before):
            self.stopped = True
            return 1
        return 1 if self.at is not None and time.monotonic() > self.at else 0

    def clear(self) -> None:
        self.at, self.started = None, 0.0


def _timeout_of(conn: Connection, limits: _Limits) -> float:
    seconds = conn.get_execution_options().get(_OPTION, limits.seconds)
    return float(seconds or 0)


def _install_limits(engine: Engine, limits: _Limits) -> None:
    _ENGINE_LIMITS[engine] = limits
    sqlite = engine.dialect.name == "sqlite"

    if sqlite:

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, record: Any) -> None:
            deadline = _Deadline(limits)
            record.info["ferry_deadline"] = deadline
            dbapi_conn.set_progress_handler(deadline, _SQLITE_CHECK_EVERY)

        def _clear(conn: Connection) -> None:
            deadline = conn.info.get("ferry_deadline")
            if deadline is not None:
                deadline.clear()  # COMMIT and ROLLBACK run statements too: never stop them

        event.listen(engine, "commit", _clear)
        event.listen(engine, "rollback", _clear)

        @event.listens_for(engine, "checkin")
        def _checkin(dbapi_conn: Any, record: Any) -> None:
            deadline = record.info.get("ferry_deadline")
            if deadline is not None:
                deadline.clear()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, cursor: Any, *_args: Any) -> None:
        if limits.closed:
            raise QueryTimeout(_STOPPING)
        if sqlite:
            deadline = conn.info.get("ferry_deadline")
            if deadline is not None:
                seconds = _timeout_of(conn, limits)
                deadline.started = time.monotonic()
                deadline.at = deadline.started + seconds if seconds else None
                deadline.stopped = False
                deadline.thread = threading.get_ident()
                limits.latest[deadline.thread] = deadline
            return
        dbapi_conn = conn.connection.dbapi_connection
        with limits.lock:
            limits.running[dbapi_conn] = threading.get_ident()
            limits.latest[threading.get_ident()] = dbapi_conn

    if not sqlite:

        def _done(conn: Connection, *_args: Any) -> None:
            with limits.lock:
                limits.running.pop(conn.connection.dbapi_connection, None)

        event.listen(engine, "after_cursor_execute", _done)

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> BaseException | None:
        conn = context.connection
        if not sqlite and conn is not None and not conn.closed and not conn.invalidated:
            with limits.lock:
                limits.running.pop(conn.connection.dbapi_connection, None)
        return _timeout_error(context, limits)


_STOPPING = "the service is stopping; try again when it is back"
_ENGINE_LIMITS: weakref.WeakKeyDictionary[Engine, _Limits] = weakref.WeakKeyDictionary()


def _timeout_error(context: ExceptionContext, limits: _Limits) -> BaseException | None:
    """The QueryTimeout for a statement that was stopped, or None for any other error."""
    orig = context.original_exception
    stopping = _STOPPING
    seconds = _timeout_of(context.connection, limits) if context.connection else limits.seconds
    took = (
        f"the query took longer than {seconds:g} s (setting statement_timeout) and was "
        "stopped; narrow the filter (fewer or more selective conditions, a smaller page) "
        "and try again"
    )
    if isinstance(orig, sqlite3.OperationalError) and "interrupted" in str(orig):
        deadline = context.connection.info.get("ferry_deadline") if context.connection else None
        return QueryTimeout(stopping if deadline is not None and deadline.stopped else took)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "57014":  # query_canceled: by statement_timeout, or by us when stopping
        return QueryTimeout(took if "statement timeout" in str(orig) else stopping)
    return None


def make_engine(url: str, statement_timeout: float = 0) -> Engine:
    """An engine with the right settings for the URL's backend (SQLite pragmas, PG pool),
    whose statements stop after ``statement_timeout`` seconds (0: no limit)."""
    url = normalize_url(url)
    parsed = make_url(url)
    limits = _Limits(statement_timeout)
    if parsed.get_backend_name() == "sqlite":
        if (path := sqlite_file(url)) is not None and not parsed.query.get("uri"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # readable by the service's user only (SQLite gives its -wal and -shm files the
            # same mode), whatever the umask
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        if path is not None:
            event.listen(engine, "do_connect", _NoNewFile(path))
        _install_limits(engine, limits)
        return engine
    # JIT compilation costs 0.1-0.3 s per query and pays off only for long analytic
    # queries; the service's queries (catalog filters, job rows) are short.
    options = "-c jit=off"
    if statement_timeout:
        options += f" -c statement_timeout={max(1, round(statement_timeout * 1000))}"
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"options": options},
    )
    _install_limits(engine, limits)
    return engine


def lift_statement_timeout(conn: Connection) -> None:
    """Let the statements of this connection (for its current transaction on PostgreSQL)
    run as long as they need: migrations, maintenance."""
    conn.execution_options(**{_OPTION: 0})
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")


def interrupt_statements(engine: Engine, *, for_good: bool = False) -> None:
    """Stop every statement the engine runs now (the service is stopping); they raise
    :class:`QueryTimeout`. Statements started afterwards run as usual, unless ``for_good``:
    then they raise it at once (the process is about to end)."""
    limits = _ENGINE_LIMITS.get(engine)
    if limits is None:
        return
    limits.stop_before = time.monotonic()
    limits.closed = limits.closed or for_good
    with limits.lock:
        running = list(limits.running)
    for dbapi_conn in running:
        try:
            dbapi_conn.cancel_safe(timeout=5)
        except Exception:  # the statement ended meanwhile, or the server is gone
            continue


def interrupt_thread(engine: Engine, thread: int) -> None:
    """Stop the statement that one thread runs now, if it runs one (its client went
    away); it raises :class:`QueryTimeout`."""
    limits = _ENGINE_LIMITS.get(engine)
    if limits is None:
        return
    with limits.lock:
        target = limits.latest.get(thread)
        if isinstance(target, _Deadline):
            if target.started and target.thread == thread:
                target.at = 0.0  # the progress handler stops it at its next look
            return
        if target is None or limits.running.get(target) != thread:
            return
    try:
        target.cancel_safe(timeout=5)
    except Exception:  # the statement ended meanwhile, or the server is gone
        return


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and health reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
