"""The one exception tree of neuroferry.

Services raise these with the values involved and what to do next; only ``web/errors.py``
turns them into HTTP responses and only ``cli/`` into exit codes. Leaves also subclass the
matching builtin so that callers who do not know neuroferry can still catch them.
"""

from __future__ import annotations

from typing import Any


class FerryError(Exception):
    """Base of every error neuroferry raises on purpose."""

    #: HTTP status used by the web layer; 4xx for the caller's mistakes.
    status_code = 500

    #: Keys the web layer adds to the JSON error body (the original service's
    #: ``message`` and ``data`` on the routes its scripts call); None: none.
    envelope: dict[str, Any] | None = None


class ConfigError(FerryError, ValueError):
    """The configuration (environment, ``ferry.toml``) is invalid."""

    status_code = 500


class InvalidInput(FerryError, ValueError):
    """The caller sent something that is not allowed; the message says what is.

    ``problems`` lists each problem separately when there are several (``job``, ``row``,
    ``field``, ``message``), for callers that show them next to the input."""

    status_code = 422

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class NotFound(FerryError, LookupError):
    """A named thing (store path, job, document) does not exist."""

    status_code = 404


class StoreError(FerryError, OSError):
    """A store could not be reached or refused an operation."""

    status_code = 502


class StoreNotFound(StoreError, NotFound):
    """The source folder, bucket or prefix does not exist."""

    status_code = 404


class StoreUnreachable(StoreError, ConnectionError):
    """A store did not answer (connection refused, DNS, timeout)."""

    status_code = 503


class StoreAuthError(StoreError, PermissionError):
    """The store rejected the credentials."""

    status_code = 403


class UnsafePath(InvalidInput):
    """A path would escape its root (``..``, absolute, control characters, symlinks)."""


class DatabaseError(FerryError, RuntimeError):
    """The database could not be reached or migrated."""

    status_code = 503


class QueryTimeout(FerryError, TimeoutError):
    """A database statement ran longer than the statement timeout and was stopped (or the
    service stopped it because it is shutting down)."""

    status_code = 503


class ExecutorError(FerryError, RuntimeError):
    """The Dask cluster could not be started or reached."""

    status_code = 503


class QueryError(InvalidInput):
    """A catalog filter, projection or sort that is malformed or not supported."""


class Unauthorized(FerryError, PermissionError):
    """No valid API token was given."""

    status_code = 401


class Forbidden(FerryError, PermissionError):
    """The token is valid, but its user may not do this."""

    status_code = 403


class NotSupported(InvalidInput):
    """The request is well formed but asks for what the thing it names cannot do (a
    presigned URL of a local folder)."""

    status_code = 400


class Conflict(FerryError, RuntimeError):
    """The request clashes with the current state of something (an asset another
    unfinished job is writing); the message says which and what to do."""

    status_code = 409


class ServiceUnavailable(FerryError, ConnectionError):
    """The neuroferry service could not be reached."""

    status_code = 503


class SourceDataError(InvalidInput):
    """Source data (an image, a tile, a TIFF, an array) is missing, unreadable or not as
    configured; ``path`` names the file and ``index`` the position (``t``, ``z``, ``row``…)."""

    def __init__(
        self, message: str, path: str | None = None, index: dict[str, int] | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.index = dict(index or {})


def first_line(exc: BaseException, *, typed: bool = False) -> str:
    """The first line of an exception's message (after its type's name and a colon with
    ``typed``), or its type's name when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return f"{type(exc).__name__}: {line}" if typed else line


def validation_problems(exc: Any, whole: str | None = None, *, skip: int = 0) -> list[str]:
    """Each error of a pydantic validation (``exc.errors()``) as ``field.path: message``;
    an error about the whole value gets ``whole`` as its field, or is only the message.
    ``skip`` leaves out the first parts of each path (FastAPI's ``body``, ``query``)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in tuple(err.get("loc", ()))[skip:]) or whole
        problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return problems
