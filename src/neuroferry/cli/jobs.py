"""``ferry jobs``: submit upload jobs from a spreadsheet or JSON, follow, cancel, retry."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from neuroferry.cli._common import (
    TOKEN,
    check_format,
    client_for,
    parse_json,
    read_file,
    show_problems,
)
from neuroferry.cli._output import is_terminal, print_json

app = typer.Typer(
    help="Jobs: submit, list, show, follow logs, cancel, retry.", no_args_is_help=True
)

FORMAT = typer.Option(None, "--format", help="table or json (default: table on a terminal).")
FINAL = ("succeeded", "failed", "cancelled")
COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "queued": "blue",
    "up_for_retry": "yellow",
    "up_for_reschedule": "yellow",
    "skipped": "dim",
    "pending": "white",
}


def _json_output(fmt: str | None) -> bool:
    if fmt is None:
        return not is_terminal()
    return check_format(fmt) == "json"


def _request_from(path: Path, client: Any) -> dict[str, Any]:
    """A ``SubmitJobRequestV2`` body from a .csv/.xlsx spreadsheet (checked by the
    service, row by row) or a .json file (a request, one upload job, or a list of them)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".xlsx"):
        return {"upload_jobs": [j["job"] for j in client.validate_sheet(path)]}
    if suffix != ".json":
        raise typer.BadParameter(f"{path}: give a .csv, .xlsx or .json file")
    data = parse_json(read_file(path), str(path))
    if isinstance(data, list):
        return {"upload_jobs": data}
    if isinstance(data, dict) and "upload_jobs" not in data:
        return {"upload_jobs": [data]}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: expected a request object or a list of upload jobs")
    return data


