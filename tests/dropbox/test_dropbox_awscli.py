"""The seed's users' own commands, with the real ``aws`` CLI (PyPI awscli) against the test
S3 server: three datasets uploaded with ``aws s3 sync`` and ``aws s3 cp``, a submit file
dropped, the certificate fetched and the results synced back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _box import (
    BOX,
    Box,
    clean_git_state,  # noqa: F401  (autouse)
    wait_for,
)

from _rig import running_rig
from conftest import unavailable
from neuroferry.auth import create_user
from neuroferry.dropbox import add_group, publish_dropbox
from neuroferry.stores import open_store

pytestmark = pytest.mark.s3


def aws_command() -> str:
    found = shutil.which("aws") or shutil.which("aws", path=os.path.dirname(sys.executable))
    if found is None:
        unavailable("the aws CLI (PyPI awscli, in the test extra) is not installed")
    assert found is not None
    return found


@pytest.fixture
def bucket(s3_env: str, tmp_path: Path) -> Iterator[tuple[str, Box]]:
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.1) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", s3_env)
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [])
        rig.start()
        yield s3_env, Box(rig, open_store(s3_env), s3_env)


def test_the_seeds_aws_commands_work_unchanged(bucket: tuple[str, Box], tmp_path: Path) -> None:
    url, box = bucket
    aws = aws_command()
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ["AWS_REGION"]}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [aws, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    listed = run("s3", "ls", f"{url}/user1/").stdout
    assert {line.split()[-1] for line in listed.splitlines()} == {
        "inputs/",
        "configs/",
        "submissions/",
        "results/",
    }

    data = tmp_path / "data"
    data.mkdir()
    for i in (1, 2, 3):
        (data / f"data{i}.txt").write_text("line\n" * (i + 1))
    (tmp_path / "config.yaml").write_text("__duration__: 10\nlabel: seed\n")
    submit = tmp_path / "submit.json"
    submit.write_text(
        json.dumps(
            {
                "dataname": [f"user1/inputs/data{i}.txt" for i in (1, 2, 3)],
                "configname": "user1/configs/config.yaml",
                "timestamp": "unique_timestamp",
            }
        )
    )
    run("s3", "sync", str(data), f"{url}/user1/inputs/")
    run("s3", "cp", str(tmp_path / "config.yaml"), f"{url}/user1/configs/config.yaml")
    run("s3", "cp", str(submit), f"{url}/user1/submissions/")

    job = f"{url}/user1/results/job__{BOX}_unique_timestamp"
    wait_for(
        lambda: run("s3", "ls", f"{job}/process_results/end.txt", check=False).returncode == 0,
        "end.txt",
        timeout=120,
    )
    logs = tmp_path / "logs"
    run("s3", "cp", f"{job}/logs/certificate.txt", f"{logs}/")
    certificate = (logs / "certificate.txt").read_text()
    assert certificate.count("| STATUS: SUCCESS |") == 3, certificate
    run("s3", "sync", f"{job}/logs/", str(logs))
    assert sorted(p.name for p in logs.iterdir()) == [
        "DATASET_NAME:data1.txt_STATUS.txt",
        "DATASET_NAME:data2.txt_STATUS.txt",
        "DATASET_NAME:data3.txt_STATUS.txt",
        "certificate.txt",
    ]

    results = tmp_path / "results"
    run("s3", "sync", f"{job}/process_results/", f"{results}/")
    assert (results / "end.txt").read_bytes() == b"end of analysis marker"
    counted = {}
    for found in results.glob("count-lines/*/lines.json"):
        counted.update(json.loads(found.read_text()))
    assert counted == {"label": "seed", "data1.txt": 2.0, "data2.txt": 3.0, "data3.txt": 4.0}
    assert len(box.analysis_jobs()) == 1
