"""``ferry dropbox``: drop-boxes (an analysis published at a store location, a folder per
user group) and their groups."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from neuroferry.cli._common import FORMAT, TOKEN, check_format, client_for
from neuroferry.cli._output import print_json, print_table, when
from neuroferry.errors import NotFound

app = typer.Typer(
    help="Drop-boxes: a submit.json dropped in a group's submissions/ folder runs the "
    "published analysis; results appear beside it.",
    no_args_is_help=True,
)
group_app = typer.Typer(help="A drop-box's user groups (admins add them).", no_args_is_help=True)
app.add_typer(group_app, name="group")


@app.command("publish")
def publish_command(
    name: str = typer.Argument(..., help="The drop-box's name, as in job__{NAME}_{timestamp}."),
    analysis: str = typer.Option(..., "--analysis", help="The registered analysis it runs."),
    store: str = typer.Option(
        ..., "--store", help="Where its folders live: s3://bucket[/prefix] or a local folder."
    ),
    token: str | None = TOKEN,
) -> None:
    """Publish an analysis as a drop-box (admins)."""
    made = client_for(token).dropboxes_publish(name, analysis, store)
    typer.echo(f"published {made['analysis']} as drop-box {made['name']} at {made['store']}")


MAX_RUNNING = typer.Option(None, "--max-running", min=1, help="Datasets at once (more wait).")
MAX_MINUTES = typer.Option(None, "--max-minutes", min=1, help="Minutes one dataset may run.")
MAX_PER_DAY = typer.Option(None, "--max-per-day", min=1, help="Datasets per 24 hours.")


def _limits(running: int | None, minutes: int | None, per_day: int | None) -> dict[str, Any]:
    return {"max_running": running, "max_minutes": minutes, "max_per_day": per_day}


@group_app.command("add")
def group_add_command(
    group: str = typer.Argument(..., help="The group's name: its folder in the drop-box."),
    dropbox: str = typer.Option(..., "--dropbox", help="The drop-box."),
    member: list[str] = typer.Option([], "--member", help="A user of the group (repeatable)."),
    max_running: int | None = MAX_RUNNING,
    max_minutes: int | None = MAX_MINUTES,
    max_per_day: int | None = MAX_PER_DAY,
    token: str | None = TOKEN,
) -> None:
    """Add a user group to a drop-box and make its inputs/ configs/ submissions/ results/
    folders (admins)."""
    limits = _limits(max_running, max_minutes, max_per_day)
    made = client_for(token).dropboxes_add_group(dropbox, group, member, limits)
    folder = f"{made['store'].rstrip('/')}/{group}/"
    typer.echo(
        f"group {group} of drop-box {made['name']}: {folder}{{inputs,configs,submissions,results}}/"
    )


@group_app.command("limits")
def group_limits_command(
    group: str = typer.Argument(..., help="The group."),
    dropbox: str = typer.Option(..., "--dropbox", help="The drop-box."),
    max_running: int | None = MAX_RUNNING,
    max_minutes: int | None = MAX_MINUTES,
    max_per_day: int | None = MAX_PER_DAY,
    token: str | None = TOKEN,
) -> None:
    """Replace a group's limits (a limit not given is none) (admins)."""
    limits = _limits(max_running, max_minutes, max_per_day)
    client_for(token).dropboxes_set_limits(dropbox, group, limits)
    shown = ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None) or "none"
    typer.echo(f"limits of group {group} of drop-box {dropbox}: {shown}")