@app.command("validate")
def validate_command(
    file: Path = typer.Argument(..., help="A .csv, .xlsx or .json job file."),
    fmt: str | None = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Check a job file without submitting it: the jobs it makes, or every problem by row
    (spreadsheets) or job and field."""
    from neuroferry.errors import InvalidInput

    client = client_for(token)
    try:
        jobs = client.validate_jobs(_request_from(file, client))
    except InvalidInput as exc:
        show_problems(exc)
        raise
    if _json_output(fmt):
        print_json(jobs)
        return
    for job in jobs:
        typer.echo(f"ok  {job['name']}")
    typer.echo(f"{len(jobs)} valid jobs in {file}")


@app.command("submit")
def submit_command(
    file: Path = typer.Argument(..., help="A .csv, .xlsx or .json job file."),
    wait: bool = typer.Option(False, "--wait", help="Show the jobs' tasks live until they end."),
    fmt: str | None = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Submit the upload jobs of a spreadsheet (one per row) or a JSON request. All are
    created or none. With --wait, exit 1 unless every job succeeds."""
    from neuroferry.errors import InvalidInput

    client = client_for(token)
    try:
        created = client.submit_jobs(_request_from(file, client))
    except InvalidInput as exc:
        show_problems(exc)
        raise
    if _json_output(fmt) and not wait:
        print_json(created)
        return
    for job in created:
        typer.echo(f"submitted job {job['id']}: {job['name']}")
    if wait:
        states = _wait(client, [j["id"] for j in created])
        if _json_output(fmt):
            print_json([client.job(j["id"]) for j in created])
        if any(s != "succeeded" for s in states.values()):
            raise typer.Exit(1)


def _task_label(task: dict[str, Any]) -> str:
    return str(task["name"]) + (f" [{task['item']}]" if task["map_index"] >= 0 else "")


def _wait(client: Any, ids: list[int]) -> dict[int, str]:
    """Follow jobs until they end: a live table on a terminal, a line per change otherwise."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table

    def snapshot() -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        jobs = {i: client.job(i) for i in ids}
        return jobs, {i: client.job_tasks(i) for i in ids}

    def render(jobs: dict[int, Any], tasks: dict[int, Any]) -> Group:
        tables = []
        for i in ids:
            table = Table(
                title=escape(f"job {i} {jobs[i]['name']}: {jobs[i]['state']}"),
                title_justify="left",
            )
            for column in ("task", "state", "attempt", "seconds", "error"):
                table.add_column(column)
            for t in tasks[i]:
                if t["placement"] == "map" and t["state"] not in ("pending", "skipped"):
                    continue
                seconds = ""
                if t["started"]:
                    end = datetime.fromisoformat(t["finished"]) if t["finished"] else None
                    start = datetime.fromisoformat(t["started"])
                    seconds = f"{((end or datetime.now(start.tzinfo)) - start).total_seconds():.1f}"
                colour = COLOURS.get(t["state"], "white")
                table.add_row(
                    escape(_task_label(t)),
                    f"[{colour}]{t['state']}[/{colour}]",
                    str(t["attempt"]),
                    seconds,
                    escape((t["error"] or "")[:60]),
                )
            tables.append(table)
        return Group(*tables)

    if is_terminal():
        console = Console(stderr=True)
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                jobs, tasks = snapshot()
                live.update(render(jobs, tasks))
                if all(j["state"] in FINAL for j in jobs.values()):
                    break
                time.sleep(1.0)
    else:
        seen: dict[tuple[int, str], str] = {}
        while True:
            jobs, tasks = snapshot()
            for i in ids:
                for t in tasks[i]:
                    key = (i, _task_label(t))
                    if seen.get(key) != t["state"]:
                        seen[key] = t["state"]
                        typer.echo(f"job {i}: {_task_label(t)} {t['state']}", err=True)
            if all(j["state"] in FINAL for j in jobs.values()):
                break
            time.sleep(1.0)
    for i in ids:
        line = f"job {i} {jobs[i]['name']}: {jobs[i]['state']}"
        typer.echo(line + (f" ({jobs[i]['error']})" if jobs[i]["error"] else ""))
    return {i: jobs[i]["state"] for i in ids}


@app.command("list")
def list_command(
    state: list[str] = typer.Option([], "--state", help="Only these states (repeatable)."),
    kind: list[str] = typer.Option([], "--kind", help="Only these kinds (repeatable)."),
    job_type: list[str] = typer.Option([], "--job-type", help="Only these job types."),
    owner: str | None = typer.Option(None, "--owner", help="Only this user's jobs (admins)."),
    name: str | None = typer.Option(None, "--name", help="The asset name contains this."),
    since: datetime | None = typer.Option(None, "--since", help="Submitted at or after."),
    until: datetime | None = typer.Option(None, "--until", help="Submitted before."),
    sort: str = typer.Option("-created", "--sort", help="Column; a leading '-' descends."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    offset: int = typer.Option(0, "--offset", min=0),
    fmt: str | None = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Jobs you may see (admins: everyone's), newest first."""
    page = client_for(token).jobs(
        state=state,
        kind=kind,
        job_type=job_type,
        owner=owner,
        name=name,
        submitted_after=since.isoformat() if since else None,
        submitted_before=until.isoformat() if until else None,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    if _json_output(fmt):
        print_json(page)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "kind", "name", "state", "owner", "job type", "submitted")
    for job in page["jobs"]:
        colour = COLOURS.get(job["state"], "white")
        table.add_row(
            str(job["id"]),
            job["kind"],
            escape(job["name"]),
            f"[{colour}]{job['state']}[/{colour}]",
            escape(job["owner"] or ""),
            escape(job["job_type"] or ""),
            job["created"][:19].replace("T", " "),
        )
    Console().print(table)
    shown = len(page["jobs"])
    typer.echo(f"{offset + 1 if shown else 0}-{offset + shown} of {page['total']} jobs")


@app.command("show")
def show_command(
    job_id: int = typer.Argument(..., help="The job's id."),
    fmt: str | None = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """A job and its tasks."""
    client = client_for(token)
    job, tasks = client.job(job_id), client.job_tasks(job_id)
    if _json_output(fmt):
        print_json({**job, "tasks": tasks})
        return
    from rich.console import Console
    from rich.table import Table

    typer.echo(f"job {job['id']} ({job['kind']}) {job['name']}: {job['state']}")
    typer.echo(f"  owner {job['owner']}, job type {job['job_type'] or '-'}")
    for key in ("created", "started", "finished"):
        if job[key]:
            typer.echo(f"  {key:<9}{job[key]}")
    for key, value in job["summary"].items():
        typer.echo(f"  {key}: {value}")
    if job["error"]:
        typer.echo(f"  error: {job['error']}")
    table = Table("task", "state", "attempt", "started", "finished", "error")
    for t in tasks:
        colour = COLOURS.get(t["state"], "white")
        table.add_row(
            escape(_task_label(t)),
            f"[{colour}]{t['state']}[/{colour}]",
            str(t["attempt"]),
            (t["started"] or "")[11:19],
            (t["finished"] or "")[11:19],
            escape((t["error"] or "")[:80]),
        )
    Console().print(table)


@app.command("logs")
def logs_command(
    job_id: int = typer.Argument(..., help="The job's id."),
    task: str | None = typer.Argument(None, help="One task (default: every task that ran)."),
    instance: int = typer.Option(-1, "--instance", help="The instance of a mapped task."),
    attempt: int | None = typer.Option(None, "--attempt", min=1, help="Default: the latest."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    token: str | None = TOKEN,
) -> None:
    """A task's log, or the logs of all the job's tasks that ran, in order."""
    client = client_for(token)
    if task is not None and follow:
        for chunk in client.follow_job_log(job_id, task, instance):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        return
    if task is not None:
        sys.stdout.write(client.job_log(job_id, task, instance, attempt))
        return
    for t in client.job_tasks(job_id):
        if t["attempt"] < 1 or t["placement"] == "map":
            continue
        typer.echo(f"== {_task_label(t)} (attempt {t['attempt']}, {t['state']}) ==")
        sys.stdout.write(client.job_log(job_id, t["name"], t["map_index"]))


@app.command("cancel")
def cancel_command(job_id: int = typer.Argument(...), token: str | None = TOKEN) -> None:
    """Cancel a job: tasks not started are cancelled; running ones stop."""
    job = client_for(token).cancel_job(job_id)
    typer.echo(f"job {job['id']} {job['name']}: {job['state']}")


@app.command("retry")
def retry_command(job_id: int = typer.Argument(...), token: str | None = TOKEN) -> None:
    """Run a failed or cancelled job again from the tasks that did not succeed."""
    job = client_for(token).retry_job(job_id)
    typer.echo(f"job {job['id']} {job['name']}: {job['state']}")


def template_command(
    path: Path = typer.Argument(
        Path("job_upload_template.xlsx"), help="Where to write the template."
    ),
    token: str | None = TOKEN,
) -> None:
    """Write the job spreadsheet template (.xlsx) with the service's drop-down lists."""
    data = client_for(token).job_upload_template()
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {path}: {exc.strerror or exc}") from exc
    typer.echo(f"wrote {path}: one upload job per row; submit it with `ferry jobs submit {path}`")
