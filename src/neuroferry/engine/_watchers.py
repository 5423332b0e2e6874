"""Periodic watchers: functions the orchestrator calls every so often (a drop-box's poll of
its submit files, say), each run by one orchestrator at a time.

A watcher is registered once (:func:`register_watcher`) with its interval, read from the
settings. Every active orchestrator looks at the registered watchers; one that is due is
run by the orchestrator that takes its lease: a row of ``watcher_leases`` that says who
runs it now and when it is due next. The lease of an orchestrator that stopped is free
again as soon as its heartbeat row is gone (as for the tasks it was running). A run that
raises is logged and tried again at the next interval; it never stops the orchestrator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.config import Settings
from neuroferry.db import orchestrators, transaction, watcher_leases
from neuroferry.engine._advance import now_utc
from neuroferry.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatcherContext:
    """What a watcher gets: the service's settings, database and catalog, and ``wake``,
    which tells this process's orchestrator that there is new work at once."""

    settings: Settings
    db: Engine
    catalog: Any
    wake: Callable[[], None]
    orchestrator_id: str


@dataclass(frozen=True)
class Watcher:
    """A function run every ``interval(settings)`` seconds by one orchestrator at a time."""

    name: str
    fn: Callable[[WatcherContext], Any]
    interval: Callable[[Settings], float]


_registered: dict[str, Watcher] = {}


def register_watcher(watcher: Watcher) -> None:
    """Add ``watcher`` (or replace the one of that name) for every orchestrator of this
    process."""
    if not watcher.name or len(watcher.name) > 64:
        raise ConfigError(f"watcher name {watcher.name!r}: give 1 to 64 characters")
    _registered[watcher.name] = watcher


def registered_watchers() -> list[Watcher]:
    """The registered watchers, by name."""
    return [_registered[name] for name in sorted(_registered)]


def take_watcher_lease(engine: Engine, name: str, orchestrator_id: str) -> bool:
    """Take the lease of the watcher ``name`` if it is due and nobody (alive) holds it;
    whether this orchestrator now holds it."""
    now = now_utc()
    with transaction(engine) as conn:
        exists = conn.execute(
            select(watcher_leases.c.name).where(watcher_leases.c.name == name)
        ).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(watcher_leases).values(name=name, next_run=now, runs=0))
            except IntegrityError:  # another orchestrator made the row just now
                pass
        live = select(orchestrators.c.id)
        taken = conn.execute(
            update(watcher_leases)
            .where(
                watcher_leases.c.name == name,
                watcher_leases.c.next_run <= now,
                or_(
                    watcher_leases.c.holder.is_(None),
                    watcher_leases.c.holder == orchestrator_id,
                    watcher_leases.c.holder.not_in(live),
                ),
            )
            .values(holder=orchestrator_id, started=now)
        ).rowcount
    return bool(taken)


def release_watcher_lease(
    engine: Engine, name: str, orchestrator_id: str, interval: float, error: str | None
) -> None:
    """Give the lease back after a run: due again ``interval`` seconds from now."""
    now = now_utc()
    with transaction(engine) as conn:
        conn.execute(
            update(watcher_leases)
            .where(watcher_leases.c.name == name, watcher_leases.c.holder == orchestrator_id)
            .values(
                holder=None,
                finished=now,
                next_run=now + timedelta(seconds=interval),
                runs=watcher_leases.c.runs + 1,
                last_error=error,
            )
        )


def watcher_states(engine: Engine) -> list[dict[str, Any]]:
    """Every watcher's lease row: who runs it, when it ran and is due, its last error."""
    with engine.connect() as conn:
        rows = conn.execute(select(watcher_leases).order_by(watcher_leases.c.name))
        return [dict(r) for r in rows.mappings()]


def run_watcher(watcher: Watcher, ctx: WatcherContext) -> None:
    """Run ``watcher`` under its lease (taken already), then give the lease back; an
    error is logged and recorded with the lease, never raised."""
    error: str | None = None
    try:
        watcher.fn(ctx)
    except Exception as exc:
        log.exception("watcher %s failed; it runs again at its next interval", watcher.name)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        release_watcher_lease(
            ctx.db, watcher.name, ctx.orchestrator_id, watcher.interval(ctx.settings), error
        )
    except Exception as exc:  # the database is away: the lease passes on when we stop
        log.warning("could not give back the lease of watcher %s: %s", watcher.name, exc)
