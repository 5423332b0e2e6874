"""Bounded work per request: a hostile user cannot make one request cost minutes of CPU,
hundreds of megabytes of memory, or hold up the service's shutdown.

Each probe runs against a production-mode ``ferry serve`` on SQLite and PostgreSQL as an
ordinary user; the service still answers afterwards.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from _service import running_service

HEADER = "project_name,subject_id,acq_datetime,modality0,modality0.input_source"
ROW = "proj,123456,2024-05-27T16:07:59,ecephys,{source}"
#: A document with 100,000 numbers along x.y.z, so that each condition on that path that
#: matches nothing scans them all.
HEAVY = {
    "name": "heavy",
    "x": [{"y": [{"z": list(range(100))} for _ in range(100)]} for _ in range(10)],
}


def _rss(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _zip_bomb(rows: int) -> bytes:
    """A small .xlsx whose first sheet expands to ``rows`` rows (tens of megabytes)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER.split(","))
    plain = io.BytesIO()
    workbook.save(plain)
    row = '<row><c t="inlineStr"><is><t>proj</t></is></c><c><v>123456</v></c></row>'
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        "<sheetData>" + row * rows + "</sheetData></worksheet>"
    ).encode()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(plain) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for info in source.infolist():
            data = xml if info.filename == "xl/worksheets/sheet1.xml" else source.read(info)
            target.writestr(info.filename, data)
    return out.getvalue()


def _healthy(hostile: Any) -> None:
    assert hostile.api("GET", "/health", None).status_code == 200
    assert hostile.api("GET", "/users/me", "alice").status_code == 200


def test_a_huge_in_list_is_refused_at_once_naming_in_and_the_limit(hostile):
    values = [f"{i:06d}" for i in range(100_000)]
    started = time.monotonic()
    resp = hostile.api("POST", "/catalog/count", json={"filter": {"subject_id": {"$in": values}}})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("$in at subject_id has 100000 values; at most 10000 are allowed")
    assert "catalog_max_in_values" in detail
    assert time.monotonic() - started < 30  # the quadratic version took minutes
    resp = hostile.api("POST", "/catalog/find", json={"filter": {"a": {"$nin": values}}})
    assert resp.status_code == 422 and "$nin at a has 100000 values" in resp.json()["detail"]
    _healthy(hostile)


def test_the_largest_allowed_in_list_works(hostile):
    docs = [{"name": f"limits-{i}", "subject": {"subject_id": f"{i:06d}"}} for i in range(5)]
    assert (
        hostile.api("PUT", "/catalog", "admin", json=docs, params={"owner": "alice"}).status_code
        == 200
    )
    values = [f"{i:06d}" for i in range(0, 20_000, 2)]
    assert len(values) == 10_000
    body = {"filter": {"subject.subject_id": {"$in": values}, "name": {"$regex": "^limits-"}}}
    # the documents are the admin's (users see only their own)
    resp = hostile.api("POST", "/catalog/count", "admin", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"count": 3}
    resp = hostile.api("POST", "/catalog/find", "admin", json={**body, "projection": {"name": 1}})
    assert sorted(d["name"] for d in resp.json()["documents"]) == [
        "limits-0",
        "limits-2",
        "limits-4",
    ]


def test_deeply_nested_or_oversized_filters_are_refused_naming_the_limit(hostile):
    nested: dict[str, Any] = {"a": 1}
    for _ in range(20):  # 41 levels of JSON: past the filter's 32, within a body's 64
        nested = {"$and": [nested]}
    resp = hostile.api("POST", "/catalog/count", json={"filter": nested})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("the filter is nested more than 32 levels deep at $and[0]")
    assert "setting catalog_max_filter_depth" in detail
    wide = {"$or": [{f"k{i}": {"$in": list(range(50))}} for i in range(2_000)]}
    resp = hostile.api("POST", "/catalog/find", json={"filter": wide})
    assert resp.status_code == 422
    assert "at most 50000 are allowed (setting catalog_max_filter_nodes)" in resp.json()["detail"]
    _healthy(hostile)


def test_a_zip_bomb_spreadsheet_is_refused_without_the_service_growing(hostile):
    pid = hostile.service.proc.pid
    warm = f"{HEADER}\n{ROW.format(source=hostile.shared)}\n".encode()
    hostile.api("POST", "/validate_csv", files={"file": ("warm.csv", warm)})  # imports done
    bomb = _zip_bomb(500_000)
    assert len(bomb) < 300_000
    before = _rss(pid)
    resp = hostile.api("POST", "/validate_csv", files={"file": ("bomb.xlsx", bomb)})
    after = _rss(pid)
    assert 400 <= resp.status_code < 500, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("bomb.xlsx expands to more than 16 MiB when unpacked")
    assert "setting sheet_max_expanded_bytes" in detail
    assert after - before < 200 * 2**20, f"the service grew by {(after - before) / 2**20} MiB"
    _healthy(hostile)


