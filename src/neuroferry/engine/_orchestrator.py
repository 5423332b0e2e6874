"""The orchestrator: claims runnable tasks, sends them to the executor, records outcomes.

It runs in a thread of ``ferry serve`` (or alone as ``ferry orchestrator``). It holds
nothing that cannot be rebuilt from the database: a task it was running when it died is
queued again by the next orchestrator that finds its heartbeat stale.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from sqlalchemy import Engine

from neuroferry.config import Settings
from neuroferry.db import refresh_statistics
from neuroferry.engine._advance import Transition, now_utc
from neuroferry.engine._claims import (
    Claim,
    Outcome,
    claim_tasks,
    finish_tasks,
    forget_orchestrators,
    heartbeat,
    list_orchestrators,
    release_tasks,
    requeue_orphans,
)
from neuroferry.engine._executor import Executor
from neuroferry.engine._kinds import check_kind_settings, get_kind
from neuroferry.engine._metrics import METRICS
from neuroferry.engine._queries import get_job, job_tasks
from neuroferry.engine._runner import TaskCall, run_task
from neuroferry.engine._states import FAILED, UP_FOR_RETRY
from neuroferry.engine._submit import NewJob, job_access, owner_access, submit_jobs
from neuroferry.engine._watchers import (
    Watcher,
    WatcherContext,
    registered_watchers,
    run_watcher,
    take_watcher_lease,
)
from neuroferry.errors import FerryError
from neuroferry.grants import Access

log = logging.getLogger(__name__)

STATISTICS_EVERY = 3600.0
"""Seconds between refreshes of the database's planner statistics (SQLite)."""
SHORT_TASK = 0.25
"""Seconds a cluster task runs on average, below which the orchestrator keeps more
tasks in flight per worker thread, and claims them in larger batches."""
GATHER_OUTCOMES = 0.05
"""Seconds the orchestrator waits for more outcomes of short cluster tasks after the
first arrives, so that it records them in fewer, larger transactions."""

