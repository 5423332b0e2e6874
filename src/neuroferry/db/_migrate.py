"""Alembic migrations, run from code: ``ferry db upgrade`` and at ``ferry serve`` start-up."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from neuroferry.db._engine import UNAVAILABLE, lift_statement_timeout, make_engine, redact
from neuroferry.errors import DatabaseError, first_line

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The newest migration this version of neuroferry knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot read the schema version of {redact(str(engine.url))}: {exc.__class__.__name__}"
        ) from exc


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision``; return the revision it is at afterwards."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        command.upgrade(_config(engine), revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate {redact(str(engine.url))}: {first_line(exc)}") from exc
    return current_revision(engine)


def refresh_statistics(engine: Engine) -> None:
    """Give SQLite's query planner fresh table statistics (it keeps none by itself, and
    without them picks poor indexes once tables grow); PostgreSQL's autovacuum does this."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.begin() as conn:
            lift_statement_timeout(conn)
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
    except UNAVAILABLE as exc:  # read-only or gone: health says so; statistics can wait
        log.warning("cannot refresh the database statistics: %s", first_line(exc))
