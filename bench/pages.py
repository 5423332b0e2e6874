"""Pages benchmark: the jobs list and a job's page over a table of 100,000 jobs, on SQLite
and PostgreSQL, side by side with the REST API's JSON for the same query. Target: every
page under 300 ms server time.

    python bench/pages.py                                   # the full run, a few minutes
    python bench/pages.py --rows 3000 --db sqlite --repeat 10     # a smoke run

For each database the benchmark starts ``ferry serve --no-orchestrator`` (web only: nothing
runs, so what is measured is the pages' own cost), fills the jobs table with the year of
history that ``bench/api.py`` inserts (same code), adds one upload job with ``--instances``
mapped task instances, then takes turns, as the admin and as a regular user, between a
page and the API request that returns the same data:

* the first page of ``/jobs`` (50 rows, newest first), a state filter, a name filter, a
  sort by name, a deep page (the middle of the list), and the part of the first page that
  its auto-refresh fetches (``?partial=1``); each against ``GET /api/v2/jobs`` with the
  same query;
* the page of the job with many tasks (``/jobs/{id}``: its mapped task folded, as the
  page opens, and with its instances shown, ``?open=compress_data``) against
  ``GET /api/v2/jobs/{id}`` plus ``GET /api/v2/jobs/{id}/tasks`` (the two together).

Server time is the time until the whole answer was read, on loopback (``GET /docs``, which
reads no database, gives the floor of any request). Every page's job ids and total are
compared with the API's. Progress goes to stderr, the table to stdout (``--json``: the
results as JSON instead). Options: ``--help``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, insert, select

from api import (
    USER,
    Load,
    Service,
    count_jobs,
    make_session,
    make_users,
    prefill,
    upload_job,
    vacuum,
    wait_for_quiet,
)
from engine import database, machine, postgres_problem, say, summary
from neuroferry.auth import User, get_user
from neuroferry.config import get_settings
from neuroferry.db import jobs, make_engine, tasks, users
from neuroferry.pipelines.upload import KIND as UPLOAD
from neuroferry.pipelines.upload import UploadJobSpec, prepare

TARGET_MS = 300.0
PAGE = 50
WARMUP = 3
MIN_ROUNDS = 20
_ROW_ID = re.compile(r'<td class="num"><a href="/jobs/(\d+)">')
_TOTAL = re.compile(r"of ([\d,]+) · page")


@dataclass(frozen=True)
class Case:
    """One page and the API request(s) that return the same data."""

    name: str
    page: str
    api: tuple[str, ...]
    params: dict[str, Any]
    api_params: dict[str, Any]


def many_tasks_job(engine: Engine, owner_id: int, session: Path, instances: int) -> int:
    """A finished upload job whose ``compress_data`` ran over ``instances`` items: its
    tasks inserted as the orchestrator leaves them; returns its id."""
    settings = get_settings()
    spec = UploadJobSpec.model_validate(upload_job(session, "699999"))
    plan = prepare(spec, settings)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    with engine.begin() as conn:
        job_id = conn.execute(
            insert(jobs)
            .values(
                kind="upload",
                name=plan.name,
                owner_id=owner_id,
                state="succeeded",
                spec=spec.model_dump(mode="json"),
                summary=dict(plan.summary),
                job_type=None,
                job_type_version=None,
                created=t0,
                updated=t0 + timedelta(hours=1),
                started=t0 + timedelta(seconds=2),
                finished=t0 + timedelta(hours=1),
            )
            .returning(jobs.c.id)
        ).scalar_one()
        rows: list[dict[str, Any]] = []
        for i, t in enumerate(UPLOAD.tasks):
            mapped = t.map_over is not None
            done = t0 + timedelta(seconds=10 * (i + 1))
            base = {
                "job_id": job_id,
                "name": t.name,
                "item": None,
                "state": "succeeded",
                "retries_left": t.retries,
                "params": {},
                "result": {"ok": True},
                "error": None,
                "created": t0,
                "started": done - timedelta(seconds=8),
                "finished": done,
            }
            rows.append(
                {**base, "map_index": -1, "placement": "map" if mapped else t.placement}
                | {"attempt": 0 if mapped else 1}
            )
            if t.name == "compress_data":
                rows += [
                    {
                        **base,
                        "map_index": k,
                        "item": f"tile-{k:05d}",
                        "placement": t.placement,
                        "attempt": 1 + (k % 7 == 0),
                        "params": {"tile": k},
                    }
                    for k in range(instances)
                ]
        conn.execute(insert(tasks), rows)
    return int(job_id)


def cases(engine: Engine, viewer: User, rows: int, job_id: int) -> list[Case]:
    """The pages measured for ``viewer``, with the API requests each is compared with."""
    with engine.connect() as conn:
        subject = conn.execute(
            select(jobs.c.name)
            .join(users, users.c.id == jobs.c.owner_id)
            .where(jobs.c.kind == "upload", users.c.name == USER)
            .order_by(jobs.c.id)
            .limit(1)
        ).scalar_one()
        mine = rows
        if not viewer.is_admin:
            mine = len(conn.execute(select(jobs.c.id).where(jobs.c.owner_id == viewer.id)).all())
    deep = max(1, math.ceil(mine / PAGE) // 2)
    name = subject.split("_")[1]

    def listing(label: str, **params: Any) -> Case:
        api = dict(params)
        if "page" in api:
            api["offset"] = (int(api.pop("page")) - 1) * PAGE
        return Case(label, "/jobs", ("/jobs",), params, api)

    return [
        listing("first page"),
        listing("state filter", state="failed"),
        listing("name filter", name=name),
        listing("sorted by name", sort="name"),
        listing(f"deep page ({deep:,} of {math.ceil(mine / PAGE):,})", page=deep),
        listing("partial (auto-refresh)", partial=1),
        Case(
            "job with many tasks",
            f"/jobs/{job_id}",
            (f"/jobs/{job_id}", f"/jobs/{job_id}/tasks"),
            {},
            {},
        ),
        Case(
            "same, instances shown",
            f"/jobs/{job_id}",
            (f"/jobs/{job_id}", f"/jobs/{job_id}/tasks"),
            {"open": "compress_data"},
            {},
        ),
    ]


def check_same(case: Case, page: httpx.Response, answers: list[httpx.Response]) -> bool:
    """Whether the page lists the jobs (ids, total) or the tasks the API returned."""
    if case.page == "/jobs":
        data = answers[0].json()
        ids = [int(i) for i in _ROW_ID.findall(page.text)]
        total = _TOTAL.search(page.text)
        return ids == [j["id"] for j in data["jobs"]] and (
            total is not None and int(total.group(1).replace(",", "")) == data["total"]
        )
    listed = answers[1].json()
    instances = sum(1 for t in listed if t["map_index"] >= 0)
    shown = page.text.count('class="instance"')
    return all(f'id="t-{t["name"]}' in page.text for t in listed) and (
        shown == instances if case.params.get("open") else shown == 0
    )


def bench_case(
    service: Service, token: str, case: Case, repeat: int, budget: float
) -> dict[str, Any]:
    """``repeat`` rounds of the page and its API request(s) in turn (at least
    ``MIN_ROUNDS``, fewer than ``repeat`` if the rounds take more than ``budget`` s)."""
    page_ms: list[float] = []
    api_ms: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=120) as client:

        def page() -> httpx.Response:
            t0 = time.perf_counter()
            resp = client.get(case.page, params=case.params)
            page_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {case.page} {case.params}: {resp.status_code}")
            return resp

        def api() -> list[httpx.Response]:
            t0 = time.perf_counter()
            answers = [client.get("/api/v2" + p, params=case.api_params) for p in case.api]
            api_ms.append((time.perf_counter() - t0) * 1000)
            for resp in answers:
                resp.raise_for_status()
            return answers

        same = True
        size = 0
        for _ in range(WARMUP):
            shown, answers = page(), api()
            same = same and check_same(case, shown, answers)
            size = len(shown.content)
        page_ms.clear()
        api_ms.clear()
        cpu0, t0 = service.cpu(), time.perf_counter()
        calls: list[Callable[[], object]] = [page, api]
        rounds = 0
        while rounds < repeat:
            if rounds >= MIN_ROUNDS and time.perf_counter() - t0 > budget:
                break
            for call in calls[rounds % 2 :] + calls[: rounds % 2]:
                call()
            rounds += 1
        cpu = service.cpu() - cpu0
    out = {
        "name": case.name,
        "page": case.page,
        "params": case.params,
        "page_ms": summary(page_ms),
        "api_ms": summary(api_ms),
        "page_kib": round(size / 1024, 1),
        "service_cpu_ms": round(cpu / rounds / 2 * 1000, 2),
        "same_answers": same,
    }
    say(
        f"  {case.name:28} page p50 {out['page_ms']['p50']:7.2f} p99 {out['page_ms']['p99']:7.2f}"
        f" | API p50 {out['api_ms']['p50']:7.2f} p99 {out['api_ms']['p99']:7.2f} ms"
    )
    return out


def http_floor(service: Service, repeat: int) -> dict[str, Any]:
    """``GET /docs``: a small page that reads no database, the floor of any request."""
    times = []
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for i in range(repeat + WARMUP):
            t0 = time.perf_counter()
            client.get("/docs").raise_for_status()
            if i >= WARMUP:
                times.append((time.perf_counter() - t0) * 1000)
    return summary(times)


def bench_database(kind: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    session = make_session(home / "session")
    result: dict[str, Any] = {}
    with Service(home / "service", url, "--no-orchestrator") as service:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                version = ".".join(str(v) for v in conn.dialect.server_version_info or ())
            result["server"] = f"{engine.dialect.name} {version}"
            settings = get_settings(home=home / "service", database_url=url)
            user, owners, token = make_users(engine)
            admin = get_user(engine, "admin")
            now = datetime.now(UTC)
            say(f"{kind}: inserting {args.rows - 1:,} jobs of history ...")
            result["prefill_s"] = round(
                prefill(engine, args.rows - 1, owners, session, settings, now), 1
            )
            job_id = many_tasks_job(engine, user.id, session, args.instances)
            vacuum(engine)
            result["rows"] = count_jobs(engine)
            result["instances"] = args.instances
            tokens = {"admin": service.admin_token, USER: token}
            result["quiet_before"] = wait_for_quiet(args.quiet_wait)
            result["pages"] = []
            with Load(service) as load:
                result["http_floor_ms"] = http_floor(service, args.repeat)
                for viewer, who in ((admin, "admin"), (user, USER)):
                    say(f"{kind}: pages as {who} over {result['rows']:,} jobs ...")
                    for case in cases(engine, viewer, result["rows"], job_id):
                        m = bench_case(service, tokens[who], case, args.repeat, args.budget)
                        m["viewer"] = who
                        result["pages"].append(m)
            result["load"] = load.figures
        finally:
            engine.dispose()
    return result


# -- report -----------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [
        "Pages and the API's JSON for the same data, "
        f"{results['rows']:,} jobs (ms; page / API on the p50s; < {TARGET_MS:.0f} ms on the "
        "page's p99):",
        "",
        "| db | page | viewer | page p50 | page p99 | API p50 | API p99 | page / API "
        "| page KiB | service CPU | < 300 ms | same answers |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for db in results["databases"]:
        for m in results[db]["pages"]:
            p, a = m["page_ms"], m["api_ms"]
            ratio = f"{p['p50'] / a['p50']:.2f}" if a.get("p50") else "-"
            ok = "yes" if p["p99"] < TARGET_MS else "**no**"
            lines.append(
                f"| {db} | {m['name']} | {m['viewer']} | {p['p50']} | {p['p99']} | {a['p50']} "
                f"| {a['p99']} | {ratio} | {m['page_kib']} | {m['service_cpu_ms']} | {ok} "
                f"| {'yes' if m['same_answers'] else 'NO'} |"
            )
    lines.append("")
    for db in results["databases"]:
        r = results[db]
        lines.append(
            f"{db} ({r['server']}): {r['rows']:,} jobs ({r['prefill_s']} s to insert), the job "
            f"page's job has {r['instances']:,} mapped instances; GET /docs p50 "
            f"{r['http_floor_ms']['p50']} p99 {r['http_floor_ms']['p99']} ms; load in cores "
            f"{r['load']}"
        )
    for db, why in results.get("skipped", {}).items():
        lines.append(f"{db}: not measured: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="jobs in the table")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--repeat", type=int, default=50, help="rounds per page")
    parser.add_argument(
        "--budget",
        type=float,
        default=20,
        help=f"seconds per page and viewer, after which it stops at {MIN_ROUNDS} rounds",
    )
    parser.add_argument(
        "--instances", type=int, default=1000, help="mapped instances of the job page's job"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="wait up to this many s for other work to calm down before measuring",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench/.data/pages.json"))
    args = parser.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if unknown := set(dbs) - {"sqlite", "postgresql"}:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use sqlite, postgresql")

    results: dict[str, Any] = {
        "rows": args.rows,
        "repeat": args.repeat,
        "databases": [],
        "skipped": {},
        "machine": machine(),
    }
    if "postgresql" in dbs and (why := postgres_problem()):
        say(f"{why}; continuing without PostgreSQL")
        results["skipped"]["postgresql"] = why
        dbs.remove("postgresql")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-pages-") as tmp:
        root = Path(tmp)
        os.environ["FERRY_HOME"] = str(root)  # no ferry.toml of this user applies
        for db in dbs:
            with database(db, root / db) as url:
                results[db] = bench_database(db, url, root / db, args)
            results["databases"].append(db)
    results["seconds"] = round(time.perf_counter() - started)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(report(results))
        print(f"\nresults: {args.out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
