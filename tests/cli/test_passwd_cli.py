"""`ferry users passwd` and `ferry users add --password` against a real `ferry serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from _service import running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("passwd-home")
    with running_service(home, "--no-orchestrator") as svc:
        yield {"FERRY_URL": svc.url, "FERRY_HOME": str(home)}


def ferry(args, *, env, stdin="", check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FERRY_")} | env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no terminal: hidden prompts read stdin
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def signs_in(service, name, password):
    """Whether the password signs ``name`` in; a 429 (the wait after a failed attempt,
    which a slow machine may still be in) is waited out as its Retry-After asks."""
    for _ in range(3):
        answer = httpx.post(
            service["FERRY_URL"] + "/sign-in", data={"name": name, "password": password}
        )
        if answer.status_code != 429:
            break
        time.sleep(float(answer.headers["Retry-After"]))
    return answer.status_code == 303


def test_add_with_a_password_and_change_it(service):
    proc = ferry(["users", "add", "carol", "--password"], env=service, stdin="carol-pw-1\n" * 2)
    assert proc.returncode == 0, proc.stderr
    assert "New password for carol" in proc.stdout and "added user 'carol'" in proc.stdout
    token = proc.stdout.strip().splitlines()[-1]
    assert token.startswith("nf_") and signs_in(service, "carol", "carol-pw-1")
    carol = {"FERRY_URL": service["FERRY_URL"], "FERRY_HOME": "/nonexistent", "FERRY_TOKEN": token}
    me = json.loads(ferry(["users", "me", "-f", "json"], env=carol, check=0).stdout)
    assert me["has_password"] is True

    # one's own password: the current one first
    wrong = ferry(
        ["users", "passwd", "carol", "--password-stdin"], env=carol, stdin="nope\ncarol-pw-2\n"
    )
    assert wrong.returncode == 3 and "not your current password" in wrong.stderr
    ferry(
        ["users", "passwd", "carol", "--password-stdin"],
        env=carol,
        stdin="carol-pw-1\ncarol-pw-2\n",
        check=0,
    )
    assert signs_in(service, "carol", "carol-pw-2") and not signs_in(service, "carol", "carol-pw-1")

    # asked interactively: the current one, then the new one twice
    asked = ferry(
        ["users", "passwd", "carol"], env=carol, stdin="carol-pw-2\ncarol-pw-3\ncarol-pw-3\n"
    )
    assert asked.returncode == 0, asked.stderr
    assert "the password of 'carol' is set" in asked.stdout
    assert signs_in(service, "carol", "carol-pw-3")

    # an admin resets anyone else's without theirs; a user may not
    ferry(
        ["users", "passwd", "carol", "--password-stdin"], env=service, stdin="reset-pw-9\n", check=0
    )
    assert signs_in(service, "carol", "reset-pw-9")
    refused = ferry(
        ["users", "passwd", "admin", "--password-stdin"], env=carol, stdin="x" * 9 + "\n"
    )
    assert refused.returncode == 3 and "only admins may" in refused.stderr


def test_bad_passwords_are_refused_and_create_nothing(service):
    short = ferry(["users", "add", "dave", "--password-stdin"], env=service, stdin="short\n")
    assert short.returncode == 2 and "password: 5 characters is too short" in short.stderr
    users = json.loads(ferry(["users", "list", "-f", "json"], env=service, check=0).stdout)
    assert "dave" not in [u["name"] for u in users]
    empty = ferry(["users", "passwd", "admin", "--password-stdin"], env=service, stdin="")
    assert empty.returncode == 2 and "stdin ended before the new password" in empty.stderr
    nobody = ferry(["users", "passwd", "nobody", "--password-stdin"], env=service, stdin="x" * 9)
    assert nobody.returncode == 3 and "no user is named 'nobody'" in nobody.stderr
