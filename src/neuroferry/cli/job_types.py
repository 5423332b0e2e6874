"""``ferry job-types`` (versioned presets of task settings) and ``ferry projects``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from neuroferry.cli._common import (
    FORMAT,
    TOKEN,
    check_format,
    client_for,
    parse_json,
    read_file,
)
from neuroferry.cli._output import cell, print_json, print_table, when

app = typer.Typer(
    help="Job types: named, versioned presets of task settings (admins change them).",
    no_args_is_help=True,
)
projects_app = typer.Typer(
    help="Project names uploads may give; none listed means any name (admins change them).",
    no_args_is_help=True,
)

KIND = typer.Option("upload", "--kind", help="The job kind the job type belongs to.")
COMMENT = typer.Option(None, "--comment", "-m", help="Why (kept in the history).")


def _read_settings(file: Path) -> dict[str, Any]:
    """A JSON object from ``file`` (``-``: standard input); errors name the file."""
    text = sys.stdin.read() if str(file) == "-" else read_file(file)
    settings = parse_json(text, str(file))
    if not isinstance(settings, dict):
        raise typer.BadParameter(
            f"{file} must hold a JSON object of task name to task settings, "
            f"not {type(settings).__name__}"
        )
    return settings


def _saved(result: dict[str, Any], verb: str) -> None:
    name, version = result["name"], result["version"]
    if result.get("changed", True):
        typer.echo(f"{verb} job type {name} ({result['kind']}): version {version}")
    else:
        typer.echo(f"job type {name} ({result['kind']}) unchanged: version {version} has them")


@app.command("list")
def list_command(
    kind: str | None = typer.Option(None, "--kind", help="Only job types of this kind."),
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """List the job types (their current versions)."""
    found = client_for(token).job_types_list(kind)
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    print_table(
        ["kind", "name", "version", "saved", "by", "comment"],
        [
            [
                t["kind"],
                t["name"],
                str(t["version"]),
                when(t["created"]),
                t.get("created_by") or "",
                cell(t.get("comment") or "", 60),
            ]
            for t in found
        ],
    )


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="The job type."),
    version: int | None = typer.Option(None, "--version", "-v", min=1, help="Default: current."),
    kind: str = KIND,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Print a job type's settings (the current version, or --version)."""
    found = client_for(token).job_types_get(name, version, kind)
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    by = f" by {found['created_by']}" if found.get("created_by") else ""
    note = f": {found['comment']}" if found.get("comment") else ""
    deleted = " (deleted)" if found.get("deleted") else ""
    typer.echo(
        f"# {found['name']} ({found['kind']}) version {found['version']}{deleted}, "
        f"saved {when(found['created'])}{by}{note}",
        err=True,
    )
    print_json(found["settings"], indent=2)


@app.command("set")
def set_command(
    name: str = typer.Argument(..., help="The job type (new or existing)."),
    file: Path = typer.Argument(
        ..., help="JSON object of task name to task settings; - reads stdin."
    ),
    comment: str | None = COMMENT,
    kind: str = KIND,
    token: str | None = TOKEN,
) -> None:
    """Save FILE as the next version of a job type (admins)."""
    settings = _read_settings(file)
    _saved(client_for(token).job_types_put(name, settings, comment, kind), "saved")


