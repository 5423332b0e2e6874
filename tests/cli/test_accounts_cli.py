"""`ferry users` and `ferry tokens` against a real `ferry serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from _service import running_service
from conftest import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running `ferry serve` (web only: accounts need no executor) and its FERRY_HOME,
    where the first admin's token.json is."""
    home = tmp_path_factory.mktemp("accounts-home")
    with running_service(home, "--no-orchestrator") as svc:
        yield {"FERRY_URL": svc.url, "FERRY_HOME": str(home)}


def ferry(args, *, env, check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        | {"COLUMNS": "250"}
        | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def as_user(service, token):
    """The service's address with ``token`` and no FERRY_HOME token to fall back on."""
    return {"FERRY_URL": service["FERRY_URL"], "FERRY_HOME": "/nonexistent", "FERRY_TOKEN": token}


def test_admin_adds_a_user_who_gets_a_working_token(service):
    proc = ferry(
        ["users", "add", "alice", "--email", "alice@lab.example.org"], env=service, check=0
    )
    added, token = proc.stdout.splitlines()
    assert added == "added user 'alice' (user)"
    assert token.startswith("nf_") and "shown only now" in proc.stderr
    me = json.loads(ferry(["users", "me", "-f", "json"], env=as_user(service, token)).stdout)
    assert (me["name"], me["email"], me["role"]) == ("alice", "alice@lab.example.org", "user")

    made = json.loads(
        ferry(["users", "add", "robot", "--no-token", "-f", "json"], env=service, check=0).stdout
    )
    assert made["user"]["name"] == "robot" and made["token"] is None
    found = json.loads(ferry(["users", "list", "--format", "json"], env=service, check=0).stdout)
    by_name = {u["name"]: u for u in found}
    assert by_name["alice"]["active_tokens"] == 1 and by_name["robot"]["active_tokens"] == 0
    assert by_name["admin"]["role"] == "admin"
    table = ferry(["users", "list"], env=service, check=0).stdout
    assert "alice@lab.example.org" in table and "robot" in table


def test_tokens_create_list_and_revoke(service):
    proc = ferry(["users", "add", "bob"], env=service, check=0)
    bob = as_user(service, proc.stdout.splitlines()[1])
    made = ferry(["tokens", "create", "--label", "laptop", "--expires-days", "7"], env=bob, check=0)
    laptop = made.stdout.strip()  # the token alone on stdout
    assert laptop.startswith("nf_") and "'laptop' of bob" in made.stderr
    listed = json.loads(ferry(["tokens", "list", "-f", "json"], env=bob, check=0).stdout)
    assert [t["label"] for t in listed] == ["first token", "laptop"]
    assert listed[1]["expires"] is not None and laptop not in json.dumps(listed)
    table = ferry(["tokens", "list"], env=bob, check=0).stdout
    assert "laptop" in table and "never" in table and "active" in table

    laptop_id = str(listed[1]["id"])
    assert ferry(["tokens", "revoke", laptop_id], env=bob, check=0).stdout == (
        f"revoked token {laptop_id}\n"
    )
    proc = ferry(["users", "me"], env=as_user(service, laptop), check=3)
    assert "not valid" in proc.stderr and "HTTP 401" in proc.stderr
    states = [
        t["state"] for t in json.loads(ferry(["tokens", "list", "-f", "json"], env=bob).stdout)
    ]
    assert states == ["active", "revoked"]


def test_users_keep_to_their_own_tokens_and_admins_do_not(service):
    carol = as_user(service, ferry(["users", "add", "carol"], env=service).stdout.split()[-1])
    admin_tokens = json.loads(ferry(["tokens", "list", "-f", "json"], env=service).stdout)
    admin_id = str(admin_tokens[0]["id"])
    proc = ferry(["tokens", "revoke", admin_id], env=carol, check=3)
    assert f"no token with id {admin_id}" in proc.stderr
    proc = ferry(["tokens", "list", "--user", "admin"], env=carol, check=3)
    assert "only admins may list another user's tokens" in proc.stderr
    proc = ferry(["users", "list"], env=carol, check=3)
    assert "only admins may" in proc.stderr and "HTTP 403" in proc.stderr
    assert ferry(["tokens", "create", "--user", "admin"], env=carol, check=3).returncode == 3

    # an admin makes a token for carol's script, sees it, and revokes it
    script = ferry(["tokens", "create", "--user", "carol", "--label", "nightly"], env=service)
    assert script.returncode == 0 and "'nightly' of carol" in script.stderr
    me = json.loads(
        ferry(["users", "me", "-f", "json"], env=as_user(service, script.stdout.strip())).stdout
    )
    assert me["name"] == "carol"
    theirs = json.loads(
        ferry(["tokens", "list", "--user", "carol", "-f", "json"], env=service).stdout
    )
    nightly = next(t for t in theirs if t["label"] == "nightly")
    ferry(["tokens", "revoke", str(nightly["id"])], env=service, check=0)
    ferry(["users", "me"], env=as_user(service, script.stdout.strip()), check=3)


def test_removing_a_user_ends_their_tokens(service):
    dave = as_user(service, ferry(["users", "add", "dave"], env=service).stdout.split()[-1])
    ferry(["users", "me"], env=dave, check=0)
    assert (
        ferry(["users", "remove", "dave"], env=service, check=0).stdout == "removed user 'dave'\n"
    )
    ferry(["users", "me"], env=dave, check=3)
    proc = ferry(["users", "remove", "dave"], env=service, check=3)
    assert "no user is named 'dave'" in proc.stderr
    proc = ferry(["users", "remove", "admin"], env=service, check=2)
    assert "cannot remove themselves" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add", "bad name"], "name: 'bad name' is not allowed"),
        (["users", "add", "erin", "--role", "root"], "role: 'root' is not allowed"),
        (["users", "add", "erin", "--email", "nope"], "email: 'nope' is not an e-mail"),
        (["users", "add", "admin"], "a user named 'admin' already exists"),
        (["users", "list", "-f", "xml"], "'xml' is not a format; allowed: table, json"),
        (["tokens", "create", "--expires-days", "0"], "--expires-days"),
        (["tokens", "create", "--label", "x" * 200], "label"),
        (["tokens", "revoke", "abc"], "Invalid value for 'ID'"),
    ],
)
def test_bad_input_exits_2_with_a_message(service, args, message):
    proc = ferry(args, env=service, check=2)
    assert message in proc.stderr


def test_service_not_running():
    env = {"FERRY_URL": f"http://127.0.0.1:{free_port()}", "FERRY_TOKEN": "nf_x"}
    proc = ferry(["tokens", "list"], env=env, check=3)
    assert "cannot reach the neuroferry service" in proc.stderr
