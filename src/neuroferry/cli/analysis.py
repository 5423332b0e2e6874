"""``ferry analysis``: the analyses installed on the service; preview and dispatch them
over catalogued data."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer

from neuroferry.cli._common import (
    FORMAT,
    TOKEN,
    check_format,
    client_for,
    parse_json,
    read_file,
)
from neuroferry.cli._output import cell, print_json, print_table
from neuroferry.cli.catalog import parse_json_arg

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


# -- dispatch -----------------------------------------------------------------------------
# The options that say what to analyse (INPUTS) and with which parameters (PARAMS), shared
# by every command that dispatches an analysis.

T = TypeVar("T")

QUERY = typer.Option(
    None,
    "--query",
    help='Catalog filter selecting your assets, as JSON (\'{"subject.subject_id": '
    '"774659"}\') or @file.json.',
)
ASSET_CSV = typer.Option(
    None,
    "--asset-csv",
    help="CSV whose asset_id column names the assets (catalog _ids or asset names).",
)
LOCATION = typer.Option(None, "--location", help="Store URL of data to analyse (repeatable).")
PARAMETERS = typer.Option(
    None,
    "--parameters",
    help="analysis_parameters.json: fixed_parameters and distributed_parameters.",
)
SET = typer.Option(
    None,
    "--set",
    help="KEY=VALUE overriding a fixed parameter (repeatable); VALUE is JSON if it parses, "
    "else a string.",
)
FILE_EXTENSION = typer.Option(
    None,
    "--file-extension",
    help="Analyse each asset's files (or folders) whose name ends with it, e.g. .nwb.",
)
SPLIT_FILES = typer.Option(
    True,
    "--split-files/--no-split-files",
    help="One task per matching file, or one per asset with all its files.",
)


def parse_set(values: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` options as parameters: VALUE as JSON if it parses, else the text."""
    parameters: dict[str, Any] = {}
    for value in values or []:
        key, equals, text = value.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"--set {value!r}: give KEY=VALUE, e.g. --set bins=32")
        try:
            parameters[key.strip()] = json.loads(text)
        except ValueError:
            parameters[key.strip()] = text
    return parameters


def read_parameters(path: Path) -> dict[str, Any]:
    """An ``analysis_parameters.json`` file, checked; errors name the file."""
    from pydantic import ValidationError

    from neuroferry.errors import validation_problems
    from neuroferry.pipelines.analysis import AnalysisParameters

    try:
        found = AnalysisParameters.model_validate(parse_json(read_file(path), str(path)))
    except ValidationError as exc:
        raise typer.BadParameter(
            f"{path} is not an analysis parameters file: "
            + "; ".join(validation_problems(exc, "the file"))
        ) from exc
    return found.model_dump()


@dataclass
class DispatchRequest:
    """A dispatch request body built from the INPUTS and PARAMS options, and the rows of
    the asset CSV it came from (to name them in the service's errors)."""

    body: dict[str, Any]
    csv: Path | None = None
    rows: list[int] = field(default_factory=list)

    def send(self, call: Callable[[dict[str, Any]], T]) -> T:
        """``call(body)``; an unknown asset id is named by its CSV file and row."""
        from neuroferry.errors import InvalidInput

        try:
            return call(self.body)
        except InvalidInput as exc:
            unknown = [p for p in exc.problems if "index" in p and self.csv is not None]
            if not unknown:
                raise
            problems = [
                {"row": self.rows[p["index"]], "field": "asset_id", "message": p["message"]}
                for p in unknown
            ]
            shown = "; ".join(f"row {p['row']}: {p['message']}" for p in problems)
            raise InvalidInput(f"{self.csv}: {shown}", problems) from exc


def dispatch_request(
    query: str | None,
    asset_csv: Path | None,
    locations: list[str] | None,
    parameters: Path | None,
    set_values: list[str] | None,
    file_extension: str | None,
    split_files: bool,
) -> DispatchRequest:
    """The request body of the INPUTS (exactly one of ``--query``, ``--asset-csv``,
    ``--location``) and PARAMS options."""
    from neuroferry.errors import InvalidInput
    from neuroferry.pipelines.analysis import read_asset_ids

    given = [
        name
        for name, value in (
            ("--query", query),
            ("--asset-csv", asset_csv),
            ("--location", locations),
        )
        if value
    ]
    if len(given) != 1:
        raise typer.BadParameter(
            "give the data to analyse in exactly one way: --query, --asset-csv or --location "
            f"(got {', '.join(given) or 'none'})"
        )
    body: dict[str, Any] = read_parameters(parameters) if parameters else {}
    body |= {
        "parameters": parse_set(set_values),
        "file_extension": file_extension,
        "split_files": split_files,
    }
    request = DispatchRequest(body)
    if query:
        body["query"] = parse_json_arg(query, "--query")
    elif locations:
        body["locations"] = list(locations)
    elif asset_csv is not None:
        try:
            ids = read_asset_ids(read_file(asset_csv))
        except InvalidInput as exc:
            raise InvalidInput(f"{asset_csv}: {exc}") from exc
        body["asset_ids"] = [value for _row, value in ids]
        request.csv, request.rows = asset_csv, [row for row, _value in ids]
    return request