@app.command("history")
def history_command(
    name: str = typer.Argument(..., help="The job type."),
    kind: str = KIND,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """List every version of a job type, oldest first."""
    versions = client_for(token).job_types_history(name, kind)
    if check_format(fmt) == "json":
        print_json(versions, indent=2)
        return
    print_table(
        ["version", "saved", "by", "comment", "deleted"],
        [
            [
                str(v["version"]),
                when(v["created"]),
                v.get("created_by") or "",
                cell(v.get("comment") or "", 60),
                "deleted" if v.get("deleted") else "",
            ]
            for v in versions
        ],
    )


@app.command("diff")
def diff_command(
    name: str = typer.Argument(..., help="The job type."),
    old: int | None = typer.Argument(None, min=0, help="From version (default: before NEW)."),
    new: int | None = typer.Argument(None, min=0, help="To version (default: the newest)."),
    kind: str = KIND,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Show what changed between two versions of a job type (0: empty settings)."""
    diff = client_for(token).job_types_diff(name, old, new, kind)
    if check_format(fmt) == "json":
        print_json(diff, indent=2)
        return
    changes = diff["changes"]
    typer.echo(
        f"{diff['name']}: version {diff['from']} → {diff['to']}: {len(changes)} changes", err=True
    )
    for change in changes:
        path, what = change["path"], change["change"]
        if what == "added":
            typer.echo(f"+ {path}: {json.dumps(change['new'], default=str)}")
        elif what == "removed":
            typer.echo(f"- {path}: {json.dumps(change['old'], default=str)}")
        else:
            old_value = json.dumps(change["old"], default=str)
            new_value = json.dumps(change["new"], default=str)
            typer.echo(f"~ {path}: {old_value} → {new_value}")


@app.command("rollback")
def rollback_command(
    name: str = typer.Argument(..., help="The job type."),
    version: int = typer.Argument(..., min=1, help="The version to make current again."),
    comment: str | None = COMMENT,
    kind: str = KIND,
    token: str | None = TOKEN,
) -> None:
    """Make an old version's settings current again, as a new version (admins)."""
    _saved(client_for(token).job_types_rollback(name, version, comment, kind), "rolled back")


@app.command("delete")
def delete_command(
    name: str = typer.Argument(..., help="The job type."),
    comment: str | None = COMMENT,
    kind: str = KIND,
    token: str | None = TOKEN,
) -> None:
    """Delete a job type (admins); its history stays, and `set` or `rollback` revive it."""
    result = client_for(token).job_types_delete(name, comment, kind)
    typer.echo(f"deleted job type {result['name']} ({result['kind']}): version {result['version']}")


@projects_app.command("list")
def projects_list_command(fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """List the project names uploads may give."""
    found = client_for(token).projects_list()
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    if not found:
        typer.echo("no projects listed: uploads may give any project name", err=True)
        return
    print_table(
        ["name", "added", "by", "institution", "investigators"],
        [
            [
                p["name"],
                when(p["created"]),
                p.get("created_by") or "",
                p.get("institution") or "",
                ", ".join(p.get("investigators") or []),
            ]
            for p in found
        ],
    )


@projects_app.command("add")
def projects_add_command(
    name: str = typer.Argument(..., help="The project's name."), token: str | None = TOKEN
) -> None:
    """Add a project name (admins); once one is listed, uploads must give a listed one."""
    added = client_for(token).projects_add(name)
    typer.echo(f"added project {added['name']}")


@projects_app.command("set")
def projects_set_command(
    name: str = typer.Argument(..., help="The project's name."),
    institution: str | None = typer.Option(
        None, "--institution", help="An organization's name or abbreviation, e.g. AIND."
    ),
    funder: list[str] = typer.Option(
        [],
        "--funder",
        help="A funding source: FUNDER[:GRANT_NUMBER]; repeat for several (replaces them).",
    ),
    investigator: list[str] = typer.Option(
        [], "--investigator", help="An investigator's name; repeat for several (replaces them)."
    ),
    token: str | None = TOKEN,
) -> None:
    """Set the facts uploads write into the project's data descriptions (admins):
    institution, funding sources, investigators. Facts not given are kept."""
    facts: dict[str, Any] = {}
    if institution is not None:
        facts["institution"] = institution
    if funder:
        sources = []
        for given in funder:
            who, _, grant = given.partition(":")
            sources.append({"funder": who.strip(), "grant_number": grant.strip() or None})
        facts["funding_source"] = sources
    if investigator:
        facts["investigators"] = investigator
    if not facts:
        raise typer.BadParameter(
            "give --institution, --funder or --investigator", param_hint="options"
        )
    found = client_for(token).projects_set(name, facts)
    funders = ", ".join(f["funder"] for f in found.get("funding_source") or [])
    typer.echo(
        f"project {found['name']}: institution {found.get('institution') or '-'}; "
        f"funding {funders or '-'}; investigators "
        f"{', '.join(found.get('investigators') or []) or '-'}"
    )


@projects_app.command("remove")
def projects_remove_command(
    name: str = typer.Argument(..., help="The project's name."), token: str | None = TOKEN
) -> None:
    """Remove a project name (admins)."""
    client_for(token).projects_remove(name)
    typer.echo(f"removed project {name}")
