"""`ferry dropbox upload | fetch` of files over the 64 MiB that go through the service: on
an S3 drop-box they go straight to and from the store through presigned URLs (the command
has no store credentials); on a local-folder drop-box they are refused, saying why.
`ferry dropbox group bypass` registers a group's key without ever printing its secret."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _service import running_service
from conftest import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, S3Server
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine
from neuroferry.stores import open_store

BIG = (64 << 20) + 12345
"""Just over what goes through the service."""


def ferry(args: list[str], *, env: dict[str, str], check: int | None = None):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "AWS_"))}
        | {"COLUMNS": "250"}
        | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def service(
    s3_server: S3Server, s3_env: str, tmp_path: Path
) -> Iterator[dict[str, dict[str, str]]]:
    home = tmp_path / "home"
    home.mkdir()
    aws = {
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": S3_REGION,
    }
    with running_service(home, "--no-orchestrator", **aws) as svc:
        admin = {"FERRY_URL": svc.url, "FERRY_HOME": str(home)}
        engine = make_engine(f"sqlite:///{home / 'ferry.db'}")
        alice = {
            "FERRY_URL": svc.url,
            "FERRY_TOKEN": create_token(engine, create_user(engine, "alice")),
        }
        engine.dispose()
        publish = ["dropbox", "publish", "big-box", "--analysis", "file-summary"]
        ferry([*publish, "--store", s3_env], env=admin, check=0)
        add = ["dropbox", "group", "add", "g1", "--dropbox", "big-box", "--member", "alice"]
        ferry(add, env=admin, check=0)
        local = tmp_path / "local-box"
        local.mkdir()
        ferry(
            [
                "dropbox",
                "publish",
                "local-box",
                "--analysis",
                "file-summary",
                "--store",
                str(local),
            ],
            env=admin,
            check=0,
        )
        ferry(
            ["dropbox", "group", "add", "g1", "--dropbox", "local-box", "--member", "alice"],
            env=admin,
            check=0,
        )
        yield {"admin": admin, "alice": alice}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.s3
def test_big_files_go_straight_to_and_from_the_store(
    service: dict[str, dict[str, str]], s3_env: str, tmp_path: Path
) -> None:
    alice = service["alice"]
    big = tmp_path / "big.bin"
    data = os.urandom(BIG)
    big.write_bytes(data)
    out = ferry(["dropbox", "upload", str(big), "--dropbox", "big-box"], env=alice, check=0)
    assert "uploaded" in out.stdout
    store = open_store(s3_env)
    assert digest(store.get("g1/inputs/big.bin")) == digest(data)

    result = os.urandom(BIG)
    store.put("g1/results/job__big-box_t1/process_results/out.bin", result)
    store.put("g1/results/job__big-box_t1/logs/certificate.txt", b"small\n")
    got = tmp_path / "got"
    ferry(["dropbox", "fetch", "t1", str(got), "--dropbox", "big-box"], env=alice, check=0)
    assert digest((got / "process_results/out.bin").read_bytes()) == digest(result)
    assert (got / "logs/certificate.txt").read_bytes() == b"small\n"

    url = ferry(
        ["dropbox", "presign", "configs/c.yaml", "-m", "put", "--dropbox", "big-box"],
        env=alice,
        check=0,
    ).stdout.strip()
    assert httpx.put(url, content=b"scale: 1\n").status_code == 200
    assert store.get("g1/configs/c.yaml") == b"scale: 1\n"
    refused = ferry(
        ["dropbox", "presign", "inputs/big.bin", "--dropbox", "big-box"], env=alice, check=3
    )
    assert "downloading is not allowed in inputs/" in refused.stderr

    refused = ferry(["dropbox", "upload", str(big), "--dropbox", "local-box"], env=alice, check=2)
    assert "lies in a local folder, which has no presigned URLs" in refused.stderr


@pytest.mark.s3
def test_admins_register_a_groups_bypass_without_printing_its_secret(
    service: dict[str, dict[str, str]], s3_server: S3Server
) -> None:
    secret = "the-groups-own-secret-0123"
    args = [
        "dropbox",
        "group",
        "bypass",
        "g1",
        "--dropbox",
        "big-box",
        "--endpoint",
        s3_server.endpoint,
        "--access-key-id",
        "groupkey",
    ]
    env = {**service["admin"], "FERRY_BYPASS_SECRET_ACCESS_KEY": secret}
    out = ferry(args, env=env, check=0)
    assert f"{s3_server.endpoint}, key groupkey" in out.stdout
    assert secret not in out.stdout + out.stderr
    refused = ferry(
        args, env={**service["alice"], "FERRY_BYPASS_SECRET_ACCESS_KEY": secret}, check=3
    )
    assert "only admins" in refused.stderr
    off = ferry(
        ["dropbox", "group", "bypass", "g1", "--dropbox", "big-box", "--remove"],
        env=service["admin"],
        check=0,
    )
    assert "storage bypass is off for group g1" in off.stdout
