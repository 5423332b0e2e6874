"""Dask worker processes that a command adds to a running cluster from this machine
(``ferry ingest join``): started as subprocesses, retired gracefully when it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

WORKER_PRELOAD = "neuroferry.engine._join_worker"
RETIRE_WAIT = 60.0


def _memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the command that started it dies (Linux), so that no
    worker outlives it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerGroup:
    """Dask worker processes on this machine, connected to the service's scheduler.

    ``tls`` holds the cluster's credentials (``ca``, ``cert``, ``key`` as PEM text), as
    ``/api/v2/cluster`` gives them. :meth:`start` starts the processes, :meth:`stop`
    retires them (their running tasks go to other workers)."""

    def __init__(
        self,
        scheduler: str,
        processes: int,
        threads: int,
        tls: dict[str, str] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.processes = processes
        self.threads = threads
        self.prefix = f"ferry-join-{socket.gethostname()}-{os.getpid()}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.warned = False
        """Whether the command told its user that the processes stopped."""
        self._folder = tempfile.TemporaryDirectory(prefix="ferry-join-")  # mode 0700
        self.tls_args = self._write_tls(tls) if tls else []

    def _write_tls(self, tls: dict[str, str]) -> list[str]:
        """The cluster's TLS credentials as files only this user can read, and the
        ``dask worker`` options that name them."""
        args = []
        for option, field in (
            ("--tls-ca-file", "ca"),
            ("--tls-cert", "cert"),
            ("--tls-key", "key"),
        ):
            path = Path(self._folder.name) / f"{field}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(tls[field])
            args += [option, str(path)]
        return args

    def command(self, index: int) -> list[str]:
        """The command line of worker process ``index``."""
        memory = _memory() // max(self.processes, 1)
        host = urlsplit(self.scheduler).hostname or ""
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        return [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            self.scheduler,
            "--name",
            f"{self.prefix}-{index}",
            "--nthreads",
            str(self.threads),
            "--no-nanny",
            "--no-dashboard",
            "--memory-limit",
            str(memory),
            "--resources",
            f"cpus={self.threads},memory={memory}",
            "--preload",
            WORKER_PRELOAD,
            "--death-timeout",
            "60",
            *(["--host", "127.0.0.1"] if loopback else []),
            *self.tls_args,
        ]

    def start(self) -> None:
        """Start the worker processes, each writing its output to a log of its own."""
        for i in range(self.processes):
            log = Path(self._folder.name) / f"worker-{i}.log"
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        self.command(i),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C is the command's to handle
                        preexec_fn=_die_with_parent,
                    )
                )
            self.logs.append(log)

    def all_gone(self) -> bool:
        """Whether every worker process has stopped."""
        return bool(self.procs) and all(p.poll() is not None for p in self.procs)

    def last_words(self) -> str:
        """The last line a worker process wrote (why it stopped), or ``no output``."""
        for log in self.logs:
            with contextlib.suppress(OSError):
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
                if lines:
                    return lines[-1].strip()[:300]
        return "no output"

    def stop(self) -> None:
        """Retire the workers gracefully (their running tasks go to other workers), then
        make sure they are gone."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + RETIRE_WAIT
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                if p.poll() is None and sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        p.send_signal(sig)
            for p in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            if all(p.poll() is not None for p in self.procs):
                break
            deadline = time.monotonic() + 10
        self._folder.cleanup()
