"""Analysis jobs at scale: dispatch, the dedupe check, a 10,000-task job against plain Dask,
and the service's memory with a 100,000-task job queued.

    python bench/analysis.py                           # every part, the figures below
    python bench/analysis.py --assets 1000 --tasks 1000 --parts dispatch,dedupe,engine

The assets are folders on local disk (one ``.nwb`` file and one other file each), their
documents in a SQLite catalog owned by ``alice``, who is granted that folder. The parts,
each against its target:

* ``dispatch``: 10,000 assets x 10 parameter sets -> 100,000 dispatch models, without a
  file extension (nothing listed) and with ``.nwb`` (each asset's folder listed once), and
  writing them to a dispatch folder (< 30 s).
* ``dedupe``: the look-up of 100,000 result identities among 100,000 provenance records
  of alice's (``recorded``, the dispatch task's check for results already made), all
  found, and again for identities none of which is recorded (< 10 s).
* ``engine``: one analysis job of ``--tasks`` tasks (one parameter set over that many
  assets) of a trivial analysis (``bench/_analysis_tasks.py``: it counts its inputs and
  writes nothing), run by a real orchestrator on the embedded Dask LocalCluster (default
  settings), then the same function mapped over the same inputs with plain
  ``client.map`` on the same workers. Tasks per second of both and their ratio (>= 0.5).
* ``memory``: in a process of its own (orchestrator and embedded Dask scheduler, as
  ``ferry serve`` holds them, with its workers gone so that nothing runs), a job of
  10,000 assets x 10 parameter sets is dispatched and its 100,000 ``run`` tasks queued:
  the process's peak RSS (< 1 GiB) and the database's size.

Progress goes to stderr, the figures to stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Text, cast, func, select

import _analysis_tasks
from engine import epoch, say
from neuroferry.auth import create_user
from neuroferry.catalog import Catalog
from neuroferry.config import Settings, get_settings
from neuroferry.db import jobs, make_engine, tasks, upgrade, users
from neuroferry.engine import Executor, Orchestrator, register_kind, submit_job
from neuroferry.grants import access_for
from neuroferry.pipelines.analysis import (
    KIND,
    RESULT_KIND,
    AnalysisParameters,
    dispatch,
    record_name,
    write_dispatch_folder,
)
from neuroferry.pipelines.analysis._tasks import recorded

DONE = ("succeeded", "failed", "cancelled")
PARTS = ("dispatch", "dedupe", "engine", "memory")


@dataclass
class Lake:
    """The assets, their catalog and alice's settings."""

    root: Path
    url: str
    engine: Engine
    catalog: Catalog
    user: Any
    settings: Settings

    @property
    def results(self) -> str:
        return (self.root / "results").as_uri()


def asset_name(i: int) -> str:
    return f"behavior_{700000 + i % 97}_2025-06-07_14-{i // 60 % 60:02d}-{i % 60:02d}_{i}"


def make_lake(root: Path, assets: int) -> Lake:
    """``assets`` asset folders and their documents, owned by alice."""
    lake = root / "lake"
    docs = []
    for i in range(assets):
        name = asset_name(i)
        folder = lake / name / "nwb"
        folder.mkdir(parents=True)
        (folder / f"{name}.nwb").write_bytes(b"nwb")
        (lake / name / "metadata.json").write_bytes(b"{}")
        docs.append(
            {
                "name": name,
                "index": i,
                "location": (lake / name).as_uri(),
                "subject": {"subject_id": str(700000 + i % 97)},
                "data_description": {"data_level": "derived"},
            }
        )
    url = f"sqlite:///{root / 'ferry.db'}"
    engine = make_engine(url)
    upgrade(engine)
    user = create_user(engine, "alice", "user")
    catalog = Catalog(engine)
    for start in range(0, len(docs), 1000):
        catalog.upsert_many(docs[start : start + 1000], owner=user)
    (root / "results").mkdir()
    settings = lake_settings(root)
    return Lake(root, url, engine, catalog, user, settings)


def lake_settings(root: Path) -> Settings:
    prefixes = [(root / "lake").as_uri(), (root / "results").as_uri()]
    return get_settings(
        home=root / "home",
        database_url=f"sqlite:///{root / 'ferry.db'}",
        grants={"alice": {"store_prefixes": prefixes}},
    )


