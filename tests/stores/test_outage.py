"""A store that goes away mid-sync, leftovers of interrupted runs, and subtle changes."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, run_s3_server, use_s3_endpoint
from neuroferry.errors import StoreError, StoreUnreachable
from neuroferry.stores import SyncOptions, SyncProgress, part_size_for, sync


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and ".ferry" not in p.parts
    }


@pytest.mark.s3
def test_server_going_away_midway_then_the_rerun_completes(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(120):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(128 * 1024))
    root = tmp_path / "s3root"
    (root / "lab").mkdir(parents=True)
    port, log = free_port(), tmp_path / "rclone.log"
    use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{port}", retry_timeout=1)

    done = threading.Event()

    class Slow(SyncProgress):
        def finished(self, path: str, outcome: str) -> None:
            done.set()
            time.sleep(0.02)

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["report"] = sync(
                str(src), "s3://lab/session", SyncOptions(concurrency=2), progress=Slow()
            )
        except StoreError as exc:
            outcome["error"] = exc

    with run_s3_server(root, port, log):
        worker = threading.Thread(target=run)
        worker.start()
        assert done.wait(30), "the sync never finished a file"
    # the server is gone now, part-way through
    worker.join(60)  # it stops at the first file that cannot reach the store
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, StoreUnreachable), outcome
    assert "cannot reach s3://lab/session to write" in str(error)
    assert "run the same command again to send the rest" in str(error)
    arrived = _digests(root / "lab" / "session")
    assert 0 < len(arrived) < 120
    expected = _digests(src)
    for path, digest in arrived.items():  # nothing truncated
        assert digest == expected[path]

    with run_s3_server(root, port, log):
        report = sync(str(src), "s3://lab/session")
    assert report.ok, report.failed
    assert report.files_copied + report.files_skipped == 120
    assert report.files_copied <= 120 - len(arrived) + 2  # at most the in-flight ones again
    assert _digests(root / "lab" / "session") == expected


def test_partial_uploads_of_an_interrupted_run_are_removed(tmp_path):
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    (src / "big" / "volume.raw").write_bytes(b"v" * 1000)
    dest = tmp_path / "dest"
    (dest / "big").mkdir(parents=True)
    (dest / "big" / "volume.raw#1").write_bytes(b"v" * 10)  # what a kill -9 leaves
    (dest / "keep#2").write_bytes(b"not ours: no such source file")
    report = sync(str(src), str(dest))
    assert report.ok
    assert report.notes == ["removed 1 partial uploads of an interrupted run"]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        ".ferry/manifest.json",
        "big/volume.raw",
        "keep#2",
    ]


def test_rewrite_that_restores_the_modification_time_is_noticed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    target = src / "trace.dat"
    target.write_bytes(b"A" * 4096)
    dest = tmp_path / "dest"
    assert sync(str(src), str(dest)).files_copied == 1
    before = target.stat()
    time.sleep(0.01)
    target.write_bytes(b"B" * 4096)  # same size, as `cp -p` or `tar -x` would leave it
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    report = sync(str(src), str(dest))
    assert (report.files_copied, report.files_skipped) == (1, 0)
    assert (dest / "trace.dat").read_bytes() == b"B" * 4096


def test_part_size_grows_only_past_the_s3_limit_of_10000_parts():
    mib = 1024 * 1024
    assert part_size_for(1, 8 * mib) == 8 * mib
    assert part_size_for(10_000 * 8 * mib, 8 * mib) == 8 * mib
    assert part_size_for(10_000 * 8 * mib + 1, 8 * mib) == 9 * mib
    big = 200 * 1024**3  # a 200 GiB acquisition
    part = part_size_for(big, 8 * mib)
    assert part % mib == 0 and -(-big // part) <= 10_000 and part == 21 * mib
