"""Slowing down password guessing, in the database, so that every service process shares
it: each sign-in attempt must first take its turn for its user name and for its address.

Taking a turn is one atomic write per key (``UPDATE … WHERE key = ? AND next_at <= now``,
or inserting the key's row): of attempts that arrive together, one gets the turn and the
others wait for theirs or are refused, without their password being checked. A failed
attempt sets the key's next turn ``step`` seconds later per recent failure (up to
``most``); a success forgets the user name's failures and frees the address's turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from neuroferry.db import sign_in_attempts as attempts
from neuroferry.db import utc

MAX_KEY = 512


def sign_in_keys(name: str, address: str, *, token: bool = False) -> list[str]:
    """The keys an attempt takes turns on: its (normalised) user name, unless it signs in
    with a token, and its address."""
    keys = [f"address:{address}"[:MAX_KEY]]
    if not token:
        keys.append(f"user:{name.strip().casefold()}"[:MAX_KEY])
    return _ordered(keys)


def _order(key: str) -> tuple[bool, str]:
    return (not key.startswith("user:"), key)


def _ordered(keys: Iterable[str]) -> list[str]:
    """User names first, then addresses: one order everywhere, so no deadlocks, and an
    attempt on a name being tried right now is told so whatever its address."""
    return sorted(keys, key=_order)


class Busy(Exception):
    """``key``'s next turn is ``wait`` seconds away; ``held``: another attempt holds it
    (its password is being checked)."""

    def __init__(self, key: str, wait: float, held: bool) -> None:
        super().__init__(f"the next sign-in attempt for {key} may start in {wait:.1f} s")
        self.key, self.wait, self.held = key, wait, held


class Throttle:
    """Turns for sign-in attempts in the ``sign_in_attempts`` table. A turn is held for
    up to ``hold`` seconds while the password is checked; failures older than ``window``
    seconds are forgotten."""

    def __init__(
        self,
        engine: Engine,
        *,
        step: float = 0.5,
        most: float = 8.0,
        hold: float = 30.0,
        window: float = 600.0,
    ) -> None:
        self.engine = engine
        self.step, self.most, self.hold, self.window = step, most, hold, window

    def delay(self, failures: int) -> float:
        """Seconds between attempts after ``failures`` recent failures."""
        return min(self.most, self.step * failures)

    def _insert(self, conn: Connection, key: str, now: datetime) -> bool:
        """Insert ``key``'s row, holding its turn; False if it exists already."""
        values = {"key": key, "failures": 0, "next_at": now + self._hold, "updated": now}
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = insert(attempts).values(**values).on_conflict_do_nothing()
        return conn.execute(statement.returning(attempts.c.key)).first() is not None

    @property
    def _hold(self) -> timedelta:
        return timedelta(seconds=self.hold)

    def take(self, keys: Iterable[str]) -> None:
        """Take the turn of every key at once, or none: :class:`Busy` with the seconds
        until the next turn if another attempt holds one or its wait has not passed."""
        now = datetime.now(UTC)
        forgotten = now - timedelta(seconds=self.window)
        with self.engine.begin() as conn:
            for key in _ordered(keys):
                taken = conn.execute(
                    update(attempts)
                    .where(attempts.c.key == key, attempts.c.next_at <= now)
                    .values(
                        next_at=now + self._hold,
                        failures=case(
                            (attempts.c.updated < forgotten, 0), else_=attempts.c.failures
                        ),
                        updated=now,
                    )
                ).rowcount
                if not taken and not self._insert(conn, key, now):
                    next_at = conn.execute(
                        select(attempts.c.next_at).where(attempts.c.key == key)
                    ).scalar()
                    wait = max((utc(next_at) - now).total_seconds() if next_at else 0.0, 0.1)
                    # raising rolls back the turns taken so far
                    raise Busy(key, wait, held=wait > self.most)

    def failed(self, keys: Iterable[str]) -> None:
        """Count a failed attempt: each key's next turn comes after its delay."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for key in _ordered(keys):
                failures = conn.execute(
                    select(attempts.c.failures).where(attempts.c.key == key)
                ).scalar()
                failures = min(int(failures or 0) + 1, 1_000_000)
                next_at = now + timedelta(seconds=self.delay(failures))
                values = {"failures": failures, "next_at": next_at, "updated": now}
                if not conn.execute(
                    update(attempts).where(attempts.c.key == key).values(**values)
                ).rowcount:
                    self._insert(conn, key, now)
                    conn.execute(update(attempts).where(attempts.c.key == key).values(**values))

    def succeeded(self, keys: Iterable[str]) -> None:
        """A successful attempt: the user name's failures are forgotten; the address's
        turn is free again (its failures stay until ``window`` passes without any)."""
        now = datetime.now(UTC)
        keys = _ordered(keys)
        with self.engine.begin() as conn:
            users = [k for k in keys if k.startswith("user:")]
            if users:
                conn.execute(delete(attempts).where(attempts.c.key.in_(users)))
            others = [k for k in keys if not k.startswith("user:")]
            if others:
                self._free(conn, others, now)

    def release(self, keys: Iterable[str]) -> None:
        """Give the turn back unused (the attempt ended before its password was checked)."""
        with self.engine.begin() as conn:
            self._free(conn, _ordered(keys), datetime.now(UTC))

    @staticmethod
    def _free(conn: Connection, keys: list[str], now: datetime) -> None:
        conn.execute(
            update(attempts).where(attempts.c.key.in_(keys)).values(next_at=now, updated=now)
        )