def parameters(sets: int) -> AnalysisParameters:
    return AnalysisParameters(
        fixed_parameters={"cutoff": 0.05},
        distributed_parameters=[{"method": f"m{i}"} for i in range(sets)],
    )


def timed(what: str, fn: Any) -> tuple[Any, float]:
    say(f"{what} ...")
    started = time.perf_counter()
    got = fn()
    return got, time.perf_counter() - started


# -- a) dispatch ------------------------------------------------------------------------------


def part_dispatch(lake: Lake, sets: int, workers: int) -> list[tuple[str, int, float]]:
    access = access_for(lake.settings, "alice", "user")
    rows = []
    models: list[Any] = []
    for label, extension in (("no file extension", None), ("file_extension .nwb", ".nwb")):
        models, took = timed(
            f"dispatch, {label}",
            lambda extension=extension: dispatch(
                filter={"data_description.data_level": "derived"},
                parameters=parameters(sets),
                file_extension=extension,
                catalog=lake.catalog,
                viewer=lake.user,
                access=access,
                settings=lake.settings,
            ),
        )
        rows.append((f"dispatch, {label}", len(models), took))
    out = str(lake.root / "dispatch-folder")
    _, took = timed(
        "write_dispatch_folder",
        lambda: write_dispatch_folder(models, out, num_parallel_workers=workers),
    )
    rows.append(("writing the dispatch folder (one JSON file each)", len(models), took))
    return rows


# -- b) dedupe ------------------------------------------------------------------------------


def part_dedupe(lake: Lake, records: int) -> list[tuple[str, int, float]]:
    """``records`` provenance records of alice's, then the look-up of as many identities."""
    started = time.perf_counter()
    identities = [f"{i:064x}" for i in range(records)]
    for start in range(0, records, 1000):
        docs = [
            {
                "name": record_name(identity, lake.user.id),
                "location": f"{lake.results}/{_analysis_tasks.NAME}/{identity}",
                "kind": RESULT_KIND,
                "identity": identity,
                "code": {"name": _analysis_tasks.NAME, "version": "1.0", "dirty": False},
            }
            for identity in identities[start : start + 1000]
        ]
        lake.catalog.upsert_many(docs, owner=lake.user)
    say(f"{records:,} provenance records written in {time.perf_counter() - started:.1f} s")
    found, took_found = timed(
        "dedupe, all recorded", lambda: recorded(lake.catalog, identities, lake.user)
    )
    assert len(found) == records, len(found)
    fresh = [f"{i + records:064x}" for i in range(records)]
    none, took_none = timed(
        "dedupe, none recorded", lambda: recorded(lake.catalog, fresh, lake.user)
    )
    assert not none
    return [
        (f"dedupe, all {records:,} recorded", records, took_found),
        ("dedupe, none recorded", records, took_none),
    ]


# -- c) the engine against plain Dask --------------------------------------------------------


def wait_job(engine: Engine, job_id: int, states: tuple[str, ...] = DONE) -> str:
    while True:
        with engine.connect() as conn:
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
        if state in states:
            return str(state)
        time.sleep(0.2)