Notifier = Callable[[Settings, dict[str, Any], str], Any]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Orchestrator:
    """Moves jobs forward. ``start()`` runs it in a thread; ``stop()`` gives its running
    tasks back to the queue so that a restart picks them up at once."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        executor: Executor,
        *,
        catalog: Any = None,
        notifier: Notifier | None = None,
        guard: Callable[[], str | None] | None = None,
        watchers: Sequence[Watcher] | None = None,
    ) -> None:
        check_kind_settings(settings)
        self.settings = settings
        self._kind_settings: dict[str, Any] = {}
        """Each kind's own settings, validated once (a kind loaded later is added)."""
        self._job_access: dict[int, Access | None] = {}
        """The access each job of a claimed task was confined to (``None``: its owner's)."""
        self.guard = guard
        self.engine = engine
        self.executor = executor
        self.catalog = catalog
        self.notifier = notifier
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.exclusive = engine.dialect.name == "sqlite"
        self.active = False
        self._events: queue.Queue[tuple[Claim, Future[Any] | Any] | None] = queue.Queue()
        self._finished: queue.Queue[tuple[Claim, Any] | None] = queue.Queue()
        """Dask futures that ended, for the thread that fetches their results."""
        self._fetcher: threading.Thread | None = None
        self._inflight: dict[int, Claim] = {}
        self._pool = ThreadPoolExecutor(settings.local_task_threads, "ferry-local-task")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._threads = 0
        self._task_seconds = SHORT_TASK
        """A moving average of how long cluster tasks ran (on their workers)."""
        self._worker_resources: list[dict[str, float]] = []
        self._threads_checked = 0.0
        self._said_waiting = False
        self._said_stopped = False
        self._analysed = time.monotonic()  # the service refreshed them as it started
        self._watchers = None if watchers is None else list(watchers)
        """The periodic watchers to run (None: those registered, looked up each time)."""
        self._watch_pool = ThreadPoolExecutor(2, "ferry-watcher")
        self._watching: dict[str, Future[Any]] = {}
        self._watch_next: dict[str, float] = {}

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._fetcher = threading.Thread(
            target=self._fetch_results, name="ferry-results", daemon=True
        )
        self._fetcher.start()
        self._thread = threading.Thread(target=self._run, name="ferry-orchestrator", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for work now (a job was just submitted in this process)."""
        self._events.put(None)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._finished.put(None)
        if self._fetcher is not None:
            self._fetcher.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watch_pool.shutdown(wait=True, cancel_futures=True)
        try:
            release_tasks(self.engine, self.id)
        except Exception as exc:  # the database is gone: the lease expiry will do it
            log.warning("could not give running tasks back to the queue: %s", exc)

    def _run(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_beat >= self.settings.orchestrator_lease / 3:
                    self._beat()
                    last_beat = time.monotonic()
                self._drain(wait=self.settings.orchestrator_poll)
                if self.active and not self._stop.is_set() and self._may_claim():
                    self._dispatch()
                    self._watch()
            except FerryError as exc:  # the database or the scheduler is away
                log.warning("orchestrator step failed (%s); trying again", exc)
                self._stop.wait(min(self.settings.orchestrator_lease / 3, 5.0))
            except Exception:
                log.exception("orchestrator step failed; trying again")
                self._stop.wait(min(self.settings.orchestrator_lease / 3, 5.0))

    def _may_claim(self) -> bool:
        """Whether ``guard`` (the database watch) lets this orchestrator claim tasks."""
        problem = self.guard() if self.guard is not None else None
        if problem is not None and not self._said_stopped:
            log.error("orchestrator %s claims no more tasks: %s", self.id, problem)
        self._said_stopped = problem is not None
        return problem is None

    def _beat(self) -> None:
        dead = [
            o["id"]
            for o in list_orchestrators(self.engine)
            if o["host"] == self.host and o["id"] != self.id and not _pid_alive(o["pid"])
        ]
        forget_orchestrators(self.engine, dead)
        was_active = self.active
        self.active = heartbeat(
            self.engine,
            self.id,
            self.host,
            self.pid,
            exclusive=self.exclusive,
            lease=self.settings.orchestrator_lease,
        )
        if self.active and not was_active:
            log.info("orchestrator %s is running jobs", self.id)
        elif not self.active and not self._said_waiting:
            self._said_waiting = True
            log.info("another orchestrator holds the SQLite lease; %s waits", self.id)
        if self.active and time.monotonic() - self._analysed > STATISTICS_EVERY:
            self._analysed = time.monotonic()
            refresh_statistics(self.engine)
        if self.active and (requeued := requeue_orphans(self.engine)):
            log.info("queued again %d tasks of an orchestrator that stopped", len(requeued))

    # -- periodic watchers ------------------------------------------------------------

    def _watch(self) -> None:
        """Start each watcher that is due here and whose lease this orchestrator takes
        (in its own thread: a slow watcher holds up neither tasks nor other watchers)."""
        watchers = registered_watchers() if self._watchers is None else self._watchers
        now = time.monotonic()
        for watcher in watchers:
            running = self._watching.get(watcher.name)
            if running is not None and not running.done():
                continue
            if now < self._watch_next.get(watcher.name, 0.0):
                continue
            interval = watcher.interval(self.settings)
            self._watch_next[watcher.name] = now + min(interval, self.settings.orchestrator_lease)
            if not take_watcher_lease(self.engine, watcher.name, self.id):
                continue
            self._watch_next[watcher.name] = now + interval
            context = WatcherContext(
                settings=self.settings,
                db=self.engine,
                catalog=self.catalog,
                wake=self.wake,
                orchestrator_id=self.id,
            )
            self._watching[watcher.name] = self._watch_pool.submit(run_watcher, watcher, context)

    # -- dispatch ---------------------------------------------------------------------

    def _capacity(self) -> int:
        now = time.monotonic()
        if now - self._threads_checked > 5.0:
            self._threads_checked = now
            try:
                workers = self.executor.client.scheduler_info().get("workers", {}).values()
            except Exception as exc:  # scheduler away: keep the last figures
                log.warning("cannot reach the Dask scheduler: %s", exc)
                workers = []
            if workers:
                self._threads = sum(int(w.get("nthreads", 0)) for w in workers)
                self._worker_resources = [dict(w.get("resources") or {}) for w in workers]
            if self.settings.cluster:
                self._threads = max(
                    self._threads, self.settings.cluster_max_jobs * self.settings.cluster_cores
                )
        # twice the threads: a worker finds its next task waiting when it finishes one;
        # more while tasks are short, since then one round of this thread (record, claim,
        # send) takes longer than a task, and a worker would wait for the next round
        ahead = 2 if self._task_seconds >= SHORT_TASK else 32
        return ahead * max(self._threads, 1) + self.settings.local_task_threads

    def _dispatch(self) -> None:
        capacity = self._capacity()
        room = capacity - len(self._inflight)
        if self._task_seconds < SHORT_TASK and room < capacity // 4:
            return  # short tasks: claim them in fewer, larger batches
        access: dict[int | None, Access] = {}  # each owner's, looked up once per claim
        # the cluster's tasks go in one graph per set of resources: one message to the
        # scheduler per claim, not one per task
        batches: dict[tuple[tuple[str, float], ...], list[tuple[Claim, TaskCall]]] = {}
        claims = claim_tasks(self.engine, self.id, room, now_utc())
        self._confined({c.instance.job_id for c in claims})
        for claim in claims:
            self._inflight[claim.task_id] = claim
            METRICS.observe_start(claim)
            try:
                own = self._confined({claim.instance.job_id}, strict=True)
                if own is None and claim.owner_id not in access:
                    access[claim.owner_id] = owner_access(
                        self.engine, claim.owner_id, self.settings
                    )
                call = self._call(claim, own or access[claim.owner_id])
                if claim.placement == "local":
                    self._start_local(claim, call)
                else:
                    needs = self._resources(claim.instance.params.get("image_resources"))
                    batches.setdefault(tuple(sorted((needs or {}).items())), []).append(
                        (claim, call)
                    )
            except Exception as exc:  # the executor refused it: record, do not lose it
                self._refused(claim, exc)
        for restrictions, batch in batches.items():
            try:
                self._send(batch, restrictions)
            except Exception:  # one call the executor refuses must not fail the others
                for one in batch:
                    try:
                        self._send([one], restrictions)
                    except Exception as exc:  # the executor refused it: record, do not lose it
                        self._refused(one[0], exc)

    def _confined(self, job_ids: set[int], strict: bool = False) -> Access | None:
        """Look up (once per job: it never changes) the access the jobs ``job_ids`` were
        confined to; return the first one's. A failed lookup raises only when ``strict``
        (a job is never run with more than it was confined to)."""
        new = job_ids - self._job_access.keys()
        if new:
            if len(self._job_access) > 10_000:
                self._job_access.clear()
            try:
                found = job_access(self.engine, new)
            except Exception:
                if strict:
                    raise
                log.warning("cannot look up the access of jobs %s", sorted(new), exc_info=True)
                return None
            self._job_access.update({i: found.get(i) for i in new})
        return self._job_access.get(min(job_ids)) if job_ids else None

    def _send(
        self, batch: list[tuple[Claim, TaskCall]], restrictions: tuple[tuple[str, float], ...]
    ) -> None:
        """Send ``batch`` to the cluster as one graph; each outcome comes back to
        :meth:`_done`."""
        futures = self.executor.client.map(
            run_task,
            [call for _, call in batch],
            key=[
                f"ferry-task-{c.task_id}-{c.instance.attempt}-{uuid.uuid4().hex[:6]}"
                for c, _ in batch
            ],
            pure=False,
            resources=dict(restrictions) or None,
        )
        for (sent, _), future in zip(batch, futures, strict=True):
            try:
                future.add_done_callback(partial(self._done, sent))
            except Exception as exc:  # a closing client: record it, never leave it running
                self._refused(sent, exc)

    def _refused(self, claim: Claim, exc: Exception) -> None:
        task = claim.instance
        log.warning("cannot start %s of job %d: %s", task.task, task.job_id, exc)
        self._events.put((claim, {"state": FAILED, "error": f"cannot start: {exc}"}))

    def _call(self, claim: Claim, access: Access) -> TaskCall:
        task = claim.instance
        kind = get_kind(task.kind)
        if kind.name not in self._kind_settings:
            self._kind_settings[kind.name] = kind.settings_of(self.settings)
        return TaskCall(
            task,
            fn=kind.task(task.task).fn,
            settings=self.settings,
            access=access,
            kind_settings=self._kind_settings[kind.name],
        )

    def _start_local(self, claim: Claim, call: TaskCall) -> None:
        call.local = {
            "db": self.engine,
            "catalog": self.catalog,
            "submit_job": self._submitter(
                claim.owner_id, self._job_access.get(claim.instance.job_id)
            ),
            "owner_id": claim.owner_id,
        }
        future: Future[Any] = self._pool.submit(run_task, call)
        future.add_done_callback(partial(self._done, claim))

    def _done(self, claim: Claim, future: Future[Any]) -> None:
        # a Dask future's result is still on its worker: fetched by another thread, so
        # that this one records outcomes and claims tasks meanwhile
        (self._finished if hasattr(future, "release") else self._events).put((claim, future))

    def _fetch_results(self) -> None:
        """Fetch the results of Dask tasks that ended (all that ended together in one
        round trip) and hand their outcomes to the orchestrator thread."""
        while True:
            ended = [self._finished.get()]
            while not self._finished.empty():
                ended.append(self._finished.get_nowait())
            try:
                got = self._outcomes([e for e in ended if e is not None])
            except Exception:  # never lose an outcome: the orchestrator asks again
                log.exception("cannot fetch task results")
                got = [e for e in ended if e is not None]
            for one in got:
                self._events.put(one)
            if None in ended:
                return

    def _resources(self, image_resources: Any) -> dict[str, float] | None:
        """Dask resource restrictions for a task's ``image_resources`` when the workers
        declare resources (HPC clusters, ``dask worker --resources``), else ``None``. A task
        that no worker could take fails at once instead of waiting forever."""
        from neuroferry.engine._clusters import resources_for, worker_resources

        declared = [r for r in self._worker_resources if r]
        if self.settings.cluster:
            declared = declared or [worker_resources(self.settings)]
        if not declared:
            return None
        largest = {k: max(r.get(k, 0.0) for r in declared) for k in set().union(*declared)}
        return resources_for(image_resources, largest) or None

    def _submitter(self, owner_id: int | None, confined: Access | None) -> Callable[..., int]:
        """How a local task submits a job: its owner's, confined as the task's job is."""

        def submit(kind: str, spec: dict[str, Any]) -> int:
            new = NewJob(kind, spec, access=confined)
            job_id = submit_jobs(
                self.engine,
                [new],
                owner_id=owner_id,
                settings=self.settings,
                confine=confined is not None,
            )
            self.wake()
            return job_id[0]

        return submit

    # -- outcomes ---------------------------------------------------------------------

    def _drain(self, wait: float) -> None:
        """Record every outcome that has arrived (waiting up to ``wait`` for the first)."""
        try:
            events = [self._events.get(timeout=wait)]
        except queue.Empty:
            return
        # short tasks end many at a time: wait a little for more, while more are running
        until = time.monotonic() + (GATHER_OUTCOMES if self._task_seconds < SHORT_TASK else 0.0)
        while True:
            left = until - time.monotonic()
            try:
                if left > 0 and len(events) < len(self._inflight) and not self._stop.is_set():
                    events.append(self._events.get(timeout=left))
                else:
                    events.append(self._events.get_nowait())
            except queue.Empty:
                break
        outcomes = self._outcomes([e for e in events if e is not None])
        if outcomes:
            self._record(outcomes)

    def _outcomes(self, events: list[tuple[Claim, Any]]) -> list[tuple[Claim, Outcome]]:
        """The outcomes of finished task runs; results of Dask futures that finished are
        fetched from the workers in one round trip."""
        finished = [d for _, d in events if getattr(d, "status", None) == "finished"]
        fetched: dict[int, Any] = {}
        if finished:
            try:
                values = self.executor.client.gather(finished)
                fetched = {id(f): v for f, v in zip(finished, values, strict=True)}
            except Exception as exc:  # fall back to fetching them one by one
                log.warning("cannot fetch task results together: %s", exc)
        out = []
        for claim, done in events:
            out.append((claim, self._outcome(fetched.get(id(done), done))))
            if hasattr(done, "release"):
                done.release()
        return out

    @staticmethod
    def _outcome(done: Any) -> Outcome:
        if isinstance(done, Outcome):
            return done
        if isinstance(done, dict):
            raw = done
        else:
            try:
                raw = done.result()
            except Exception as exc:  # the worker died too often, or Dask cancelled it
                raw = {"state": FAILED, "error": f"{type(exc).__name__}: {exc}"}
        return Outcome(
            state=raw["state"],
            result=raw.get("result"),
            error=raw.get("error"),
            after=float(raw.get("after", 0.0)),
            saved_state=raw.get("saved_state"),
            worker=raw.get("worker"),
            seconds=raw.get("seconds"),
        )

    def _record(self, outcomes: list[tuple[Claim, Outcome]]) -> None:
        """Record outcomes that arrived together in one transaction, then tell of each."""
        for claim, _ in outcomes:
            self._inflight.pop(claim.task_id, None)
        try:
            recorded = finish_tasks(self.engine, outcomes, self.id, now_utc())
        except Exception:  # the database is away: keep the outcomes for the next try
            for kept in outcomes:
                self._events.put(kept)
            raise
        for (claim, outcome), finished in zip(outcomes, recorded, strict=True):
            if finished is None:
                log.info(
                    "%s of job %d was given to another orchestrator",
                    claim.instance.task,
                    claim.instance.job_id,
                )
                continue
            METRICS.observe_end(claim, finished.state, outcome.result)
            if claim.placement != "local" and outcome.seconds is not None:
                self._task_seconds += (outcome.seconds - self._task_seconds) / 20
            if finished.state == UP_FOR_RETRY:
                self._notify(claim.instance.job_id, "retry")
            if finished.transition is not None:
                self._transition(finished.transition)

    def _transition(self, t: Transition) -> None:
        log.info("job %d: %s -> %s", t.job_id, t.old, t.new)
        if t.new == FAILED:
            self._notify(t.job_id, "fail")

    def _notify(self, job_id: int, event: str) -> None:
        if self.notifier is None:
            return
        notifier = self.notifier

        def send() -> None:
            job = get_job(self.engine, job_id)
            job["tasks"] = job_tasks(self.engine, job_id)
            notifier(self.settings, job, event)

        self._pool.submit(send)
