"""``ferry users`` and ``ferry tokens``: accounts, roles, passwords and API tokens."""

from __future__ import annotations

import sys
from typing import Any

import typer

from neuroferry.cli._common import FORMAT, TOKEN, check_format, client_for
from neuroferry.cli._output import print_json, print_table, when

users_app = typer.Typer(
    help="Users, their roles and passwords (admins add and remove them).", no_args_is_help=True
)
tokens_app = typer.Typer(
    help="API tokens: create, list and revoke them. A token is shown once, when created.",
    no_args_is_help=True,
)

PASSWORD_STDIN = typer.Option(
    False,
    "--password-stdin",
    help="Read the password from the first line of stdin instead of asking (for scripts).",
)


def _print_users(found: list[dict[str, Any]]) -> None:
    print_table(
        ["name", "role", "email", "created", "active tokens"],
        [
            [
                u["name"],
                u["role"],
                u.get("email") or "",
                when(u.get("created")),
                str(u.get("active_tokens", "")),
            ]
            for u in found
        ],
    )


def _print_token(made: dict[str, Any]) -> None:
    """The token alone on stdout (so that scripts can capture it), the rest on stderr."""
    expires = f", expires {when(made['expires'])}" if made.get("expires") else ""
    label = f" {made['label']!r}" if made.get("label") else ""
    typer.echo(
        f"API token{label} of {made['user']} (id {made['id']}{expires}); it is shown only "
        "now: keep it, e.g. in token.json or FERRY_TOKEN",
        err=True,
    )
    typer.echo(made["token"])


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise typer.BadParameter(f"--password-stdin: stdin ended before the {what}")
    return line.rstrip("\r\n")


def _new_password(name: str, from_stdin: bool) -> str:
    """The new password: the next line of stdin, or asked twice without echo."""
    if from_stdin:
        return _stdin_line("new password")
    password: str = typer.prompt(
        f"New password for {name}", hide_input=True, confirmation_prompt=True
    )
    return password


# -- users --------------------------------------------------------------------------------


@users_app.command("add")
def users_add_command(
    name: str = typer.Argument(..., help="Letters, digits, '.', '-', '_' or '@'."),
    email: str | None = typer.Option(None, "--email", help="Where the user's job e-mails go."),
    role: str = typer.Option(
        "user",
        "--role",
        help="user, admin, or worker (a machine that runs `ferry ingest join`).",
    ),
    no_token: bool = typer.Option(
        False, "--no-token", help="Do not create the user's first API token."
    ),
    password: bool = typer.Option(
        False, "--password", help="Ask for a first password, to sign in to the web pages."
    ),
    password_stdin: bool = PASSWORD_STDIN,
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Add a user (admins) and print their first API token, once."""
    fmt = check_format(fmt)
    secret = _new_password(name, password_stdin) if password or password_stdin else None
    client = client_for(token)
    user = client.users_add(name, email, role, secret)
    made = None if no_token else client.tokens_create("first token", user=user["name"])
    if fmt == "json":
        print_json({"user": user, "token": made})
        return
    typer.echo(f"added user {user['name']!r} ({user['role']})")
    if made is not None:
        _print_token(made)


@users_app.command("list")
def users_list_command(fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """List the users (admins)."""
    fmt = check_format(fmt)
    found = client_for(token).users_list()
    if fmt == "json":
        print_json(found)
    else:
        _print_users(found)


@users_app.command("remove")
def users_remove_command(
    name: str = typer.Argument(..., help="The user to remove."), token: str | None = TOKEN
) -> None:
    """Remove a user and revoke their tokens (admins). Their jobs stay."""
    client_for(token).users_remove(name)
    typer.echo(f"removed user {name!r}")


@users_app.command("passwd")
def users_passwd_command(
    name: str = typer.Argument(..., help="Whose password: yours, or (admins) anyone's."),
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="Read the new password from stdin's first line instead of asking; for your "
        "own password, when you have one, the current one comes first, on its own line.",
    ),
    token: str | None = TOKEN,
) -> None:
    """Set the password someone signs in to the web pages with: your own (you are asked
    for the current one, if you have one) or, as an admin, anyone else's. Their web
    sign-ins end; their API tokens keep working."""
    client = client_for(token)
    me = client.users_me()
    current = None
    if me["name"] == name and me.get("has_password"):
        if password_stdin:
            current = _stdin_line("current password")
        else:
            current = typer.prompt("Current password", hide_input=True)
    client.users_passwd(name, _new_password(name, password_stdin), current)
    typer.echo(f"the password of {name!r} is set")


@users_app.command("me")
def users_me_command(fmt: str = FORMAT, token: str | None = TOKEN) -> None:
    """Show who the API token belongs to."""
    fmt = check_format(fmt)
    me = client_for(token).users_me()
    if fmt == "json":
        print_json(me)
    else:
        _print_users([me])


# -- tokens -------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create_command(
    label: str = typer.Option("", "--label", help="What the token is for, e.g. 'laptop'."),
    expires_days: int | None = typer.Option(
        None, "--expires-days", min=1, max=3650, help="Valid for N days (default: until revoked)."
    ),
    user: str | None = typer.Option(
        None, "--user", help="Create it for another user, e.g. for a script (admins)."
    ),
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """Create an API token and print it, once (only the token goes to stdout)."""
    fmt = check_format(fmt)
    made = client_for(token).tokens_create(label, expires_days, user)
    if fmt == "json":
        print_json(made)
    else:
        _print_token(made)


@tokens_app.command("list")
def tokens_list_command(
    user: str | None = typer.Option(None, "--user", help="Another user's tokens (admins)."),
    fmt: str = FORMAT,
    token: str | None = TOKEN,
) -> None:
    """List your tokens (never the tokens themselves), revoked and expired ones too."""
    fmt = check_format(fmt)
    found = client_for(token).tokens_list(user)
    if fmt == "json":
        print_json(found)
        return
    print_table(
        ["id", "user", "label", "created", "expires", "state"],
        [
            [
                str(t["id"]),
                t["user"],
                t.get("label") or "",
                when(t.get("created")),
                when(t.get("expires")) or "never",
                t["state"],
            ]
            for t in found
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke_command(
    token_id: int = typer.Argument(
        ..., metavar="ID", help="The token's id (see `ferry tokens list`)."
    ),
    token: str | None = TOKEN,
) -> None:
    """Revoke a token: your own, or (admins) anyone's. It stops working at once."""
    client_for(token).tokens_revoke(token_id)
    typer.echo(f"revoked token {token_id}")