def _cpu_seconds() -> float:
    """The CPU time (user and system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_now(client: Any) -> tuple[float, float]:
    """CPU seconds used so far by this process (the service: orchestrator, Dask scheduler
    and client) and by the Dask workers together."""
    workers = client.run(_cpu_seconds)
    return _cpu_seconds(), sum(workers.values())


def part_engine(
    lake: Lake, executor: Executor, n: int, profile: Path | None = None
) -> dict[str, Any]:
    """A job of ``n`` tasks (the first ``n`` assets, one parameter set), then plain Dask.
    With ``profile``, the orchestrator thread's cProfile statistics go to that file."""
    client = executor.client
    client.run(_analysis_tasks.registered)  # the workers import the analysis
    orch = Orchestrator(lake.settings, lake.engine, executor, catalog=lake.catalog)
    profiler = cProfile.Profile()
    if profile is not None:
        run = orch._run
        orch._run = lambda: profiler.runcall(run)  # type: ignore[method-assign]
    orch.start()
    spec = {
        "analysis": _analysis_tasks.NAME,
        "query": {"index": {"$lt": n}},
        "distributed_parameters": [{"method": "m0"}],
        "allow_dirty": True,
    }
    try:
        say(f"engine: one analysis job of {n:,} tasks ...")
        cpu_before = cpu_now(client)
        submitted = time.time()
        job_id = submit_job(
            lake.engine, KIND.name, spec, owner_id=lake.user.id, settings=lake.settings
        )
        orch.wake()
        state = wait_job(lake.engine, job_id)
        ended = time.time()
        cpu_after = cpu_now(client)
    finally:
        orch.stop()
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile)
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(40)
        say(f"profile of the orchestrator thread ({profile}):\n{buf.getvalue()}")
    if state != "succeeded":
        raise RuntimeError(f"the analysis job ended {state}")
    with lake.engine.connect() as conn:
        by_task = {
            r.name: r
            for r in conn.execute(
                select(tasks.c.name, tasks.c.started, tasks.c.finished).where(
                    tasks.c.job_id == job_id, tasks.c.map_index == -1
                )
            )
        }
        ran = conn.execute(
            select(func.count()).where(
                tasks.c.job_id == job_id,
                tasks.c.name == "run",
                tasks.c.map_index >= 0,
                tasks.c.state == "succeeded",
            )
        ).scalar()
    assert ran == n, f"{ran} of {n} tasks ran"

    def seconds(name: str) -> float:
        return epoch(by_task[name].finished) - epoch(by_task[name].started)

    locations = [(lake.root / "lake" / asset_name(i)).as_uri() for i in range(n)]
    say(f"plain Dask: client.map over {n:,} inputs ...")
    plain_before = cpu_now(client)
    started = time.perf_counter()
    futures = client.map(_analysis_tasks.plain_run, locations, ["m0"] * n, pure=False)
    got = client.gather(futures)
    plain = time.perf_counter() - started
    plain_after = cpu_now(client)
    del futures
    assert len(got) == n and got[0] == {"inputs": 1, "method": "m0"}, got[0]
    return {
        "tasks": n,
        "dispatch_s": seconds("dispatch"),
        "run_s": seconds("run"),
        "record_s": seconds("record"),
        "job_s": ended - submitted,
        "plain_s": plain,
        # CPU ms per task, the service's process and the workers' (the whole job, its
        # dispatch and record too; plain Dask: the map and the gather)
        "cpu_ms": [(a - b) * 1000 / n for a, b in zip(cpu_after, cpu_before, strict=True)],
        "plain_cpu_ms": [
            (a - b) * 1000 / n for a, b in zip(plain_after, plain_before, strict=True)
        ],
        "load": os.getloadavg(),
    }


# -- d) memory with a 100,000-task job queued -------------------------------------------------


def part_memory(root: Path, sets: int) -> dict[str, Any]:
    """Run :func:`memory_child` in a process of its own; its figures."""
    say(f"memory: a job of every asset x {sets} parameter sets, queued ...")
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(root), "--sets", str(sets)],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the memory run failed ({done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(root: Path, sets: int) -> None:
    settings = lake_settings(root)
    engine = make_engine(settings.database_url)
    catalog = Catalog(engine)
    with engine.connect() as conn:
        owner_id = conn.execute(select(users.c.id).where(users.c.name == "alice")).scalar()
    register_kind(KIND)
    executor = Executor.start(settings)
    executor.cluster.scale(0)  # nothing runs: the tasks stay queued
    while executor.client.scheduler_info()["workers"]:
        time.sleep(0.1)
    idle = _rss_mib()
    orch = Orchestrator(settings, engine, executor, catalog=catalog)
    orch.start()
    spec = {
        "analysis": _analysis_tasks.NAME,
        "query": {"data_description.data_level": "derived"},
        "distributed_parameters": [{"method": f"m{i}"} for i in range(sets)],
        "allow_dirty": True,
    }
    started = time.perf_counter()
    job_id = submit_job(engine, KIND.name, spec, owner_id=owner_id, settings=settings)
    orch.wake()
    while True:
        with engine.connect() as conn:
            queued = conn.execute(
                select(func.count()).where(
                    tasks.c.job_id == job_id, tasks.c.name == "run", tasks.c.map_index >= 0
                )
            ).scalar()
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
        if queued or state in DONE:
            break
        time.sleep(0.2)
    took = time.perf_counter() - started
    time.sleep(3 * settings.orchestrator_poll)  # a few more rounds of the orchestrator
    with engine.connect() as conn:
        dispatch_bytes = conn.execute(
            select(func.length(cast(tasks.c.result, Text))).where(
                tasks.c.job_id == job_id, tasks.c.name == "dispatch"
            )
        ).scalar()
        params_bytes = conn.execute(
            select(func.sum(func.length(cast(tasks.c.params, Text)))).where(
                tasks.c.job_id == job_id, tasks.c.name == "run", tasks.c.map_index >= 0
            )
        ).scalar()
    after = _rss_mib()
    orch.stop()
    executor.close()
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    db_mib = (root / "ferry.db").stat().st_size / 2**20
    print(
        json.dumps(
            {
                "tasks": queued,
                "state": state,
                "queued_s": took,
                "idle_mib": idle,
                "after_mib": after,
                "peak_mib": peak,
                "dispatch_result_mib": (dispatch_bytes or 0) / 2**20,
                "params_mib": (params_bytes or 0) / 2**20,
                "db_mib": db_mib,
            }
        )
    )


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--sets", type=int, default=10, help="parameter sets per asset")
    parser.add_argument("--records", type=int, default=100_000, help="provenance records")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the engine's job")
    parser.add_argument("--workers", type=int, default=64, help="dispatch folders written")
    parser.add_argument("--parts", default=",".join(PARTS), help=", ".join(PARTS))
    parser.add_argument("--profile", type=Path, help="cProfile the orchestrator thread to FILE")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.sets)
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown part {', '.join(sorted(unknown))}; use {', '.join(PARTS)}")
    if "engine" in parts and args.tasks > args.assets:
        parser.error("--tasks: at most --assets (one task per asset)")

    register_kind(KIND)
    with tempfile.TemporaryDirectory(prefix="ferry-analysis-bench-") as scratch:
        root = Path(scratch)
        os.environ["FERRY_HOME"] = str(root / "home")  # no ferry.toml of this user applies
        lake, took = timed(f"setup: {args.assets:,} assets", lambda: make_lake(root, args.assets))
        say(f"setup took {took:.1f} s")
        timings: list[tuple[str, int, float]] = []
        if "dispatch" in parts:
            timings += part_dispatch(lake, args.sets, args.workers)
        if "dedupe" in parts:
            timings += part_dedupe(lake, args.records)
        for what, count, seconds in timings:
            print(f"{what}: {count:,} in {seconds:.2f} s")
        if "engine" in parts:
            executor = Executor.start(lake.settings)
            try:
                got = part_engine(lake, executor, args.tasks, args.profile)
            finally:
                executor.close()
            ferry = got["tasks"] / got["run_s"]
            plain = got["tasks"] / got["plain_s"]
            print(
                f"engine: {got['tasks']:,} tasks: neuroferry {got['run_s']:.1f} s "
                f"({ferry:.0f} tasks/s; dispatch {got['dispatch_s']:.1f} s, record "
                f"{got['record_s']:.1f} s, whole job {got['job_s']:.1f} s), plain Dask "
                f"{got['plain_s']:.1f} s ({plain:.0f} tasks/s): ratio {ferry / plain:.2f}"
            )
            (ferry_service, ferry_workers), (plain_service, plain_workers) = (
                got["cpu_ms"],
                got["plain_cpu_ms"],
            )
            print(
                f"engine: CPU per task: neuroferry {ferry_service:.2f} ms in the service "
                f"process (orchestrator, scheduler), {ferry_workers:.2f} ms in the workers; "
                f"plain Dask {plain_service:.2f} ms and {plain_workers:.2f} ms; load average "
                + " ".join(f"{x:.1f}" for x in got["load"])
            )
        lake.engine.dispose()
        if "memory" in parts:
            got = part_memory(root, args.sets)
            print(
                f"memory: {got['tasks']:,} tasks queued in {got['queued_s']:.1f} s; service "
                f"peak RSS {got['peak_mib']:.0f} MiB (idle {got['idle_mib']:.0f}, after "
                f"{got['after_mib']:.0f}); dispatch result {got['dispatch_result_mib']:.1f} "
                f"MiB, the tasks' settings {got['params_mib']:.1f} MiB; database "
                f"{got['db_mib']:.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
