"""``ferry analysis register | history | rollback | delete``: command analyses, which
admins register and version as job types are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from neuroferry.cli._common import FORMAT, TOKEN, check_format, client_for, parse_json, read_file
from neuroferry.cli._output import cell, print_json, print_table, when

COMMENT = typer.Option(None, "--comment", "-m", help="Why (kept in the history).")
NAME = typer.Argument(..., help="The command analysis.")


def _saved(result: dict[str, Any], verb: str) -> None:
    name, version = result["name"], result["version"]
    if result.get("changed", True):
        typer.echo(f"{verb} command analysis {name}: version {version}")
    else:
        typer.echo(f"command analysis {name} unchanged: version {version} is the same")


def _fields(file: Path | None, option: str) -> dict[str, Any]:
    """The field definitions of ``file`` (a JSON object); errors name the option."""
    if file is None:
        return {}
    found = parse_json(read_file(file), str(file))
    if not isinstance(found, dict):
        raise typer.BadParameter(
            f"{file} must hold a JSON object of field name to "
            '{"type": ..., "default": ..., "minimum": ..., "maximum": ..., "description": ...}',
            param_hint=option,
        )
    return found


def register_command(
    name: str = typer.Argument(..., help="The analysis's name (new or existing)."),
    command: str = typer.Option(
        ...,
        "--command",
        help="The command line, with %INPUT_SOURCE, %OUTPUT_LOCATION, %JOB_SETTINGS, %IMAGE, "
        "%IMAGE_VERSION and %S3_LOCATION (no shell runs it).",
    ),
    image: str | None = typer.Option(None, "--image", help="The container image it runs in."),
    image_version: str | None = typer.Option(None, "--image-version", help="The image's tag."),
    parameters: Path | None = typer.Option(
        None, "--parameters", help="JSON file: parameter name to its type, default, bounds."
    ),
    outputs: Path | None = typer.Option(
        None, "--outputs", help="JSON file: the outputs the command writes to outputs.json."
    ),
    description: str = typer.Option("", "--description", help="What it does."),
    comment: str | None = COMMENT,
    token: str | None = TOKEN,
) -> None:
    """Register a command analysis, or save a new version of it (admins)."""
    definition: dict[str, Any] = {
        "description": description,
        "command_script": command,
        "image": image,
        "image_version": image_version,
        "parameters": _fields(parameters, "--parameters"),
        "outputs": _fields(outputs, "--outputs"),
    }
    _saved(client_for(token).analyses_register(name, definition, comment), "registered")


def history_command(name: str = NAME, fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """List every version of a command analysis, oldest first."""
    versions = client_for(token).analyses_history(name)
    if check_format(fmt) == "json":
        print_json(versions, indent=2)
        return
    print_table(
        ["version", "saved", "by", "command", "image", "comment", "deleted"],
        [
            [
                str(v["version"]),
                when(v["created"]),
                v.get("created_by") or "",
                cell(v["settings"].get("command_script") or "", 50),
                v["settings"].get("image") or "",
                cell(v.get("comment") or "", 40),
                "deleted" if v.get("deleted") else "",
            ]
            for v in versions
        ],
    )


def rollback_command(
    name: str = NAME,
    version: int = typer.Argument(..., min=1, help="The version to make current again."),
    comment: str | None = COMMENT,
    token: str | None = TOKEN,
) -> None:
    """Make an old version of a command analysis current again, as a new version (admins)."""
    _saved(client_for(token).analyses_rollback(name, version, comment), "rolled back")


def delete_command(
    name: str = NAME, comment: str | None = COMMENT, token: str | None = TOKEN
) -> None:
    """Delete a command analysis (admins); its history stays, and `rollback` revives it."""
    result = client_for(token).analyses_delete(name, comment)
    typer.echo(f"deleted command analysis {result['name']}: version {result['version']}")


COMMANDS: dict[str, Callable[..., None]] = {
    "register": register_command,
    "history": history_command,
    "rollback": rollback_command,
    "delete": delete_command,
}
