"""``ferry ingest``: image stacks to OME-Zarr volumes: create, join, status, cancel."""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from neuroferry.cli._common import TOKEN, client_for, show_problems
from neuroferry.cli._output import human_bytes, is_terminal, print_json

if TYPE_CHECKING:
    from neuroferry.engine import WorkerGroup

app = typer.Typer(
    help="Ingest image stacks into OME-Zarr volumes: check, create, join, status, cancel.",
    no_args_is_help=True,
)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
PROCESSES = typer.Option(
    0, "--processes", "-p", min=0, help="Dask worker processes to add on this machine."
)
THREADS = typer.Option(1, "--threads", min=1, help="Threads of each worker process.")
VOXEL_SIZE = typer.Option(
    None,
    "--voxel-size",
    help="Voxel size X,Y,Z (e.g. 4,4,40), over the config's (a Boss config has none).",
)
VOXEL_UNIT = typer.Option(
    None, "--voxel-unit", help="Unit of --voxel-size: nanometer, micrometer, millimeter, meter."
)
LEVELS = typer.Option(None, "--levels", help="Resolution levels, full resolution included (1-8).")
CHUNK = typer.Option(None, "--chunk", help="Chunk shape Z,Y,X (e.g. 64,128,128).")
SHARD = typer.Option(None, "--shard", help="Shard shape Z,Y,X, a multiple of the chunk.")
OPTION_OF = {
    "voxel_size": "--voxel-size/--voxel-unit",
    "levels": "--levels",
    "chunk": "--chunk",
    "shard": "--shard",
}
UNITS = ("nanometer", "micrometer", "millimeter", "meter")
FINAL = ("succeeded", "failed", "cancelled")
POLL = 1.0
PLAIN_EVERY = 5.0


def _read_config(path: Path) -> dict[str, Any]:
    """The config file as a mapping (JSON, or YAML); the service validates it."""
    from neuroferry.errors import InvalidInput, first_line

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not a text file (not UTF-8)") from exc
    import yaml

    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid JSON or YAML: {first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{path}: an ingest config is a mapping of fields (name, source, extent, …), "
            f"not {type(data).__name__}"
        )
    return data


def _numbers(value: str, option: str, what: str, integer: bool) -> list[Any]:
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers: list[Any] = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or not all(math.isfinite(n) and n > 0 for n in numbers):
        kind = "whole numbers" if integer else "numbers"
        raise typer.BadParameter(
            f"{value!r}: give three positive {kind} {what}, separated by commas",
            param_hint=option,
        )
    return numbers


def overrides_of(
    voxel_size: str | None,
    voxel_unit: str | None,
    levels: int | None,
    chunk: str | None,
    shard: str | None,
) -> dict[str, Any]:
    """The config fields the command's options set (nested, as the config has them)."""
    found: dict[str, Any] = {}
    voxel: dict[str, Any] = {}
    if voxel_size is not None:
        x, y, z = _numbers(voxel_size, "--voxel-size", "X,Y,Z (e.g. 4,4,40)", integer=False)
        voxel.update(x=x, y=y, z=z)
    if voxel_unit is not None:
        if voxel_unit not in UNITS:
            raise typer.BadParameter(
                f"{voxel_unit!r} is not a unit; allowed: {', '.join(UNITS)}",
                param_hint="--voxel-unit",
            )
        voxel["unit"] = voxel_unit
    if voxel:
        found["voxel_size"] = voxel
    if levels is not None:
        if not 1 <= levels <= 8:
            raise typer.BadParameter(f"{levels} levels: allowed 1 to 8", param_hint="--levels")
        found["levels"] = levels
    for option, value in (("chunk", chunk), ("shard", shard)):
        if value is not None:
            found[option] = _numbers(value, f"--{option}", "Z,Y,X", integer=True)
    return found


def _with_overrides(
    body: dict[str, Any], overrides: dict[str, Any], origin: Path
) -> dict[str, Any]:
    """The config with the options' values over it, checked here so that a wrong value
    names its option."""
    if not overrides:
        return body
    from neuroferry.pipelines.ingest import apply_overrides

    return apply_overrides(body, overrides, origin=str(origin), names=OPTION_OF)


