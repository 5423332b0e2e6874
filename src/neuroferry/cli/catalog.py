"""``ferry catalog``: find, count and read documents; import them (admins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from neuroferry.cli._common import TOKEN, check_format, client_for, parse_json, read_file
from neuroferry.cli._output import cell, is_terminal, print_json

app = typer.Typer(
    help="The metadata catalog: MongoDB-style queries over JSON documents.",
    no_args_is_help=True,
)

FORMATS = ("table", "json", "jsonl")


def parse_json_arg(text: str, what: str) -> Any:
    """Inline JSON, or ``@path`` to read it from a file; errors name the argument."""
    if text.startswith("@"):
        text = read_file(Path(text[1:]))
    return parse_json(text, what)


def _print_docs(docs: list[dict[str, Any]], fmt: str | None) -> None:
    fmt = fmt or ("table" if is_terminal() else "jsonl")
    if fmt == "json":
        print_json(docs, indent=2)
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
            table.add_row(*(cell(doc[c], 40) if c in doc else "" for c in columns[:8]))
        Console().print(table)
        typer.echo(f"{len(docs)} documents")


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
    client = client_for(token)
    docs = client.catalog_find(
        parse_json_arg(filter, "FILTER"),
        parse_json_arg(projection, "--projection") if projection else None,
        parse_json_arg(sort, "--sort") if sort else None,
        skip,
        limit,
    )
    _print_docs(docs, None if fmt is None else check_format(fmt, FORMATS))


@app.command("count")
def count_command(
    filter: str = typer.Argument("{}", help="Filter as JSON or @file.json."),
    token: str | None = TOKEN,
) -> None:
    """Count the documents that match a filter."""
    typer.echo(client_for(token).catalog_count(parse_json_arg(filter, "FILTER")))


@app.command("get")
def get_command(
    doc_id: str = typer.Argument(..., help="The document's _id."), token: str | None = TOKEN
) -> None:
    """Print one document."""
    print_json(client_for(token).catalog_get(doc_id), indent=2)


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
    for number, line in enumerate(read_file(file).splitlines(), 1):
        if line.strip():
            docs.append(parse_json(line, f"{file} line {number}"))
    client = client_for(token)
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
    for index in client_for(token).catalog_indexes():
        typer.echo(f"{index['path']}\t{index['created']}\t{index.get('created_by') or ''}")


@index_app.command("add")
def index_add_command(
    path: str = typer.Argument(..., help="Dotted path, e.g. subject.subject_id."),
    token: str | None = TOKEN,
) -> None:
    """Index a path: equality, $in and number ranges on it stay fast at any size."""
    created = client_for(token).catalog_create_index(path)
    typer.echo(f"indexed {path}" if created else f"{path} was indexed already")


@index_app.command("drop")
def index_drop_command(
    path: str = typer.Argument(..., help="An indexed path."), token: str | None = TOKEN
) -> None:
    """Drop the index on a path."""
    client_for(token).catalog_drop_index(path)
    typer.echo(f"dropped the index on {path}")
