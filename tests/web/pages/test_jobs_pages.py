"""The jobs list and a job's page in a real browser: a submitted job followed to
``succeeded`` by the list's auto-refresh, a task's log opened in place, filters, sorting and
paging, who sees what, and cancel (with its confirmation) and retry of a running job."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import insert

from _session import make_session, upload_spec
from neuroferry.auth import get_user
from neuroferry.db import jobs, make_engine

WAIT_MS = 60_000  # a job on the shared two-core machine


def submit(portal, who: str, spec: dict[str, Any]) -> int:
    resp = portal.api("POST", "/submit_jobs", who, json={"upload_jobs": [spec]})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["data"]["jobs"][0]["id"])


def wait_for(portal, job_id: int, states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = portal.api("GET", f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def row_of(page, job_id: int):
    return page.locator("#jobs-results tbody tr").filter(
        has=page.get_by_role("link", name=str(job_id), exact=True)
    )


def names_in_table(page) -> list[str]:
    return [n.strip() for n in page.locator("#jobs-results td.job-name a").all_inner_texts()]


@pytest.fixture(scope="module")
def history(portal) -> dict[str, Any]:
    """30 finished jobs of alice's, one a day back from now, as a service's history leaves
    them (inserted in one statement, as bench/api.py seeds its table): a unique name part
    ``tag``, three states, two kinds and two job types."""
    tag = f"hx{secrets.token_hex(3)}"
    engine = make_engine(f"sqlite:///{portal.home / 'ferry.db'}")
    try:
        alice = get_user(engine, "alice")
        now = datetime.now(UTC)
        rows = []
        states = ("succeeded", "failed", "cancelled")
        for i in range(30):
            created = now - timedelta(days=i, hours=1)
            kind = "ingest" if i % 5 == 4 else "upload"
            rows.append(
                {
                    "kind": kind,
                    "name": f"ecephys_{tag}{i:02d}_{created:%Y-%m-%d_%H-%M-%S}",
                    "owner_id": alice.id,
                    "state": states[i % 3],
                    "spec": {"seeded": i},
                    "summary": {"destination": f"file:///lake/{tag}{i:02d}"},
                    "job_type": "np2-fast" if i % 2 else None,
                    "job_type_version": 1 if i % 2 else None,
                    "error": "upload_data_to_s3 failed: no room" if i % 3 == 1 else None,
                    "created": created,
                    "updated": created + timedelta(minutes=9),
                    "started": created + timedelta(seconds=5),
                    "finished": created + timedelta(minutes=9),
                    "cancel_requested": None,
                }
            )
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), rows
                ).scalars()
            )
    finally:
        engine.dispose()
    return {"tag": tag, "rows": rows, "ids": ids}


@pytest.fixture(scope="module")
def big_job(portal, history) -> int:
    """A finished upload job of alice's whose compress_data ran over 40 tiles (5 failed),
    its tasks inserted as the orchestrator leaves them."""
    from neuroferry.db import tasks
    from neuroferry.pipelines.upload import KIND

    engine = make_engine(f"sqlite:///{portal.home / 'ferry.db'}")
    try:
        job_id = history["ids"][1]
        t0 = history["rows"][1]["created"]
        rows = []
        for t in KIND.tasks:
            mapped = t.map_over is not None
            base = {
                "job_id": job_id,
                "name": t.name,
                "state": "succeeded",
                "retries_left": 0,
                "params": {},
                "error": None,
                "created": t0,
                "started": t0,
                "finished": t0 + timedelta(seconds=30),
            }
            rows.append(
                {
                    **base,
                    "map_index": -1,
                    "item": None,
                    "placement": "map" if mapped else t.placement,
                    "attempt": 0 if mapped else 1,
                }
            )
            if t.name == "compress_data":
                rows += [
                    {
                        **base,
                        "map_index": k,
                        "item": f"tile-{k:03d}",
                        "placement": t.placement,
                        "attempt": 1,
                        "state": "failed" if k % 8 == 3 else "succeeded",
                        "error": "tile unreadable" if k % 8 == 3 else None,
                    }
                    for k in range(40)
                ]
        with engine.begin() as conn:
            conn.execute(insert(tasks), rows)
    finally:
        engine.dispose()
    return job_id


def test_a_job_is_followed_to_succeeded_and_its_task_log_opens(portal, page_as, shot, tmp_path):
    session = make_session(tmp_path / "session")
    subject = f"735{secrets.randbelow(1000):03d}"
    job_id = submit(portal, "alice", upload_spec(session, subject_id=subject))

    page = page_as("alice")
    page.goto(f"/jobs?name={subject}")
    row = row_of(page, job_id)
    expect(row).to_have_count(1)
    toggle = page.get_by_role("button", name="Auto-refresh: on")
    expect(toggle).to_be_visible()
    assert toggle.get_attribute("aria-pressed") == "true"
    page.evaluate("window.stillTheSamePage = true")
    expect(row.locator(".state")).to_have_text("succeeded", timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage === true")  # refreshed in place, not reloaded
    expect(page.locator("#refresh-status")).to_contain_text("No listed job is running")
    assert row.locator("td").nth(2).inner_text() == "upload"

    row.get_by_role("link", name=str(job_id), exact=True).click()
    page.wait_for_url(f"**/jobs/{job_id}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(f"Job {job_id}")
    facts = page.locator(".job-overview").inner_text()
    assert "alice" in facts and "upload" in facts and subject in facts
    assert page.get_by_role("button", name="Cancel job").count() == 0  # finished
    assert page.get_by_role("button", name="Retry").count() == 0  # succeeded
    tasks = page.locator(".tasks-table tr.task th").all_inner_texts()
    first_words = [t.split()[0] for t in tasks]
    assert first_words[0] == "send_job_start_email" and first_words[-1] == "send_job_end_email"
    assert "compress_data" in first_words
    compress = page.locator("#t-compress_data")
    assert "3 succeeded" in compress.inner_text()
    instances = page.locator("#g-compress_data tr.instance")
    expect(instances).to_have_count(3)
    items = [t.split()[0] for t in instances.locator("th").all_inner_texts()]
    assert items == ["ecephys", "behavior", "behavior-videos"]
    # the instances fold away under their task
    hide = compress.get_by_role("link", name="Hide 3 instances of compress_data")
    hide.click()
    expect(instances.first).to_be_hidden()
    compress.get_by_role("link", name="Show 3 instances of compress_data").click()
    expect(instances.first).to_be_visible()

    page.get_by_role("button", name="Log of upload_data_to_s3").click()
    log = page.locator("#log-row pre")
    expect(log).to_contain_text("upload_data_to_s3 of upload job")
    expect(log).to_contain_text("finished in")
    expect(page.locator("#log-row .log-status")).to_contain_text("The task has ended")
    download = page.locator("#log-row").get_by_role("link", name="Download")
    assert "/tasks/upload_data_to_s3/logs" in (download.get_attribute("href") or "")
    with page.expect_download() as got:
        download.click()
    assert "upload_data_to_s3 of upload job" in Path(got.value.path()).read_text()
    spec = page.locator("details.spec")
    spec.locator("summary").click()
    assert f'"subject_id": "{subject}"' in spec.locator("pre").inner_text()
    spec.locator("summary").click()
    page.locator("#log-row").scroll_into_view_if_needed()
    shot(page, "job")

    # an instance's log, by the keyboard
    page.get_by_role("button", name="Log of compress_data [ecephys]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#log-row pre")).to_contain_text("compress_data [ecephys]")
    expect(page.locator("#log-row")).to_have_count(1)  # one log open at a time
    page.locator("#log-row pre").focus()
    page.keyboard.press("Escape")  # closes it, back on its button
    expect(page.locator("#log-row")).to_have_count(0)
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Log of compress_data [ecephys]"

    # a succeeded job cannot be retried: the page says why
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(f"/jobs/{job_id}/retry", form={"csrf_token": csrf})
    assert refused.status == 422
    assert "only failed or cancelled jobs can be retried" in refused.text()
    assert page.request.post(f"/jobs/{job_id}/retry").status == 403  # no CSRF token


def test_filters_sort_and_pages(portal, page_as, history, shot):
    tag, rows = history["tag"], history["rows"]
    page = page_as("alice")
    page.goto("/jobs")
    page.get_by_label("Name contains").fill(tag)
    page.get_by_role("checkbox", name="failed").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"/jobs\?"))
    assert f"name={tag}" in page.url and "state=failed" in page.url
    assert "submitted_from" not in page.url  # empty fields stay out of the URL
    failed = {r["name"] for r in rows if r["state"] == "failed"}
    assert set(names_in_table(page)) == failed
    assert "upload_data_to_s3 failed: no room" in page.locator("#jobs-results tbody").inner_text()
    assert "stays as it is" in page.locator("#refresh-status").inner_text()  # none running
    page.get_by_role("button", name="Auto-refresh: on").click()  # a choice kept by the browser
    expect(page.get_by_role("button", name="Auto-refresh: off")).to_have_attribute(
        "aria-pressed", "false"
    )
    page.reload()
    page.get_by_role("button", name="Auto-refresh: off").click()
    expect(page.get_by_role("button", name="Auto-refresh: on")).to_be_visible()

    # two states at once, and the state filter survives sorting
    page.get_by_role("checkbox", name="cancelled").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"state=cancelled"))
    two = {r["name"] for r in rows if r["state"] in ("failed", "cancelled")}
    assert set(names_in_table(page)) == two
    page.get_by_role("link", name="Name: sort ascending").click()
    page.wait_for_url(re.compile(r"sort=name"))
    assert page.locator("th", has_text="Name").get_attribute("aria-sort") == "ascending"
    assert names_in_table(page) == sorted(two)
    page.get_by_role("link", name="Name: sort descending").click()
    page.wait_for_url(re.compile(r"sort=-name"))
    assert page.locator("th", has_text="Name").get_attribute("aria-sort") == "descending"
    assert names_in_table(page) == sorted(two, reverse=True)
    assert "state=failed" in page.url and "state=cancelled" in page.url

    # every state, 25 a page: 30 jobs on two pages, newest first
    page.goto(f"/jobs?name={tag}")
    page.get_by_label("Rows a page").select_option("25")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"limit=25"))
    newest_first = [r["name"] for r in rows]
    assert names_in_table(page) == newest_first[:25]
    pager = page.get_by_role("navigation", name="Pages of jobs (top)")
    assert "Jobs 1 to 25 of 30 · page 1 of 2" in pager.inner_text()
    assert pager.get_by_text("Previous").get_attribute("href") is None
    pager.get_by_role("link", name="Next").click()
    page.wait_for_url(re.compile(r"page=2"))
    assert names_in_table(page) == newest_first[25:]
    assert "Jobs 26 to 30 of 30 · page 2 of 2" in pager.inner_text()
    assert pager.get_by_role("link", name="First").get_attribute("href") == (
        f"/jobs?name={tag}&limit=25"
    )
    assert pager.get_by_role("link", name="Last").count() == 0  # on the last page

    # oldest first by the Submitted column
    page.goto(f"/jobs?name={tag}&limit=100")
    page.get_by_role("link", name="Submitted: sort ascending").click()
    page.wait_for_url(re.compile(r"sort=created"))
    assert names_in_table(page) == newest_first[::-1]

    # a range of submit days (both included) and a kind
    start = rows[12]["created"].date()
    end = rows[10]["created"].date()
    page.goto(f"/jobs?name={tag}")
    page.get_by_label("Submitted from").fill(start.isoformat())
    page.get_by_label("Submitted to").fill(end.isoformat())
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"submitted_to="))
    in_range = [r["name"] for r in rows if start <= r["created"].date() <= end]
    assert names_in_table(page) == in_range and len(in_range) >= 3
    page.goto(f"/jobs?name={tag}")
    page.get_by_label("Kind", exact=True).select_option("ingest")
    page.get_by_label("Job type", exact=True).fill("np2-fast")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"kind=ingest"))
    wanted = [r["name"] for r in rows if r["kind"] == "ingest" and r["job_type"] == "np2-fast"]
    assert names_in_table(page) == wanted and wanted

    # a state count links to that state's jobs
    page.goto("/jobs")
    counts = page.locator(".state-counts")
    assert counts.get_by_role("link", name=re.compile(r"failed: show only those")).is_visible()

    # filters that cannot be used say which and why
    with page.expect_response(lambda r: "submitted_from=" in r.url) as answer:
        page.goto(f"/jobs?name={tag}&submitted_from=yesterday&state=asleep&sort=spec")
    assert answer.value.status == 422
    alert = page.get_by_role("alert").inner_text()
    assert "submitted_from: 'yesterday' is not a date" in alert
    assert "state: 'asleep' is not a job state" in alert
    assert "sort: cannot sort by 'spec'" in alert
    assert page.get_by_label("Submitted from").get_attribute("aria-invalid") == "true"

    admin = page_as("admin")
    admin.goto("/jobs")
    assert (
        admin.locator("#jobs-results thead")
        .get_by_role("link", name="Owner: sort ascending")
        .count()
    )
    admin.get_by_label("Owner", exact=True).select_option("alice")
    admin.get_by_label("Name contains").fill(tag)
    admin.get_by_role("button", name="Apply filters").click()
    admin.wait_for_url(re.compile(r"owner=alice"))
    assert len(names_in_table(admin)) == 30
    admin.goto("/jobs?limit=25")
    shot(admin, "jobs")


def test_others_neither_see_nor_open_a_users_jobs(portal, history, new_page, sign_in):
    page = sign_in(new_page(), "bob")
    job_id = history["ids"][0]
    with page.expect_response(lambda r: r.url.endswith(f"/jobs/{job_id}")) as answer:
        page.goto(f"/jobs/{job_id}")
    assert answer.value.status == 404
    assert f"job {job_id} does not exist" in page.get_by_role("alert").inner_text()
    page.goto(f"/jobs?name={history['tag']}")
    assert names_in_table(page) == []
    assert "No jobs match these filters" in page.locator("#jobs-results").inner_text()
    assert "Owner" not in page.locator("form.job-filters").inner_text()  # admins only
    # nor act on them, even with the page's CSRF token
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    resp = page.request.post(f"/jobs/{job_id}/cancel", form={"csrf_token": csrf})
    assert resp.status == 404


def test_cancel_a_running_job_after_confirming_then_retry_it(portal, page_as, shot, tmp_path):
    session = make_session(tmp_path / "session")
    subject = f"736{secrets.randbelow(1000):03d}"
    # commands come from job types that admins define; alice chooses one
    slow = {"command_script": "sh -c 'echo converting %INPUT_SOURCE; sleep 120'"}
    saved = portal.api(
        "PUT",
        "/job_types/slow-convert",
        "admin",
        json={"settings": {"modality_transformation_settings": {"ecephys": slow}}},
    )
    assert saved.status_code == 200, saved.text
    spec = upload_spec(session, subject_id=subject, job_type="slow-convert")
    job_id = submit(portal, "alice", spec)

    page = page_as("alice")
    page.goto(f"/jobs/{job_id}")
    ecephys = page.locator("#t-compress_data-0")
    expect(ecephys.locator(".state")).to_have_text("running", timeout=WAIT_MS)
    expect(page.locator("#job-live .job-state .state")).to_have_text("running")
    ecephys.get_by_role("button", name="Log of compress_data [ecephys]").click()
    output = f"converting {session / 'ecephys'}"  # what the command printed
    expect(page.locator("#log-row pre")).to_contain_text(output, timeout=WAIT_MS)
    expect(page.locator("#log-row .log-status")).to_contain_text("Following the log")
    shot(page, "job-running")

    # asked first: keeping it running changes nothing
    page.get_by_role("button", name="Cancel job").click()
    dialog = page.get_by_role("dialog")
    assert f"Cancel job {job_id}" in dialog.inner_text()
    dialog.get_by_role("button", name="Keep it running").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert portal.api("GET", f"/jobs/{job_id}").json()["cancel_requested"] is None

    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel the job").click()
    page.wait_for_url(re.compile(rf"/jobs/{job_id}\?done=cancel$"))
    assert "Cancel requested" in page.locator("main .notice-success").inner_text()
    expect(page.locator("#job-live .job-state .state")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(page.locator("#t-compress_data-0 .state")).to_have_text("cancelled")
    assert page.get_by_role("button", name="Cancel job").count() == 0

    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(re.compile(rf"/jobs/{job_id}\?done=retry$"))
    assert "runs again" in page.locator("main .notice-success").inner_text()
    expect(page.locator("#job-live .job-state .state")).to_have_text(re.compile("queued|running"))
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()
    # a second attempt, followed by the page
    expect(page.locator("#t-compress_data-0")).to_have_attribute(
        "data-attempt", "2", timeout=WAIT_MS
    )
    done = portal.api("POST", f"/jobs/{job_id}/cancel", "alice")
    assert done.status_code == 200, done.text
    expect(page.locator("#job-live .job-state .state")).to_have_text("cancelled", timeout=WAIT_MS)
    assert wait_for(portal, job_id, ("cancelled",))["state"] == "cancelled"


def test_a_large_mapped_task_shows_its_instances_when_asked(page_as, big_job):
    page = page_as("alice")
    page.goto(f"/jobs/{big_job}")
    compress = page.locator("#t-compress_data")
    assert "mapped: 5 failed, 35 succeeded" in " ".join(compress.inner_text().split())
    instances = page.locator("#g-compress_data tr.instance")
    expect(instances).to_have_count(0)  # not in the page until asked for
    page.evaluate("window.stillTheSamePage = true")
    compress.get_by_role("link", name="Show 40 instances of compress_data").click()
    expect(instances).to_have_count(40)
    expect(instances.first).to_be_visible()
    assert "open=compress_data" in page.url
    assert page.evaluate("window.stillTheSamePage === true")
    failed = page.locator("#t-compress_data-3")
    assert "tile unreadable" in failed.inner_text() and "failed" in failed.inner_text()
    compress.get_by_role("link", name="Hide 40 instances of compress_data").click()
    expect(instances.first).to_be_hidden()
    assert "open=" not in page.url
    # the same without the page's script: the link asks for the page with them
    page.goto(f"/jobs/{big_job}?open=compress_data")
    expect(instances).to_have_count(40)
    href = compress.get_by_role("link", name="Hide 40 instances").get_attribute("href")
    assert href == f"/jobs/{big_job}#t-compress_data"


# -- the pages' pure parts, without a browser -------------------------------------------


def _request(query: str, path: str = "/jobs"):
    from starlette.requests import Request

    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query.encode(),
            "headers": [],
        }
    )


def test_filters_are_read_from_the_query_string_and_problems_named():
    from neuroferry.auth import User
    from neuroferry.web.pages.jobs import read_filters

    alice = User(2, "alice", "user")
    admin = User(1, "admin", "admin")
    f = read_filters(
        _request(
            "state=queued&state=running&state=queued&kind=upload&name=%20ecephys%20&owner=bob"
            "&submitted_from=2025-04-01&submitted_to=2025-04-02&sort=-name&limit=25&page=3"
        ).query_params,
        alice,
    )
    assert not f.errors
    assert f.states == ["queued", "running"] and f.kind == "upload" and f.name == "ecephys"
    assert f.owner == ""  # only admins filter by owner
    q = f.query()
    assert q.submitted_after == datetime(2025, 4, 1, tzinfo=UTC)
    assert q.submitted_before == datetime(2025, 4, 3, tzinfo=UTC)  # the 2nd included
    assert (q.sort, q.limit, q.offset) == ("-name", 25, 50)
    assert read_filters(_request("owner=bob").query_params, admin).owner == "bob"

    bad = read_filters(
        _request(
            "state=asleep&submitted_from=2025-13-01&submitted_to=2025-01-01&sort=spec"
            "&limit=7&page=0&name=a%01b"
        ).query_params,
        admin,
    ).errors
    assert set(bad) == {"state", "submitted_from", "sort", "limit", "page", "name"}
    assert "allowed: pending, queued, running" in bad["state"]
    assert "YYYY-MM-DD" in bad["submitted_from"] and "25, 50, 100, 200" in bad["limit"]
    backwards = read_filters(
        _request("submitted_from=2025-02-01&submitted_to=2025-01-01").query_params, admin
    ).errors
    assert "submitted_to: 2025-01-01 is before submitted_from" in backwards["submitted_to"]


def test_links_keep_repeated_parameters_and_pages_are_counted():
    from neuroferry.web.pages import pager, url_with

    request = _request("state=queued&state=failed&name=x&page=2&partial=1")
    assert url_with(request, sort="name", page=None) == (
        "/jobs?state=queued&state=failed&name=x&sort=name"
    )
    assert url_with(request, state=["running"]) == "/jobs?name=x&page=2&state=running"
    p = pager(request, total=101, offset=50, limit=50, shown=50, param="page")
    assert (p.pages, p.first, p.last) == (3, 51, 100)
    assert p.first_url == p.prev_url == "/jobs?state=queued&state=failed&name=x"
    assert p.last_url == "/jobs?state=queued&state=failed&name=x&page=3"
    empty = pager(request, total=0, offset=0, limit=50, shown=0, param="page")
    assert (empty.pages, empty.first, empty.next_url, empty.last_url) == (1, 0, None, None)


def test_tasks_are_grouped_under_their_mapped_task():
    from neuroferry.web.pages.job import OPEN_GROUP_MAX, task_groups

    def task(name, index=-1, state="succeeded", placement="cluster"):
        return {"name": name, "map_index": index, "state": state, "placement": placement}

    rows = [
        task("a"),
        task("m", placement="map", state="running"),
        *(task("m", i, "failed" if i == 1 else "running") for i in range(OPEN_GROUP_MAX + 1)),
        task("z", state="pending"),
    ]
    groups = task_groups(rows)
    assert [g.key for g in groups] == ["a", "m", "z"]
    m = groups[1]
    assert m.mapped and m.lazy and len(m.instances) == OPEN_GROUP_MAX + 1
    assert m.counts == [("running", OPEN_GROUP_MAX), ("failed", 1)]
    assert not groups[0].mapped and groups[0].instances == []