# -- progress --------------------------------------------------------------------------------


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    return str(timedelta(seconds=round(seconds)))


def _line(status: dict[str, Any]) -> str:
    return (
        f"{status['shards_done']}/{status['shards_total']} shards, "
        f"{status['chunks_done']}/{status['chunks_total']} chunks, "
        f"{status['chunks_per_second']:.1f} chunks/s, "
        f"{status['bytes_per_second'] / 1e6:.1f} MB/s, ETA {_eta(status['eta_seconds'])}"
    )


def follow(client: Any, job_id: int, workers: WorkerGroup | None = None) -> dict[str, Any]:
    """Show an ingest job's progress until it ends (a bar on a terminal, a line every few
    seconds otherwise); its last status."""
    status: dict[str, Any] = client.ingest_status(job_id)
    if status["state"] in FINAL:
        return status
    if is_terminal():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(f"job {job_id}", total=max(status["chunks_total"], 1), line="")
            while True:
                bar.update(
                    task,
                    completed=status["chunks_done"],
                    description=f"job {job_id} {status['state']}",
                    line=_line(status),
                )
                if status["state"] in FINAL:
                    return status
                _watch(workers)
                time.sleep(POLL)
                status = client.ingest_status(job_id)
    said = 0.0
    last = ""
    while True:
        text = f"job {job_id} {status['state']}: {_line(status)}"
        head = text.split(",", 1)[0]
        if status["state"] in FINAL or time.monotonic() - said >= PLAIN_EVERY or head != last:
            typer.echo(text, err=True)
            said, last = time.monotonic(), head
        if status["state"] in FINAL:
            return status
        _watch(workers)
        time.sleep(POLL)
        status = client.ingest_status(job_id)


def _watch(workers: WorkerGroup | None) -> None:
    if workers is not None and workers.all_gone() and not workers.warned:
        workers.warned = True
        typer.secho(
            f"the worker processes of this machine stopped: {workers.last_words()}",
            fg="yellow",
            err=True,
        )


def summary(status: dict[str, Any]) -> None:
    """The final summary of an ingest job, on stdout."""
    if "job" not in status:  # only the state: what a worker token may read
        typer.echo(f"job {status['id']}: {status['state']}")
        return
    job = status["job"]
    typer.echo(f"job {status['id']} {status['name']}: {status['state']}")
    typer.echo(f"  volume   {status['volume']}")
    shape = job["summary"].get("shape")
    if shape:
        typer.echo(
            f"  shape    {tuple(shape)} (t, c, z, y, x), {job['summary'].get('dtype')}, "
            f"{len(status['levels'])} levels"
        )
    seconds = job.get("seconds") or status.get("seconds") or 0.0
    rate = status["bytes_done"] / seconds / 1e6 if seconds else 0.0
    typer.echo(
        f"  shards   {status['shards_done']}/{status['shards_total']}, "
        f"{status['chunks_done']}/{status['chunks_total']} chunks; "
        f"{human_bytes(status['bytes_stored'])} stored "
        f"({human_bytes(status['bytes_written'])} written by this run)"
    )
    typer.echo(
        f"  time     {seconds:.1f} s, {human_bytes(status['bytes_done'])} of "
        f"{human_bytes(status['bytes_total'])} at full resolution, {rate:.1f} MB/s"
    )
    for error in status["errors"][:10]:
        typer.echo(f"  error    {error}")


# -- workers of this machine ----------------------------------------------------------------------


def _join(client: Any, job_id: int, processes: int, threads: int) -> dict[str, Any]:
    """Add ``processes`` workers to the service's cluster while the job runs; its last
    status (in full if this token may read the job, else only its state: a worker token)."""
    if processes < 1:
        return follow(client, job_id)
    progress = _progress(client, job_id)
    cluster = client.cluster(job_id)  # admins and worker accounts only
    if cluster["job"]["state"] in FINAL:
        return follow(client, job_id) if progress else _state_only(cluster["job"])
    from neuroferry.engine import WorkerGroup

    workers = WorkerGroup(cluster["scheduler"], processes, threads, cluster.get("tls"))
    typer.echo(
        f"adding {processes} worker processes ({threads} threads each) to {cluster['scheduler']}",
        err=True,
    )
    workers.start()
    try:
        if progress:
            return follow(client, job_id, workers)
        return follow_state(client, job_id, workers)
    finally:
        typer.echo("retiring this machine's workers", err=True)
        workers.stop()