def test_a_csv_with_more_jobs_than_allowed_is_refused_naming_the_file_and_limit(hostile):
    row = ROW.format(source=hostile.shared)
    for count in (51, 100_000):
        data = "\n".join([HEADER, *[row] * count]).encode()
        resp = hostile.api("POST", "/validate_csv", files={"file": ("many.csv", data)})
        assert resp.status_code == 422, resp.text[:500]
        assert resp.json()["detail"] == (
            "many.csv has more than 50 job rows; at most 50 are allowed in one spreadsheet "
            "(setting max_jobs_per_request): split it into several sheets"
        )
    _healthy(hostile)


def test_an_upload_over_the_byte_limit_is_refused_before_it_is_read(hostile):
    data = b"x" * (11 * 2**20)
    resp = hostile.api("POST", "/validate_csv", files={"file": ("big.csv", data)})
    assert resp.status_code == 413, resp.text[:500]
    assert resp.json()["detail"] == (
        "the upload is larger than 10 MiB; at most 10 MiB (setting max_upload_bytes) "
        "are allowed here"
    )
    _healthy(hostile)


# -- a heavy query and the service stopping --------------------------------------------------


def test_the_service_stops_promptly_while_a_heavy_query_runs(database_url, tmp_path):
    """SIGINT while an ordinary user's catalog query would run for a minute: the service
    is gone within seconds (it used to wait for the query), and the query is stopped."""
    from neuroferry.auth import create_token, create_user
    from neuroferry.db import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    tokens = {
        name: create_token(engine, create_user(engine, name, role), "limits")
        for name, role in (("admin", "admin"), ("alice", "user"))
    }
    engine.dispose()
    env = {
        "FERRY_MODE": "production",
        "FERRY_DATABASE_URL": database_url,
        "FERRY_DASK_WORKERS": "1",
        "FERRY_DASK_THREADS_PER_WORKER": "1",
        "FERRY_STATEMENT_TIMEOUT": "600",
    }
    with running_service(tmp_path, **env) as service:

        def call(who: str, method: str, path: str, **kw: Any) -> httpx.Response:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            return httpx.request(
                method, f"{service.url}/api/v2{path}", headers=headers, timeout=300, **kw
            )

        docs = [{**HEAVY, "name": f"heavy-{i}"} for i in range(10)]
        assert (
            call("admin", "PUT", "/catalog", json=docs, params={"owner": "alice"}).status_code
            == 200
        )
        # within every limit; it runs for about a minute
        heavy = {"filter": {"$or": [{"x.y.z": f"no{i}"} for i in range(70)]}}
        answers: list[Any] = []

        def query() -> None:
            try:
                answers.append(call("admin", "POST", "/catalog/count", json=heavy))
            except httpx.HTTPError as exc:
                answers.append(exc)

        client = threading.Thread(target=query)
        client.start()
        time.sleep(3)
        assert client.is_alive() and not answers  # the query runs
        assert service.proc is not None
        started = time.monotonic()
        os.killpg(service.proc.pid, signal.SIGINT)
        try:
            service.proc.wait(timeout=40)
        except Exception:
            pytest.fail("ferry serve did not stop within 40 s of SIGINT while a query ran")
        stopped = time.monotonic() - started
        client.join(60)
        assert stopped < 30, f"stopping took {stopped:.1f} s"
        assert len(answers) == 1 and isinstance(answers[0], httpx.Response), answers
        assert answers[0].status_code == 503, answers[0].text
        assert answers[0].json()["detail"] == "the service is stopping; try again when it is back"


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _heavy_queries_running(hostile: Any) -> int:
    """PostgreSQL: the catalog queries its server runs now for the service."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        hostile.service.env["FERRY_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
    )
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE '%jsonb_array_elements%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_client_that_goes_away_stops_its_query(hostile):
    docs = [{**HEAVY, "name": f"heavy-{i}"} for i in range(10)]
    assert (
        hostile.api("PUT", "/catalog", "admin", json=docs, params={"owner": "alice"}).status_code
        == 200
    )
    heavy = {"filter": {"$or": [{"x.y.z": f"no{i}"} for i in range(70)]}}  # about a minute
    pid = hostile.service.proc.pid
    gave_up: list[BaseException] = []

    def impatient() -> None:
        try:
            httpx.post(
                f"{hostile.url}/api/v2/catalog/count",
                json=heavy,
                headers={"Authorization": f"Bearer {hostile.tokens['admin']}"},
                timeout=8,
            )
        except httpx.TimeoutException as exc:
            gave_up.append(exc)

    client = threading.Thread(target=impatient)
    client.start()
    time.sleep(2)
    if hostile.database == "postgresql":
        assert _heavy_queries_running(hostile) == 1
    busy = _cpu_seconds(pid)
    time.sleep(3)
    busy = _cpu_seconds(pid) - busy
    client.join(30)
    assert gave_up, "the query answered before the client gave up: make it heavier"
    time.sleep(3)  # the service notices within a second
    if hostile.database == "postgresql":
        assert _heavy_queries_running(hostile) == 0
    else:
        assert busy > 0.5, f"the query used {busy:.2f} s of CPU in 3 s: too little to judge"
        idle = _cpu_seconds(pid)
        time.sleep(3)
        idle = _cpu_seconds(pid) - idle
        assert idle < busy / 3, f"still busy: {idle:.2f} s of CPU in 3 s (query: {busy:.2f} s)"
    _healthy(hostile)


def test_a_regex_that_backtracks_exponentially_is_refused(hostile):
    name = "a" * 28 + "!"
    assert (
        hostile.api(
            "PUT", "/catalog", "admin", json=[{"name": name}], params={"owner": "alice"}
        ).status_code
        == 200
    )
    resp = hostile.api("POST", "/catalog/count", json={"filter": {"name": {"$regex": "(a+)+$"}}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("$regex at name: a repeat inside a repeat")
    ok = {"filter": {"name": {"$regex": "^a+!$"}}}
    assert hostile.api("POST", "/catalog/count", "admin", json=ok).json() == {"count": 1}
    _healthy(hostile)


def test_a_json_body_over_the_request_limit_is_413_not_500(hostile):
    """The JSON body check reads the body before any route: a body over the limit is
    answered there, declared (Content-Length) or not (chunked)."""
    huge = b'{"upload_jobs": ["' + b"x" * (65 * 2**20) + b'"]}'
    headers = {"Content-Type": "application/json"}
    declared = hostile.api("POST", "/submit_jobs", content=huge, headers=headers)

    def chunks():
        for start in range(0, len(huge), 2**20):
            yield huge[start : start + 2**20]

    streamed = hostile.api("POST", "/catalog/find", content=chunks(), headers=headers)
    for resp in (declared, streamed):
        assert resp.status_code == 413, resp.text[:300]
        assert resp.json()["detail"] == (
            "the request body is larger than 64 MiB; at most 64 MiB (setting "
            "max_request_bytes) are allowed here"
        )
    _healthy(hostile)


def test_regexes_with_alternation_inside_a_repeat_are_answered_and_health_meanwhile(hostile):
    # Backtracking takes exponential time on these patterns over the other user's text:
    # once, on SQLite, the service hung (health unanswered) and the time it took told
    # whether another user's document name started with the pattern's prefix.
    prefix = "ecephys_700001"
    docs = [
        {"name": prefix + "x" * 40, "text": "a" * 10_000},
        {"name": "other", "text": prefix + "y" * 10_000},
    ]
    assert hostile.api("PUT", "/catalog", "admin", json=docs).status_code == 200
    probes = [
        ({"name": {"$regex": f"^{prefix}(?:.|.)*!"}}, "alice"),
        ({"text": {"$regex": "(a|a)*b"}}, "alice"),
        ({"text": {"$regex": "(?:.|.)*!", "$options": "s"}}, "alice"),
        ({"name": {"$regex": f"^{prefix}(?:.|.)*!"}}, "admin"),
        ({"text": {"$regex": "(a|a)*b"}}, "admin"),
    ]
    answers: dict[int, Any] = {}

    def ask(i: int, filter: dict[str, Any], who: str) -> None:
        try:
            answers[i] = httpx.post(
                f"{hostile.url}/api/v2/catalog/count",
                json={"filter": filter},
                headers={"Authorization": f"Bearer {hostile.tokens[who]}"},
                timeout=120,
            ).json()
        except httpx.HTTPError as exc:
            answers[i] = exc

    clients = [
        threading.Thread(target=ask, args=(i, f, who), daemon=True)
        for i, (f, who) in enumerate(probes)
    ]
    for client in clients:
        client.start()
    # the service answers others while the queries run (or after they finished)
    assert httpx.get(f"{hostile.url}/api/v2/health", timeout=30).status_code == 200
    for client in clients:
        client.join(150)
    # alice sees none of the admin's documents; the admin's own patterns match nothing
    assert answers == {i: {"count": 0} for i in range(len(probes))}
    _healthy(hostile)


@pytest.mark.parametrize(
    ("pattern", "what"),
    [(r"^(e)\1", "back-references"), ("^e(?=c)", "look-arounds"), ("(?<!x)e", "look-arounds")],
)
def test_regexes_needing_backtracking_are_refused_naming_regex(hostile, pattern, what):
    resp = hostile.api("POST", "/catalog/count", json={"filter": {"name": {"$regex": pattern}}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith(f"$regex at name: {what} like "), resp.text
    resp = hostile.api("POST", "/catalog/find", json={"filter": {"name": {"$regex": "e" * 2000}}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("$regex at name is 2000 characters long")
