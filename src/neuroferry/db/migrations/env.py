"""Alembic environment: the engine comes from ``config.attributes`` (see ``_migrate.py``)."""

from __future__ import annotations

from alembic import context

from neuroferry.db._engine import lift_statement_timeout
from neuroferry.db._tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    lift_statement_timeout(connection)  # a migration takes as long as it takes
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