def _progress(client: Any, job_id: int) -> bool:
    """Whether this token may read the job's progress (a worker token may not)."""
    from neuroferry.errors import Forbidden

    try:
        client.ingest_status(job_id)
    except Forbidden:
        return False
    return True


def _state_only(job: dict[str, Any]) -> dict[str, Any]:
    return {"id": job["id"], "state": job["state"]}


def follow_state(client: Any, job_id: int, workers: WorkerGroup) -> dict[str, Any]:
    """Wait for the job to end, knowing only its state (what a worker token may read)."""
    last = ""
    while True:
        job = client.cluster(job_id)["job"]
        if job["state"] != last:
            typer.echo(f"job {job_id} {job['state']}", err=True)
            last = job["state"]
        if job["state"] in FINAL:
            return _state_only(job)
        _watch(workers)
        time.sleep(POLL)


def _exit_for(status: dict[str, Any]) -> None:
    if status["state"] != "succeeded":
        raise typer.Exit(1)


def _finish(status: dict[str, Any], as_json: bool) -> None:
    """Show the job's last status (JSON or a summary); exit 1 unless it succeeded."""
    if as_json:
        print_json(status)
    else:
        summary(status)
    _exit_for(status)


# -- commands -----------------------------------------------------------------------------------


@app.command("create")
def create_command(
    config: Path = typer.Argument(..., help="An ingest config (JSON or YAML) or a Boss config."),
    processes: int = PROCESSES,
    threads: int = THREADS,
    wait: bool = typer.Option(False, "--wait", help="Show progress until the job ends."),
    voxel_size: str | None = VOXEL_SIZE,
    voxel_unit: str | None = VOXEL_UNIT,
    levels: int | None = LEVELS,
    chunk: str | None = CHUNK,
    shard: str | None = SHARD,
    as_json: bool = JSON,
    token: str | None = TOKEN,
) -> None:
    """Submit an ingest job and print its id (first, on its own line). With -p (admins),
    also add worker processes of this machine until the job ends; with --wait (or -p),
    show its progress and exit 1 unless it succeeds."""
    from neuroferry.errors import InvalidInput

    overrides = overrides_of(voxel_size, voxel_unit, levels, chunk, shard)
    client = client_for(token)
    body = _read_config(config)
    try:
        body = _with_overrides(body, overrides, config)
        created = client.ingest_create(body)
    except InvalidInput as exc:
        show_problems(exc)
        raise
    if as_json:
        print_json(created)
    else:
        typer.echo(str(created["id"]))
        typer.echo(f"submitted ingest job {created['id']}: {created['name']}", err=True)
        typer.echo(f"  volume {created['volume']}", err=True)
    sys.stdout.flush()
    if not (wait or processes):
        return
    _finish(_join(client, created["id"], processes, threads), as_json)


@app.command("check")
def check_command(
    config: Path = typer.Argument(..., help="An ingest config (JSON or YAML) or a Boss config."),
    source: bool = typer.Option(
        False, "--source", help="Also check the source data (files on this machine)."
    ),
    voxel_size: str | None = VOXEL_SIZE,
    voxel_unit: str | None = VOXEL_UNIT,
    levels: int | None = LEVELS,
    chunk: str | None = CHUNK,
    shard: str | None = SHARD,
    as_json: bool = JSON,
) -> None:
    """Validate a config without a service: print it as neuroferry reads it (a Boss config
    mapped to ours) and the volume it makes: levels, shapes, shards, work units."""
    from neuroferry.config import get_settings
    from neuroferry.errors import InvalidInput
    from neuroferry.pipelines.ingest import (
        Layout,
        load_config,
        open_reader,
        plan_units,
        shard_totals,
    )

    overrides = overrides_of(voxel_size, voxel_unit, levels, chunk, shard)
    try:
        parsed = (
            load_config(_with_overrides(_read_config(config), overrides, config))
            if overrides
            else load_config(config)
        )
        reader = open_reader(parsed)
        if source:
            reader.check()
    except InvalidInput as exc:
        show_problems(exc)
        raise
    layout = Layout.of(parsed)
    plan = {
        "config": parsed.model_dump(mode="json"),
        **shard_totals(layout),
        "units": len(plan_units(layout, get_settings().ingest_memory_budget)),
        "source_checked": source,
    }
    if as_json:
        print_json(plan)
        return
    typer.echo(f"{config}: a valid ingest config for volume {parsed.name}")
    typer.echo(f"  reads   {parsed.source.plugin} {json.dumps(parsed.source.params)}")
    axes = ", ".join(layout.axes)
    for level in plan["levels"]:
        shape = " x ".join(map(str, layout.stored_shape(level["level"])))
        typer.echo(f"  level {level['level']}  {shape} ({axes}): {level['shards']} shards")
    typer.echo(
        f"  {human_bytes(plan['bytes'])} of {parsed.dtype} in {plan['units']} work units"
        + ("; the source data are complete" if source else "")
    )


