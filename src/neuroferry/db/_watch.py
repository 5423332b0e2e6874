"""Watching the database the service writes to: a SQLite file that is removed, replaced or
made read-only while the service runs must stop the service from taking work, instead of
letting it write into a file nobody will see again."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete

from neuroferry.db._engine import UNAVAILABLE, sqlite_file
from neuroferry.db._tables import sign_in_attempts
from neuroferry.errors import first_line

log = logging.getLogger(__name__)

#: Told to callers when the SQLite file is gone; the path is in the log and the admin's
#: health report, not here.
LOST_MESSAGE = (
    "the database file was removed or replaced while the service ran; the service takes "
    "no more work: an admin must restore the file and restart the service"
)
#: How old a sign-in throttle row must be before the health check's write removes it.
FORGET_ATTEMPTS_AFTER = timedelta(days=1)
#: Seconds for which the answer of the health check's write is kept.
WRITE_CHECK_EVERY = 2.0


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class DatabaseWatch:
    """The identity (device and inode) of the service's SQLite file, taken when the
    service starts. :meth:`problem` says, cheaply, whether the file is still the one the
    service opened and can be written; :meth:`check_writes` really writes (for health).
    For PostgreSQL there is no file to watch and only :meth:`check_writes` does anything."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = sqlite_file(str(engine.url)) if engine.dialect.name == "sqlite" else None
        self.identity = _identity(self.path) if self.path is not None else None
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._written: tuple[float, str | None] = (-WRITE_CHECK_EVERY, None)

    @property
    def lost(self) -> bool:
        """Whether the file was found removed or replaced (until the service restarts)."""
        return self._lost is not None

    def problem(self) -> str | None:
        """Why the service must not take work now, or None: the SQLite file was removed or
        replaced (for good: only a restart clears it), or cannot be written."""
        if self._lost is not None:
            return self._lost
        if self.path is None or self.identity is None:
            return None
        now = _identity(self.path)
        if now != self.identity:
            with self._lock:
                if self._lost is None:
                    how = "removed" if now is None else "replaced by another file"
                    log.error(
                        "the database file %s was %s while the service ran; no more work is "
                        "taken until it is restored and the service restarted",
                        self.path,
                        how,
                    )
                    self._lost = LOST_MESSAGE
            return self._lost
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            return (
                "the database file cannot be written (its permissions or its file system "
                "changed); the service takes no work until an admin fixes that"
            )
        return None

    def check_writes(self) -> str | None:
        """Write to the database (forget day-old sign-in throttle rows) and say why that
        failed, or None if it worked. The answer is kept for :data:`WRITE_CHECK_EVERY`
        seconds, so that frequent health checks do not each write."""
        if problem := self.problem():
            return problem
        with self._lock:
            checked, answer = self._written
        if time.monotonic() - checked < WRITE_CHECK_EVERY:
            return answer
        cutoff = datetime.now(UTC) - FORGET_ATTEMPTS_AFTER
        answer = None
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(sign_in_attempts).where(sign_in_attempts.c.updated < cutoff))
        except UNAVAILABLE as exc:
            cause = first_line(getattr(exc, "orig", None) or exc)
            answer = f"the database cannot be written: {cause}"
        with self._lock:
            self._written = (time.monotonic(), answer)
        return answer or self.problem()
