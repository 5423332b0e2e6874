"""The ``ferry`` command as a user runs it: a real process, its output and exit code."""

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from neuroferry import __version__
from neuroferry.db import head_revision


def ferry(*args, check=None, **kwargs):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(20):
        (src / f"f{i}.dat").write_bytes(os.urandom(1000 + i))
    (src / "sub" / "notes.txt").write_text("session notes\n")
    return src


def test_version():
    assert ferry("--version", check=0).stdout.strip() == f"neuroferry {__version__}"


def test_help_documents_memory_bound_and_exit_codes():
    out = ferry("sync", "--help", check=0).stdout
    assert "max(concurrency, 3) x part size" in out
    assert "Exit codes" in out and "--follow-symlinks" in out


def test_sync_json_then_nothing_to_do(tree, tmp_path):
    dest = tmp_path / "dest"
    first = json.loads(ferry("sync", str(tree), str(dest), "--json", check=0).stdout)
    assert (first["files_copied"], first["files_failed"]) == (21, 0)
    assert first["bytes_copied"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert (dest / "sub" / "notes.txt").read_text() == "session notes\n"
    second = json.loads(ferry("sync", str(tree), str(dest), "--json", check=0).stdout)
    assert (second["files_copied"], second["bytes_copied"], second["files_skipped"]) == (0, 0, 21)


def test_human_summary_and_ls(tree, tmp_path):
    dest = tmp_path / "dest"
    out = ferry("sync", str(tree), str(dest), check=0).stdout
    assert "copied: 21 files" in out and "failed: 0 files" in out and "MB/s" in out
    listing = ferry("ls", str(dest), check=0).stdout
    digest = hashlib.sha256(b"session notes\n").hexdigest()
    assert f"{digest}  sub/notes.txt" in listing
    assert ".ferry" not in listing
    assert listing.strip().splitlines()[-1].startswith("21 files, ")


def test_dry_run_writes_nothing(tree, tmp_path):
    dest = tmp_path / "dest"
    out = ferry("sync", str(tree), str(dest), "--dry-run", check=0).stdout
    assert "would copy: 21 files" in out
    assert not dest.exists()


def test_missing_source_is_exit_3_with_a_clear_message(tmp_path):
    proc = ferry("sync", str(tmp_path / "nope"), str(tmp_path / "d"), check=3)
    assert f"error: local folder {tmp_path / 'nope'} does not exist" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://host/x"], "scheme 'ftp'; allowed: file://, s3://"),
        (["DEST", "--part-size", "1MiB"], "part size must be at least 5 MiB"),
        (["DEST", "--part-size", "lots"], "is not a size"),
        (["DEST", "--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_input_is_exit_2(tree, tmp_path, args, message):
    args = [str(tmp_path / "d") if a == "DEST" else a for a in args]
    proc = ferry("sync", str(tree), *args, check=2)
    assert message in proc.stderr


def test_failed_files_are_listed_and_exit_1(tree, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the session")
    (tree / "escape.txt").symlink_to(outside)
    dest = tmp_path / "dest"
    proc = ferry("sync", str(tree), str(dest), check=1)
    assert "copied: 21 files" in proc.stdout and "failed: 1 files" in proc.stdout
    assert "FAILED escape.txt: symlink to" in proc.stderr and "--follow-symlinks" in proc.stderr
    assert not (dest / "escape.txt").exists()
    followed = ferry("sync", str(tree), str(dest), "--follow-symlinks", "--json", check=0)
    assert json.loads(followed.stdout)["files_copied"] == 1
    assert (dest / "escape.txt").read_text() == "not part of the session"


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    for i in range(6):
        (src / f"part{i}.bin").write_bytes(os.urandom(48 * 1024 * 1024))
    dest = tmp_path / "dest"
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuroferry", "sync", str(src), str(dest), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    assert "to transfer or check: 6 files" in line
    time.sleep(0.2)
    assert proc.poll() is None, "the sync finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "run the same command again" in err and "Traceback" not in err
    for done in dest.glob("*.bin"):  # whatever arrived is complete
        assert done.read_bytes() == (src / done.name).read_bytes()
    rerun = json.loads(ferry("sync", str(src), str(dest), "--json", check=0).stdout)
    assert rerun["files_copied"] + rerun["files_skipped"] == 6
    assert rerun["files_copied"] >= 1
    for i in range(6):
        assert (dest / f"part{i}.bin").read_bytes() == (src / f"part{i}.bin").read_bytes()


def test_db_upgrade_and_current(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    head = head_revision()
    assert f"is at revision {head}" in ferry("db", "upgrade", check=0).stdout
    assert f"revision {head}, newest {head}" in ferry("db", "current", check=0).stdout
    assert (tmp_path / "home" / "ferry.db").exists()


@pytest.mark.parametrize("command", ["serve", "orchestrator"])
def test_a_home_whose_database_was_lost_refuses_to_start(tmp_path, monkeypatch, command):
    home = tmp_path / "home"
    home.mkdir()
    (home / "token.json").write_text('{"user": "admin", "token": "nf_kept"}')
    (home / "ferry.db").touch()  # empty, as a stray connection would have left it
    monkeypatch.setenv("FERRY_HOME", str(home))
    proc = ferry(command, check=2)
    assert f"{home / 'token.json'} exists, but the database has no users" in proc.stderr
    assert (home / "token.json").read_text() == '{"user": "admin", "token": "nf_kept"}'
    assert (home / "ferry.db").stat().st_size == 0


def test_bad_configuration_is_exit_2(monkeypatch):
    monkeypatch.setenv("FERRY_PORT", "eighty")
    proc = ferry("db", "upgrade", check=2)
    assert "error: invalid configuration (port:" in proc.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_embedded_defaults(tmp_path, monkeypatch):
    """The README's first command: `ferry serve` with nothing configured but its home."""
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuroferry", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/api/v2/health", timeout=5)
                assert resp.json()["status"] == "ok"  # strangers learn nothing more
                token = json.loads((tmp_path / "home" / "token.json").read_text())["token"]
                admin = {"Authorization": f"Bearer {token}"}  # the first admin's details
                resp = httpx.get(f"http://127.0.0.1:{port}/api/v2/health", headers=admin)
                body = resp.json()
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert body is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert resp.status_code == 200 and body["status"] == "ok", body
        assert body["database"]["backend"] == "sqlite"
        assert body["store"]["url"] == (tmp_path / "home" / "lake").resolve().as_uri()
        assert body["executor"] == body["executor"] | {"ok": True, "kind": "local", "workers": 2}
    finally:  # Ctrl-C in a terminal: SIGINT to the whole process group, workers included
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "Finished server process" in out


def test_progress_bar_on_a_terminal(tmp_path):
    """On a terminal, stderr shows a live bar (files, bytes, rate); stdout the summary."""
    import pty

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"chunk{i}.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", "sync", str(src), str(tmp_path / "d"), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        timeout=120,
    )
    os.close(follower)
    screen = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(leader, 65536):
            screen += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"copied: 3 files" in proc.stdout
    text = screen.decode(errors="replace")
    assert "0/3 files" in text, text[-2000:]  # files done of planned
    assert "/62.9 MB" in text, text[-2000:]  # bytes done of 3 x 20 MiB
