"""``ferry analysis``: the analyses installed on the service."""

from __future__ import annotations

from typing import Any

import typer

from neuroferry.cli._common import FORMAT, TOKEN, check_format, client_for
from neuroferry.cli._output import cell, print_json, print_table

app = typer.Typer(
    help="Analyses: registered functions run over catalogued data, with provenance.",
    no_args_is_help=True,
)


def _code(code: dict[str, Any]) -> str:
    """``version`` with where it comes from: ``1.2 (lab-analyses, commit 3f2c9a6, dirty)``."""
    where = [code.get("source") or ""]
    if code.get("commit"):
        where.append(f"commit {code['commit'][:12]}")
    if code.get("dirty"):
        where.append("dirty")
    if code.get("image"):
        where.append(code["image"] + (f"@{code['digest']}" if code.get("digest") else ""))
    shown = ", ".join(w for w in where if w)
    return f"{code.get('version') or '?'}" + (f" ({shown})" if shown else "")


def _parameters(schema: dict[str, Any]) -> list[list[str]]:
    """A row per parameter: name, type, default, description."""
    required = set(schema.get("required") or ())
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or " | ".join(
            str(p.get("type", "?")) for p in prop.get("anyOf", ()) if isinstance(p, dict)
        )
        default = "(required)" if name in required else repr(prop.get("default"))
        rows.append([name, kind or "?", default, cell(prop.get("description") or "", 60)])
    return rows


@app.command("list")
def list_command(fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """List the analyses installed on the service."""
    found = client_for(token).analyses_list()
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    print_table(
        ["name", "version", "parameters", "description"],
        [
            [
                a["name"],
                _code(a["code"]),
                ", ".join(a["parameters"].get("properties") or {}),
                cell(a["description"].split("\n")[0], 60),
            ]
            for a in found["analyses"]
        ],
    )
    for name, reason in found.get("broken", {}).items():
        typer.echo(f"{name}: cannot be loaded: {reason}", err=True)


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="The analysis."),
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Print an analysis: its code identity, parameters and outputs."""
    found = client_for(token).analyses_get(name)
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    typer.echo(f"# {found['name']} {_code(found['code'])}")
    if found["description"]:
        typer.echo(found["description"].strip())
    typer.echo("\nparameters:")
    print_table(["name", "type", "default", "description"], _parameters(found["parameters"]))
    if found.get("outputs"):
        typer.echo("\noutputs:")
        print_table(["name", "type", "default", "description"], _parameters(found["outputs"]))
