"""Job engine benchmark: 1,000 small jobs submitted at once, on SQLite and PostgreSQL,
against the same task chains submitted straight to the same Dask cluster.

    python bench/engine.py                                  # 1,000 jobs, 100,000 prefilled
    python bench/engine.py --jobs 100 --prefill 5000 --db sqlite     # a smoke run

A ``bench`` job is three chained no-op cluster tasks and one local task
(``bench/_engine_tasks.py``). For each database the benchmark submits the jobs in
batches to a running orchestrator (default settings, embedded Dask LocalCluster with
worker processes), waits until all succeed and reads the timestamps back from the
database: jobs completed per minute, per-job latency, and per task the scheduling
overhead (``started`` - the moment it became runnable). Then it bulk-inserts finished
jobs (``--prefill``) and measures again. Plain Dask runs the same chains on the same
cluster as the floor: no database, no durability.

PostgreSQL is the local server at 127.0.0.1:5432 (a scratch database is created and
dropped); everything stays on this machine. Progress goes to stderr, the tables to stdout
(``--json``: the results as JSON instead). Options: ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, func, insert, select, text

import _engine_tasks
import neuroferry
from neuroferry.config import Settings, get_settings
from neuroferry.db import jobs, make_engine, tasks, upgrade
from neuroferry.engine import Executor, NewJob, Orchestrator, register_kind, submit_jobs
from neuroferry.engine import _orchestrator as orchestrator_module
from sync import git_commit

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STEPS = _engine_tasks.STEPS
DONE = ("succeeded", "failed", "cancelled")
WARMUP_JOBS = 20


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import distributed
    import sqlalchemy

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "neuroferry": neuroferry.__version__,
        "commit": git_commit(),
        "distributed": distributed.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- figures ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of values, rounded for reading."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
    }


def epoch(value: datetime) -> float:
    """Seconds since the epoch; SQLite hands back naive datetimes, all of them UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


# -- databases ------------------------------------------------------------------------------


def postgres_problem() -> str | None:
    """Why the local PostgreSQL cannot be used, or ``None`` when it can."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN} is not reachable: {str(exc).strip()}"
    return None


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file under ``home``, or a scratch PostgreSQL
    database that is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{home / 'bench.db'}"
        return
    import psycopg

    name = f"ferry_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prefill(engine: Engine, n: int, chunk: int = 5000) -> float:
    """Bulk-insert ``n`` finished ``bench`` jobs with their four tasks (not through the
    engine), as months of history would leave them; returns the seconds it took."""
    started = time.perf_counter()
    t0 = datetime.now(UTC) - timedelta(days=100)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        when = [t0 + timedelta(seconds=60 * (done + i)) for i in range(k)]
        with engine.begin() as conn:
            ids = (
                conn.execute(
                    insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True),
                    [
                        {
                            "kind": "bench",
                            "name": f"bench-old-{done + i}",
                            "owner_id": None,
                            "state": "succeeded",
                            "spec": {"n": done + i},
                            "summary": {},
                            "created": w,
                            "updated": w + timedelta(seconds=1),
                            "started": w,
                            "finished": w + timedelta(seconds=1),
                        }
                        for i, w in enumerate(when)
                    ],
                )
                .scalars()
                .all()
            )
            rows = []
            for job_id, w in zip(ids, when, strict=True):
                for s, step in enumerate(STEPS):
                    began = w + timedelta(seconds=0.2 * s)
                    rows.append(
                        {
                            "job_id": job_id,
                            "name": step,
                            "map_index": -1,
                            "item": None,
                            "placement": "local" if step == "d" else "cluster",
                            "state": "succeeded",
                            "attempt": 1,
                            "retries_left": 0,
                            "params": {},
                            "result": {"began": began.timestamp(), "ended": began.timestamp()},
                            "created": w,
                            "started": began,
                            "finished": began + timedelta(seconds=0.1),
                            "worker": "bench:1",
                        }
                    )
            conn.execute(insert(tasks), rows)
        done += k
    if engine.dialect.name == "postgresql":
        # what autovacuum does after a table grows; SQLite keeps no statistics unless told
        with engine.begin() as conn:
            conn.execute(text("ANALYZE jobs"))
            conn.execute(text("ANALYZE tasks"))
    return time.perf_counter() - started


def table_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        n_jobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
        n_tasks = conn.execute(select(func.count()).select_from(tasks)).scalar_one()
    return int(n_jobs), int(n_tasks)


# -- where the orchestrator's time goes --------------------------------------------------


class Timers:
    """Wall time of the orchestrator's steps, by wrapping the functions it calls."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.claimed = 0
        self.largest_claim = 0

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.claimed = self.largest_claim = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1
            if name == "claim_tasks":
                self.claimed += len(out)
                self.largest_claim = max(self.largest_claim, len(out))
            return out

        return timed

    @contextlib.contextmanager
    def installed(self, orch: Orchestrator) -> Iterator[None]:
        saved = {
            name: getattr(orchestrator_module, name) for name in ("claim_tasks", "finish_tasks")
        }
        for name, fn in saved.items():
            setattr(orchestrator_module, name, self.wrap(name, fn))
        orch._submit = self.wrap("submit to executor", orch._submit)  # type: ignore[method-assign]
        orch._beat = self.wrap("heartbeat", orch._beat)  # type: ignore[method-assign]
        orch._outcome = self.wrap("fetch result", orch._outcome)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(orchestrator_module, name, fn)


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds a running thread of this process has used (Linux)."""
    if thread is None or thread.ident is None:
        return math.nan
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, AttributeError):
        return math.nan


def machine_cpu() -> float:
    """CPU seconds every process of the machine has used (all cores, not idle)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def postgres_cpu() -> float:
    """CPU seconds of the PostgreSQL server's processes (0 when they cannot be read)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
    return total


def workers_cpu() -> float:
    """CPU seconds of this process's children (the Dask nannies and workers)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


