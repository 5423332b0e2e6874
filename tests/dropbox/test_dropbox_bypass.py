"""Storage bypass on real S3 servers: a group's data in another store (a second S3 server
with keys of its own), read with the group's key, and its results written to that
store's ``resultpath``, as the seed's users do it with the ``aws`` CLI; bypasses that
name another scheme, the service's own bucket, a store only the service's credentials
reach, or missing data are refused with a certificate, and nothing runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _box import (
    BOX,
    Box,
    clean_git_state,  # noqa: F401  (autouse)
    wait_for,
)
from sqlalchemy import select
from test_dropbox_awscli import aws_command

from _rig import running_rig
from conftest import S3Server, free_port, run_s3_server
from neuroferry.auth import create_user
from neuroferry.db import dropbox_bypass, dropbox_submissions
from neuroferry.dropbox import (
    Bypass,
    add_group,
    certificate_key,
    end_key,
    get_dropbox,
    group_bypass,
    publish_dropbox,
    set_group_bypass,
)
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.stores import open_s3_with, open_store

pytestmark = pytest.mark.s3

GROUP_KEY, GROUP_SECRET = "groupkey-elsewhere", "groupsecret-elsewhere-0123"


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Another S3 server, the group's own store: the service's key does not open it."""
    base = tmp_path_factory.mktemp("elsewhere")
    (base / "root").mkdir()
    with run_s3_server(
        base / "root", free_port(), base / "rclone.log", GROUP_KEY, GROUP_SECRET
    ) as server:
        yield server


@pytest.fixture
def rig_box(s3_env: str, tmp_path: Path, elsewhere: S3Server) -> Iterator[tuple[Box, Any]]:
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.1) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", s3_env)
        for group in ("user1", "user2", "user3", "user4"):
            add_group(rig.engine, rig.settings, admin, group, BOX, [])
        signed = Bypass(elsewhere.endpoint, "us-east-1", GROUP_KEY, GROUP_SECRET)
        set_group_bypass(rig.engine, rig.settings, admin, BOX, "user1", signed)
        # user3: the other store, unsigned; user4: the service's own store, unsigned
        set_group_bypass(rig.engine, rig.settings, admin, BOX, "user3", Bypass(elsewhere.endpoint))
        service_endpoint = os.environ["AWS_ENDPOINT_URL"]
        set_group_bypass(rig.engine, rig.settings, admin, BOX, "user4", Bypass(service_endpoint))
        rig.start()
        yield Box(rig, open_store(s3_env), s3_env), admin


