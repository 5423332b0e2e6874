"""Catalog query benchmark: neuroferry on SQLite and PostgreSQL against mongomock and a
plain Python scan of the same documents, with and without declared indexes.

    python bench/catalog.py                 # 1,000,000 documents
    python bench/catalog.py --docs 100000   # smaller

Prints p50 query times in ms and neuroferry's ratio to each peer (≤ 1.00: at least as
fast). PostgreSQL is the local server at 127.0.0.1:5432 (a scratch database is created
and dropped); everything stays on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import psycopg

from neuroferry.catalog import Catalog
from neuroferry.catalog._indexes import values_at
from neuroferry.db import make_engine, upgrade

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PROJECTS = ["Ephys Platform", "Brain Atlas", "Behavior", "Cognitive flexibility", "Thalamus"]
MODALITIES = ["ecephys", "behavior", "behavior-videos", "SPIM", "fib", "pophys"]
VIRUSES = ["AAV1-hSyn-GCaMP6f", "AAV9-CAG-tdTomato", "AAVretro-Cre", "AAV5-ChR2"]

QUERIES: dict[str, dict[str, Any]] = {
    "equality": {"filter": {"subject.subject_id": "774659"}},
    "$in": {"filter": {"subject.subject_id": {"$in": ["643634", "774659", "700000"]}}},
    "range": {"filter": {"subject.age_days": {"$gte": 400, "$lt": 402}}},
    "date range": {
        "filter": {"acquisition.start": {"$gt": "2024-03-01T00", "$lt": "2024-03-01T06"}}
    },
    "regex": {"filter": {"name": {"$regex": "^ecephys_7746"}}},
    "$elemMatch": {
        "filter": {
            "procedures.injections": {"$elemMatch": {"virus": "AAV5-ChR2", "volume": {"$gte": 499}}}
        }
    },
    "$exists": {"filter": {"qc.flagged_by": {"$exists": True}}},
    "sort+limit": {"filter": {}, "sort": [("acquisition.start", -1)], "limit": 10},
}
INDEXED = [
    "subject.subject_id",
    "subject.age_days",
    "acquisition.start",
    "name",
    "procedures.injections.virus",
    "procedures.injections.volume",
    "qc.flagged_by",
]
#: Documents upserted again (replaced) to time writes, without and with the indexes.
WRITES = 5_000
START = datetime(2022, 1, 1, tzinfo=UTC)


def make_docs(n: int, seed: int = 7, stamp: str = "") -> Iterator[dict[str, Any]]:
    """Session-shaped metadata documents; subject 774659 appears a handful of times, one in
    a thousand has a ``qc.flagged_by``."""
    rng = random.Random(seed)
    for i in range(n):
        subject = "774659" if i % 200_000 == 17 else str(100_000 + rng.randrange(900_000))
        modality = rng.sample(MODALITIES, rng.randint(1, 3))
        start = START + timedelta(seconds=rng.randrange(3 * 365 * 86_400))
        doc: dict[str, Any] = {
            "name": f"{modality[0]}_{subject}_{i:07d}",
            "location": f"s3://lab-raw/{modality[0]}_{subject}_{i:07d}",
            "subject": {
                "subject_id": subject,
                "sex": rng.choice(["Male", "Female"]),
                "age_days": rng.randint(50, 800),
                "genotype": rng.choice(["wt/wt", "Pvalb-IRES-Cre/wt", "Sst-IRES-Cre/wt"]),
            },
            "acquisition": {"start": start.strftime("%Y-%m-%dT%H:%M:%S"), "stamp": stamp},
            "data_description": {
                "project_name": rng.choice(PROJECTS),
                "modality": modality,
                "institution": "AIND",
            },
            "procedures": {
                "injections": [
                    {"virus": rng.choice(VIRUSES), "volume": rng.randint(50, 500)}
                    for _ in range(rng.randint(0, 3))
                ]
            },
            "quality": {"passed": rng.random() > 0.1, "score": round(rng.random(), 3)},
        }
        if rng.random() < 0.001:
            doc["qc"] = {"flagged_by": rng.choice(["alice", "bob"])}
        yield doc


def p50_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up, and the answer to compare
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def _any(doc: dict[str, Any], path: str, test: Callable[[Any], bool]) -> bool:
    for value in values_at(doc, path.split(".")):
        if any(test(item) for item in (value if isinstance(value, list) else [value])):
            return True
    return False


def python_scan(docs: list[dict[str, Any]], name: str) -> Callable[[], object]:
    """A hand-written scan for each benchmark query: the floor for any Python evaluator."""
    query = QUERIES[name]
    if name == "sort+limit":
        (path, _), limit = query["sort"][0], query["limit"]

        def key(doc: dict[str, Any]) -> tuple[str, str]:
            value = doc.get("acquisition", {}).get("start")
            return (value if isinstance(value, str) else "", doc["name"])

        assert path == "acquisition.start"
        return lambda: [d["name"] for d in heapq.nlargest(limit, docs, key=key)]
    ((path, cond),) = query["filter"].items()
    test: Callable[[Any], bool]
    if not isinstance(cond, dict):
        test = lambda v: v == cond  # noqa: E731
    elif "$in" in cond:
        wanted = set(cond["$in"])
        test = lambda v: v in wanted  # noqa: E731
    elif "$gte" in cond:
        test = lambda v: isinstance(v, int) and cond["$gte"] <= v < cond["$lt"]  # noqa: E731
    elif "$gt" in cond:
        test = lambda v: isinstance(v, str) and cond["$gt"] < v < cond["$lt"]  # noqa: E731
    elif "$regex" in cond:
        pattern = re.compile(cond["$regex"])
        test = lambda v: isinstance(v, str) and bool(pattern.search(v))  # noqa: E731
    elif "$exists" in cond:
        return lambda: sum(1 for doc in docs if any(True for _ in values_at(doc, path.split("."))))
    else:
        inner = cond["$elemMatch"]
        test = lambda v: (  # noqa: E731
            isinstance(v, dict)
            and v.get("virus") == inner["virus"]
            and v.get("volume", -1) >= inner["volume"]["$gte"]
        )
    return lambda: sum(1 for doc in docs if _any(doc, path, test))


def run_query(catalog: Catalog, name: str) -> Callable[[], object]:
    query = QUERIES[name]
    if "sort" in query:
        return lambda: [
            d["name"]
            for d in catalog.find(
                query["filter"], {"name": 1}, sort=query["sort"], limit=query["limit"]
            )
        ]
    return lambda: catalog.count(query["filter"])


def run_mongomock(collection: Any, name: str) -> Callable[[], object]:
    query = QUERIES[name]
    if "sort" in query:
        sort = [*query["sort"], ("name", -1)]
        return lambda: [
            d["name"] for d in collection.find(query["filter"], sort=sort, limit=query["limit"])
        ]
    return lambda: collection.count_documents(query["filter"])


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    name = f"ferry_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _time_writes(catalog: Catalog, n: int) -> float:
    """Seconds to upsert again (replace) the first documents, in import batches."""
    count = min(WRITES, n)
    t0 = time.perf_counter()
    catalog.import_documents(make_docs(count, stamp=f"{time.time()}"))
    return time.perf_counter() - t0


def _show(answer: object) -> str:
    return f"{len(answer)} names" if isinstance(answer, list) else f"{answer} docs"


def bench_catalog(label: str, url: str, n: int, repeat: int) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    catalog = Catalog(engine)
    t0 = time.perf_counter()
    catalog.import_documents(make_docs(n))
    load = time.perf_counter() - t0
    print(f"{label}: loaded {n} documents in {load:.0f} s", flush=True)
    out: dict[str, Any] = {"load_seconds": round(load, 1), "plain": {}, "indexed": {}}
    out["write_seconds_plain"] = round(_time_writes(catalog, n), 2)
    for name in QUERIES:  # full scans: a few runs are enough
        ms, answer = p50_ms(run_query(catalog, name), min(repeat, 3))
        out["plain"][name] = {"p50_ms": round(ms, 2), "answer": answer}
        print(f"  {label} {name:11} unindexed p50 {ms:9.2f} ms  ({_show(answer)})", flush=True)
    t0 = time.perf_counter()
    for path in INDEXED:
        catalog.create_index(path)
    out["index_seconds"] = round(time.perf_counter() - t0, 1)
    out["write_seconds_indexed"] = round(_time_writes(catalog, n), 2)
    print(
        f"{label}: {min(WRITES, n)} upserts {out['write_seconds_plain']} s without indexes, "
        f"{out['write_seconds_indexed']} s with {len(INDEXED)}",
        flush=True,
    )
    for name in QUERIES:
        ms, answer = p50_ms(run_query(catalog, name), repeat)
        out["indexed"][name] = {"p50_ms": round(ms, 2), "answer": answer}
        print(f"  {label} {name:11} indexed   p50 {ms:9.2f} ms  ({_show(answer)})", flush=True)
    engine.dispose()
    return out


def bench_peers(n: int, repeat: int, with_mongomock: bool) -> dict[str, Any]:
    """mongomock and the Python scan on the same documents, held in memory."""
    docs = list(make_docs(n))
    out: dict[str, Any] = {"mongomock": {}, "python": {}}
    collection = None
    if with_mongomock:
        collection = mongomock.MongoClient().db.docs
        t0 = time.perf_counter()
        collection.insert_many(docs)
        print(f"mongomock: loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    for name in QUERIES:
        if collection is not None:
            ms, answer = p50_ms(run_mongomock(collection, name), repeat)
            out["mongomock"][name] = {"p50_ms": round(ms, 2), "answer": answer}
            print(f"  peers {name:11} mongomock {ms:9.1f} ms ({_show(answer)})", flush=True)
        ms2, answer2 = p50_ms(python_scan(docs, name), repeat)
        out["python"][name] = {"p50_ms": round(ms2, 2), "answer": answer2}
        print(f"  peers {name:11} python {ms2:9.1f} ms ({_show(answer2)})", flush=True)
    out["mongomock"] = out["mongomock"] or None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per query (ours)")
    parser.add_argument("--peer-repeat", type=int, default=3, help="timed runs per peer query")
    parser.add_argument("--out", type=Path, default=Path("bench/.data/catalog.json"))
    parser.add_argument(
        "--only",
        choices=["sqlite", "postgresql", "peers"],
        help="one database (no peers), or the peers alone",
    )
    parser.add_argument("--no-mongomock", action="store_true", help="peers: the Python scan only")
    args = parser.parse_args(argv)
    if args.only == "peers":
        peers = bench_peers(args.docs, args.peer_repeat, not args.no_mongomock)
        print(json.dumps(peers, indent=2))
        return 0
    if args.only:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db" if args.only == "sqlite" else None
        with contextlib.ExitStack() as stack:
            url = url or stack.enter_context(scratch_postgres())
            print(json.dumps(bench_catalog(args.only, url, args.docs, args.repeat), indent=2))
        return 0
    results: dict[str, Any] = {"docs": args.docs, "queries": QUERIES, "indexed": INDEXED}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = bench_catalog(
            "sqlite", f"sqlite:///{tmp}/bench.db", args.docs, args.repeat
        )
    with scratch_postgres() as url:
        results["postgresql"] = bench_catalog("postgresql", url, args.docs, args.repeat)

    results.update(bench_peers(args.docs, args.peer_repeat, not args.no_mongomock))
    print(f"\n{args.docs:,} documents; p50 in ms; ratio = neuroferry / peer (≤ 1.00 faster)")
    print(
        "| query | db | unindexed | indexed | mongomock | python scan | ratio idx/mongomock"
        " | ratio idx/python | same answers |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name in QUERIES:
        for db in ("sqlite", "postgresql"):
            plain, indexed = results[db]["plain"][name], results[db]["indexed"][name]
            scan = results["python"][name]
            mongo = (results["mongomock"] or {}).get(name)
            answers = [plain["answer"], indexed["answer"], scan["answer"]]
            answers += [mongo["answer"]] if mongo else []
            same = all(a == answers[0] for a in answers)
            mongo_ms = f"{mongo['p50_ms']:.0f}" if mongo else "-"
            mongo_ratio = f"{indexed['p50_ms'] / mongo['p50_ms']:.4f}" if mongo else "-"
            print(
                f"| {name} | {db} | {plain['p50_ms']:.2f} | {indexed['p50_ms']:.2f} | "
                f"{mongo_ms} | {scan['p50_ms']:.0f} | {mongo_ratio} | "
                f"{indexed['p50_ms'] / scan['p50_ms']:.4f} | {'yes' if same else 'NO'} |"
            )
    for db in ("sqlite", "postgresql"):
        r = results[db]
        print(
            f"{db}: load {r['load_seconds']} s, indexing {r['index_seconds']} s, "
            f"{min(WRITES, args.docs)} upserts {r['write_seconds_plain']} s unindexed, "
            f"{r['write_seconds_indexed']} s indexed"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
