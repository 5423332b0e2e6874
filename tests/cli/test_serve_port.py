"""First run: a taken port is said before the banner, and ferry commands find a service
that runs on another port with the same FERRY_HOME."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from neuroferry.client import (
    SERVICE_URL_FILE,
    remove_service_url,
    service_url,
    write_service_url,
)
from neuroferry.config import get_settings


def test_a_taken_port_is_said_before_the_banner(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env["FERRY_HOME"] = str(tmp_path / "home")
        proc = subprocess.run(
            [sys.executable, "-m", "neuroferry", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 3, proc.stderr
    assert f"port {port} on 127.0.0.1 is taken" in proc.stderr
    assert "neuroferry" not in proc.stdout  # no banner, nothing started
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "ferry.db").exists()


def test_commands_find_the_running_service_unless_ferry_url_is_set(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("FERRY_URL", raising=False)
    settings = get_settings(home=tmp_path)
    assert service_url(settings) == "http://127.0.0.1:8000"  # nothing runs: the default
    written = write_service_url(tmp_path, "http://127.0.0.1:8123")
    assert written == tmp_path / SERVICE_URL_FILE
    assert service_url(get_settings(home=tmp_path)) == "http://127.0.0.1:8123"
    monkeypatch.setenv("FERRY_URL", "http://elsewhere:9000")
    assert service_url(get_settings(home=tmp_path)) == "http://elsewhere:9000"
    remove_service_url(written, "http://127.0.0.1:8124")  # another service's: kept
    assert written.exists()
    remove_service_url(written, "http://127.0.0.1:8123")
    assert not written.exists()


def test_a_service_url_left_by_a_dead_service_or_not_an_address_is_not_used(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("FERRY_URL", raising=False)
    found = tmp_path / SERVICE_URL_FILE
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found.write_text(f"http://127.0.0.1:8123\n{dead}\n")  # killed: its port may be anyone's
    assert service_url(get_settings(home=tmp_path)) == "http://127.0.0.1:8000"
    for bad in ("http://::1:8123", "http://u:p@127.0.0.1:1", "ftp://127.0.0.1:1", "junk"):
        found.write_text(f"{bad}\n{os.getpid()}\n")
        assert service_url(get_settings(home=tmp_path)) == "http://127.0.0.1:8000", bad
    found.write_text(f"http://[::1]:8123\n{os.getpid()}\n")
    assert service_url(get_settings(home=tmp_path)) == "http://[::1]:8123"


def test_a_bad_ferry_url_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env |= {"FERRY_HOME": str(tmp_path), "FERRY_URL": "http://::1:8123", "FERRY_TOKEN": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuroferry", "jobs", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "FERRY_URL: http://::1:8123 is not a usable address" in proc.stderr