@app.command("list")
def list_command(fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """List the drop-boxes (users: those of their groups)."""
    found = client_for(token).dropboxes_list()
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    print_table(
        ["name", "analysis", "store", "groups", "published"],
        [
            [
                b["name"],
                b["analysis"],
                b["store"],
                ", ".join(
                    f"{g['name']} ({', '.join(g['members']) or 'no members'})"
                    + (f" bypass: {g['bypass']}" if g.get("bypass") else "")
                    for g in b["groups"]
                ),
                f"{when(b['created'])} by {b.get('published_by') or '?'}",
            ]
            for b in found
        ],
    )


@app.command("policy")
def policy_command(
    group: str = typer.Argument(..., help="The group."),
    dropbox: str = typer.Option(..., "--dropbox", help="The drop-box (an s3:// one)."),
    token: str | None = TOKEN,
) -> None:
    """Print the S3 policy for keys scoped to a group's folder, to attach to the group's
    IAM user (AWS) or user (MinIO, Ceph RGW) (admins)."""
    print_json(client_for(token).dropboxes_policy(dropbox, group), indent=4)


@group_app.command("bypass")
def group_bypass_command(
    group: str = typer.Argument(..., help="The group."),
    dropbox: str = typer.Option(..., "--dropbox", help="The drop-box."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="The S3 endpoint of the group's buckets (default: AWS)."
    ),
    region: str | None = typer.Option(None, "--region", help="Their region (default us-east-1)."),
    access_key_id: str | None = typer.Option(
        None, "--access-key-id", help="The group's own key id (none: public buckets only)."
    ),
    allow_service_buckets: bool = typer.Option(
        False, "--allow-service-buckets", help="Let the group name this service's own buckets."
    ),
    remove: bool = typer.Option(False, "--remove", help="Turn storage bypass off for the group."),
    token: str | None = TOKEN,
) -> None:
    """Let a group's submissions read s3:// data and write a resultpath in other buckets,
    with the group's own key (its secret is read from FERRY_BYPASS_SECRET_ACCESS_KEY or
    asked for; it is stored encrypted and never shown) or, without a key, with unsigned
    requests (admins)."""
    client = client_for(token)
    if remove:
        client.dropboxes_remove_bypass(dropbox, group)
        typer.echo(f"storage bypass is off for group {group} of drop-box {dropbox}")
        return
    secret = None
    if access_key_id:
        secret = os.environ.get("FERRY_BYPASS_SECRET_ACCESS_KEY") or typer.prompt(
            "secret access key", hide_input=True
        )
    body = {
        "endpoint": endpoint,
        "region": region,
        "access_key_id": access_key_id,
        "secret_access_key": secret,
        "allow_service_buckets": allow_service_buckets,
    }
    made = client.dropboxes_set_bypass(dropbox, group, body)
    how = f"key {made['access_key_id']}" if made["signed"] else "unsigned requests"
    typer.echo(
        f"storage bypass for group {group} of drop-box {dropbox}: "
        f"{made['endpoint'] or 'AWS'}, {how}"
    )


# -- for the groups' members --------------------------------------------------------------

THROUGH_SERVICE = 64 << 20
"""The largest file sent through the service; bigger ones go straight to (or come straight
from) the store through presigned URLs, on object-store drop-boxes."""
ONE_REQUEST = 5 << 30
"""The largest object one S3 PUT may write."""
DROPBOX = typer.Option(..., "--dropbox", "-d", help="The drop-box.")
GROUP = typer.Option(None, "--group", "-g", help="Your group (default: your only one).")


@app.command("ls")
def ls_command(
    prefix: str = typer.Argument("", help="Within your group's folder, e.g. results/."),
    dropbox: str = DROPBOX,
    group: str | None = GROUP,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """List your group's files."""
    found = client_for(token).dropbox_files(dropbox, prefix, group)
    if check_format(fmt) == "json":
        print_json(found, indent=2)
        return
    print_table(["path", "size"], [[f["path"], str(f["size"])] for f in found["files"]])


@app.command("upload")
def upload_command(
    path: Path = typer.Argument(..., help="A file, or a folder (every file below it)."),
    dropbox: str = DROPBOX,
    to: str = typer.Option("inputs", "--to", help="inputs or configs."),
    group: str | None = GROUP,
    token: str | None = TOKEN,
) -> None:
    """Upload data to your group's inputs/ (or a config to configs/)."""
    if to not in ("inputs", "configs"):
        raise typer.BadParameter(f"--to: {to!r}; give inputs or configs")
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    huge = [f for f in files if f.stat().st_size > ONE_REQUEST]
    if huge:
        raise typer.BadParameter(
            f"{huge[0]} has more than 5 GiB, more than one upload sends; copy it with the "
            "store's own tools (aws s3 cp, with keys from the drop-box's administrator)"
        )
    client = client_for(token)
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        if file.stat().st_size > THROUGH_SERVICE:  # straight to the store
            client.dropbox_upload_direct(dropbox, f"{to}/{name}", file, group)
        else:
            client.dropbox_put(dropbox, f"{to}/{name}", file.read_bytes(), group)
        typer.echo(f"uploaded {file} to {to}/{name}")


@app.command("presign")
def presign_command(
    path: str = typer.Argument(..., help="Within your group's folder, e.g. inputs/big.h5."),
    method: str = typer.Option("GET", "--method", "-m", help="GET (download) or PUT (upload)."),
    expires: int | None = typer.Option(
        None, "--expires", min=1, help="Seconds it lasts (default: the service's most)."
    ),
    dropbox: str = DROPBOX,
    group: str | None = GROUP,
    token: str | None = TOKEN,
) -> None:
    """Print a presigned URL that uploads (PUT) or downloads (GET) one file of your
    group's folder straight at the store, with plain HTTP (curl) and no credentials."""
    method = method.upper()
    if method not in ("GET", "PUT"):
        raise typer.BadParameter(f"--method: {method!r}; give GET or PUT")
    made = client_for(token).dropbox_presign(dropbox, path, method, group, expires)
    typer.echo(made["url"])
    typer.echo(f"expires {made['expires']}", err=True)


@app.command("submit")
def submit_command(
    data: list[str] = typer.Option(..., "--data", help="A file in inputs/ (repeatable)."),
    config: str = typer.Option(..., "--config", help="A file in configs/."),
    dropbox: str = DROPBOX,
    timestamp: str | None = typer.Option(None, "--timestamp", help="Default: now."),
    group: str | None = GROUP,
    token: str | None = TOKEN,
) -> None:
    """Write a submit file for data and a config already uploaded; prints where the
    results will appear."""
    from neuroferry.dropbox import submit_file  # the pages write the same file

    client = client_for(token)
    group = group or client.dropbox_files(dropbox, "submissions/", None)["group"]
    made = submit_file(dropbox, group, data, config, timestamp)
    client.dropbox_put(dropbox, made.path, made.body, group)
    typer.echo(f"submitted {len(data)} dataset(s); results in {made.results}/")
    typer.echo(made.timestamp)


def _status(client: Any, dropbox: str, stamp: str, group: str | None) -> tuple[str, bool]:
    folder = f"results/job__{dropbox}_{stamp}"
    # end.txt first: it is written after the last certificate, which is then read
    listed = client.dropbox_files(dropbox, f"{folder}/process_results/", group)["files"]
    end = f"{folder}/process_results/end.txt"
    ended = any(f["path"] == end for f in listed)
    try:
        certificate = client.dropbox_get(dropbox, f"{folder}/logs/certificate.txt", group)
    except NotFound:
        return "", False
    return certificate.decode(errors="replace"), ended


@app.command("watch")
def watch_command(
    timestamp: str = typer.Argument(..., help="The submission's timestamp."),
    dropbox: str = DROPBOX,
    group: str | None = GROUP,
    every: float = typer.Option(2.0, "--every", min=0.1, help="Seconds between looks."),
    token: str | None = TOKEN,
) -> None:
    """Follow a submission's certificate until end.txt appears; exit 0 if every dataset
    succeeded, 1 otherwise."""
    client = client_for(token)
    shown = ""
    while True:
        certificate, ended = _status(client, dropbox, timestamp, group)
        lines = [x for x in certificate.splitlines() if x.startswith("DATANAME:")]
        now = "\n".join(lines) if lines else certificate.strip()
        if now and now != shown:
            typer.echo(now)
            shown = now
        if ended:
            ok = bool(lines) and all("| STATUS: SUCCESS |" in x for x in lines)
            raise typer.Exit(0 if ok else 1)
        time.sleep(every)


@app.command("fetch")
def fetch_command(
    timestamp: str = typer.Argument(..., help="The submission's timestamp."),
    dest: Path = typer.Argument(..., help="A local folder."),
    dropbox: str = DROPBOX,
    group: str | None = GROUP,
    token: str | None = TOKEN,
) -> None:
    """Download a submission's process_results/ (and logs/) to DEST."""
    client = client_for(token)
    base = f"results/job__{dropbox}_{timestamp}/"
    listed = client.dropbox_files(dropbox, base, group)["files"]
    if not listed:
        raise typer.BadParameter(f"nothing in {base} yet")
    for f in listed:
        relative = f["path"].removeprefix(base)
        target = dest / relative
        if ".." in relative.split("/") or relative.startswith("/"):
            raise typer.BadParameter(f"the service listed {f['path']!r}, outside {base}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if f["size"] > THROUGH_SERVICE:  # straight from the store
            client.dropbox_download_direct(dropbox, f["path"], target, group)
        else:
            target.write_bytes(client.dropbox_get(dropbox, f["path"], group))
    typer.echo(f"fetched {len(listed)} files to {dest}")