def aws(server: S3Server, *args: str) -> str:
    """The seed's users' own command, with their own key for ``server``."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = subprocess.run(
        [aws_command(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_bypass_reads_another_store_and_writes_results_to_its_resultpath(
    rig_box: tuple[Box, Any], elsewhere: S3Server, s3_server: S3Server, tmp_path: Path
) -> None:
    box, _ = rig_box
    data, out = elsewhere.make_bucket(), elsewhere.make_bucket()
    local = tmp_path / "mine"
    (local / "sep_inputs").mkdir(parents=True)
    (local / "sep_inputs/data1.txt").write_text("a\nb\nc\n")
    (local / "sep_inputs/data2.txt").write_text("a\n")
    (local / "configsep.json").write_text(json.dumps({"scale": 2, "label": "bypassed"}))
    aws(elsewhere, "s3", "sync", str(local / "sep_inputs"), f"s3://{data}/sep_inputs/")
    aws(elsewhere, "s3", "cp", str(local / "configsep.json"), f"s3://{data}/sep_configs/")
    submit = {
        "dataname": [f"s3://{data}/sep_inputs/data1.txt", f"s3://{data}/sep_inputs/data2.txt"],
        "configname": f"s3://{data}/sep_configs/configsep.json",
        "timestamp": "testtimestamp",
        "resultpath": f"s3://{out}/sep_results",
    }
    (local / "submit.json").write_text(json.dumps(submit))
    # the submit file goes to the drop-box, with the drop-box's key
    aws(s3_server, "s3", "cp", str(local / "submit.json"), f"{box.url}/user1/submissions/")

    folder = f"user1/results/job__{BOX}_testtimestamp"
    wait_for(lambda: box.exists(end_key(folder)), "end.txt in the drop-box")
    cert = box.text(certificate_key(folder))
    assert cert.count("| STATUS: SUCCESS |") == 2, cert
    assert f"Storage Bypass initiated from bucket: s3://{data}" in cert
    assert f"Results written to s3://{out}/sep_results/job__{BOX}_testtimestamp/" in cert
    assert f"DATANAME: s3://{data}/sep_inputs/data1.txt" in cert
    assert f"config file s3://{data}/sep_configs/configsep.json" in cert
    # the copied data is gone from the drop-box once the job has ended
    assert not [e for e in box.store.list(f"{folder}/bypass_inputs/")]

    got = tmp_path / "got"
    aws(elsewhere, "s3", "sync", f"s3://{out}/sep_results/", str(got))
    job = got / f"job__{BOX}_testtimestamp" / "process_results"
    assert (job / "end.txt").read_bytes() == b"end of analysis marker"
    counts = sorted(json.dumps(json.loads(p.read_text())) for p in job.rglob("lines.json"))
    assert counts == [
        json.dumps({"label": "bypassed", "data1.txt": 6.0}),
        json.dumps({"label": "bypassed", "data2.txt": 2.0}),
    ]


SECRET_PARTS = ("wJalrXUtnFEMI", "K7MDENG", "bPxRfiCYEXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE", "sec/ret")
SLASHED = {
    "slash": "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY@bucket-x/in/d.txt",
    "slash_encoded": (
        "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY@bucket-x/in/d.txt"
    ),
    "slash_https": "https://KEY:sec/ret@host/x",
}


def leaks(text: str) -> bool:
    """Whether ``text`` shows any part of the secrets in :data:`SLASHED`."""
    return any(part in text for part in SECRET_PARTS)


def refused(box: Box, folder: str) -> str:
    wait_for(lambda: box.exists(end_key(folder)), f"end.txt of {folder}")
    return box.text(certificate_key(folder))


def test_bad_bypasses_get_a_certificate_and_nothing_runs(
    rig_box: tuple[Box, Any],
    elsewhere: S3Server,
    s3_server: S3Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="neuroferry")
    box, _ = rig_box
    data = elsewhere.make_bucket()
    theirs = s3_server.make_bucket()  # the service's key reaches it, the group's does not
    store = open_s3_with(
        data,
        endpoint=elsewhere.endpoint,
        region="us-east-1",
        access_key_id=GROUP_KEY,
        secret_access_key=GROUP_SECRET,
        settings=box.rig.settings,
    )
    store.put("in/d.txt", b"x\n")
    store.put("c.json", b"{}")
    own = box.url.removeprefix("s3://")
    box.put("user1/configs/c.json", "{}")
    box.put("user1/inputs/d.txt", "x\n")
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "scheme": ("user1", {"dataname": "gopher://h/x", "configname": "gopher://h/c.json"}),
        "file": ("user1", {"dataname": "file:///etc/passwd", "configname": "file:///c.json"}),
        "creds": (
            "user1",
            {
                "dataname": f"s3://{GROUP_KEY}:{GROUP_SECRET}@{data}/in/d.txt",
                "configname": f"s3://{data}/c.json",
            },
        ),
        "https_creds": (
            "user1",
            {
                "dataname": f"https://{GROUP_KEY}:{GROUP_SECRET}@example.org/d.txt",
                "configname": f"https://{GROUP_KEY}:{GROUP_SECRET}@example.org/c.json",
            },
        ),
        "climb": (
            "user1",
            {"dataname": f"s3://{data}/in/%2e%2e/in/d.txt", "configname": f"s3://{data}/c.json"},
        ),
        "bucket": (
            "user1",
            {"dataname": "s3://Not_A_Bucket/d.txt", "configname": "s3://Not_A_Bucket/c.json"},
        ),
        "missing": (
            "user1",
            {"dataname": [f"s3://{data}/in/nope.txt"], "configname": f"s3://{data}/c.json"},
        ),
        "own": (
            "user1",
            {"dataname": f"s3://{own}/user2/inputs/x", "configname": f"s3://{own}/c.json"},
        ),
        "result_scheme": (
            "user1",
            {
                "dataname": "user1/inputs/d.txt",
                "configname": "user1/configs/c.json",
                "resultpath": "https://example.org/up",
            },
        ),
        "off": (
            "user2",
            {"dataname": f"s3://{data}/in/d.txt", "configname": f"s3://{data}/c.json"},
        ),
        "unsigned": (
            "user3",
            {"dataname": f"s3://{data}/in/d.txt", "configname": f"s3://{data}/c.json"},
        ),
        # a bucket only the service's own key reaches: the group's (unsigned) access
        # does not, and the service's key is never lent
        "service_key": (
            "user4",
            {
                "dataname": "user4/inputs/d.txt",
                "configname": "user4/configs/c.json",
                "resultpath": f"s3://{theirs}/results",
            },
        ),
    }
    # secrets holding '/' (raw, encoded, or in an https:// URL) are never repeated
    for name, url in SLASHED.items():
        cases[name] = ("user1", {"dataname": url, "configname": f"s3://{data}/c.json"})
        cases[f"result_{name}"] = (
            "user1",
            {
                "dataname": "user1/inputs/d.txt",
                "configname": "user1/configs/c.json",
                "resultpath": url,
            },
        )
    box.put("user4/configs/c.json", "{}")
    box.put("user4/inputs/d.txt", "x\n")
    for name, (group, fields) in cases.items():
        box.submit(f"{group}/submissions/{name}_submit.json", {**fields, "timestamp": name})
    certs = {
        name: refused(box, f"{group}/results/job__{BOX}_{name}")
        for name, (group, _) in cases.items()
    }
    assert "is gopher://; storage bypass reads and writes s3:// URLs only" in certs["scheme"]
    assert "is file://; storage bypass reads and writes s3:// URLs only" in certs["file"]
    assert "'dataname[0]': the URL holds '@'" in certs["creds"]
    assert "'dataname[0]': the URL holds '@'" in certs["https_creds"]
    for name in SLASHED:
        assert "'dataname[0]': the URL holds '@'" in certs[name], certs[name]
        assert "'resultpath': the URL holds '@'" in certs[f"result_{name}"]
    assert all(GROUP_SECRET not in cert for cert in certs.values())
    assert all(not leaks(cert) for cert in certs.values()), certs
    with box.rig.engine.connect() as conn:
        errors = [r.error or "" for r in conn.execute(select(dropbox_submissions))]
    assert len(errors) >= len(cases) and not any(leaks(e) for e in errors)
    assert "the URL holds '@'" in caplog.text and not leaks(caplog.text)
    assert "segment '..'" in certs["climb"]
    assert "is not a valid bucket name" in certs["bucket"]
    assert f"cannot be found: ['s3://{data}/in/nope.txt']" in certs["missing"]
    assert f"s3://{own} is one of this service's own buckets" in certs["own"]
    assert "'resultpath': https://example.org/up is https://" in certs["result_scheme"]
    assert (
        "storage bypass (s3:// data or a resultpath) is not enabled for your group"
        in (certs["off"])
    )
    assert f"'dataname': s3://{data}/in/d.txt cannot be reached" in certs["unsigned"]
    assert f"'resultpath': s3://{theirs}/results cannot be reached" in (certs["service_key"])
    for cert in certs.values():
        assert "Nothing was run." in cert and "What to do: " in cert
    assert box.analysis_jobs() == []


def test_the_groups_secret_is_stored_encrypted_and_never_shown(
    rig_box: tuple[Box, Any], elsewhere: S3Server
) -> None:
    box, admin = rig_box
    engine, settings = box.rig.engine, box.rig.settings
    with engine.connect() as conn:
        stored = [r.secret for r in conn.execute(select(dropbox_bypass))]
    assert stored and all(GROUP_SECRET not in (s or "") for s in stored)
    found = group_bypass(engine, settings, box_of(box), "user1")
    assert found is not None and found.secret_access_key == GROUP_SECRET
    assert GROUP_SECRET not in repr(found) and GROUP_SECRET not in json.dumps(found.as_dict())
    user = create_user(engine, "mallory")
    with pytest.raises(Forbidden):
        set_group_bypass(engine, settings, user, BOX, "user1", Bypass(elsewhere.endpoint))
    with pytest.raises(InvalidInput, match="give both"):
        set_group_bypass(engine, settings, admin, BOX, "user1", Bypass(None, None, "k", None))
    with pytest.raises(InvalidInput, match="endpoint: 'ftp://h'"):
        set_group_bypass(engine, settings, admin, BOX, "user1", Bypass("ftp://h"))
    with pytest.raises(InvalidInput, match="without credentials"):
        set_group_bypass(engine, settings, admin, BOX, "user1", Bypass("http://a:b@127.0.0.1:1"))


def box_of(box: Box) -> Any:
    return get_dropbox(box.rig.engine, BOX)


def test_a_local_folder_dropbox_bypasses_to_another_store_too(
    tmp_path: Path, elsewhere: S3Server
) -> None:
    folder = tmp_path / "box"
    folder.mkdir()
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.1) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", str(folder))
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [])
        signed = Bypass(elsewhere.endpoint, "us-east-1", GROUP_KEY, GROUP_SECRET)
        set_group_bypass(rig.engine, rig.settings, admin, BOX, "user1", signed)
        rig.start()
        box = Box(rig, open_store(str(folder)), folder.as_uri())
        bucket = elsewhere.make_bucket()
        theirs = open_s3_with(
            bucket,
            endpoint=elsewhere.endpoint,
            region="us-east-1",
            access_key_id=GROUP_KEY,
            secret_access_key=GROUP_SECRET,
            settings=rig.settings,
        )
        # data in the group's own folder, results to the other store
        box.put("user1/inputs/d.txt", "1\n2\n")
        box.put("user1/configs/c.yaml", "label: here\n")
        box.submit(
            "user1/submissions/submit.json",
            {
                "dataname": "user1/inputs/d.txt",
                "configname": "user1/configs/c.yaml",
                "timestamp": "local1",
                "resultpath": f"s3://{bucket}/out/",
            },
        )
        job = f"user1/results/job__{BOX}_local1"
        wait_for(lambda: box.exists(end_key(job)), "end.txt")
        assert "| STATUS: SUCCESS |" in box.text(certificate_key(job))
        written = sorted(e.path for e in theirs.list(f"out/job__{BOX}_local1/"))
        assert f"out/job__{BOX}_local1/process_results/end.txt" in written
        lines = [p for p in written if p.endswith("lines.json")]
        assert len(lines) == 1
        assert json.loads(theirs.get(lines[0])) == {"label": "here", "d.txt": 2.0}


def test_bypass_data_over_the_limit_is_refused_before_anything_is_copied(
    tmp_path: Path, elsewhere: S3Server
) -> None:
    folder = tmp_path / "box"
    folder.mkdir()
    url = "sqlite:///" + str(tmp_path / "ferry.db")
    with running_rig(url, dropbox_poll=0.1, dropbox_bypass_max_bytes=10) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", str(folder))
        add_group(rig.engine, rig.settings, admin, "user1", BOX, [])
        signed = Bypass(elsewhere.endpoint, "us-east-1", GROUP_KEY, GROUP_SECRET)
        set_group_bypass(rig.engine, rig.settings, admin, BOX, "user1", signed)
        rig.start()
        box = Box(rig, open_store(str(folder)), folder.as_uri())
        bucket = elsewhere.make_bucket()
        theirs = open_s3_with(
            bucket,
            endpoint=elsewhere.endpoint,
            region="us-east-1",
            access_key_id=GROUP_KEY,
            secret_access_key=GROUP_SECRET,
            settings=rig.settings,
        )
        theirs.put("in/a.txt", b"1\n2\n3\n")  # 6 bytes: within the limit alone
        theirs.put("in/b.txt", b"4\n5\n6\n")  # 12 in all: more than 10
        theirs.put("c.json", b"{}")
        for name, names in (("big", ["in/a.txt", "in/b.txt"]), ("small", ["in/a.txt"])):
            box.submit(
                f"user1/submissions/{name}_submit.json",
                {
                    "dataname": [f"s3://{bucket}/{n}" for n in names],
                    "configname": f"s3://{bucket}/c.json",
                    "timestamp": name,
                },
            )
        big = f"user1/results/job__{BOX}_big"
        cert = refused(box, big)
        assert "'dataname' names 12 bytes of data (12 B), more than the 10 bytes" in cert, cert
        assert "setting dropbox_bypass_max_bytes" in cert and "Nothing was run." in cert
        assert not [e for e in box.store.list(f"{big}/bypass_inputs/")]
        small = f"user1/results/job__{BOX}_small"
        wait_for(lambda: box.exists(end_key(small)), "end.txt of the small job")
        assert "| STATUS: SUCCESS |" in box.text(certificate_key(small))
