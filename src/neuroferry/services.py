"""What a running service holds, wired together for ``ferry serve``, ``ferry orchestrator``
and the web app: settings, database engine, stores, catalog, and (unless it is a web-only
process) the executor and the orchestrator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from neuroferry import __version__
from neuroferry.catalog import Catalog, FilterLimits
from neuroferry.config import Settings
from neuroferry.db import (
    DatabaseWatch,
    current_revision,
    head_revision,
    interrupt_statements,
    make_engine,
    redact,
    refresh_statistics,
    upgrade,
)
from neuroferry.engine import Executor, Orchestrator, check_kind_settings
from neuroferry.errors import first_line
from neuroferry.stores import Store, open_store


def open_catalog(engine: Engine, settings: Settings) -> Catalog:
    """The catalog on ``engine``, with the filter limits the settings give."""
    limits = FilterLimits(
        max_bytes=settings.catalog_max_filter_bytes,
        max_nodes=settings.catalog_max_filter_nodes,
        max_depth=settings.catalog_max_filter_depth,
        max_list=settings.catalog_max_in_values,
        max_complexity=settings.catalog_max_filter_complexity,
    )
    return Catalog(engine, limits, max_distinct=settings.catalog_max_distinct)


@dataclass
class Services:
    """One process's service: what :meth:`start` opened, and :meth:`close` closes."""

    settings: Settings
    engine: Engine
    store: Store
    executor: Executor | None
    catalog: Catalog
    log_store: Store
    orchestrator: Orchestrator | None = None
    #: the identity of the SQLite file, taken at start; write requests and the
    #: orchestrator stop when it is lost (see :meth:`DatabaseWatch.problem`)
    watch: DatabaseWatch = field(init=False)

    def __post_init__(self) -> None:
        self.watch = DatabaseWatch(self.engine)

    @classmethod
    def start(cls, settings: Settings, *, orchestrate: bool = True) -> Services:
        """Migrate the database, open the stores and, unless told not to, start the
        executor and the orchestrator that runs jobs."""
        check_kind_settings(settings)
        engine = make_engine(settings.database_url, settings.statement_timeout)
        try:
            upgrade(engine)
            refresh_statistics(engine)
            store = open_store(settings.store_url, create=True, settings=settings)
            log_store = open_store(settings.log_store_url, create=True, settings=settings)
            executor = Executor.start(settings) if orchestrate else None
        except BaseException:
            engine.dispose()
            raise
        catalog = open_catalog(engine, settings)
        services = cls(settings, engine, store, executor, catalog, log_store)
        if executor is not None:
            import neuroferry.dropbox  # noqa: F401  (registers the drop-box watcher)
            from neuroferry.notify import notify_job

            services.orchestrator = Orchestrator(
                settings,
                engine,
                executor,
                catalog=catalog,
                notifier=notify_job,
                guard=services.watch.problem,
            )
            services.orchestrator.start()
        return services

    def wake(self) -> None:
        """Tell this process's orchestrator, if it runs one, that there is new work, so that
        it does not wait for its next poll; other processes' orchestrators find it then."""
        if self.orchestrator is not None:
            self.orchestrator.wake()

    def close(self) -> None:
        if self.orchestrator is not None:
            self.orchestrator.stop()
        if self.executor is not None:
            self.executor.close()
        interrupt_statements(self.engine)  # requests still running: their answer is 503
        self.engine.dispose()

    def _database(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "backend": self.engine.dialect.name,
            "url": redact(self.settings.database_url),
            "head": head_revision(),
        }
        if self.watch.path is not None:
            report["file"] = str(self.watch.path)
        if lost := self.watch.problem():  # before any query: one could make a new file
            report.update(ok=False, error=lost)
            return report
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            report["revision"] = current_revision(self.engine)
            report["ok"] = report["revision"] == report["head"]
            if not report["ok"]:
                report["error"] = "schema is not at the newest migration: run `ferry db upgrade`"
            elif problem := self.watch.check_writes():
                report.update(ok=False, error=problem)
        except Exception as exc:  # reported, never raised: health must always answer
            report.update(ok=False, error=first_line(exc))
        return report

    async def _store(self) -> dict[str, Any]:
        report: dict[str, Any] = {"url": self.store.url}
        try:
            await asyncio.wait_for(asyncio.to_thread(self.store.check), 10)
            report["ok"] = True
        except Exception as exc:  # reported, never raised
            report.update(ok=False, error=first_line(exc))
        return report

    async def health(self) -> dict[str, Any]:
        """Database, store and (where this process runs jobs) executor and orchestrator
        status; ``status`` is ``ok`` only if every part is."""
        database = await asyncio.to_thread(self._database)
        store = await self._store()
        parts = {"database": database, "store": store}
        if self.executor is not None:
            parts["executor"] = await asyncio.to_thread(self.executor.status)
        if self.orchestrator is not None:
            parts["orchestrator"] = {
                "ok": True,
                "id": self.orchestrator.id,
                "role": "active" if self.orchestrator.active else "standby",
            }
        return {
            "status": "ok" if all(p["ok"] for p in parts.values()) else "degraded",
            "version": __version__,
            "mode": self.settings.mode,
            **parts,
        }
