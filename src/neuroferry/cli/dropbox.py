"""``ferry dropbox``: drop-boxes (an analysis published at a store location, a folder per
user group) and their groups."""

from __future__ import annotations

import typer

from neuroferry.cli._common import FORMAT, TOKEN, check_format, client_for
from neuroferry.cli._output import print_json, print_table, when

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


@group_app.command("add")
def group_add_command(
    group: str = typer.Argument(..., help="The group's name: its folder in the drop-box."),
    dropbox: str = typer.Option(..., "--dropbox", help="The drop-box."),
    member: list[str] = typer.Option([], "--member", help="A user of the group (repeatable)."),
    token: str | None = TOKEN,
) -> None:
    """Add a user group to a drop-box and make its inputs/ configs/ submissions/ results/
    folders (admins)."""
    made = client_for(token).dropboxes_add_group(dropbox, group, member)
    folder = f"{made['store'].rstrip('/')}/{group}/"
    typer.echo(
        f"group {group} of drop-box {made['name']}: {folder}{{inputs,configs,submissions,results}}/"
    )


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
                    f"{g['name']} ({', '.join(g['members']) or 'no members'})" for g in b["groups"]
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
