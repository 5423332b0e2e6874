"""The analyses pages in a real browser: the list, one analysis's form made from its
parameter schema, its preview over catalog documents, a field's error, submitting the job
and the provenance record of its result."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

WAIT_MS = 60_000  # a job on the shared two-core machine


def register(portal, owner: str, folder: Path, count: int = 2) -> tuple[str, list[dict]]:
    """``count`` assets of a new subject, each a folder with one small file, registered
    for ``owner``; the subject id."""
    subject = f"9{secrets.randbelow(10**6):06d}"
    docs = []
    for i in range(count):
        name = f"ecephys_{subject}_2024-0{i + 1}-15_10-00-00"
        data = folder / name
        data.mkdir(parents=True)
        (data / "notes.txt").write_text(f"asset {i}\n" * (i + 1))
        docs.append({"name": name, "location": data.as_uri(), "subject": {"subject_id": subject}})
    answer = portal.api("PUT", "/catalog", json=docs, params={"owner": owner})
    assert answer.status_code == 200, answer.text
    return subject, docs


def wait_for(portal, job_id: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = portal.api("GET", f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def record_links(page) -> dict[str, str]:
    """The provenance record links of a job page's tasks, by the result identity of
    their rows."""
    rows = page.locator("tr.instance").filter(has=page.locator("a.record-link"))
    return dict(
        rows.evaluate_all(
            "rows => rows.map(r => [r.querySelector('.instance-item').textContent,"
            " r.querySelector('a.record-link').getAttribute('href')])"
        )
    )


def test_the_list_and_the_form_made_from_the_parameter_schema(portal, page_as, shot):
    page = page_as("alice")
    page.goto("/jobs")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analyses").click()
    expect(page.get_by_role("heading", name="Analyses")).to_be_visible()
    row = page.locator("tbody tr").filter(has=page.get_by_role("link", name="file-summary"))
    expect(row).to_contain_text("Size and sha256 of every input file")
    shot(page, "analyses")
    row.get_by_role("link", name="file-summary").click()
    page.wait_for_url("**/analyses/file-summary")
    expect(page.get_by_role("heading", name="file-summary")).to_be_visible()
    expect(page.get_by_label("Label")).to_have_value("")
    expect(page.get_by_label("Bins")).to_have_value("16")
    expect(page.get_by_label("Bins")).to_have_attribute("type", "number")
    expect(page.get_by_label("Scale")).to_have_value("1.0")
    # a wrong parameter is named next to its field, and the form keeps what was typed
    page.get_by_label("Bins").fill("0")
    page.get_by_label("Catalog query").fill('{"subject.subject_id": "none"}')
    with page.expect_response(lambda r: r.url.endswith("/preview")) as answer:
        page.get_by_role("button", name="Preview").click()
    assert answer.value.status == 422
    error = page.locator(".field.has-error").filter(has=page.get_by_label("Bins"))
    expect(error.locator(".error")).to_contain_text(
        "bins: Input should be greater than or equal to 1"
    )
    expect(page.get_by_label("Catalog query")).to_have_value('{"subject.subject_id": "none"}')
    page.get_by_label("Catalog query").fill("[1")
    page.get_by_label("Bins").fill("16")
    page.get_by_label("Distributed parameter sets").fill('[{"bins": 2}, {"bins": -1}]')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".field.has-error")).to_contain_text("query: not valid JSON")
    page.get_by_label("Catalog query").fill("{}")
    page.get_by_role("button", name="Preview").click()
    sets = page.locator(".field.has-error").filter(
        has=page.get_by_label("Distributed parameter sets")
    )
    expect(sets.locator(".error")).to_contain_text("distributed_parameters[1]")


def test_preview_submit_and_the_record_of_a_result(portal, page_as, shot, tmp_path):
    subject, docs = register(portal, "alice", tmp_path)
    page = page_as("alice")
    page.goto("/analyses/file-summary")
    page.get_by_label("Label").fill("from the page")
    page.get_by_label("Catalog query").fill(f'{{"subject.subject_id": "{subject}"}}')
    page.get_by_label("Distributed parameter sets").fill('[{"bins": 4}, {"bins": 8}, {"bins": 2}]')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview")).to_contain_text(
        "2 inputs (2 assets) \N{MULTIPLICATION SIGN} 3 parameter sets = 6 tasks"
    )
    expect(page.get_by_label("Label")).to_have_value("from the page")
    shot(page, "analysis")
    page.get_by_label("Distributed parameter sets").fill("")
    dirty = page.get_by_label("Allow uncommitted code")  # a source checkout being changed
    if dirty.count():
        dirty.check()
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    job = wait_for(portal, job_id)
    assert job["state"] == "succeeded", portal.api("GET", f"/jobs/{job_id}/tasks").text

    found = portal.api(
        "POST",
        "/catalog/find",
        json={"filter": {"kind": "analysis-result", "job_id": job_id}},
    ).json()["documents"]
    assert len(found) == 2
    record = next(d for d in found if d["inputs"]["assets"][0]["name"] == docs[0]["name"])
    page.goto(f"/jobs/{job_id}")
    assert record_links(page) == {d["identity"]: f"/analyses/records/{d['_id']}" for d in found}
    row = page.locator("tr.instance").filter(has_text=record["identity"])
    row.get_by_role("link", name=re.compile("Provenance record")).click()
    page.wait_for_url(f"**/analyses/records/{record['_id']}")
    expect(page.get_by_role("heading", name="Result of file-summary")).to_be_visible()
    page.get_by_role("link", name=f"Job {job_id}").wait_for()
    expect(page.get_by_role("link", name=docs[0]["name"])).to_have_attribute(
        "href", f"/catalog/{docs[0]['name']}"
    )
    expect(page.locator("main")).to_contain_text('"label": "from the page"')
    expect(page.locator("main")).to_contain_text(record["location"])
    for file in record["files"]:
        row = page.locator("tbody tr").filter(has_text=file["path"])
        expect(row).to_contain_text(file["sha256"])

    # the same job again: each task links to the record of its result, the one it skipped
    # as computed before (or, from a checkout with uncommitted changes, the one it replaced)
    body = {
        "query": {"subject.subject_id": subject},
        "parameters": {"label": "from the page"},
        "allow_dirty": True,
    }
    answer = portal.api("POST", "/analyses/file-summary/jobs", who="alice", json=body)
    assert answer.status_code == 201, answer.text
    again = answer.json()["job_id"]
    assert wait_for(portal, again)["state"] == "succeeded"
    lines = portal.api("GET", f"/analyses/jobs/{again}/results", who="alice").json()
    assert {line["state"] for line in lines} <= {"skipped", "computed"} and len(lines) == 2
    page.goto(f"/jobs/{again}")
    assert record_links(page) == {
        line["identity"]: f"/analyses/records/{line['record_id']}" for line in lines
    }
