"""REST API benchmark: upload jobs submitted one per request to a real ``ferry serve``, and
the jobs list over a table of 100,000 rows, on SQLite and PostgreSQL, side by side with
the same work done without HTTP (the library calls, and the list queries as raw SQL).

    python bench/api.py                                        # the full run, < 10 min
    python bench/api.py --jobs 40 --rows 3000 --db sqlite --orchestrated 5   # a smoke run

For each database the benchmark starts ``ferry serve --no-orchestrator`` (web only: jobs
stay queued, so what is measured is the API's own cost), bulk-inserts a year of job
history with SQLAlchemy Core, then:

* submits ``--jobs`` upload jobs, one per request, taking turns with the same request
  through the service function the route calls (``submit_upload_jobs``) and through the
  engine's ``submit_jobs`` (no HTTP); then ``--concurrent-jobs`` more from ``--clients``
  concurrent clients. The jobs table ends at ``--rows`` rows.
* lists jobs: the default page, a state filter, a name filter, an owner filter, a
  submit-time range, a sort by name and a deep page, as an admin and as a regular user,
  taking turns with ``list_jobs`` (no HTTP) and the same SQL written by hand and run
  through SQLAlchemy (the floor: no HTTP, no JSON, no models). Every answer is compared.
* prints the plans of the list queries (``EXPLAIN ANALYZE`` on PostgreSQL, ``EXPLAIN
  QUERY PLAN`` on SQLite), and measures on the scratch database what might make them
  faster: the same SQL rewritten by hand (raw, in turn with the SQL as it is), indexes
  created by hand (API and raw again), a keyset page instead of the deep offset.

Then ``--orchestrated`` jobs go to a ``ferry serve`` that runs them, on a fresh database.
PostgreSQL is the local server at 127.0.0.1:5432 (a scratch database is created and
dropped); everything stays on this machine. Progress goes to stderr, the tables to stdout
(``--json``: the results as JSON instead). Options: ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import DateTime, Engine, bindparam, func, insert, select, text

from engine import (
    database,
    machine,
    machine_cpu,
    postgres_cpu,
    postgres_problem,
    say,
    summary,
)
from neuroferry.auth import User, create_token, create_user, get_user
from neuroferry.config import Settings, get_settings
from neuroferry.db import jobs, make_engine, users
from neuroferry.engine import JobQuery, NewJob, list_jobs, submit_jobs
from neuroferry.pipelines.upload import UploadJobSpec, prepare, submit_upload_jobs

TARGET_MS = 100.0
PAGE = 50
WARMUP_SUBMITS = 10
WARMUP_LISTS = 3
MIN_ROUNDS = 30
PLATFORMS = ("ecephys", "behavior", "SmartSPIM", "multiplane-ophys", "single-plane-ophys")
KINDS = {"upload": 0.75, "analysis": 0.17, "ingest": 0.08}
OLD_STATES = {"succeeded": 0.88, "failed": 0.08, "cancelled": 0.04}
RECENT_STATES = {"queued": 0.3, "running": 0.2, "succeeded": 0.4, "failed": 0.1}
JOB_TYPES = {None: 0.7, "ecephys-np2": 0.2, "spim-large": 0.1}
SUBJECTS = 5000
STAFF = 19  # users besides the admin and the measured user
USER = "alice"


# -- the service ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``ferry serve`` as a process of its own (own process group), on a free port."""

    def __init__(
        self, home: Path, url: str, *args: str, env: Mapping[str, str] | None = None
    ) -> None:
        """On the database ``url`` (empty: its home's SQLite file), in ``env`` (default:
        this process's environment without its FERRY_* settings)."""
        self.home, self.args = home, args
        self.env = dict(
            env
            if env is not None
            else {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        )
        self.env["FERRY_HOME"] = str(home)
        if url:
            self.env["FERRY_DATABASE_URL"] = url
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = home / "serve.log"

    def __enter__(self) -> Service:
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "neuroferry", "serve", "--port", str(port), *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferry serve exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/api/v2/health", timeout=5).is_success:
                    return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"ferry serve did not answer:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def admin_token(self) -> str:
        return str(json.loads((self.home / "token.json").read_text())["token"])

    def cpu(self) -> float:
        """CPU seconds the service process (and its Dask workers, if any) has used."""
        assert self.proc is not None
        total = 0.0
        proc = psutil.Process(self.proc.pid)
        for p in (proc, *proc.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total


class Load:
    """CPU used during a phase: this process (the clients and the library calls), the
    service, PostgreSQL, and everything else on the machine (other users' work: large
    values flag a disturbed phase). In cores, i.e. CPU seconds per wall second."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def __enter__(self) -> Load:
        self.t0, self.cpu0 = time.perf_counter(), self._now()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self.t0
        used = [b - a for a, b in zip(self.cpu0, self._now(), strict=True)]
        own, service, pg, everything = used
        self.figures = {
            k: round(v / wall, 2)
            for k, v in (
                ("bench", own),
                ("service", service),
                ("postgres", pg),
                ("other", everything - own - service - pg),
            )
        }

    def _now(self) -> tuple[float, float, float, float]:
        return time.process_time(), self.service.cpu(), postgres_cpu(), machine_cpu()


def wait_for_quiet(max_wait: float, limit: float = 0.3, sample: float = 1.0) -> float:
    """Wait (up to ``max_wait`` s) until other work uses under ``limit`` cores; that load."""
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_cpu()
        time.sleep(sample)
        load = (machine_cpu() - before) / sample
        if load < limit or time.monotonic() >= deadline:
            return round(load, 2)


# -- what is submitted ------------------------------------------------------------------


def make_session(root: Path) -> Path:
    """A small session folder; every job uploads it under its own subject id."""
    files = {
        "ecephys/probe_A/continuous.dat": os.urandom(64 * 1024),
        "ecephys/settings.xml": b"<SETTINGS/>",
        "behavior/trials.csv": b"trial,choice\n1,left\n2,right\n",
        "metadata/session.json": b'{"session_type": "bench"}',
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


class Subjects:
    """Subject ids never used before in this run, so every asset name is new."""

    def __init__(self) -> None:
        self._next = 800_000
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._next += 1
            return str(self._next)


def upload_job(session: Path, subject: str) -> dict[str, Any]:
    """One upload job as a client sends it (``SubmitJobRequestV2.upload_jobs`` entry)."""
    return {
        "job_type": "default",
        "project_name": "Ephys Platform",
        "platform": "ecephys",
        "subject_id": subject,
        "acq_datetime": "2025-04-01T14:30:15",
        "modalities": [
            {"abbreviation": "ecephys", "input_source": str(session / "ecephys")},
            {"abbreviation": "behavior", "input_source": str(session / "behavior")},
        ],
        "metadata_dir": str(session / "metadata"),
    }


def request_for(session: Path, subject: str) -> dict[str, Any]:
    return {"upload_jobs": [upload_job(session, subject)]}


# -- history ----------------------------------------------------------------------------


def pick(rng: random.Random, weights: Mapping[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def prefill(
    engine: Engine,
    n: int,
    owners: list[int],
    session: Path,
    settings: Settings,
    now: datetime,
    seed: int = 11,
    chunk: int = 5000,
) -> float:
    """Bulk-insert ``n`` jobs created over the year before ``now``, in order of creation
    (ids grow with time), as a year of use leaves them; returns the seconds it took.

    Upload jobs carry the spec and summary a real submission stores; owners follow a
    Zipf-like law (``owners[0]`` submits the most); the last three days hold the
    unfinished jobs. No tasks: the jobs list does not read them."""
    rng = random.Random(seed)
    spec = UploadJobSpec.model_validate(upload_job(session, "600000"))
    template = spec.model_dump(mode="json")
    summary_template = dict(prepare(spec, settings).summary)
    subjects = [str(600_000 + i) for i in rng.sample(range(100_000), SUBJECTS)]
    weights = [1 / (rank + 1) for rank in range(len(owners))]
    year = timedelta(days=365).total_seconds()
    created = sorted(now - timedelta(seconds=rng.uniform(3600, year)) for _ in range(n))
    started = time.perf_counter()
    for start in range(0, n, chunk):
        rows = []
        for when in created[start : start + chunk]:
            kind = pick(rng, KINDS)
            subject, platform = rng.choice(subjects), rng.choice(PLATFORMS)
            acquired = when - timedelta(seconds=rng.uniform(600, 3 * 86400))
            asset = f"{platform}_{subject}_{acquired:%Y-%m-%d_%H-%M-%S}"
            recent = now - when < timedelta(days=3)
            state = pick(rng, RECENT_STATES if recent else OLD_STATES)
            began = when + timedelta(seconds=rng.uniform(1, 120))
            ended = began + timedelta(seconds=rng.uniform(60, 4 * 3600))
            job_type = pick(rng, JOB_TYPES) if kind == "upload" else None
            if kind == "upload":
                name = asset
                job_spec = {
                    **template,
                    "subject_id": subject,
                    "acq_datetime": acquired.replace(tzinfo=None).isoformat(timespec="seconds"),
                }
                job_summary = {**summary_template, "asset_name": asset, "subject_id": subject}
            elif kind == "analysis":
                name = f"{asset}_processed_{when:%Y-%m-%d_%H-%M-%S}"
                job_spec = {"analysis": "spike-sorting", "inputs": [asset], "parameters": {}}
                job_summary = {"inputs": [asset], "analysis": "spike-sorting"}
            else:
                name = f"{asset}_zarr"
                job_spec = {"input": f"/data/raw/{asset}", "output": f"s3://lake/{name}"}
                job_summary = {"output": f"s3://lake/{name}"}
            running = state in ("running", "queued")
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "owner_id": None if rng.random() < 0.02 else rng.choices(owners, weights)[0],
                    "state": state,
                    "spec": job_spec,
                    "summary": job_summary,
                    "job_type": job_type,
                    "job_type_version": rng.randint(1, 4) if job_type else None,
                    "error": "upload_data_to_s3 failed: the destination refused the upload"
                    if state == "failed"
                    else None,
                    "created": when,
                    "updated": when if state == "queued" else (began if running else ended),
                    "started": None if state == "queued" else began,
                    "finished": None if running else ended,
                    "cancel_requested": ended if state == "cancelled" else None,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(jobs), rows)
    vacuum(engine)
    return time.perf_counter() - started


def vacuum(engine: Engine) -> None:
    """On PostgreSQL, what autovacuum does after a table grows (visibility map and
    statistics); SQLite keeps no statistics unless told, and neuroferry does not tell it."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))
        conn.execute(text("VACUUM ANALYZE users"))


def count_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


# -- submitting -------------------------------------------------------------------------


@dataclass
class Rig:
    """One database with its service and who uses it."""

    kind: str
    url: str
    engine: Engine
    settings: Settings
    service: Service
    admin: User
    user: User
    tokens: dict[str, str]
    session: Path
    subjects: Subjects

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.service.url + "/api/v2",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=120,
        )


def api_submit(client: httpx.Client, rig: Rig) -> float:
    """One job in one request; the seconds until the whole answer was read."""
    body = request_for(rig.session, rig.subjects.take())
    t0 = time.perf_counter()
    resp = client.post("/submit_jobs", json=body)
    elapsed = time.perf_counter() - t0
    if resp.status_code != 200:
        raise RuntimeError(f"submit_jobs answered {resp.status_code}: {resp.text[:500]}")
    return elapsed


def bench_submit(rig: Rig, n: int, clients: int, concurrent: int) -> dict[str, Any]:
    """``n`` jobs one per request, in turn with the same job through ``submit_upload_jobs``
    and ``submit_jobs`` in this process; then ``concurrent`` jobs from ``clients``
    concurrent clients."""
    times: dict[str, list[float]] = {"api": [], "submit_upload_jobs": [], "submit_jobs": []}

    def service_call() -> float:
        body = request_for(rig.session, rig.subjects.take())
        t0 = time.perf_counter()
        submit_upload_jobs(rig.engine, rig.settings, body, rig.user)
        return time.perf_counter() - t0

    def engine_call() -> float:
        new = NewJob("upload", upload_job(rig.session, rig.subjects.take()))
        t0 = time.perf_counter()
        submit_jobs(rig.engine, [new], owner_id=rig.user.id, settings=rig.settings)
        return time.perf_counter() - t0

    with rig.client(USER) as client:
        for _ in range(WARMUP_SUBMITS):
            api_submit(client, rig)
            service_call()
            engine_call()
        cpu0 = rig.service.cpu()
        for i in range(n):
            calls = [
                ("api", lambda: api_submit(client, rig)),
                ("submit_upload_jobs", service_call),
                ("submit_jobs", engine_call),
            ]
            for name, call in calls[i % 3 :] + calls[: i % 3]:  # no one always goes first
                times[name].append(call())
        service_cpu = rig.service.cpu() - cpu0
    out: dict[str, Any] = {k: summary([t * 1000 for t in v]) for k, v in times.items()}
    out["api"]["service_cpu_ms"] = round(service_cpu / n * 1000, 2)
    if clients:
        out["api_concurrent"] = submit_concurrently(rig, concurrent, clients)
        out["submit_jobs_concurrent"] = library_concurrently(rig, concurrent // 2, clients)
    return out


def in_threads(
    n: int, clients: int, work: Callable[[int], list[float]]
) -> tuple[list[float], float]:
    """``work(count)`` in ``clients`` threads, ``n`` counts in all: every latency it
    returned (s) and the wall time."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(count: int) -> None:
        try:
            mine = work(count)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            latencies.extend(mine)

    counts = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=run, args=(c,)) for c in counts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"a concurrent client failed: {errors[0]}") from errors[0]
    return latencies, wall


def submit_concurrently(rig: Rig, n: int, clients: int) -> dict[str, Any]:
    """``n`` jobs from ``clients`` threads, each with its own connection."""

    def work(count: int) -> list[float]:
        with rig.client(USER) as client:
            return [api_submit(client, rig) for _ in range(count)]

    cpu0 = rig.service.cpu()
    latencies, wall = in_threads(n, clients, work)
    service_cpu = rig.service.cpu() - cpu0
    out = summary([t * 1000 for t in latencies])
    out.update(
        clients=clients,
        wall_s=round(wall, 2),
        requests_per_s=round(n / wall, 1),
        service_cpu_ms=round(service_cpu / n * 1000, 2),
    )
    return out


def library_concurrently(rig: Rig, n: int, clients: int) -> dict[str, Any]:
    """``submit_jobs`` from ``clients`` threads of this process, ``n`` jobs as they are and
    ``n`` with every call behind one lock of the process (writes taking turns in Python
    instead of in the database's busy handler)."""
    out = {}
    for label, lock in (("as is", None), ("one lock", threading.Lock())):

        def work(count: int, lock: threading.Lock | None = lock) -> list[float]:
            times = []
            for _ in range(count):
                new = NewJob("upload", upload_job(rig.session, rig.subjects.take()))
                t0 = time.perf_counter()
                with lock or contextlib.nullcontext():
                    submit_jobs(rig.engine, [new], owner_id=rig.user.id, settings=rig.settings)
                times.append(time.perf_counter() - t0)
            return times

        latencies, wall = in_threads(n, clients, work)
        out[label] = {
            **summary([t * 1000 for t in latencies]),
            "calls_per_s": round(n / wall, 1),
        }
    return out


# -- listing ----------------------------------------------------------------------------

COLUMNS = ", ".join(f"jobs.{c.name}" for c in jobs.columns) + ", users.name AS owner"
FROM = "jobs LEFT OUTER JOIN users ON users.id = jobs.owner_id"


@dataclass(frozen=True)
class ListQuery:
    """One list request: its query string, and the same as a ``JobQuery`` and as SQL."""

    name: str
    params: dict[str, Any]

    def job_query(self) -> JobQuery:
        p = self.params
        return JobQuery(
            states=(p["state"],) if "state" in p else (),
            owner=p.get("owner"),
            name_contains=p.get("name"),
            submitted_after=p.get("submitted_after"),
            submitted_before=p.get("submitted_before"),
            sort=p.get("sort", "-created"),
            limit=PAGE,
            offset=p.get("offset", 0),
        )

    def query_string(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.params.items()}

    def sql(self, viewer: User, dialect: str) -> tuple[str, str, dict[str, Any]]:
        """The page's and the count's SQL, written by hand after what ``list_jobs`` sends
        (``icontains`` is ILIKE on PostgreSQL, ``lower() LIKE`` on SQLite)."""
        p = self.params
        where, values = [], {}
        if not viewer.is_admin:
            where.append("jobs.owner_id = :viewer")
            values["viewer"] = viewer.id
        if "state" in p:
            where.append("jobs.state IN (:state)")
            values["state"] = p["state"]
        if "owner" in p:
            where.append("users.name = :owner")
            values["owner"] = p["owner"]
        if "name" in p:
            where.append(
                "jobs.name ILIKE '%' || :name || '%' ESCAPE '/'"
                if dialect == "postgresql"
                else "lower(jobs.name) LIKE '%' || lower(:name) || '%' ESCAPE '/'"
            )
            values["name"] = p["name"]
        for key, op in (("submitted_after", ">="), ("submitted_before", "<")):
            if key in p:
                where.append(f"jobs.created {op} :{key}")
                values[key] = p[key]
        sort = p.get("sort", "-created")
        column = sort.removeprefix("-")
        order = "DESC" if sort.startswith("-") else "ASC"
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        page = (
            f"SELECT {COLUMNS} FROM {FROM}{clause} ORDER BY jobs.{column} {order}, "
            f"jobs.id {order} LIMIT :limit OFFSET :offset"
        )
        count = f"SELECT count(*) FROM {FROM}{clause}"
        return page, count, {**values, "limit": PAGE, "offset": int(p.get("offset", 0))}


def bound(sql: str, values: Mapping[str, Any]) -> Any:
    """``text(sql)`` whose times are bound as the ``created`` column binds them."""
    stmt = text(sql)
    times = [k for k in values if k.startswith("submitted_")]
    if times:
        stmt = stmt.bindparams(*(bindparam(k, type_=DateTime(timezone=True)) for k in times))
    return stmt


def raw_list(engine: Engine, query: ListQuery, viewer: User) -> tuple[list[int], int, float, float]:
    """The page's ids, the count, and the seconds the page and the count took."""
    page, count, values = query.sql(viewer, engine.dialect.name)
    with engine.connect() as conn:
        t0 = time.perf_counter()
        rows = conn.execute(bound(page, values), values).all()
        t1 = time.perf_counter()
        total = conn.execute(bound(count, values), values).scalar_one()
        t2 = time.perf_counter()
    return [r.id for r in rows], int(total), t1 - t0, t2 - t1


def list_queries(engine: Engine, rows: int, now: datetime) -> list[ListQuery]:
    """The requests a jobs page makes; the name filter is a subject id of the measured
    user's history."""
    with engine.connect() as conn:
        subject = conn.execute(
            select(jobs.c.name)
            .join(users, users.c.id == jobs.c.owner_id)
            .where(jobs.c.kind == "upload", users.c.name == USER)
            .order_by(jobs.c.id)
            .limit(1)
        ).scalar_one()
    month = now - timedelta(days=180)
    return [
        ListQuery("default page", {}),
        ListQuery("state", {"state": "failed"}),
        ListQuery("name contains", {"name": subject.split("_")[1]}),
        ListQuery("owner", {"owner": USER}),
        ListQuery(
            "submitted range",
            {"submitted_after": month, "submitted_before": month + timedelta(days=30)},
        ),
        ListQuery("sort by name", {"sort": "name"}),
        ListQuery("deep page", {"offset": rows // 2}),
    ]


def for_viewer(query: ListQuery, engine: Engine, viewer: User) -> ListQuery:
    """A regular user's deep page is the middle of their own jobs."""
    if query.name != "deep page" or viewer.is_admin:
        return query
    _, count, values = query.sql(viewer, engine.dialect.name)
    with engine.connect() as conn:
        total = conn.execute(text(count), values).scalar_one()
    return ListQuery(query.name, {"offset": int(total) // 2})


def bench_list(
    rig: Rig, query: ListQuery, viewer: User, repeat: int, budget: float = math.inf
) -> dict[str, Any]:
    """``repeat`` rounds of the API request, ``list_jobs`` and the raw SQL, in turn; fewer
    (but at least ``MIN_ROUNDS``) if the rounds take more than ``budget`` seconds."""
    who = "admin" if viewer.is_admin else USER
    params = query.query_string()
    api_ms: list[float] = []
    lib_ms: list[float] = []
    raw_ms: list[float] = []
    page_ms: list[float] = []
    count_ms: list[float] = []
    same = True
    with rig.client(who) as client:

        def api() -> dict[str, Any]:
            t0 = time.perf_counter()
            resp = client.get("/jobs", params=params)
            api_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"GET /jobs {params} answered {resp.status_code}: {resp.text}")
            return dict(resp.json())

        def library() -> None:
            t0 = time.perf_counter()
            list_jobs(rig.engine, viewer, query.job_query())
            lib_ms.append((time.perf_counter() - t0) * 1000)

        def raw() -> tuple[list[int], int]:
            t0 = time.perf_counter()
            ids, total, page_s, count_s = raw_list(rig.engine, query, viewer)
            raw_ms.append((time.perf_counter() - t0) * 1000)
            page_ms.append(page_s * 1000)
            count_ms.append(count_s * 1000)
            return ids, total

        for _ in range(WARMUP_LISTS):
            answer, (ids, total) = api(), raw()
            library()
            same = same and answer["total"] == total and [j["id"] for j in answer["jobs"]] == ids
        for series in (api_ms, lib_ms, raw_ms, page_ms, count_ms):
            series.clear()
        cpu0, t0 = rig.service.cpu(), time.perf_counter()
        calls: list[Callable[[], object]] = [api, library, raw]
        rounds = 0
        while rounds < repeat:
            if rounds >= MIN_ROUNDS and time.perf_counter() - t0 > budget:
                break
            for call in calls[rounds % 3 :] + calls[: rounds % 3]:
                call()
            rounds += 1
        service_cpu = rig.service.cpu() - cpu0
    out = {
        "query": params,
        "viewer": who,
        "total": total,
        "page_rows": len(ids),
        "same_answers": same,
        "api_ms": summary(api_ms),
        "list_jobs_ms": summary(lib_ms),
        "raw_ms": summary(raw_ms),
        "raw_page_ms": summary(page_ms),
        "raw_count_ms": summary(count_ms),
        "service_cpu_ms": round(service_cpu / rounds * 1000, 2),
    }
    say(
        f"  {query.name:15} {who:5}  API p50 {out['api_ms']['p50']:7.2f} p99 "
        f"{out['api_ms']['p99']:7.2f} ms | list_jobs p50 {out['list_jobs_ms']['p50']:7.2f} "
        f"| raw p50 {out['raw_ms']['p50']:7.2f} ms ({total:,} rows)"
    )
    return out


def http_floor(rig: Rig, repeat: int) -> dict[str, Any]:
    """``GET /docs``: a small page that reads no database, the floor of any request."""
    times = []
    with rig.client("admin") as client:
        for i in range(repeat + WARMUP_LISTS):
            t0 = time.perf_counter()
            client.get(rig.service.url + "/docs").raise_for_status()
            if i >= WARMUP_LISTS:
                times.append((time.perf_counter() - t0) * 1000)
    return summary(times)


def explain(engine: Engine, query: ListQuery, viewer: User) -> dict[str, str]:
    """The plans of the page's and the count's SQL."""
    page, count, values = query.sql(viewer, engine.dialect.name)
    prefix = (
        "EXPLAIN (ANALYZE, BUFFERS)"
        if engine.dialect.name == "postgresql"
        else "EXPLAIN QUERY PLAN"
    )
    plans = {}
    with engine.connect() as conn:
        for label, sql in (("page", page), ("count", count)):
            rows = conn.execute(bound(f"{prefix} {sql}", values), values).all()
            if engine.dialect.name == "postgresql":
                plans[label] = "\n".join(r[0] for r in rows)
            else:  # id, parent, notused, detail: indent by depth
                depth: dict[int, int] = {0: -1}
                lines = []
                for r in rows:
                    depth[r[0]] = depth.get(r[1], -1) + 1
                    lines.append("  " * depth[r[0]] + str(r[3]))
                plans[label] = "\n".join(lines)
    return plans


def keyset_page(engine: Engine, query: ListQuery, viewer: User, repeat: int) -> dict[str, Any]:
    """The deep page asked for by the last row of the page before it (``created``, ``id``)
    instead of by offset: the raw SQL's p50, and whether it gives the same rows."""
    page, _, values = query.sql(viewer, engine.dialect.name)
    typed = text(page).columns(created=DateTime(timezone=True))
    with engine.connect() as conn:
        before = conn.execute(typed, {**values, "limit": 1, "offset": values["offset"] - 1}).one()
        expected = [r.id for r in conn.execute(text(page), values)]
    owner = "jobs.owner_id = :viewer AND " if not viewer.is_admin else ""
    sql = (
        f"SELECT {COLUMNS} FROM {FROM} WHERE {owner}jobs.created <= :created "
        "AND (jobs.created < :created OR jobs.id < :id) "
        f"ORDER BY jobs.created DESC, jobs.id DESC LIMIT {PAGE}"
    )
    stmt = text(sql).bindparams(bindparam("created", type_=DateTime(timezone=True)))
    args = {"viewer": viewer.id, "created": before.created, "id": before.id}
    times = []
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(stmt, args)]
        for _ in range(repeat):
            t0 = time.perf_counter()
            conn.execute(stmt, args).all()
            times.append((time.perf_counter() - t0) * 1000)
    return {"sql": sql, "raw_page_ms": summary(times), "same_rows": ids == expected}


#: Indexes that may help the list queries, created by hand on the scratch database after
#: the measurements: (label, statements, the queries to measure again).
INDEX_TRIALS: dict[str, list[tuple[str, list[str], list[str]]]] = {
    # the trigram index on name that this benchmark once tried by hand ships in
    # migration 0007 now
    "postgresql": [],
    "sqlite": [("ANALYZE (planner statistics)", ["ANALYZE"], ["state", "sort by name"])],
}

FTS = "jobs.id IN (SELECT rowid FROM jobs_name_fts WHERE jobs_name_fts.name LIKE :pattern)"


@dataclass(frozen=True)
class Rewrite:
    """A change to the list queries' SQL, measured as raw SQL against the SQL as it is."""

    label: str
    dialect: str
    queries: tuple[str, ...]
    viewers: tuple[str, ...]
    change: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]
    setup: tuple[str, ...] = ()


def _without_join(sql: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if sql.startswith("SELECT count(*)") and "users.name" not in sql:
        sql = sql.replace(f"FROM {FROM}", "FROM jobs")
    return sql, values


def _plain_like(sql: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    old = "lower(jobs.name) LIKE '%' || lower(:name) || '%'"
    return sql.replace(old, "jobs.name LIKE '%' || :name || '%'"), values


def _fts_first(sql: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return sql.replace(" WHERE ", f" WHERE {FTS} AND ", 1), {
        **values,
        "pattern": f"%{values['name']}%",
    }


REWRITES = (
    Rewrite(
        "count without the join to users",
        "sqlite",
        ("default page", "state", "name contains", "deep page"),
        ("admin",),
        _without_join,
    ),
    Rewrite("LIKE without lower()", "sqlite", ("name contains",), ("admin", USER), _plain_like),
    Rewrite(
        "FTS5 trigram table of names as a prefilter",
        "sqlite",
        ("name contains",),
        ("admin", USER),
        _fts_first,
        (
            "CREATE VIRTUAL TABLE jobs_name_fts USING fts5(name, tokenize='trigram', "
            "content='jobs', content_rowid='id')",
            "INSERT INTO jobs_name_fts(jobs_name_fts) VALUES ('rebuild')",
        ),
    ),
)


def timed_raw(engine: Engine, page: str, count: str, values: dict[str, Any]) -> Callable[[], Any]:
    def run() -> tuple[list[int], int, float, float]:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            ids = [r.id for r in conn.execute(bound(page, values), values)]
            t1 = time.perf_counter()
            total = conn.execute(bound(count, values), values).scalar_one()
            return ids, int(total), t1 - t0, time.perf_counter() - t1

    return run


def try_rewrites(
    rig: Rig, queries: dict[str, ListQuery], viewers: list[User], repeat: int
) -> list[dict[str, Any]]:
    """Each rewrite of the SQL in turn with the SQL as it is: raw page and count p50."""
    out = []
    for rewrite in REWRITES:
        if rewrite.dialect != rig.kind:
            continue
        say(f"{rig.kind}: trying {rewrite.label} ...")
        t0 = time.perf_counter()
        with rig.engine.begin() as conn:
            for statement in rewrite.setup:
                conn.execute(text(statement))
        built = time.perf_counter() - t0
        for name in rewrite.queries:
            for viewer in viewers:
                who = "admin" if viewer.is_admin else USER
                if who not in rewrite.viewers:
                    continue
                page, count, values = for_viewer(queries[name], rig.engine, viewer).sql(
                    viewer, rig.kind
                )
                new_page, new_values = rewrite.change(page, values)
                new_count, _ = rewrite.change(count, values)
                runs = {
                    "before": timed_raw(rig.engine, page, count, values),
                    "after": timed_raw(rig.engine, new_page, new_count, new_values),
                }
                answers = {k: run()[:2] for k, run in runs.items()}
                ms: dict[str, dict[str, list[float]]] = {k: {"page": [], "count": []} for k in runs}
                for i in range(repeat):
                    for k in list(runs)[i % 2 :] + list(runs)[: i % 2]:
                        _, _, page_s, count_s = runs[k]()
                        ms[k]["page"].append(page_s * 1000)
                        ms[k]["count"].append(count_s * 1000)
                out.append(
                    {
                        "change": rewrite.label,
                        "seconds": round(built, 2),
                        "name": name,
                        "viewer": who,
                        **{
                            k: {f"raw_{part}_ms": summary(v[part]) for part in ("page", "count")}
                            for k, v in ms.items()
                        },
                        "same_answers": answers["before"] == answers["after"],
                        "sql": {"page": new_page, "count": new_count},
                    }
                )
    return out


def try_indexes(
    rig: Rig,
    queries: dict[str, ListQuery],
    viewers: list[User],
    before: list[dict[str, Any]],
    repeat: int,
) -> list[dict[str, Any]]:
    """Create each suggested index, measure again the queries it is for (API and raw), and
    keep the figures with the new plans."""
    out = []
    for label, statements, names in INDEX_TRIALS[rig.kind]:
        say(f"{rig.kind}: trying {label} ...")
        t0 = time.perf_counter()
        with rig.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in statements:
                conn.execute(text(statement))
        built = time.perf_counter() - t0
        for name in names:
            for viewer in viewers:
                query = for_viewer(queries[name], rig.engine, viewer)
                after = bench_list(rig, query, viewer, repeat, budget=10)
                old = next(
                    m for m in before if m["name"] == name and m["viewer"] == after["viewer"]
                )
                out.append(
                    {
                        "change": label,
                        "seconds": round(built, 2),
                        "name": name,
                        "viewer": after["viewer"],
                        "before": {k: old[k] for k in ("api_ms", "raw_ms")},
                        "after": {k: after[k] for k in ("api_ms", "raw_ms", "same_answers")},
                        "plans": explain(rig.engine, query, viewer),
                    }
                )
    return out


def spec_cost(engine: Engine, repeat: int) -> dict[str, Any]:
    """The default page read as ``list_jobs`` reads it (SQLAlchemy Core, JSON decoded),
    with every column and without ``spec``, which the list does not show, in turn."""
    listed = [c for c in jobs.columns if c.name != "spec"]
    selects = {
        "all columns": select(jobs, users.c.name.label("owner")),
        "without spec": select(*listed, users.c.name.label("owner")),
    }
    ms: dict[str, list[float]] = {k: [] for k in selects}
    for i in range(repeat + WARMUP_LISTS):
        for k in list(selects)[i % 2 :] + list(selects)[: i % 2]:
            stmt = (
                selects[k]
                .outerjoin(users, users.c.id == jobs.c.owner_id)
                .order_by(jobs.c.created.desc(), jobs.c.id.desc())
                .limit(PAGE)
            )
            t0 = time.perf_counter()
            with engine.connect() as conn:
                [dict(r) for r in conn.execute(stmt).mappings()]
            if i >= WARMUP_LISTS:
                ms[k].append((time.perf_counter() - t0) * 1000)
    return {k: summary(v) for k, v in ms.items()}


# -- one database -----------------------------------------------------------------------


def make_users(engine: Engine) -> tuple[User, list[int], str]:
    """The measured regular user (and a token), and every owner of the history's jobs,
    busiest first: the staff, with the measured user third and the admin last."""
    user = create_user(engine, USER, "user", f"{USER}@example.org")
    token = create_token(engine, user, "bench")
    staff = [create_user(engine, f"sci{i:02d}", "user").id for i in range(STAFF)]
    owners = [*staff[:2], user.id, *staff[2:], get_user(engine, "admin").id]
    return user, owners, token


def bench_database(kind: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    session = make_session(home / "session")
    concurrent = args.concurrent_jobs + args.concurrent_jobs // 2 * 2 if args.clients else 0
    submitted = WARMUP_SUBMITS * 3 + args.jobs * 3 + concurrent
    history = max(args.rows - submitted, 0)
    result: dict[str, Any] = {}
    with Service(home / "service", url, "--no-orchestrator") as service:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                version = ".".join(str(v) for v in conn.dialect.server_version_info or ())
            result["server"] = f"{engine.dialect.name} {version}"
            settings = get_settings(home=home / "service", database_url=url)
            user, owners, token = make_users(engine)
            rig = Rig(
                kind,
                url,
                engine,
                settings,
                service,
                get_user(engine, "admin"),
                user,
                {"admin": service.admin_token, USER: token},
                session,
                Subjects(),
            )
            now = datetime.now(UTC)
            say(f"{kind}: inserting {history:,} jobs of history ...")
            result["prefill_s"] = round(prefill(engine, history, owners, session, settings, now), 1)
            say(f"{kind}: {args.jobs} jobs one per request (and through the library) ...")
            result["quiet_before_submit"] = wait_for_quiet(args.quiet_wait)
            with Load(service) as load:
                result["submit"] = bench_submit(rig, args.jobs, args.clients, args.concurrent_jobs)
            result["submit"]["load"] = load.figures
            s = result["submit"]
            say(
                f"  API p50 {s['api']['p50']} p99 {s['api']['p99']} ms; submit_upload_jobs "
                f"p50 {s['submit_upload_jobs']['p50']}; submit_jobs p50 {s['submit_jobs']['p50']}"
                f"; other load {load.figures['other']} cores"
            )
            vacuum(engine)
            result["rows"] = count_jobs(engine)
            queries = list_queries(engine, result["rows"], now)
            viewers = [rig.admin, rig.user]
            say(f"{kind}: list requests over {result['rows']:,} jobs, {args.repeat} each ...")
            result["quiet_before_list"] = wait_for_quiet(args.quiet_wait)
            result["list"] = []
            with Load(service) as load:
                result["http_floor_ms"] = http_floor(rig, args.repeat)
                for query in queries:
                    for viewer in viewers:
                        q = for_viewer(query, engine, viewer)
                        m = bench_list(rig, q, viewer, args.repeat, args.budget)
                        m["name"] = query.name
                        m["plans"] = explain(engine, q, viewer)
                        result["list"].append(m)
            result["list_load"] = load.figures
            say(f"  other load {load.figures['other']} cores")
            deep = {q.name: q for q in queries}["deep page"]
            result["keyset"] = {
                ("admin" if v.is_admin else USER): keyset_page(
                    engine, for_viewer(deep, engine, v), v, args.repeat
                )
                for v in viewers
            }
            if not args.no_index_trials:
                by_name = {q.name: q for q in queries}
                result["spec_cost"] = spec_cost(engine, args.repeat)
                trial_rounds = max(args.repeat // 4, 10)
                result["rewrites"] = try_rewrites(rig, by_name, viewers, trial_rounds)
                result["index_trials"] = try_indexes(
                    rig, by_name, viewers, result["list"], trial_rounds
                )
        finally:
            engine.dispose()
    return result


def bench_orchestrated(kind: str, url: str, home: Path, n: int) -> dict[str, Any]:
    """``n`` jobs one per request to a ``ferry serve`` that runs them (default settings,
    embedded Dask cluster), each followed by the default jobs page, on a fresh database."""
    session = make_session(home / "session")
    with Service(home / "service", url) as service:
        engine = make_engine(url)
        try:
            user = create_user(engine, USER, "user")
            rig = Rig(
                kind,
                url,
                engine,
                get_settings(home=home / "service", database_url=url),
                service,
                get_user(engine, "admin"),
                user,
                {"admin": service.admin_token, USER: create_token(engine, user)},
                session,
                Subjects(),
            )
            submit_ms, list_ms = [], []
            with rig.client(USER) as client:
                for _ in range(WARMUP_SUBMITS):
                    api_submit(client, rig)
                    client.get("/jobs")
                for _ in range(n):
                    submit_ms.append(api_submit(client, rig) * 1000)
                    t0 = time.perf_counter()
                    client.get("/jobs").raise_for_status()
                    list_ms.append((time.perf_counter() - t0) * 1000)
            with engine.connect() as conn:
                states = dict(
                    conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
                )
        finally:
            engine.dispose()
    return {
        "jobs": n,
        "submit_ms": summary(submit_ms),
        "list_ms": summary(list_ms),
        "job_states_at_stop": states,
    }


# -- report -----------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def verdict(ms: float) -> str:
    return "yes" if ms < TARGET_MS else "**no**"


def report(results: dict[str, Any]) -> str:
    dbs = results["databases"]
    lines = [
        f"Submit: one upload job per request, {results['jobs']:,} requests in turn with the "
        "same job through the library (ms; ratio = API / library call, p50):",
        "",
        "| db | path | n | p50 | p99 | mean | max | API / path p50 | API / path mean "
        "| p99 < 100 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for db in dbs:
        s = results[db]["submit"]
        api = s["api"]
        for path, label in (
            ("api", "POST /api/v2/submit_jobs"),
            ("api_concurrent", "POST, concurrent clients"),
            ("submit_upload_jobs", "submit_upload_jobs (service call)"),
            ("submit_jobs", "submit_jobs (engine)"),
        ):
            if path not in s:
                continue
            m = s[path]
            if path == "api_concurrent":
                label = f"POST, {m['clients']} concurrent clients ({m['requests_per_s']} req/s)"
            ratios = (
                "- | -"
                if path.startswith("api")
                else f"{ratio(api['p50'], m['p50'])} | {ratio(api['mean'], m['mean'])}"
            )
            lines.append(
                f"| {db} | {label} | {m['n']:,} | {m['p50']} | {m['p99']} | {m['mean']} "
                f"| {m['max']} | {ratios} | {verdict(m['p99']) if path == 'api' else '-'} |"
            )
    for db in dbs:
        s = results[db]["submit"]
        line = (
            f"{db}: service CPU per request {s['api']['service_cpu_ms']} ms; sequential "
            f"{1000 / s['api']['mean']:.1f} req/s"
        )
        if "api_concurrent" in s:
            c = s["api_concurrent"]
            line += f", {c['clients']} clients {c['requests_per_s']} req/s"
            line += f" ({c['service_cpu_ms']} ms service CPU per request)"
        lines.append(f"{line}; load in cores {s['load']}")
        if c := s.get("submit_jobs_concurrent"):
            lines.append(
                f"{db}: submit_jobs from {s['api_concurrent']['clients']} threads, "
                + "; ".join(
                    f"{k}: p50 {v['p50']} p99 {v['p99']} max {v['max']} ms, "
                    f"{v['calls_per_s']} calls/s"
                    for k, v in c.items()
                )
            )
    lines += [
        "",
        "List: GET /api/v2/jobs, 50 rows a page, in turn with list_jobs (no HTTP) and the same "
        "SQL by hand (raw: page + count on one connection); ms, ratio = API / raw p50:",
        "",
        "| db | query | viewer | matching | rounds | API p50 | API p99 | list_jobs p50 | raw p50 "
        "| raw page p50 | raw count p50 | API / raw | service CPU | API p99 < 100 ms "
        "| same answers |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for db in dbs:
        for m in results[db]["list"]:
            a = m["api_ms"]
            lines.append(
                f"| {db} | {m['name']} | {m['viewer']} | {m['total']:,} | {a['n']} "
                f"| {a['p50']} | {a['p99']} "
                f"| {m['list_jobs_ms']['p50']} | {m['raw_ms']['p50']} | {m['raw_page_ms']['p50']} "
                f"| {m['raw_count_ms']['p50']} | {ratio(a['p50'], m['raw_ms']['p50'])} "
                f"| {m['service_cpu_ms']} | {verdict(a['p99'])} "
                f"| {'yes' if m['same_answers'] else 'NO'} |"
            )
    lines.append("")
    for db in dbs:
        r = results[db]
        lines.append(
            f"{db}: {r['rows']:,} jobs ({r['prefill_s']} s to insert the history); "
            f"list p99 over all queries {max(m['api_ms']['p99'] for m in r['list'])} ms; "
            f"GET /docs (no database) p50 {r['http_floor_ms']['p50']} "
            f"p99 {r['http_floor_ms']['p99']} ms; load in cores {r['list_load']}"
        )
        for who, k in r.get("keyset", {}).items():
            deep = next(m for m in r["list"] if m["name"] == "deep page" and m["viewer"] == who)
            lines.append(
                f"{db} deep page as {who}: raw page by offset p50 {deep['raw_page_ms']['p50']} ms,"
                f" by keyset p50 {k['raw_page_ms']['p50']} ms"
                f" (same rows: {'yes' if k['same_rows'] else 'NO'})"
            )
    for db in dbs:
        if c := results[db].get("spec_cost"):
            lines.append(
                f"{db} default page read as list_jobs reads it: p50 {c['all columns']['p50']} ms,"
                f" without the spec column {c['without spec']['p50']} ms"
            )
    rewrites = [(db, t) for db in dbs for t in results[db].get("rewrites", [])]
    if rewrites:
        lines += [
            "",
            "SQL rewritten by hand, in turn with the SQL as it is (raw p50 ms, before -> after):",
            "",
            "| db | change | query | viewer | page | count | same answers |",
            "|---|---|---|---|---|---|---|",
        ]
        for db, t in rewrites:
            b, a = t["before"], t["after"]
            lines.append(
                f"| {db} | {t['change']} | {t['name']} | {t['viewer']} "
                f"| {b['raw_page_ms']['p50']} -> {a['raw_page_ms']['p50']} "
                f"| {b['raw_count_ms']['p50']} -> {a['raw_count_ms']['p50']} "
                f"| {'yes' if t['same_answers'] else 'NO'} |"
            )
    trials = [(db, t) for db in dbs for t in results[db].get("index_trials", [])]
    if trials:
        lines += [
            "",
            "Indexes tried by hand on the scratch database (ms, before -> after):",
            "",
            "| db | change | query | viewer | API p50 | API p99 | raw p50 | same answers |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for db, t in trials:
            b, a = t["before"], t["after"]
            lines.append(
                f"| {db} | {t['change']} ({t['seconds']} s) | {t['name']} | {t['viewer']} "
                f"| {b['api_ms']['p50']} -> {a['api_ms']['p50']} "
                f"| {b['api_ms']['p99']} -> {a['api_ms']['p99']} "
                f"| {b['raw_ms']['p50']} -> {a['raw_ms']['p50']} "
                f"| {'yes' if a['same_answers'] else 'NO'} |"
            )
    orchestrated = [
        (db, results[db]["orchestrated"]) for db in dbs if "orchestrated" in results[db]
    ]
    if orchestrated:
        lines += [
            "",
            "With the orchestrator running the submitted jobs (fresh database; each submit "
            "followed by the default page):",
            "",
            "| db | jobs | submit p50 | submit p99 | list p50 | list p99 | job states at stop |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for db, o in orchestrated:
            states = ", ".join(f"{k} {v}" for k, v in sorted(o["job_states_at_stop"].items()))
            lines.append(
                f"| {db} | {o['jobs']} | {o['submit_ms']['p50']} | {o['submit_ms']['p99']} "
                f"| {o['list_ms']['p50']} | {o['list_ms']['p99']} | {states} |"
            )
    missed = [(db, m) for db in dbs for m in results[db]["list"] if m["api_ms"]["p99"] > TARGET_MS]
    for db, m in missed:
        lines += ["", f"{db} {m['name']} as {m['viewer']}: p99 {m['api_ms']['p99']} ms; plans:"]
        for label, plan in m["plans"].items():
            lines += [f"-- {label}", plan]
    for db, why in results.get("skipped", {}).items():
        lines.append(f"{db}: not measured: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs submitted one per request")
    parser.add_argument("--rows", type=int, default=100_000, help="jobs in the table to list")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--repeat", type=int, default=100, help="requests per list query")
    parser.add_argument(
        "--budget",
        type=float,
        default=20,
        help=f"seconds per list query and viewer, after which it stops at {MIN_ROUNDS} rounds",
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent submitters (0: none)")
    parser.add_argument(
        "--concurrent-jobs", type=int, default=500, help="jobs the concurrent clients submit"
    )
    parser.add_argument(
        "--orchestrated", type=int, default=100, help="jobs sent to a service that runs them"
    )
    parser.add_argument(
        "--no-index-trials", action="store_true", help="try no indexes or rewritten SQL"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="wait up to this many s for other work to calm down before each phase",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench/.data/api.json"))
    args = parser.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if unknown := set(dbs) - {"sqlite", "postgresql"}:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use sqlite, postgresql")

    results: dict[str, Any] = {
        "jobs": args.jobs,
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
    with tempfile.TemporaryDirectory(prefix="ferry-bench-api-") as tmp:
        root = Path(tmp)
        os.environ["FERRY_HOME"] = str(root)  # no ferry.toml of this user applies
        for db in dbs:
            with database(db, root / db) as url:
                results[db] = bench_database(db, url, root / db, args)
            if args.orchestrated:
                say(f"{db}: {args.orchestrated} jobs to a service that runs them ...")
                with database(db, root / f"{db}-run") as url:
                    results[db]["orchestrated"] = bench_orchestrated(
                        db, url, root / f"{db}-run", args.orchestrated
                    )
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
