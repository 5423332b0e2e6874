"""``ferry db``: database migrations."""

from __future__ import annotations

import typer

app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Migration to upgrade to."),
) -> None:
    """Migrate the database (FERRY_DATABASE_URL, SQLite under FERRY_HOME by default)."""
    from neuroferry.config import get_settings
    from neuroferry.db import redact, upgrade

    settings = get_settings()
    at = upgrade(settings.database_url, revision)
    typer.echo(f"{redact(settings.database_url)} is at revision {at}")


@app.command("current")
def current_command() -> None:
    """Print the database's migration revision and the newest one this version knows."""
    from neuroferry.config import get_settings
    from neuroferry.db import current_revision, head_revision, make_engine, redact

    settings = get_settings()
    at = current_revision(make_engine(settings.database_url))
    typer.echo(
        f"{redact(settings.database_url)}: revision {at or 'none'}, newest {head_revision()}"
    )
