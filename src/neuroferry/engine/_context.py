"""What a task function gets: its inputs, a log, cancellation and a subprocess runner."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from neuroferry.config import Settings
from neuroferry.engine._environment import command_environment
from neuroferry.engine._usage import current_meter
from neuroferry.errors import FerryError, StoreNotFound
from neuroferry.grants import Access, internal_access
from neuroferry.redaction import redact, secret_values
from neuroferry.stores import Store

LOG_LIMIT = 8 * 1024 * 1024  # a log keeps its first and last 4 MiB beyond this


class Cancelled(Exception):
    """Raised in a task when its job was cancelled. ``result`` is what it had done."""

    def __init__(self, message: str = "cancelled", result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class TaskFailed(FerryError, RuntimeError):
    """A task could not do its work; the message says what and where."""

    status_code = 422


@dataclass(frozen=True)
class Reschedule:
    """Return this from a task that waits on something outside (an HPC job, a file): the
    task gives its worker back and is called again after ``after`` seconds, in the same
    attempt, with ``state`` as ``ctx.state``."""

    after: float = 30.0
    state: Mapping[str, Any] = field(default_factory=dict)


CANCEL_CHECK = 1.0
"""Seconds between two looks for a job's cancel marker (in one process)."""
_JOBS_KEPT = 1024
_not_cancelled: dict[tuple[str, int], float] = {}
"""When a task of this process last found no cancel marker, by log store and job: the
job's other tasks here do not look again until :data:`CANCEL_CHECK` seconds later."""


@dataclass(frozen=True)
class Skipped:
    """Return this from a task that found it has nothing it can do here (an e-mail with no
    SMTP server configured): the task ends ``skipped``, its result holds ``reason`` (and
    ``result``'s keys), and the tasks after it run as after a success."""

    reason: str
    result: Mapping[str, Any] = field(default_factory=dict)


def log_key(job_id: int, task: str, map_index: int, attempt: int) -> str:
    """Where a task instance's log for one attempt lies in the log store."""
    instance = task if map_index < 0 else f"{task}/{map_index}"
    return f"jobs/{job_id}/{instance}/attempt-{attempt}.log"


def cancel_key(job_id: int) -> str:
    """The marker object whose presence tells a job's running tasks to stop."""
    return f"jobs/{job_id}/cancel"


