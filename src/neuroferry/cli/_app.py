"""The Typer app, its command groups, and the one place that turns errors into exit codes."""

from __future__ import annotations

import sys

import typer

from neuroferry import __version__
from neuroferry.errors import ConfigError, FerryError, InvalidInput

app = typer.Typer(
    name="ferry",
    help="neuroferry: move neuroscience data into object storage with its metadata.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit codes, also listed in ``ferry --help`` epilogs and docs/cli.md.
EXIT_FAILED_ITEMS = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


def _version(value: bool) -> None:
    if value:
        typer.echo(f"neuroferry {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """neuroferry: move neuroscience data into object storage with its metadata."""


def _register() -> None:
    from neuroferry.cli import catalog, db, serve, stores

    app.add_typer(db.app, name="db")
    app.add_typer(catalog.app, name="catalog")
    from neuroferry.cli import jobs

    app.add_typer(jobs.app, name="jobs")
    app.command("template")(jobs.template_command)
    app.command("serve")(serve.serve)
    app.command("orchestrator")(serve.orchestrator)
    app.command("sync", help=stores.SYNC_HELP)(stores.sync_command)
    app.command("ls")(stores.ls_command)

    from neuroferry.cli import accounts

    app.add_typer(accounts.users_app, name="users")
    app.add_typer(accounts.tokens_app, name="tokens")

    from neuroferry.cli import job_types

    app.add_typer(job_types.app, name="job-types")
    app.add_typer(job_types.projects_app, name="projects")

    from neuroferry.cli import ingest

    app.add_typer(ingest.app, name="ingest")

    from neuroferry.cli import analysis, command_analyses

    app.add_typer(analysis.app, name="analysis")
    for name, command in command_analyses.COMMANDS.items():
        analysis.app.command(name)(command)

    from neuroferry.cli import dropbox

    app.add_typer(dropbox.app, name="dropbox")


_register()


def exit_code(exc: FerryError) -> int:
    """The exit code for an error: 2 for the caller's mistakes, 3 when something is unavailable."""
    return EXIT_BAD_INPUT if isinstance(exc, InvalidInput | ConfigError) else EXIT_UNAVAILABLE


def main() -> None:
    """Entry point of the ``ferry`` command."""
    try:
        app()
    except FerryError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(EXIT_INTERRUPTED)