@app.command("join")
def join_command(
    job_id: int = typer.Argument(..., help="The ingest job's id."),
    processes: int = typer.Option(
        1, "--processes", "-p", min=1, help="Dask worker processes to add on this machine."
    ),
    threads: int = THREADS,
    as_json: bool = JSON,
    token: str | None = TOKEN,
) -> None:
    """Add worker processes of this machine to the service's cluster while the job runs,
    showing its progress; they retire when it ends (or on Ctrl-C), their running tasks
    going to other workers. Exit 1 unless the job succeeds. Needs an admin's token or a
    worker account's (`ferry users add NAME --role worker`), which shows only the state."""
    _finish(_join(client_for(token), job_id, processes, threads), as_json)


@app.command("status")
def status_command(
    job_id: int = typer.Argument(..., help="The ingest job's id."),
    follow_it: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="Show progress until the job ends (exit 1 unless it succeeds).",
    ),
    as_json: bool = JSON,
    token: str | None = TOKEN,
) -> None:
    """An ingest job's progress: shards done per level, bytes, rate, time left, errors."""
    client = client_for(token)
    status = follow(client, job_id) if follow_it else client.ingest_status(job_id)
    if as_json:
        print_json(status)
    else:
        typer.echo(f"job {status['id']} {status['name']}: {status['state']}")
        typer.echo(f"  volume {status['volume']}")
        for level in status["levels"]:
            typer.echo(
                f"  level {level['level']}: {level['shards_done']}/{level['shards']} shards, "
                f"{level['chunks_done']}/{level['chunks']} chunks, shape {tuple(level['shape'])}"
            )
        units = status["units"]
        counts = ", ".join(f"{n} {s}" for s, n in sorted(units.items()) if s != "total")
        typer.echo(f"  units  {units['total']} ({counts or 'not planned yet'})")
        typer.echo(f"  {_line(status)}")
        typer.echo(
            f"  bytes  {human_bytes(status['bytes_done'])} of {human_bytes(status['bytes_total'])}"
            f" read, {human_bytes(status['bytes_stored'])} stored"
        )
        for error in status["errors"][:10]:
            typer.echo(f"  error  {error}")
    if follow_it:
        _exit_for(status)


@app.command("cancel")
def cancel_command(
    job_id: int = typer.Argument(..., help="The ingest job's id."),
    as_json: bool = JSON,
    token: str | None = TOKEN,
) -> None:
    """Stop an ingest job: shards recorded as written stay (creating the same config again
    resumes), what was not recorded is removed from the volume."""
    done = client_for(token).ingest_cancel(job_id)
    if as_json:
        print_json(done)
        return
    job = done["job"]
    typer.echo(f"job {job['id']} {job['name']}: {job['state']}")
    cleanup = done["cleanup"]
    if cleanup is None:
        typer.echo(
            f"  its tasks are still stopping; run `ferry ingest cancel {job_id}` again to "
            "remove what they did not record"
        )
    elif cleanup.get("error"):
        typer.secho(f"  not cleaned up: {cleanup['error']}", fg="yellow")
    else:
        typer.echo(
            f"  kept {cleanup.get('kept', 0)} recorded shards; removed "
            f"{cleanup.get('removed', 0)} unrecorded shards and "
            f"{cleanup.get('staging_removed', 0)} temporary files"
        )
