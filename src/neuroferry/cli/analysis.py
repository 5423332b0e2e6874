"""``ferry analysis``: the analyses installed on the service; preview and dispatch them
over catalogued data."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

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
    if found["code"].get("command"):
        typer.echo(f"command: {found['code']['command']}")
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


@dataclass(frozen=True)
class DispatchOptions:
    """The INPUTS (``--query``, ``--asset-csv``, ``--location``) and PARAMS
    (``--parameters``, ``--set``, ``--file-extension``, ``--split-files``) options of a
    command that dispatches an analysis (see :func:`dispatch_options`)."""

    query: str | None = None
    asset_csv: Path | None = None
    location: list[str] | None = None
    parameters: Path | None = None
    set_values: list[str] | None = None
    file_extension: str | None = None
    split_files: bool = True

    def inputs_given(self) -> list[str]:
        """The INPUTS options given."""
        given = {"--query": self.query, "--asset-csv": self.asset_csv, "--location": self.location}
        return [name for name, value in given.items() if value]

    def request(self) -> DispatchRequest:
        """The request body of the INPUTS (exactly one of ``--query``, ``--asset-csv``,
        ``--location``) and PARAMS options."""
        from neuroferry.errors import InvalidInput
        from neuroferry.pipelines.analysis import read_asset_ids

        given = self.inputs_given()
        if len(given) != 1:
            raise typer.BadParameter(
                "give the data to analyse in exactly one way: --query, --asset-csv or "
                f"--location (got {', '.join(given) or 'none'})"
            )
        body: dict[str, Any] = read_parameters(self.parameters) if self.parameters else {}
        body |= {
            "parameters": parse_set(self.set_values),
            "file_extension": self.file_extension,
            "split_files": self.split_files,
        }
        request = DispatchRequest(body)
        if self.query:
            body["query"] = parse_json_arg(self.query, "--query")
        elif self.location:
            body["locations"] = list(self.location)
        elif self.asset_csv is not None:
            try:
                ids = read_asset_ids(read_file(self.asset_csv))
            except InvalidInput as exc:
                raise InvalidInput(f"{self.asset_csv}: {exc}") from exc
            body["asset_ids"] = [value for _row, value in ids]
            request.csv, request.rows = self.asset_csv, [row for row, _value in ids]
        return request


_OPTIONS = {
    "query": QUERY,
    "asset_csv": ASSET_CSV,
    "location": LOCATION,
    "parameters": PARAMETERS,
    "set_values": SET,
    "file_extension": FILE_EXTENSION,
    "split_files": SPLIT_FILES,
}
"""The option of each field of :class:`DispatchOptions`."""


def dispatch_options(command: Callable[..., None]) -> Callable[..., None]:
    """A command with the INPUTS and PARAMS options after its first parameter (the
    analysis), which it gets as one :class:`DispatchOptions`, its ``options``."""
    hints = get_type_hints(command)
    signature = inspect.signature(command)
    own = [
        p.replace(annotation=hints[p.name])
        for p in signature.parameters.values()
        if p.name != "options"
    ]
    kinds = get_type_hints(DispatchOptions)
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [
        inspect.Parameter(name, keyword, default=option, annotation=kinds[name])
        for name, option in _OPTIONS.items()
    ]

    @functools.wraps(command)
    def with_options(**given: Any) -> None:
        options = DispatchOptions(**{name: given.pop(name) for name in _OPTIONS})
        command(options=options, **given)

    parameters = [own[0], *added, *(p.replace(kind=keyword) for p in own[1:])]
    with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {
        **{p.name: p.annotation for p in parameters},
        "return": None,
    }
    return with_options


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
@dispatch_options
def preview_command(
    name: str = typer.Argument(..., help="The analysis."),
    fmt: str = FORMAT,
    token: str | None = TOKEN,
    *,
    options: DispatchOptions,
) -> None:
    """Print what a dispatch would run: N inputs x M parameter sets = K dispatch models,
    and the first few."""
    fmt = check_format(fmt)
    request = options.request()
    client = client_for(token)
    preview = request.send(lambda body: client.analyses_preview(name, body))
    if fmt == "json":
        print_json(preview, indent=2)
    else:
        print_preview(preview)


@app.command("dispatch")
@dispatch_options
def dispatch_command(
    name: str = typer.Argument(..., help="The analysis."),
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
    *,
    options: DispatchOptions,
) -> None:
    """Write the dispatch models of an analysis to a dispatch folder (0/<uuid>.json, …,
    as the original dispatcher writes them), after printing the preview. Without
    --workers or --tasks-per-job, one model per numbered folder."""
    from neuroferry.pipelines.analysis import DispatchModel, write_dispatch_folder

    if workers is not None and tasks_per_job is not None:
        raise typer.BadParameter("give --workers or --tasks-per-job, not both")
    request = options.request()
    client = client_for(token)
    found = request.send(lambda body: client.analyses_dispatch(name, body))
    print_preview(found)
    models = [DispatchModel.model_validate(m) for m in found["dispatch_models"]]
    keys = write_dispatch_folder(
        models, out, num_parallel_workers=workers, tasks_per_job=tasks_per_job
    )
    folders = len({key.split("/")[0] for key in keys})
    typer.echo(f"\nwrote {len(keys)} dispatch models in {folders} folders to {out}")


# -- jobs: submit, status, results ---------------------------------------------------------

MODELS = typer.Option(
    None,
    "--models",
    help="A dispatch folder (local folder or store URL) whose models to run, one task each.",
)
DONE = ("computed", "skipped")
"""The task states of a result that exists."""
WAIT_POLL = 1.0
"""Seconds between looks at a job that is not over."""


def _models_body(
    models: str, parameters: Path | None, set_values: list[str] | None
) -> dict[str, Any]:
    """The body that runs a dispatch folder's models with the fixed parameters of
    ``--parameters`` and the ``--set`` overrides (the models carry their own sets)."""
    from neuroferry.pipelines.analysis import read_dispatch_folder

    body: dict[str, Any] = read_parameters(parameters) if parameters else {}
    if body.get("distributed_parameters"):
        raise typer.BadParameter(
            "--models: the dispatch models carry their own distributed parameters; leave "
            "distributed_parameters out of --parameters"
        )
    body.pop("distributed_parameters", None)
    found = read_dispatch_folder(models)
    return body | {
        "parameters": parse_set(set_values),
        "models": [m.model_dump(mode="json") for m in found],
    }


def _wait_for(client: Any, job_id: int) -> dict[str, Any]:
    """The job, once it is over."""
    import time

    from neuroferry.engine import TERMINAL

    while True:
        job: dict[str, Any] = client.job(job_id)
        if job["state"] in TERMINAL:
            return job
        time.sleep(WAIT_POLL)


def _counts(lines: list[dict[str, Any]]) -> dict[str, int]:
    counts = {state: 0 for state in ("computed", "skipped", "failed", "running", "waiting")}
    for line in lines:
        state = line["state"]
        key = state if state in counts else "waiting"
        counts[key] += 1
    return counts


def _count_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items())


@app.command("submit")
@dispatch_options
def submit_command(
    name: str = typer.Argument(..., help="The analysis."),
    models: str | None = MODELS,
    force: bool = typer.Option(False, "--force", help="Compute again results already made."),
    results: str | None = typer.Option(
        None, "--results", help="Destination name or store URL for the results."
    ),
    allow_dirty: bool = typer.Option(
        False, "--allow-dirty", help="Run code from a checkout with uncommitted changes."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for the job and print its results."),
    token: str | None = TOKEN,
    *,
    options: DispatchOptions,
) -> None:
    """Submit an analysis job; prints its id first. With --wait, exit 0 only when every
    task computed its result or was skipped as computed before."""
    if models is not None:
        if options.inputs_given():
            raise typer.BadParameter(
                "give the data to analyse in exactly one way: --models, --query, --asset-csv "
                "or --location"
            )
        request = DispatchRequest(_models_body(models, options.parameters, options.set_values))
    else:
        request = options.request()
    request.body |= {"force": force, "results": results, "allow_dirty": allow_dirty}
    client = client_for(token)
    job_id = request.send(lambda body: client.analyses_submit(name, body))
    typer.echo(job_id)
    if not wait:
        return
    job = _wait_for(client, job_id)
    lines = client.analyses_results(job_id)
    _print_results(lines)
    typer.echo(f"job {job_id} {job['state']}: {_count_text(_counts(lines))}")
    failed = [line for line in lines if line["state"] not in DONE]
    for line in failed:
        typer.echo(f"{line['task']} {line['state']}: {line.get('error') or ''}", err=True)
    if job["state"] != "succeeded" and not failed and job.get("error"):
        typer.echo(f"job {job_id}: {job['error']}", err=True)
    if failed or job["state"] != "succeeded":
        raise typer.Exit(1)


def _print_results(lines: list[dict[str, Any]]) -> None:
    print_table(
        ["state", "identity", "record", "location"],
        [
            [line["state"], line["identity"] or "", line["record_id"] or "", line["location"] or ""]
            for line in lines
        ],
    )


@app.command("results")
def results_command(
    job_id: int = typer.Argument(..., help="The analysis job."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or jsonl."),
    token: str | None = TOKEN,
) -> None:
    """A line per task: its state (computed, skipped, failed, or the task's state),
    result identity, provenance record id and results location."""
    fmt = check_format(fmt, ("table", "jsonl"))
    lines = client_for(token).analyses_results(job_id)
    if fmt == "jsonl":
        for line in lines:
            typer.echo(json.dumps(line, sort_keys=True))
    else:
        _print_results(lines)


@app.command("status")
def status_command(
    job_id: int = typer.Argument(..., help="The analysis job."),
    token: str | None = TOKEN,
) -> None:
    """The job's state and how many tasks computed, were skipped, failed, run and wait."""
    client = client_for(token)
    job = client.job(job_id)
    counts = _counts(client.analyses_results(job_id))
    typer.echo(f"job {job_id} ({job['name']}): {job['state']}")
    typer.echo(_count_text(counts))
    if job.get("error"):
        typer.echo(f"error: {job['error']}")


# -- here: run one model, reproduce a record ------------------------------------------------


def analysis_here(name: str, token: str | None, code: dict[str, Any] | None = None) -> Any:
    """Analysis ``name`` as this machine runs it: the installed one, else the service's
    command analysis of that name (its current version, or the version and image digest
    of the recorded ``code``), run here with this machine's container runtime."""
    from neuroferry.config import get_settings
    from neuroferry.errors import InvalidInput, NotFound
    from neuroferry.pipelines.analysis import command_analysis, get_analysis, image_digest

    try:
        return get_analysis(name)
    except InvalidInput as unknown:
        missing = unknown
    try:
        versions = client_for(token).analyses_history(name)
    except NotFound:
        raise missing from None
    if code is None:
        chosen = versions[-1] if versions and not versions[-1].get("deleted") else None
    else:
        chosen = next((v for v in versions if str(v["version"]) == str(code.get("version"))), None)
        if chosen is not None and chosen["settings"].get("command_script") != code.get("command"):
            chosen = None
    if chosen is None:
        raise missing
    definition = chosen["settings"]
    if code is not None:
        digest = code.get("digest")
    elif definition.get("image"):
        digest = image_digest(get_settings(), definition["image"], definition.get("image_version"))
    else:
        digest = None
    pinned = {"version": chosen["version"], "definition": definition, "digest": digest}
    return command_analysis(name, pinned)


def _local_parameters(parameters: Path | None, set_values: list[str] | None) -> dict[str, Any]:
    """The fixed parameters of ``--parameters`` overridden by ``--set``."""
    fixed = read_parameters(parameters)["fixed_parameters"] if parameters else {}
    return {**fixed, **parse_set(set_values)}


@app.command("run")
def run_command(
    name: str = typer.Argument(..., help="The analysis (installed here)."),
    model: Path = typer.Option(..., "--model", help="A dispatch model file (JSON)."),
    parameters: Path | None = PARAMETERS,
    set_values: list[str] | None = SET,
    dry_run: bool = typer.Option(
        True,
        "--dry-run/--no-dry-run",
        help="Only print what would be uploaded and recorded (the default).",
    ),
    results: str | None = typer.Option(
        None, "--results", help="Store URL to upload the results to (with --no-dry-run)."
    ),
    allow_dirty: bool = typer.Option(
        False, "--allow-dirty", help="Run code from a checkout with uncommitted changes."
    ),
    token: str | None = TOKEN,
) -> None:
    """Run one dispatch model here, with the analysis installed on this machine (or the
    service's command analysis of that name, its current version) and your own
    credentials. The dry run (the default) prints the files it would upload, where, and
    the provenance record it would write, and writes nothing; --no-dry-run uploads the
    results to --results (no record is written)."""
    from neuroferry.pipelines.analysis import DispatchModel, run_locally

    found = DispatchModel.model_validate_json(read_file(model))
    done = run_locally(
        analysis_here(name, token),
        found,
        _local_parameters(parameters, set_values),
        dry_run=dry_run,
        results=results,
        allow_dirty=allow_dirty,
    )
    where = done["location"] or "(no results store given)"
    verb = "would upload" if dry_run else "uploaded"
    typer.echo(f"{name} {done['identity']}: {verb} {len(done['files'])} files to {where}")
    print_table(
        ["path", "size", "sha256"],
        [[f["path"], str(f["size"]), f["sha256"]] for f in done["files"]],
    )
    typer.echo("\nrecord:" if not dry_run else "\nrecord it would write:")
    print_json(done["record"], indent=2)


def _same_code(code: dict[str, Any]) -> tuple[Any, ...]:
    """What of a code identity must match for a result to be reproduced: what its result
    identity hashes (name, version, commit, image digest, dirty)."""
    return (
        code.get("name"),
        code.get("version"),
        code.get("commit"),
        code.get("digest"),
        bool(code.get("dirty")),
    )


def _record(client: Any, record: str) -> dict[str, Any]:
    """The provenance record with this catalog ``_id`` or name."""
    from neuroferry.errors import NotFound

    try:
        return dict(client.catalog_get(record))
    except NotFound:
        found = client.catalog_find({"name": record}, limit=1)
        if not found:
            raise NotFound(f"no provenance record has the _id or name {record!r}") from None
        return dict(found[0])


def _model_of(record: dict[str, Any]) -> Any:
    """The dispatch model a record's task ran (its assets, files and parameter set)."""
    from neuroferry.pipelines.analysis import DispatchModel

    inputs = record.get("inputs") or {}
    assets = inputs.get("assets") or []
    asset_locations = [a.get("location") for a in assets]
    locations = inputs.get("locations") or []
    return DispatchModel(
        s3_location=asset_locations,
        asset_name=[a.get("name") or "" for a in assets],
        docdb_record_id=[a.get("record_id") or "" for a in assets],
        file_location=None if locations == asset_locations else locations,
        distributed_parameters=inputs.get("distributed_parameters"),
        group_metadata=inputs.get("group_metadata"),
        query=inputs.get("query"),
    )


def compare_files(
    recorded: list[dict[str, Any]], made: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """``(path, verdict)`` for every output file of either list, by path: ``identical``
    (same sha256), ``differs``, ``missing`` (recorded, not made again) or ``extra``."""
    before = {f["path"]: f.get("sha256") for f in recorded}
    after = {f["path"]: f.get("sha256") for f in made}
    verdicts = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            verdicts.append((path, "missing"))
        elif path not in before:
            verdicts.append((path, "extra"))
        else:
            verdicts.append((path, "identical" if before[path] == after[path] else "differs"))
    return verdicts


@app.command("reproduce")
def reproduce_command(
    record: str = typer.Argument(..., help="A provenance record: its catalog _id or name."),
    token: str | None = TOKEN,
) -> None:
    """Run a recorded result's analysis again here (a command analysis: the recorded
    version of its command, from the service), on the same inputs with the same
    parameters, in a temporary folder (nothing is uploaded or recorded), and say file by
    file whether the outputs are identical to the recorded ones (by sha256). Refused when
    the analysis installed here is other code than the record's. Exit 0 only if every
    file is identical."""
    from neuroferry.pipelines.analysis import code_identity, run_locally

    found = _record(client_for(token), record)
    if found.get("kind") != "analysis-result":
        raise typer.BadParameter(f"{record} is not a provenance record (kind analysis-result)")
    then = found.get("code") or {}
    analysis = analysis_here(found["analysis"], token, then)
    here = code_identity(analysis, allow_dirty=True).as_dict()
    if _same_code(here) != _same_code(then):
        typer.echo(
            f"cannot reproduce {record}: it was made by {found['analysis']} {_code(then)}, "
            f"this machine has {_code(here)}; install that code",
            err=True,
        )
        raise typer.Exit(2)
    done = run_locally(
        analysis,
        _model_of(found),
        found.get("parameters") or {},
        allow_dirty=bool(then.get("dirty")),
    )
    if done["identity"] != found.get("identity"):
        typer.echo(
            f"note: the result identity here is {done['identity']}, the record's "
            f"{found.get('identity')}",
            err=True,
        )
    verdicts = compare_files(found.get("files") or [], done["files"])
    for path, verdict in verdicts:
        typer.echo(f"{verdict}  {path}")
    same = sum(1 for _, verdict in verdicts if verdict == "identical")
    typer.echo(f"{same} of {len(verdicts)} files identical")
    if same != len(verdicts):
        raise typer.Exit(1)
