"""A running task's CPU and memory use, sampled on its worker and written beside its log
in the log store, where the service reads it (the worker never opens the database).

A function task is measured by its worker's process (shared with the other tasks that
worker runs at the same time); while a task runs a command, by the command's process and
everything it started."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from neuroferry.stores import Store

log = logging.getLogger(__name__)

EVERY = 2.0
"""Seconds between two samples (each is written to the log store)."""

_current = threading.local()


def usage_key(log_key: str) -> str:
    """Where the use of the task whose log is at ``log_key`` lies in the log store."""
    return log_key.removesuffix(".log") + ".usage.json"


def current_meter() -> UsageMeter | None:
    """The meter of the task running in this thread, if any."""
    return getattr(_current, "meter", None)


class UsageMeter:
    """Samples a task's CPU (percent of one core; above 100 with several) and resident
    memory every ``every`` seconds and writes them, with the seconds since it started, to
    ``key`` in ``store`` as JSON: ``cpu_percent``, ``memory_bytes``, ``elapsed_seconds``,
    ``measured`` (``worker`` or ``command``), ``time``."""

    def __init__(self, store: Store, key: str, every: float = EVERY) -> None:
        self.store = store
        self.key = key
        self.every = every
        self._started = time.monotonic()
        self._own = psutil.Process(os.getpid())
        self._command: psutil.Process | None = None
        self._known: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = False

    def follow(self, pid: int | None) -> None:
        """Measure the command ``pid`` (and what it starts) from now on; ``None``: the
        worker's process again."""
        with self._lock:
            self._known.clear()
            self._command = None
            if pid is not None:
                try:
                    self._command = psutil.Process(pid)
                except psutil.Error:
                    self._command = None

    def _processes(self) -> tuple[str, list[psutil.Process]]:
        if self._command is None:
            return "worker", [self._own]
        try:
            found = [self._command, *self._command.children(recursive=True)]
        except psutil.Error:
            found = [self._command]
        # the same objects each time: cpu_percent() measures since the last call
        procs = [self._known.setdefault(p.pid, p) for p in found]
        return "command", procs

    def sample(self) -> dict[str, Any]:
        """The use now (CPU since the last sample)."""
        with self._lock:
            measured, procs = self._processes()
            cpu = memory = 0.0
            for proc in procs:
                try:
                    with proc.oneshot():
                        cpu += proc.cpu_percent(None)
                        memory += proc.memory_info().rss
                except psutil.Error:  # it ended between two looks
                    self._known.pop(proc.pid, None)
        return {
            "cpu_percent": round(cpu, 1),
            "memory_bytes": int(memory),
            "elapsed_seconds": round(time.monotonic() - self._started, 2),
            "measured": measured,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def write(self) -> None:
        try:
            self.store.put(self.key, json.dumps(self.sample()).encode())
            self._written = True
        except Exception as exc:  # measuring must never fail the task
            log.debug("cannot write %s: %s", self.key, exc)

    def start(self) -> None:
        """Sample in a thread until :meth:`close`; the calling thread's commands are
        followed (see :func:`current_meter`)."""
        self._own.cpu_percent(None)  # the first call starts the measurement
        _current.meter = self

        def loop() -> None:
            while not self._stop.wait(self.every):
                self.write()

        self._thread = threading.Thread(target=loop, name=f"usage {self.key}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop sampling. The last sample written stays (a command's, not the idle
        worker's after it); a task too short for one gets one now."""
        if getattr(_current, "meter", None) is self:
            _current.meter = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self._written:
            self.write()