def _files(model: dict[str, Any], width: int = 60) -> str:
    """A model's files, relative to their assets, cut at the front to ``width``
    characters; "(whole asset)" without files."""
    files = model.get("file_location")
    if files is None:
        return "(whole asset)"
    prefixes = [location + "/" for location in model.get("s3_location") or []]
    short = [next((f.removeprefix(p) for p in prefixes if f.startswith(p)), f) for f in files]
    text = ", ".join(short) if len(short) < 2 else f"{len(short)} files: {', '.join(short)}"
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def print_preview(preview: dict[str, Any]) -> None:
    """N inputs x M parameter sets = K models, the assets left out, the first models."""
    typer.echo(
        f"{preview['analysis']}: {preview['inputs']} inputs x {preview['parameter_sets']} "
        f"parameter sets = {preview['models']} dispatch models "
        f"({preview['assets']} assets selected)"
    )
    if preview["without_files"]:
        typer.echo(f"left out, no matching file: {', '.join(preview['without_files'])}", err=True)
    if preview.get("already_computed") is not None:
        typer.echo(f"already computed: {preview['already_computed']}")
    typer.echo(f"parameters: {preview['precedence']}")
    if not preview["first"]:
        return
    typer.echo(f"\nfirst {len(preview['first'])}:")
    print_table(
        ["#", "asset", "files", "distributed parameters"],
        [
            [
                str(number),
                ", ".join(model["asset_name"]),
                _files(model),
                cell(json.dumps(model.get("distributed_parameters")), 60),
            ]
            for number, model in enumerate(preview["first"], start=1)
        ],
    )


@app.command("preview")
def preview_command(
    name: str = typer.Argument(..., help="The analysis."),
    query: str | None = QUERY,
    asset_csv: Path | None = ASSET_CSV,
    location: list[str] | None = LOCATION,
    parameters: Path | None = PARAMETERS,
    set_values: list[str] | None = SET,
    file_extension: str | None = FILE_EXTENSION,
    split_files: bool = SPLIT_FILES,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Print what a dispatch would run: N inputs x M parameter sets = K dispatch models,
    and the first few."""
    fmt = check_format(fmt)
    request = dispatch_request(
        query, asset_csv, location, parameters, set_values, file_extension, split_files
    )
    client = client_for(token)
    preview = request.send(lambda body: client.analyses_preview(name, body))
    if fmt == "json":
        print_json(preview, indent=2)
    else:
        print_preview(preview)


@app.command("dispatch")
def dispatch_command(
    name: str = typer.Argument(..., help="The analysis."),
    query: str | None = QUERY,
    asset_csv: Path | None = ASSET_CSV,
    location: list[str] | None = LOCATION,
    parameters: Path | None = PARAMETERS,
    set_values: list[str] | None = SET,
    file_extension: str | None = FILE_EXTENSION,
    split_files: bool = SPLIT_FILES,
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Spread the models evenly over this many numbered folders (one per worker).",
    ),
    tasks_per_job: int | None = typer.Option(
        None, "--tasks-per-job", min=1, help="Put this many models in each numbered folder."
    ),
    out: str = typer.Option(
        ..., "--out", help="The dispatch folder to write: a local folder or a store URL."
    ),
    token: str | None = TOKEN,
) -> None:
    """Write the dispatch models of an analysis to a dispatch folder (0/<uuid>.json, …,
    as the original dispatcher writes them), after printing the preview. Without
    --workers or --tasks-per-job, one model per numbered folder."""
    from neuroferry.pipelines.analysis import DispatchModel, write_dispatch_folder

    if workers is not None and tasks_per_job is not None:
        raise typer.BadParameter("give --workers or --tasks-per-job, not both")
    request = dispatch_request(
        query, asset_csv, location, parameters, set_values, file_extension, split_files
    )
    client = client_for(token)
    found = request.send(lambda body: client.analyses_dispatch(name, body))
    print_preview(found)
    models = [DispatchModel.model_validate(m) for m in found["dispatch_models"]]
    keys = write_dispatch_folder(
        models, out, num_parallel_workers=workers, tasks_per_job=tasks_per_job
    )
    folders = len({key.split("/")[0] for key in keys})
    typer.echo(f"\nwrote {len(keys)} dispatch models in {folders} folders to {out}")
