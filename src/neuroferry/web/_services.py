"""What the running service holds: settings, database engine, default store, executor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import obstore
from sqlalchemy import Engine, text

from neuroferry import __version__
from neuroferry.catalog import Catalog
from neuroferry.config import Settings
from neuroferry.db import current_revision, head_revision, make_engine, redact, upgrade
from neuroferry.engine import Executor
from neuroferry.stores import Store, open_store


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: Store
    executor: Executor
    catalog: Catalog

    @classmethod
    def start(cls, settings: Settings) -> Services:
        """Migrate the database, open the default store, start the executor."""
        engine = make_engine(settings.database_url)
        try:
            upgrade(engine)
            store = open_store(settings.store_url, create=True, settings=settings)
            return cls(settings, engine, store, Executor.start(settings), Catalog(engine))
        except BaseException:
            engine.dispose()
            raise

    def close(self) -> None:
        self.executor.close()
        self.engine.dispose()

    def _database(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "backend": self.engine.dialect.name,
            "url": redact(self.settings.database_url),
            "head": head_revision(),
        }
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            report["revision"] = current_revision(self.engine)
            report["ok"] = report["revision"] == report["head"]
            if not report["ok"]:
                report["error"] = "schema is not at the newest migration: run `ferry db upgrade`"
        except Exception as exc:  # reported, never raised: health must always answer
            report.update(ok=False, error=str(exc).splitlines()[0])
        return report

    async def _store(self) -> dict[str, Any]:
        report: dict[str, Any] = {"url": self.store.url}
        try:
            listing = asyncio.to_thread(obstore.list_with_delimiter, self.store.raw)
            await asyncio.wait_for(listing, 10)
            report["ok"] = True
        except Exception as exc:  # reported, never raised
            report.update(ok=False, error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        return report

    async def health(self) -> dict[str, Any]:
        """Database, store and executor status; ``status`` is ``ok`` only if all three are."""
        database = await asyncio.to_thread(self._database)
        store = await self._store()
        executor = await asyncio.to_thread(self.executor.status)
        parts = {"database": database, "store": store, "executor": executor}
        return {
            "status": "ok" if all(p["ok"] for p in parts.values()) else "degraded",
            "version": __version__,
            "mode": self.settings.mode,
            **parts,
        }