class TaskLog(logging.Handler):
    """A task's log: kept in memory and written whole to the log store every few seconds
    and at the end, so it can be read while the task runs (every put is atomic). Every
    line has ``secrets`` and API tokens replaced by ``[redacted]`` before it is kept."""

    def __init__(
        self, store: Store, key: str, flush_every: float = 2.0, secrets: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self.store = store
        self.key = key
        self.flush_every = flush_every
        self.secrets = frozenset(secrets)
        self._lines: list[str] = []
        self._size = 0
        self._dropped = 0
        self._dirty = False
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        """Held while the log is written: the last write is of the whole log."""
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def _append(self, entry: str) -> None:
        entry = redact(entry, self.secrets)
        with self._lock:
            self._lines.append(entry)
            self._size += len(entry)
            while self._size > LOG_LIMIT and len(self._lines) > 2:
                # keep the beginning and the newest lines; say how many were left out
                self._size -= len(self._lines.pop(len(self._lines) // 2))
                self._dropped += 1
            self._dirty = True

    def write(self, text: str) -> None:
        """Add raw output (a command's), one timestamped line per line."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        for line in text.splitlines() or [""]:
            self._append(f"{stamp} {line}\n")

    def emit(self, record: logging.LogRecord) -> None:
        self._append(self.format(record) + "\n")

    def text(self) -> str:
        with self._lock:
            body = "".join(self._lines)
            dropped = self._dropped
        return (f"[{dropped} lines left out]\n" if dropped else "") + body

    def flush(self) -> None:
        with self._writing:
            with self._lock:
                if not self._dirty:
                    return
                self._dirty = False
            try:
                self.store.put(self.key, self.text().encode())
            except Exception:  # a log write must never fail the task; try again next time
                with self._lock:
                    self._dirty = True

    def start(self) -> None:
        """Write what is logged every ``flush_every`` seconds (the first time after at
        most :data:`FIRST_WRITE` seconds) until :meth:`close`, which writes it once more.
        One thread of the process writes the logs of all its running tasks: a task of a
        few milliseconds starts no thread and writes its log once."""
        _FLUSHER.add(self, min(FIRST_WRITE, self.flush_every))

    def close(self) -> None:
        _FLUSHER.discard(self)
        self.flush()
        super().close()


class _LogFlusher:
    """The thread that writes the logs of a process's running tasks while they run."""

    def __init__(self) -> None:
        self._due: dict[TaskLog, float] = {}
        self._cond = threading.Condition()
        self._wake_at = math.inf
        """When the thread wakes next (``inf``: it waits to be told)."""
        self._thread: threading.Thread | None = None

    def add(self, handler: TaskLog, after: float) -> None:
        due = time.monotonic() + after
        with self._cond:
            self._due[handler] = due
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="task logs", daemon=True)
                self._thread.start()
            elif due < self._wake_at:  # else it wakes in time without being told
                self._cond.notify()

    def discard(self, handler: TaskLog) -> None:
        with self._cond:
            self._due.pop(handler, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                ready = [h for h, due in self._due.items() if due <= now]
                for handler in ready:
                    self._due[handler] = now + handler.flush_every
                self._wake_at = min(self._due.values(), default=math.inf)
                if not ready:
                    self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)
                    continue
            for handler in ready:
                handler.flush()


FIRST_WRITE = 0.25
"""Seconds after a task starts at which its log is first written (if it still runs): a
task of a few milliseconds writes its log once, at its end; a longer one shows its log
(and where it runs) almost at once."""
_FLUSHER = _LogFlusher()


@dataclass(frozen=True)
class TaskInstance:
    """One run of one task instance of a job: what the engine read from the database for
    it. The orchestrator claims it, sends it to where the task runs and records its outcome;
    the task reads it through its :class:`TaskContext`."""

    job_id: int
    kind: str
    job_name: str
    """The job's name (the asset name for uploads)."""
    task: str
    map_index: int = -1
    """The item's index in a mapped task; ``-1``: the task is not mapped."""
    item: str | None = None
    attempt: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    """The job's validated spec, as JSON."""
    params: dict[str, Any] = field(default_factory=dict)
    """This task's settings (the Task model: ``skip_task``, ``image``, ``job_settings`` …);
    for a mapped instance, its item's settings."""
    upstream: dict[str, Any] = field(default_factory=dict)
    """Results of the upstream tasks by name; a mapped task's are ``{item: result}``."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Facts the kind worked out when the job was submitted (destination, staging …)."""
    saved_state: dict[str, Any] = field(default_factory=dict)
    """What the task kept when it last returned :class:`Reschedule`."""

    @property
    def label(self) -> str:
        """The task's name, with the item of a mapped instance: ``write [3]``."""
        return self.task + (f" [{self.item}]" if self.map_index >= 0 else "")


def _local_only(value: Any, what: str, instance: TaskInstance) -> Any:
    if value is None:
        raise TaskFailed(
            f"{instance.task} must run in the service (placement local): {what} is given only "
            f"to local tasks; declare the {instance.kind} kind's task {instance.task!r} with "
            'placement="local"'
        )
    return value


class TaskContext:
    """Everything a task function may use. Cluster tasks get this on a Dask worker;
    local tasks get it in the orchestrator with ``db``, ``catalog`` and ``submit_job``
    (a cluster task that uses them fails, saying so).

    The instance's facts are attributes: ``job_id``, ``kind``, ``name`` (the job's),
    ``summary``, ``task``, ``map_index``, ``item``, ``attempt``, ``spec``, ``params``,
    ``upstream``."""

    def __init__(
        self,
        instance: TaskInstance,
        *,
        config: Settings,
        log_store: Store,
        log: logging.Logger,
        state: dict[str, Any] | None = None,
        db: Any = None,
        catalog: Any = None,
        owner_id: int | None = None,
        submit_job: Callable[..., int] | None = None,
        deadline: float | None = None,
        access: Access | None = None,
        kind_settings: Any = None,
    ) -> None:
        self.instance = instance
        self.config = config
        self.log_store = log_store
        self.log = log
        self.state: dict[str, Any] = dict(instance.saved_state) if state is None else state
        """What the task kept when it last returned :class:`Reschedule`."""
        self._db = db
        self._catalog = catalog
        self._submit_job = submit_job
        self.owner_id = owner_id
        """Local tasks only: the id of the job's owner (``None``: the job has none)."""
        self.deadline = deadline
        """``time.monotonic()`` value after which the task is stopped (``time_limit``)."""
        self.access = access
        """What the job's owner may touch; ``None``: a job of the service itself."""
        self.kind_settings = kind_settings
        """The kind's own settings (its ``settings_model``, read from ``[kinds.NAME]``);
        ``None`` for a kind without any."""
        self._last_check = 0.0
        self._cancelled = False

    @property
    def job_id(self) -> int:
        """The job's id."""
        return self.instance.job_id

    @property
    def kind(self) -> str:
        """The job's kind."""
        return self.instance.kind

    @property
    def name(self) -> str:
        """The job's name (the asset name for uploads)."""
        return self.instance.job_name

    @property
    def summary(self) -> dict[str, Any]:
        """Facts the kind worked out when the job was submitted."""
        return self.instance.summary

    @property
    def task(self) -> str:
        """The task's name."""
        return self.instance.task

    @property
    def map_index(self) -> int:
        """The item's index in a mapped task; ``-1``: not mapped."""
        return self.instance.map_index

    @property
    def item(self) -> str | None:
        """The item of a mapped instance."""
        return self.instance.item

    @property
    def attempt(self) -> int:
        """Which attempt this is (1 the first)."""
        return self.instance.attempt

    @property
    def spec(self) -> dict[str, Any]:
        """The job's validated spec, as JSON."""
        return self.instance.spec

    @property
    def params(self) -> dict[str, Any]:
        """This task's settings; for a mapped instance, its item's."""
        return self.instance.params

    @property
    def upstream(self) -> dict[str, Any]:
        """Results of the upstream tasks by name."""
        return self.instance.upstream

    @property
    def db(self) -> Any:
        """Local tasks only: the SQLAlchemy engine."""
        return _local_only(self._db, "ctx.db", self.instance)

    @property
    def catalog(self) -> Any:
        """Local tasks only: the :class:`~neuroferry.catalog.Catalog`."""
        return _local_only(self._catalog, "ctx.catalog", self.instance)

    @property
    def submit_job(self) -> Callable[..., int]:
        """Local tasks only: ``submit_job(kind, spec_dict) -> job id`` starts another job
        (owned by this job's owner)."""
        return _local_only(self._submit_job, "ctx.submit_job", self.instance)  # type: ignore[no-any-return]

    @property
    def grants(self) -> Access:
        """What this task may read, write and remove: its job owner's grants (tasks check
        the real paths against them before reading)."""
        if self.access is None:
            self.access = internal_access(self.config)
        return self.access

    @property
    def job_settings(self) -> dict[str, Any]:
        return dict(self.params.get("job_settings") or {})

    def cancelled(self) -> bool:
        """Whether the job was cancelled (looked up at most once a second, and at most
        once a second for all the job's tasks in this process)."""
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_check >= CANCEL_CHECK:
            self._last_check = now
            job = (self.log_store.url, self.job_id)
            if now - _not_cancelled.get(job, -math.inf) < CANCEL_CHECK:
                return False  # another task of the job here looked just now
            try:
                self.log_store.head(cancel_key(self.job_id))
                self._cancelled = True
            except StoreNotFound:
                if len(_not_cancelled) >= _JOBS_KEPT:
                    _not_cancelled.clear()
                _not_cancelled[job] = now
            except Exception as exc:  # the log store is briefly away: carry on
                self.log.debug("cannot check for cancellation: %s", exc)
        return self._cancelled

    def check_cancelled(self, result: Any = None) -> None:
        """Raise :class:`Cancelled` (carrying ``result``) if the job was cancelled, or
        :class:`TaskFailed` if the task ran past its time limit."""
        if self.cancelled():
            raise Cancelled("cancelled while running", result)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TaskFailed(f"{self.task} ran past its time limit")

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        scratch: str | os.PathLike[str] | None = None,
    ) -> None:
        """Run a command, its output going to this task's log (secrets redacted); stop it
        if the job is cancelled or the time limit passes (see :func:`run_command`)."""
        run_command(
            command,
            settings=self.config,
            log=self.log,
            check_cancelled=self.check_cancelled,
            cwd=cwd,
            env=env,
            scratch=scratch,
        )


def run_command(
    command: Sequence[str],
    *,
    settings: Settings,
    log: logging.Logger,
    check_cancelled: Callable[[], None] = lambda: None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    scratch: str | os.PathLike[str] | None = None,
) -> None:
    """Run a command without a shell, its output going to ``log`` (secrets redacted); stop
    it and everything it started when ``check_cancelled`` raises. A non-zero exit raises
    :class:`TaskFailed`.

    The command gets a scrubbed environment (see :func:`command_environment`): HOME and
    TMPDIR are ``scratch`` (a temporary folder if not given), plus ``env``."""
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="ferry-task-") as folder:
            run_command(
                command,
                settings=settings,
                log=log,
                check_cancelled=check_cancelled,
                cwd=cwd,
                env=env,
                scratch=folder,
            )
        return
    variables = {**command_environment(scratch, settings.command_environment), **(env or {})}
    secrets = secret_values(settings)
    log.info("running: %s", subprocess.list2cmdline(list(command)))
    handler = next((h for h in log.handlers if isinstance(h, TaskLog)), None)
    try:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=variables,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise TaskFailed(f"cannot start {command[0]!r}: {exc}") from exc

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.decode(errors="replace").rstrip("\n"), secrets)
            if handler is not None:
                handler.write(line)
            else:
                log.info("%s", line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    meter = current_meter()
    if meter is not None:  # the task's use is the command's while it runs
        meter.follow(proc.pid)
    try:
        while proc.poll() is None:
            try:
                check_cancelled()
            except BaseException:
                _stop(proc)
                raise
            time.sleep(0.2)
    finally:
        reader.join(timeout=5)
        if meter is not None:
            meter.follow(None)
    if proc.returncode != 0:
        raise TaskFailed(f"command exited with status {proc.returncode}: {command[0]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a command and everything it started: SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
