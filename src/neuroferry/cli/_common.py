"""What every command that talks to the service shares: the ``--token`` option, the
client, the ``--format`` check and how an invalid input's problems are shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

TOKEN = typer.Option(None, "--token", help="API token (default: FERRY_TOKEN, token.json).")
FORMAT = typer.Option("table", "--format", "-f", help="table or json.")


def client_for(token: str | None) -> Any:
    """The service's client, with ``token`` (or the default token)."""
    from neuroferry.client import Client

    return Client(token=token)


def check_format(value: str, allowed: tuple[str, ...] = ("table", "json")) -> str:
    """``value`` if it is one of the ``allowed`` output formats; else a bad parameter."""
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not a format; allowed: {', '.join(allowed)}")
    return value


def show_problems(exc: Any) -> None:
    """Each problem an :class:`~neuroferry.errors.InvalidInput` lists, on stderr: where
    (job, row), the field, the message."""
    for p in getattr(exc, "problems", None) or []:
        where = f"job {p['job']}" if p.get("job") else ""
        if p.get("row"):
            where += f" (row {p['row']})" if where else f"row {p['row']}"
        field = f"{p['field']}: " if p.get("field") else ""
        typer.echo(f"  {where + ': ' if where else ''}{field}{p.get('message')}", err=True)


def read_file(path: Path) -> str:
    """The text of a file the command was given; else a bad parameter that names it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON; else a bad parameter that names ``what`` it came from."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc
