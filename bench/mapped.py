"""Job engine benchmark: one job whose task is mapped over N no-op instances, on SQLite
and PostgreSQL.

    python bench/mapped.py                              # 10,000 instances, both databases
    python bench/mapped.py --items 1000 --db sqlite     # a smoke run
    python bench/mapped.py --local                      # instances run in the orchestrator

A ``bench-mapped`` job (``bench/_engine_tasks.py``) is a local task that gives N items, a
task mapped over them whose instances do nothing, and a local task after them. For each
database the benchmark submits one such job to a running orchestrator (default settings,
embedded Dask LocalCluster with worker processes), waits until it succeeds and reads the
timestamps back from the database: the instances completed per second (from the mapped
task's expansion to its settling) and the whole job's wall time. A job's cost per
instance must not grow with N: run it at two sizes to see whether it does.

PostgreSQL is the local server at 127.0.0.1:5432 (a scratch database is created and
dropped). Progress goes to stderr, one line per database to stdout. Options: ``--help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

import _engine_tasks
from engine import database, epoch, postgres_problem, say
from neuroferry.config import get_settings
from neuroferry.db import jobs, make_engine, tasks, upgrade
from neuroferry.engine import Executor, Orchestrator, register_kind, submit_job

DONE = ("succeeded", "failed", "cancelled")


def run_job(db: str, url: str, executor: Executor, home: Path, n: int) -> dict[str, Any]:
    """Run one job of ``n`` instances under a fresh orchestrator; its figures."""
    engine = make_engine(url)
    upgrade(engine)
    settings = get_settings(home=home, database_url=url)
    orch = Orchestrator(settings, engine, executor)
    orch.start()
    try:
        submitted = time.time()
        job_id = submit_job(engine, "bench-mapped", {"items": n}, owner_id=None, settings=settings)
        orch.wake()
        while True:
            with engine.connect() as conn:
                state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
            if state in DONE:
                break
            time.sleep(0.2)
        ended = time.time()
        with engine.connect() as conn:
            mapped = conn.execute(
                select(tasks.c.started, tasks.c.finished).where(
                    tasks.c.job_id == job_id, tasks.c.name == "each", tasks.c.map_index == -1
                )
            ).one()
    finally:
        orch.stop()
        engine.dispose()
    if state != "succeeded":
        raise RuntimeError(f"the {db} job ended {state}")
    seconds = epoch(mapped.finished) - epoch(mapped.started)
    return {
        "items": n,
        "mapped_s": round(seconds, 2),
        "tasks_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "job_s": round(ended - submitted, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="instances of the task")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument(
        "--local", action="store_true", help="run the instances in the orchestrator, not Dask"
    )
    args = parser.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if unknown := set(dbs) - {"sqlite", "postgresql"}:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use sqlite, postgresql")
    if "postgresql" in dbs and (why := postgres_problem()):
        say(f"{why}; continuing without PostgreSQL")
        dbs.remove("postgresql")

    kind = _engine_tasks.MAPPED
    if args.local:
        each = dataclasses.replace(kind.task("each"), placement="local")
        kind = dataclasses.replace(
            kind, tasks=tuple(each if t.name == "each" else t for t in kind.tasks)
        )
    register_kind(kind)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        home = Path(tmp)
        os.environ["FERRY_HOME"] = str(home)  # no ferry.toml of this user applies
        say("starting the embedded Dask cluster ...")
        executor = Executor.start(get_settings(home=home))
        try:
            for db in dbs:
                say(f"{db}: one job mapped over {args.items:,} items ...")
                with database(db, home) as url:
                    got = run_job(db, url, executor, home / db, args.items)
                where = "local" if args.local else "Dask"
                print(
                    f"{db}: {got['items']:,} {where} instances in {got['mapped_s']} s: "
                    f"{got['tasks_per_s']} tasks/s (whole job {got['job_s']} s)"
                )
        finally:
            executor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
