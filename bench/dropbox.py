"""Drop-box benchmark: from a submit file landing to its job starting and to ``end.txt``,
and a burst of submit files each run exactly once.

    python bench/dropbox.py                        # 20 single submissions, a burst of 1,000
    python bench/dropbox.py --burst 100 --poll 1   # a smoke run

A drop-box on a local folder runs a trivial analysis (``bench-noop``: reads its one input
and writes one small file) on an in-process service: SQLite, an embedded Dask cluster of
thread workers, one orchestrator running the drop-box watcher every ``--poll`` seconds.

1. Latency: ``--single`` submissions of one dataset, one at a time: the seconds from the
   submit file's write to its job's first task running, and to its ``end.txt``; p50 and
   p95. The target: p50 under 2 s plus the poll interval.
2. Burst: ``--burst`` submit files written at once across ``--groups`` groups: the
   seconds until the watcher has submitted every one's job, until every one has its
   ``end.txt``, and a check that each ran exactly once (one job per submit file, none
   twice).

Progress goes to stderr, one line per phase to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import func, select

from neuroferry.auth import create_user
from neuroferry.catalog import Catalog
from neuroferry.config import get_settings
from neuroferry.db import jobs, make_engine, tasks, upgrade
from neuroferry.dropbox import add_group, end_key, publish_dropbox
from neuroferry.engine import Executor, Orchestrator
from neuroferry.pipelines.analysis import Analysis, AnalysisRun, register_analysis


class NoParameters(BaseModel):
    label: str = ""


def noop(run: AnalysisRun) -> None:
    for url in run.inputs.file_location or []:
        parent, _, name = url.rpartition("/")
        size = len(run.open_store(parent).get(name))
    (run.results / "size.txt").write_text(str(size))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def submit(root: Path, group: str, timestamp: str) -> Path:
    fields = {
        "dataname": f"{group}/inputs/data.bin",
        "configname": f"{group}/configs/config.json",
        "timestamp": timestamp,
    }
    path = root / group / "submissions" / f"{timestamp}_submit.json"
    path.write_text(json.dumps(fields))
    return root / end_key(f"{group}/results/job__bench_{timestamp}")


def first_run_started(engine: object, after: int) -> float | None:
    """The epoch seconds at which a run task of a job with id over ``after`` started."""
    with engine.connect() as conn:  # type: ignore[attr-defined]
        found = conn.execute(
            select(tasks.c.started)
            .join(jobs, jobs.c.id == tasks.c.job_id)
            .where(jobs.c.id > after, tasks.c.name == "run", tasks.c.started.is_not(None))
            .order_by(tasks.c.started)
        ).first()
    if found is None:
        return None
    started = found[0]
    return started.timestamp() if started.tzinfo else started.replace(tzinfo=None).timestamp()


def submitted(engine: object, after: int) -> int:
    """How many analysis jobs with an id over ``after`` there are."""
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(
            conn.execute(
                select(func.count()).where(jobs.c.id > after, jobs.c.kind == "analysis")
            ).scalar_one()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=20, help="submissions timed one by one")
    parser.add_argument("--burst", type=int, default=1000, help="submit files written at once")
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--poll", type=float, default=1.0, help="the watcher's interval (s)")
    parser.add_argument("--threads", type=int, default=4, help="Dask worker threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferry-dropbox-bench-") as scratch:
        base = Path(scratch)
        os.environ["FERRY_HOME"] = str(base / "home")
        settings = get_settings(
            database_url=f"sqlite:///{base / 'ferry.db'}",
            dask_processes=False,
            dask_workers=1,
            dask_threads_per_worker=args.threads,
            orchestrator_poll=0.05,
            dropbox_poll=args.poll,
            analysis_max_models=10,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        # the benchmark's own analysis counts as committed code, whatever the checkout
        from neuroferry.pipelines.analysis import _identity

        _identity._git_state = lambda path: (None, False)  # type: ignore[attr-defined]
        register_analysis(Analysis("bench-noop", noop, NoParameters, version="1"))
        root = base / "box"
        root.mkdir()
        admin = create_user(engine, "admin", "admin")
        publish_dropbox(engine, settings, admin, "bench", "bench-noop", str(root))
        groups = [f"group{i:02d}" for i in range(args.groups)]
        for group in groups:
            add_group(engine, settings, admin, group, "bench", [])
            (root / group / "inputs" / "data.bin").write_bytes(b"x" * 1000)
            (root / group / "configs" / "config.json").write_text('{"label": "bench"}')

        executor = Executor.start(settings)
        orchestrator = Orchestrator(settings, engine, executor, catalog=Catalog(engine))
        orchestrator.start()
        try:
            to_start, to_end = [], []
            for i in range(args.single):
                with engine.connect() as conn:
                    last = conn.execute(select(jobs.c.id).order_by(jobs.c.id.desc())).scalar() or 0
                landed = time.time()
                end = submit(root, groups[0], f"single{i}")
                started = None
                while not end.exists():
                    if started is None:
                        started = first_run_started(engine, last)
                    time.sleep(0.005)
                ended = time.time()
                started = started or first_run_started(engine, last) or ended
                to_start.append(started - landed)
                to_end.append(ended - landed)
                say(f"single {i}: job started {to_start[-1]:.2f} s, end.txt {to_end[-1]:.2f} s")
            if to_start:
                print(
                    f"latency ({args.single} submissions, poll {args.poll:g} s): to job start "
                    f"p50 {statistics.median(to_start):.2f} s "
                    f"p95 {percentile(to_start, 95):.2f} s; "
                    f"to end.txt p50 {statistics.median(to_end):.2f} s "
                    f"p95 {percentile(to_end, 95):.2f} s",
                    flush=True,
                )

            with engine.connect() as conn:
                before = conn.execute(select(jobs.c.id).order_by(jobs.c.id.desc())).scalar() or 0
            landed = time.time()
            ends = [submit(root, groups[i % len(groups)], f"burst{i}") for i in range(args.burst)]
            waiting = set(ends)
            taken = None
            while waiting:
                waiting = {e for e in waiting if not e.exists()}
                if taken is None and submitted(engine, before) >= args.burst:
                    taken = time.time() - landed
                time.sleep(0.05)
            cleared = time.time() - landed
            taken = taken or cleared
            with engine.connect() as conn:
                made = conn.execute(
                    select(jobs.c.spec).where(jobs.c.id > before, jobs.c.kind == "analysis")
                ).scalars()
                results = [spec["results"] for spec in made]
            once = len(results) == args.burst and len(set(results)) == args.burst
            print(
                f"burst: {args.burst} submit files across {len(groups)} groups cleared in "
                f"{cleared:.1f} s ({args.burst / cleared:.1f} per s), every job submitted in "
                f"{taken:.1f} s ({args.burst / taken:.1f} files per s); "
                f"{len(results)} jobs, {'each run exactly once' if once else 'NOT exactly once'}",
                flush=True,
            )
            if not once:
                raise SystemExit(1)
        finally:
            orchestrator.stop()
            executor.close()
            engine.dispose()


if __name__ == "__main__":
    main()