# -- neuroferry ------------------------------------------------------------------------------


class Rig:
    """An orchestrator over one database, started for one measurement."""

    def __init__(self, settings: Settings, engine: Engine, executor: Executor) -> None:
        self.settings, self.engine, self.executor = settings, engine, executor
        self.orch = Orchestrator(settings, engine, executor)
        self.timers = Timers()
        self._stack = contextlib.ExitStack()
        self.profile: cProfile.Profile | None = None

    def __enter__(self) -> Rig:
        self._stack.enter_context(self.timers.installed(self.orch))
        self.orch.start()
        deadline = time.monotonic() + 30
        while not self.orch.active:
            if time.monotonic() > deadline:
                raise RuntimeError("the orchestrator did not become active within 30 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.orch.stop()
        self._stack.close()

    def profiled(self) -> None:
        """Profile the orchestrator thread (call before entering)."""
        self.profile = cProfile.Profile()
        run, profile = self.orch._run, self.profile

        def profiled_run() -> None:
            profile.runcall(run)

        self.orch._run = profiled_run  # type: ignore[method-assign]

    def wait(self, ids: Sequence[int], timeout: float, pause: float) -> None:
        low, high = min(ids), max(ids)
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                done = conn.execute(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.id.between(low, high), jobs.c.state.in_(DONE))
                ).scalar_one()
            if done == len(ids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {len(ids)} jobs finished within {timeout} s")
            time.sleep(pause)


def submit(rig: Rig, first: int, count: int, *, wake: bool = True) -> tuple[list[int], float]:
    """Submit ``count`` bench jobs in one call; their ids and when the call returned."""
    new = [NewJob("bench", {"n": first + i}) for i in range(count)]
    ids = submit_jobs(rig.engine, new, owner_id=None, settings=rig.settings)
    committed = time.time()
    if wake:
        rig.orch.wake()
    return ids, committed


def job_figures(engine: Engine, committed: dict[int, float]) -> dict[str, Any]:
    """Per-task and per-job figures of the given jobs, from the database's timestamps and
    the times the task functions returned."""
    ids = sorted(committed)
    with engine.connect() as conn:
        job_rows = conn.execute(
            select(jobs.c.id, jobs.c.state, jobs.c.created, jobs.c.finished, jobs.c.error).where(
                jobs.c.id.in_(ids)
            )
        ).all()
        task_rows = conn.execute(
            select(
                tasks.c.job_id,
                tasks.c.name,
                tasks.c.created,
                tasks.c.started,
                tasks.c.finished,
                tasks.c.result,
            ).where(tasks.c.job_id.in_(ids))
        ).all()
    failed = [(r.id, r.state, r.error) for r in job_rows if r.state != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed, e.g. {failed[:3]}")
    by_job: dict[int, dict[str, Any]] = {}
    for r in task_rows:
        by_job.setdefault(r.job_id, {})[r.name] = r
    overhead, turnaround, dispatch, record = [], [], [], []
    per_step: dict[str, list[float]] = {s: [] for s in STEPS}
    for job_id, steps in by_job.items():
        previous = None
        for name in STEPS:
            t = steps[name]
            began, ended = t.result["began"], t.result["ended"]
            if previous is None:  # rows are visible to the orchestrator from the commit on
                runnable = max(epoch(t.created), committed[job_id])
                ran_after = committed[job_id]
            else:
                runnable = max(epoch(t.created), epoch(previous.finished))
                ran_after = previous.result["ended"]
            ms = (epoch(t.started) - runnable) * 1000
            overhead.append(ms)
            per_step[name].append(ms)
            turnaround.append((began - ran_after) * 1000)
            dispatch.append((began - epoch(t.started)) * 1000)
            record.append((epoch(t.finished) - ended) * 1000)
            previous = t
    latency = [epoch(r.finished) - epoch(r.created) for r in job_rows]
    return {
        "finished": max(epoch(r.finished) for r in job_rows),
        "overhead_ms": summary(overhead),
        "overhead_p50_by_task_ms": {s: round(percentile(v, 50), 2) for s, v in per_step.items()},
        "turnaround_ms": summary(turnaround),
        "dispatch_ms": summary(dispatch),
        "record_ms": summary(record),
        "job_latency_s": summary(latency),
    }


def burst(rig: Rig, n: int, batch: int, first: int = 0) -> dict[str, Any]:
    """Submit ``n`` jobs as fast as possible (``batch`` per call) to a running
    orchestrator, wait for all of them, and measure."""
    cpu0, thread0, workers0 = time.process_time(), thread_cpu(rig.orch._thread), workers_cpu()
    machine0, pg0 = machine_cpu(), postgres_cpu()
    t0 = time.time()
    committed: dict[int, float] = {}
    for start in range(0, n, batch):
        ids, when = submit(rig, first + start, min(batch, n - start))
        committed.update(dict.fromkeys(ids, when))
    submitted = time.time() - t0
    rig.wait(list(committed), timeout=max(600.0, n * 0.5), pause=0.2)
    cpu, thread = time.process_time() - cpu0, thread_cpu(rig.orch._thread) - thread0
    workers = workers_cpu() - workers0
    everything, pg = machine_cpu() - machine0, postgres_cpu() - pg0
    out = job_figures(rig.engine, committed)
    wall = out.pop("finished") - t0
    n_tasks = n * len(STEPS)
    timers = rig.timers
    busy = sum(timers.seconds.values())
    out.update(
        jobs=n,
        tasks=n_tasks,
        submit_s=round(submitted, 2),
        wall_s=round(wall, 2),
        jobs_per_min=round(n / wall * 60),
        tasks_per_min=round(n_tasks / wall * 60),
        cpu={
            "service_process_s": round(cpu, 2),
            "orchestrator_thread_s": round(thread, 2),
            "orchestrator_thread_ms_per_task": round(thread / n_tasks * 1000, 2),
            "workers_s": round(workers, 2),
            "postgres_s": round(pg, 2),
            "other_s": round(everything - cpu - workers - pg, 2),
        },
        orchestrator={
            "busy_fraction": round(busy / wall, 2),
            "busy_ms_per_task": round(busy / n_tasks * 1000, 2),
            **{
                name: {
                    "calls": timers.calls[name],
                    "seconds": round(timers.seconds[name], 2),
                    "ms_per_call": round(timers.seconds[name] / timers.calls[name] * 1000, 2),
                }
                for name in sorted(timers.calls)
            },
            "tasks_per_claim": round(timers.claimed / max(timers.calls["claim_tasks"], 1), 1),
            "largest_claim": timers.largest_claim,
            "capacity": rig.orch._capacity(),
        },
    )
    return out


def probe(rig: Rig, n: int, first: int, *, wake: bool) -> dict[str, Any]:
    """One job at a time on an otherwise idle engine: the overhead without queueing."""
    committed: dict[int, float] = {}
    for i in range(n):
        ids, when = submit(rig, first + i, 1, wake=wake)
        committed[ids[0]] = when
        rig.wait(ids, timeout=60, pause=0.005)
    out = job_figures(rig.engine, committed)
    out.pop("finished")
    out["jobs"] = n
    return out


def bench_database(
    kind: str, url: str, executor: Executor, home: Path, args: argparse.Namespace
) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    settings = get_settings(home=home, database_url=url)
    with engine.connect() as conn:
        server = ".".join(str(v) for v in conn.dialect.server_version_info or ())
    result: dict[str, Any] = {"server": f"{engine.dialect.name} {server}"}
    first = 0

    def measure(phase: str) -> dict[str, Any]:
        nonlocal first
        n_jobs, n_tasks = table_rows(engine)
        out: dict[str, Any] = {"rows_before": {"jobs": n_jobs, "tasks": n_tasks}}
        rig = Rig(settings, engine, executor)
        if args.profile:
            rig.profiled()
        with rig:
            if args.probe:
                say(f"{kind} {phase}: {args.probe} jobs one at a time ...")
                out["idle"] = probe(rig, args.probe, first, wake=True)
                first += args.probe
                out["idle_no_wake"] = probe(rig, max(args.probe // 2, 1), first, wake=False)
                first += max(args.probe // 2, 1)
            rig.timers.reset()
            say(f"{kind} {phase}: {args.jobs} jobs at once ({n_jobs:,} jobs in the table) ...")
            out["burst"] = burst(rig, args.jobs, args.batch, first)
            first += args.jobs
        b = out["burst"]
        say(
            f"  {b['jobs_per_min']:,} jobs/min, overhead p50 {b['overhead_ms']['p50']} ms, "
            f"p99 {b['overhead_ms']['p99']} ms, job latency p50 {b['job_latency_s']['p50']} s"
        )
        if rig.profile is not None:
            path = Path(args.profile) / f"engine-{kind}-{phase}.pstats"
            path.parent.mkdir(parents=True, exist_ok=True)
            rig.profile.dump_stats(path)
            buf = io.StringIO()
            pstats.Stats(rig.profile, stream=buf).sort_stats("cumulative").print_stats(25)
            say(f"profile of the orchestrator thread: {path}\n{buf.getvalue()}")
        return out

    try:
        say(f"{kind}: warm-up ({WARMUP_JOBS} jobs) ...")
        with Rig(settings, engine, executor) as rig:
            burst(rig, WARMUP_JOBS, WARMUP_JOBS, first)
            first += WARMUP_JOBS
        result["empty"] = measure("empty")
        if args.prefill:
            say(f"{kind}: inserting {args.prefill:,} finished jobs ...")
            result["prefill_s"] = round(prefill(engine, args.prefill), 1)
            result["grown"] = measure("grown")
    finally:
        engine.dispose()
    return result


# -- plain Dask -------------------------------------------------------------------------------


def dask_chains(client: Any, n: int) -> dict[str, Any]:
    """``n`` chains of four no-op tasks submitted at once (dependencies as futures)."""
    from distributed import wait

    step = _engine_tasks.plain_step
    chains = []
    cpu0, workers0, machine0 = time.process_time(), workers_cpu(), machine_cpu()
    t0 = time.time()
    for _ in range(n):
        submitted = time.time()
        futures = [client.submit(step, None, submitted, pure=False)]
        for _ in STEPS[1:]:
            futures.append(client.submit(step, futures[-1], submitted, pure=False))
        chains.append(futures)
    submit_s = time.time() - t0
    wait([c[-1] for c in chains])
    wall = time.time() - t0
    cpu, workers = time.process_time() - cpu0, workers_cpu() - workers0
    other = machine_cpu() - machine0 - cpu - workers
    results = client.gather([f for c in chains for f in c])
    del chains
    turnaround = [(r["began"] - r["runnable"]) * 1000 for r in results]
    latency = []
    for i in range(0, len(results), len(STEPS)):
        first, last = results[i], results[i + len(STEPS) - 1]
        latency.append(last["ended"] - first["runnable"])
    return {
        "chains": n,
        "tasks": n * len(STEPS),
        "submit_s": round(submit_s, 2),
        "wall_s": round(wall, 2),
        "chains_per_min": round(n / wall * 60),
        "tasks_per_min": round(n * len(STEPS) / wall * 60),
        "cpu": {
            "service_process_s": round(cpu, 2),
            "workers_s": round(workers, 2),
            "other_s": round(other, 2),
        },
        "turnaround_ms": summary(turnaround),
        "chain_latency_s": summary(latency),
    }


def dask_probe(client: Any, n: int) -> dict[str, Any]:
    """One chain at a time on an idle cluster."""
    turnaround, latency = [], []
    for _ in range(n):
        one = dask_chains(client, 1)
        turnaround.append(one["turnaround_ms"]["mean"])
        latency.append(one["chain_latency_s"]["p50"])
    return {"chains": n, "turnaround_mean_ms": summary(turnaround), "latency_s": summary(latency)}


def bench_dask(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    say(f"dask: warm-up ({WARMUP_JOBS} chains) ...")
    dask_chains(client, WARMUP_JOBS)
    out: dict[str, Any] = {}
    if args.probe:
        say(f"dask: {args.probe} chains one at a time ...")
        out["idle"] = dask_probe(client, args.probe)
    say(f"dask: {args.jobs} chains at once ...")
    out["burst"] = dask_chains(client, args.jobs)
    b = out["burst"]
    say(f"  {b['chains_per_min']:,} chains/min, turnaround p50 {b['turnaround_ms']['p50']} ms")
    return out


# -- report ---------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(results: dict[str, Any]) -> str:
    lines = []
    dask = results.get("dask", {}).get("burst")
    lines += [
        f"{results['jobs']:,} jobs of 4 tasks (3 chained no-op cluster tasks + 1 local) "
        "submitted at once; ms per task, s per job.",
        "overhead = started - runnable (database timestamps); turnaround = the task function "
        "began - its upstream's function ended (worker clocks, comparable with plain Dask).",
        "",
        "| run | jobs in table | jobs/min | tasks/min | overhead p50 | p99 | mean "
        "| turnaround p50 | p99 | job latency p50 | p99 | submit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for db in results["databases"]:
        for phase in ("empty", "grown"):
            m = results[db].get(phase)
            if m is None:
                continue
            b = m["burst"]
            o, t, j = b["overhead_ms"], b["turnaround_ms"], b["job_latency_s"]
            lines.append(
                f"| neuroferry {db} | {m['rows_before']['jobs']:,} | {b['jobs_per_min']:,} "
                f"| {b['tasks_per_min']:,} | {o['p50']} | {o['p99']} | {o['mean']} "
                f"| {t['p50']} | {t['p99']} | {j['p50']} | {j['p99']} | {b['submit_s']} |"
            )
    if dask:
        t, j = dask["turnaround_ms"], dask["chain_latency_s"]
        lines.append(
            f"| plain Dask | - | {dask['chains_per_min']:,} | {dask['tasks_per_min']:,} "
            f"| - | - | - | {t['p50']} | {t['p99']} | {j['p50']} | {j['p99']} "
            f"| {dask['submit_s']} |"
        )
    lines += [
        "",
        "| run | idle overhead p50 | idle turnaround p50 | idle job latency p50 "
        "| first task without wake() p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for db in results["databases"]:
        for phase in ("empty", "grown"):
            m = results[db].get(phase)
            if m is None or "idle" not in m:
                continue
            i, nw = m["idle"], m["idle_no_wake"]
            lines.append(
                f"| neuroferry {db} {phase} | {i['overhead_ms']['p50']} "
                f"| {i['turnaround_ms']['p50']} | {i['job_latency_s']['p50']} "
                f"| {nw['overhead_p50_by_task_ms']['a']} |"
            )
    if "idle" in results.get("dask", {}):
        i = results["dask"]["idle"]
        lines.append(
            f"| plain Dask | - | {i['turnaround_mean_ms']['p50']} | {i['latency_s']['p50']} | - |"
        )
    lines += [
        "",
        "Where the time goes during the burst: the orchestrator thread's steps in ms per "
        "call (busy = their share of the wall time; serial = their sum per task), then "
        "claim -> function began (dispatch) and function ended -> finished (record), "
        "and CPU per task of the service process and of the Dask workers:",
        "",
        "| run | busy | serial ms/task | fetch result | finish_tasks | claim_tasks (tasks) "
        "| submit | dispatch p50 | record p50 | service CPU | worker CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for db in results["databases"]:
        for phase in ("empty", "grown"):
            m = results[db].get(phase)
            if m is None:
                continue
            b = m["burst"]
            o, cpu = b["orchestrator"], b["cpu"]
            lines.append(
                f"| {db} {phase} | {o['busy_fraction']:.0%} | {o['busy_ms_per_task']} "
                f"| {o['fetch result']['ms_per_call']} | {o['finish_tasks']['ms_per_call']} "
                f"| {o['claim_tasks']['ms_per_call']} ({o['tasks_per_claim']}) "
                f"| {o['submit to executor']['ms_per_call']} "
                f"| {b['dispatch_ms']['p50']} | {b['record_ms']['p50']} "
                f"| {cpu['service_process_s'] / b['tasks'] * 1000:.1f} "
                f"| {cpu['workers_s'] / b['tasks'] * 1000:.1f} |"
            )
    if dask:
        cpu = dask["cpu"]
        lines.append(
            "| plain Dask | - | - | - | - | - | - | - | - "
            f"| {cpu['service_process_s'] / dask['tasks'] * 1000:.1f} "
            f"| {cpu['workers_s'] / dask['tasks'] * 1000:.1f} |"
        )
    lines.append("")
    for db in results["databases"]:
        empty, grown = results[db].get("empty"), results[db].get("grown")
        if empty and grown:
            e, g = empty["burst"], grown["burst"]
            lines.append(
                f"{db}: grown/empty overhead p50 "
                f"{ratio(g['overhead_ms']['p50'], e['overhead_ms']['p50'])}, "
                f"throughput {ratio(g['jobs_per_min'], e['jobs_per_min'])} "
                f"({grown['rows_before']['jobs']:,} vs {empty['rows_before']['jobs']:,} jobs)"
            )
        if dask and empty:
            e = empty["burst"]
            lines.append(
                f"{db} empty / plain Dask: throughput "
                f"{ratio(e['jobs_per_min'], dask['chains_per_min'])}, turnaround p50 "
                f"{ratio(e['turnaround_ms']['p50'], dask['turnaround_ms']['p50'])}"
            )
        for phase in ("empty", "grown"):
            o = results[db].get(phase, {}).get("burst", {}).get("orchestrator")
            if o and o["largest_claim"] > o["capacity"]:
                lines.append(
                    f"{db} {phase}: one claim_tasks call took {o['largest_claim']} tasks, "
                    f"more than the orchestrator asked for (at most {o['capacity']})"
                )
    for db, why in results.get("skipped", {}).items():
        lines.append(f"{db}: not measured: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs submitted at once")
    parser.add_argument("--prefill", type=int, default=100_000, help="finished jobs to add")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--batch", type=int, default=100, help="jobs per submit_jobs call")
    parser.add_argument("--probe", type=int, default=10, help="jobs run one at a time (0: none)")
    parser.add_argument("--no-dask", action="store_true", help="skip the plain Dask baseline")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench/.data/engine.json"))
    parser.add_argument("--profile", metavar="DIR", help="cProfile the orchestrator thread")
    args = parser.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if unknown := set(dbs) - {"sqlite", "postgresql"}:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use sqlite, postgresql")

    results: dict[str, Any] = {
        "jobs": args.jobs,
        "prefill": args.prefill,
        "batch": args.batch,
        "databases": [],
        "skipped": {},
        "machine": machine(),
    }
    if "postgresql" in dbs and (why := postgres_problem()):
        say(f"{why}; continuing without PostgreSQL")
        results["skipped"]["postgresql"] = why
        dbs.remove("postgresql")

    register_kind(_engine_tasks.KIND)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        home = Path(tmp)
        os.environ["FERRY_HOME"] = str(home)  # no ferry.toml of this user applies
        settings = get_settings(home=home)
        results["settings"] = {
            k: getattr(settings, k)
            for k in (
                "orchestrator_poll",
                "local_task_threads",
                "dask_workers",
                "dask_threads_per_worker",
                "dask_processes",
            )
        }
        say("starting the embedded Dask cluster ...")
        executor = Executor.start(settings)
        try:
            if not args.no_dask:
                results["dask"] = bench_dask(executor.client, args)
            for db in dbs:
                with database(db, home) as url:
                    results[db] = bench_database(db, url, executor, home / db, args)
                results["databases"].append(db)
        finally:
            executor.close()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
        print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
