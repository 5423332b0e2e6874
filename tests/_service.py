"""``ferry serve`` as a real process for tests: started on a free port, killed, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from conftest import free_port


class Service:
    """``ferry serve`` in its own process group, on a free port."""

    def __init__(self, home: Path, env: dict[str, str], *args: str, healthy: bool = True) -> None:
        self.home = home
        self.healthy = healthy
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.log = home / "serve.log"
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "neuroferry", "serve", "--port", str(port), *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v2/health", timeout=5)
                if answer.is_success or (not self.healthy and answer.status_code == 503):
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.3)

    def children(self) -> list[int]:
        """The service's child processes (its Dask workers among them), from /proc."""
        assert self.proc is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def kill(self) -> None:
        """kill -9 the service process alone; wait until its worker processes are gone."""
        assert self.proc is not None
        children = self.children()
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in children):
            assert time.monotonic() < deadline, f"worker processes outlived the service: {children}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@contextlib.contextmanager
def running_service(home: Path, *args: str, healthy: bool = True, **env: str) -> Iterator[Service]:
    """``ferry serve`` (with ``args``) on ``home``, nothing from the outside environment's
    FERRY_* or AWS_* settings but ``env``; stopped on exit. It has started when its health
    is ok (or, with ``healthy=False``, when it answers health at all)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "AWS_"))}
    service = Service(home, {**base, "FERRY_HOME": str(home), **env}, *args, healthy=healthy)
    service.start()
    try:
        yield service
    finally:
        service.stop()
