"""The drop-box pages in a real browser: a member uploads data and a config, submits them,
follows the certificate and the datasets' status files until the submission ends, and
downloads a result; what is wrong is named at its field; members of another group and
users of no group are refused, and inputs are never downloaded through the pages."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Portal, form_sign_in, start_portal

WAIT_MS = 120_000  # a job on the shared two-core machine


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """A service of this module's own that runs without git: the analysis's identity is
    its installed version, as where the service is deployed (a drop-box's jobs refuse a
    source checkout with uncommitted changes)."""
    home = tmp_path_factory.mktemp("dropbox-portal-home")
    no_git = os.path.dirname(sys.executable)
    with start_portal(home, tmp_path_factory.getbasetemp(), PATH=no_git) as started:
        yield started


@pytest.fixture(scope="module")
def sign_in(portal: Portal) -> Callable[..., Any]:
    return form_sign_in(portal)


@pytest.fixture(scope="module")
def _signed_in() -> dict[str, Any]:
    return {}


_named: list[str] = []


@pytest.fixture
def box(portal: Any, tmp_path: Path) -> str:
    """A drop-box of ``file-summary`` in a local folder: group ``lab1`` (alice) and
    ``lab2`` (bob)."""
    # the first one is named as in the guide (its screenshots show it)
    name = "caiman-ncap-web" if not _named else f"box-{secrets.token_hex(3)}"
    _named.append(name)
    folder = tmp_path / name
    folder.mkdir()
    made = portal.api(
        "POST", "/dropboxes", json={"name": name, "analysis": "file-summary", "store": str(folder)}
    )
    assert made.status_code == 201, made.text
    for group, members in (("lab1", ["alice"]), ("lab2", ["bob"])):
        added = portal.api(
            "POST", f"/dropboxes/{name}/groups", json={"name": group, "members": members}
        )
        assert added.status_code == 201, added.text
    return name


def portal_box_folder(portal: Portal, box: str) -> Path:
    """The local folder of drop-box ``box``."""
    found = portal.api("GET", f"/dropboxes/{box}").json()["store"]
    assert found.startswith("file://")
    return Path(found.removeprefix("file://"))


def upload(page: Any, folder: str, files: list[tuple[str, bytes]]) -> None:
    form = page.locator("#upload-form")
    form.get_by_label(f"{folder}/", exact=False).check()
    form.get_by_label("Files to upload", exact=True).set_input_files(
        files=[{"name": n, "mimeType": "application/octet-stream", "buffer": b} for n, b in files]
    )
    form.get_by_role("button", name="Upload", exact=True).click()


def test_a_member_uploads_submits_follows_and_downloads(portal, page_as, box, tmp_path, shot):
    page = page_as("alice")
    page.goto("/jobs")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drop-boxes").click()
    expect(page.get_by_role("heading", name="Drop-boxes")).to_be_visible()
    row = page.locator(f'tr[data-dropbox="{box}"]')
    expect(row).to_contain_text("file-summary")
    assert row.locator("a.group-link").all_inner_texts() == ["lab1"]  # not bob's lab2
    shot(page, "dropboxes")
    row.get_by_role("link", name="lab1").click()
    expect(page.locator("#group-name")).to_have_text("lab1")

    upload(page, "inputs", [("a.txt", b"one\ntwo\n"), ("b.txt", b"three\n")])
    expect(page.get_by_text("Uploaded 2 files to inputs/.")).to_be_visible()
    upload(page, "configs", [("config.json", json.dumps({"bins": 4}).encode())])
    expect(page.get_by_text("Uploaded 1 file to configs/.")).to_be_visible()

    form = page.locator("#submit-form")
    # nothing picked: the field is named, nothing is written
    form.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("#f-data-error")).to_contain_text("choose at least one file of inputs/")
    form = page.locator("#submit-form")
    form.get_by_label("a.txt").check()
    form.get_by_label("b.txt").check()
    form.get_by_label("config.json").check()
    form.get_by_label("Timestamp (names the results folder)").fill("run1")
    form.get_by_role("button", name="Submit", exact=True).click()
    expect(page).to_have_url(f"/dropboxes/{box}?group=lab1&job=run1#submission")

    # the page follows the certificate and the status files until end.txt appears
    submission = page.locator("#submission")
    expect(submission).to_have_attribute("data-state", "ended", timeout=WAIT_MS)
    expect(page.locator("#refresh-status")).to_contain_text("has ended")
    expect(page.locator("#submission-outcome")).to_have_text("succeeded")
    statuses = page.locator("table.datasets tbody tr")
    expect(statuses).to_have_count(2)
    assert statuses.evaluate_all("rows => rows.map(r => r.dataset.status)") == ["SUCCESS"] * 2
    certificate = page.locator("#certificate").inner_text()
    assert "DATANAME: lab1/inputs/a.txt | STATUS: SUCCESS" in certificate
    assert "DATANAME: lab1/inputs/b.txt | STATUS: SUCCESS" in certificate
    shot(page, "dropbox")

    # a result file downloads; the submit file the page wrote is the CLI's
    summaries = page.locator('.result-files a[data-path$="/summary.json"]')
    expect(summaries).to_have_count(2)
    with page.expect_download() as download:
        summaries.first.click()
    saved = tmp_path / "summary.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["bins"] == 4
    log = page.locator('.result-files a[data-path="logs/certificate.txt"]')
    with page.expect_download() as download:
        log.click()
    assert download.value.suggested_filename == "certificate.txt"
    listed = portal.api(
        "GET", f"/dropboxes/{box}/files", "alice", params={"prefix": "submissions/"}
    )
    assert [f["path"] for f in listed.json()["files"]] == ["submissions/run1_submit.json"]

    # inputs are never read back through the service: no link, and the API refuses
    assert page.locator('a[href*="/files/inputs/"]').count() == 0
    refused = page.request.get(f"/api/v2/dropboxes/{box}/files/inputs/a.txt?group=lab1")
    assert refused.status == 403 and "downloading is not allowed in inputs/" in refused.text()

    # the same timestamp again is named at its field
    form = page.locator("#submit-form")
    form.get_by_label("a.txt").check()
    form.get_by_label("config.json").check()
    form.get_by_label("Timestamp (names the results folder)").fill("run1")
    form.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("#f-timestamp-error")).to_contain_text("names a submission of your group")
    expect(page.locator("#f-timestamp")).to_have_value("run1")  # what was typed is kept


def test_too_large_files_and_bad_configs_are_named(portal, page_as, box):
    page = page_as("alice")
    page.goto(f"/dropboxes/{box}?group=lab1")
    # the service reads at most max_request_bytes a request: the page says so, naming it
    page.locator("#upload-form").evaluate("f => { f.dataset.maxBytes = '16'; }")
    upload(page, "inputs", [("big.bin", b"x" * 40), ("small.bin", b"x")])
    error = page.locator("#f-files-error")
    expect(error).to_contain_text("big.bin has 40 bytes")
    expect(error).to_contain_text("max_request_bytes")
    assert "small.bin" not in error.inner_text()
    listed = portal.api("GET", f"/dropboxes/{box}/files", "alice", params={"prefix": "inputs/"})
    assert listed.json()["files"] == []  # nothing was sent

    page.goto(f"/dropboxes/{box}?group=lab1")
    upload(page, "configs", [("params.txt", b"bins: 4\n")])
    expect(page.get_by_text("Uploaded 1 file to configs/.")).to_be_visible()
    upload(page, "inputs", [("d.txt", b"x\n"), ("with space ü #1.txt", b"y\n")])
    expect(page.get_by_text("Uploaded 2 files to inputs/.")).to_be_visible()
    expect(page.locator("#submit-form").get_by_label("with space ü #1.txt")).to_be_visible()
    assert (
        portal_box_folder(portal, box) / "lab1/inputs/with space ü #1.txt"
    ).read_bytes() == b"y\n"
    form = page.locator("#submit-form")
    form.get_by_label("d.txt").check()
    form.get_by_label("params.txt").check()
    form.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("#f-config-error")).to_contain_text("neither .json nor .yaml/.yml")
    expect(page.locator("#submit-form").get_by_label("d.txt")).to_be_checked()


def test_a_form_without_the_csrf_token_is_refused(portal, page_as, box):
    page = page_as("alice")
    page.goto(f"/dropboxes/{box}?group=lab1")
    answer = page.request.post(
        f"/dropboxes/{box}/submit",
        form={"group": "lab1", "data": "inputs/a.txt", "config": "configs/c.json"},
    )
    assert answer.status == 403 and "CSRF token" in answer.text()
    put = page.request.put(f"/api/v2/dropboxes/{box}/files/inputs/x.txt?group=lab1", data=b"x")
    assert put.status == 403 and "CSRF token" in put.text()


def test_another_groups_page_and_files_are_refused(portal, page_as, box):
    page = page_as("bob")
    page.goto(f"/dropboxes/{box}")  # his only group: lab2
    expect(page.locator("#group-name")).to_have_text("lab2")
    answer = page.goto(f"/dropboxes/{box}?group=lab1")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("#upload-form, #submit-form, #dropbox-live")).to_have_count(0)
    submitted = page.request.get(f"/api/v2/dropboxes/{box}/files?group=lab1&prefix=results/")
    assert submitted.status == 403
    # a submit form aimed at another group's folder is refused before anything is written
    page.goto(f"/dropboxes/{box}")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    answer = page.request.post(
        f"/dropboxes/{box}/submit",
        form={"group": "lab1", "data": "a.txt", "config": "c.json", "csrf_token": token},
    )
    assert answer.status == 403 and "is not a group of drop-box" in answer.text()
    listed = portal.api("GET", f"/dropboxes/{box}/files", "admin", params={"group": "lab1"})
    assert not [f for f in listed.json()["files"] if f["path"].startswith("submissions/")]


def test_a_user_of_no_group_is_refused_and_admins_choose_a_group(portal, page_as, box):
    # bob is in no group of this one
    other = f"solo-{secrets.token_hex(3)}"
    folder = portal.home.parent / other
    folder.mkdir()
    made = portal.api(
        "POST", "/dropboxes", json={"name": other, "analysis": "file-summary", "store": str(folder)}
    )
    assert made.status_code == 201, made.text
    added = portal.api(
        "POST", f"/dropboxes/{other}/groups", json={"name": "g", "members": ["alice"]}
    )
    assert added.status_code == 201, added.text
    page = page_as("bob")
    answer = page.goto(f"/dropboxes/{other}")
    assert answer is not None and answer.status == 404
    assert page.goto(f"/dropboxes/{other}?group=g").status == 404
    page.goto("/dropboxes")
    expect(page.locator(f'tr[data-dropbox="{other}"]')).to_have_count(0)
    assert page.request.get(f"/api/v2/dropboxes/{other}/files?group=g").status == 404

    # alice, in two of its groups, is asked which, and can switch between them
    group = {"name": "g2", "members": ["alice"]}
    added = portal.api("POST", f"/dropboxes/{other}/groups", json=group)
    assert added.status_code == 201, added.text
    alice = page_as("alice")
    alice.goto(f"/dropboxes/{other}")
    assert alice.locator("ul.group-choice a").all_inner_texts() == ["g", "g2"]
    alice.get_by_role("link", name="g2").click()
    expect(alice.locator("#group-name")).to_have_text("g2")
    switch = alice.get_by_role("navigation", name="Groups")
    expect(switch.get_by_role("link", name="g2")).to_have_attribute("aria-current", "page")
    switch.get_by_role("link", name="g", exact=True).click()
    expect(alice.locator("#group-name")).to_have_text("g")

    # an admin sees every group and, in a drop-box of several, is asked which
    admin = page_as("admin")
    admin.goto("/dropboxes")
    row = admin.locator(f'tr[data-dropbox="{box}"]')
    assert row.locator("a.group-link").all_inner_texts() == ["lab1", "lab2"]
    expect(row).to_contain_text("(alice)")
    admin.goto(f"/dropboxes/{box}")
    expect(admin.get_by_role("link", name="lab2")).to_be_visible()
    admin.get_by_role("link", name="lab2").click()
    expect(admin.locator("#group-name")).to_have_text("lab2")
