"""``ferry catalog``: find, count and read documents; import them (admins)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from neuroferry.cli._output import is_terminal, print_json

app = typer.Typer(
    help="The metadata catalog: MongoDB-style queries over JSON documents.",
    no_args_is_help=True,
)

FORMATS = ("table", "json", "jsonl")
TOKEN = typer.Option(None, "--token", help="API token (default: FERRY_TOKEN, token.json).")


def parse_json_arg(text: str, what: str) -> Any:
    """Inline JSON, or ``@path`` to read it from a file; errors name the argument."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc


def _client(token: str | None) -> Any:
    from neuroferry.client import Client

    return Client(token=token)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _print_docs(docs: list[dict[str, Any]], fmt: str | None) -> None:
    fmt = fmt or ("table" if is_terminal() else "jsonl")
    if fmt == "json":
        sys.stdout.write(json.dumps(docs, indent=2, default=str) + "\n")
    elif fmt == "jsonl":
        for doc in docs:
            print_json(doc)
    else:
        from rich.console import Console
        from rich.table import Table

        columns: list[str] = []
        for doc in docs:
            columns += [key for key in doc if key not in columns]
        table = Table(*columns[:8], show_lines=False)
        for doc in docs:
            table.add_row(*(_cell(doc[c]) if c in doc else "" for c in columns[:8]))
        Console().print(table)
        typer.echo(f"{len(docs)} documents")


def _format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not a format; allowed: {', '.join(FORMATS)}")
    return value


@app.command("find")
def find_command(
    filter: str = typer.Argument(
        "{}", help='Filter as JSON, e.g. \'{"subject.subject_id": "774659"}\', or @file.json.'
    ),
    projection: str | None = typer.Option(None, "--projection", "-p", help="e.g. '{\"name\": 1}'"),
    sort: str | None = typer.Option(None, "--sort", help="e.g. '{\"created\": -1}'"),
    skip: int = typer.Option(0, min=0, help="Documents to skip."),
    limit: int = typer.Option(100, min=1, max=10_000, help="Documents to return."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="table, json or jsonl (table on a terminal)."
    ),
    token: str | None = TOKEN,
) -> None:
    """Find documents with a MongoDB-style filter."""
    client = _client(token)
    docs = client.catalog_find(
        parse_json_arg(filter, "FILTER"),
        parse_json_arg(projection, "--projection") if projection else None,
        parse_json_arg(sort, "--sort") if sort else None,
        skip,
        limit,
    )
    _print_docs(docs, _format(fmt))


@app.command("count")
def count_command(
    filter: str = typer.Argument("{}", help="Filter as JSON or @file.json."),
    token: str | None = TOKEN,
) -> None:
    """Count the documents that match a filter."""
    typer.echo(_client(token).catalog_count(parse_json_arg(filter, "FILTER")))


@app.command("get")
def get_command(
    doc_id: str = typer.Argument(..., help="The document's _id."), token: str | None = TOKEN
) -> None:
    """Print one document."""
    sys.stdout.write(json.dumps(_client(token).catalog_get(doc_id), indent=2, default=str) + "\n")


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="JSON lines: one document per line."),
    owner: str | None = typer.Option(
        None,
        "--owner",
        help="The user whose documents they become; without it only admins see them.",
    ),
    token: str | None = TOKEN,
) -> None:
    """Insert documents, replacing those with the same name (admins only). Users see only
    the documents they own: give ``--owner`` to import documents for a user."""
    docs: list[Any] = []
    try:
        lines = file.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            docs.append(json.loads(line))
        except ValueError as exc:
            raise typer.BadParameter(f"{file} line {number} is not valid JSON: {exc}") from exc
    client = _client(token)
    inserted = updated = 0
    for start in range(0, len(docs), 1000):
        result = client.catalog_upsert(docs[start : start + 1000], owner)
        inserted, updated = inserted + result["inserted"], updated + result["updated"]
    typer.echo(f"imported {file}: {inserted} inserted, {updated} replaced")


index_app = typer.Typer(
    help="Declared index paths (admins add and drop them).", no_args_is_help=True
)
app.add_typer(index_app, name="index")


@index_app.command("list")
def index_list_command(token: str | None = TOKEN) -> None:
    """List the indexed paths."""
    for index in _client(token).catalog_indexes():
        typer.echo(f"{index['path']}\t{index['created']}\t{index.get('created_by') or ''}")


@index_app.command("add")
def index_add_command(
    path: str = typer.Argument(..., help="Dotted path, e.g. subject.subject_id."),
    token: str | None = TOKEN,
) -> None:
    """Index a path: equality, $in and number ranges on it stay fast at any size."""
    created = _client(token).catalog_create_index(path)
    typer.echo(f"indexed {path}" if created else f"{path} was indexed already")


@index_app.command("drop")
def index_drop_command(
    path: str = typer.Argument(..., help="An indexed path."), token: str | None = TOKEN
) -> None:
    """Drop the index on a path."""
    _client(token).catalog_drop_index(path)
    typer.echo(f"dropped the index on {path}")
