"""The Submit page in a real browser: the template download, a spreadsheet checked at once
into a preview (problems on their row and field, Submit off while there are any), the JSON
of each job, submitting, and following the new job to its page and its asset."""

from __future__ import annotations

import io
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from playwright.sync_api import expect

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-dts"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = [
    "job_type",
    "project_name",
    "platform",
    "acq_datetime",
    "subject_id",
    "modality0",
    "modality0.input_source",
]


def xlsx(*rows: list[Any]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def subject() -> str:
    """A subject id no other test of the session uses (asset names must be new)."""
    return f"9{secrets.randbelow(10**6):06d}"


def choose(page: Any, name: str, data: bytes, mime: str = "text/csv") -> None:
    """Choose a spreadsheet in the upload form (which checks it at once)."""
    page.get_by_label("Job spreadsheet (.csv or .xlsx)").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )


def wait_for(portal: Any, job_id: int, who: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = portal.api("GET", f"/jobs/{job_id}", who).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def test_the_template_downloads_as_a_workbook(page_as, tmp_path):
    page = page_as("alice")
    page.goto("/submit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the template (.xlsx)").click()
    assert download.value.suggested_filename == "job_upload_template.xlsx"
    saved = tmp_path / "template.xlsx"
    download.value.save_as(saved)
    sheet = openpyxl.load_workbook(saved).worksheets[0]
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert header[:5] == HEADER[:5]
    assert {"modality0", "modality0.input_source", "user_email"} <= set(header)


def test_a_valid_sheet_is_previewed_submitted_and_its_job_followed(portal, page_as, tmp_path, shot):
    data_dir = tmp_path / "session" / "ecephys"
    data_dir.mkdir(parents=True)
    (data_dir / "probe.dat").write_bytes(b"\x01\x02" * 4096)
    sid = subject()
    asset = f"ecephys_{sid}_2025-03-04_05-06-07"
    # the session's own data description: the facts a sheet does not carry
    metadata = tmp_path / "session" / "metadata"
    metadata.mkdir()
    (metadata / "data_description.json").write_text(
        json.dumps({"subject_id": sid, "project_name": "Ephys Platform", "institution": "AIND"})
    )
    sheet = xlsx(
        [*HEADER, "metadata_dir"],
        [
            "default",
            "Ephys Platform",
            "ecephys",
            "2025-03-04 05:06:07",
            sid,
            "ECEPHYS",
            str(data_dir),
            str(metadata),
        ],
    )
    page = page_as("alice")
    page.goto("/submit")
    choose(page, "sessions.xlsx", sheet, XLSX)
    row = page.locator('#preview tr[data-row="2"]')
    expect(row).to_be_visible()
    assert page.locator("#preview tbody tr").count() == 1
    expect(page.locator("#check-status")).to_contain_text("1 job(s), 0 problem(s)")
    assert row.locator('td[data-field="asset"]').inner_text().strip() == asset
    assert row.locator('td[data-field="subject"]').inner_text().strip() == sid
    assert row.locator('td[data-field="acquired"]').inner_text().strip() == "2025-03-04 05:06:07"
    assert str(data_dir) in row.locator('td[data-field="modalities"]').inner_text()
    assert "ecephys" in row.locator('td[data-field="modalities"]').inner_text()
    assert row.locator(".error-cell").count() == 0

    # the job's JSON, as it will run, in a dialog
    row.get_by_text("View JSON").click()
    dialog = page.get_by_role("dialog", name="The job of row 2, as it will run")
    shown = json.loads(dialog.locator("pre").inner_text())
    assert shown["subject_id"] == sid and shown["s3_prefix"] == asset
    assert shown["modalities"][0]["input_source"] == str(data_dir)
    assert shown["email_notification_types"] == ["fail"]  # the default, until submitted
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row.get_by_text("View JSON")).to_be_focused()

    # a bad e-mail (past the browser's own check) is refused, and can be fixed in place
    email = page.get_by_label("Notification e-mail")
    assert email.input_value() == "alice@lab.example.org"  # hers, to start with
    email.evaluate("e => { e.type = 'text'; }")
    email.fill("alice at the lab")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Submit 1 job").click()
    assert answer.value.status == 422
    expect(page.locator("#f-user_email-error")).to_contain_text(
        "'alice at the lab' is not an e-mail address"
    )
    assert "Nothing was submitted" in page.locator("#problems").inner_text()
    page.get_by_label("Notification e-mail").fill("alice.lab@example.org")
    page.get_by_role("checkbox", name=re.compile(r"^end")).check()
    submit = page.get_by_role("button", name="Submit 1 job")
    expect(submit).to_be_enabled()
    submit.click()
    page.wait_for_url(re.compile(r"/submit\?submitted=\d+$"))
    link = page.locator("#submitted").get_by_role("link", name=re.compile(r"^Job \d+$"))
    job_id = int(link.inner_text().split()[1])
    assert link.get_attribute("href") == f"/jobs/{job_id}"
    assert asset in page.locator("#submitted").inner_text()
    shot(page, "submit-ok")

    job = portal.api("GET", f"/jobs/{job_id}", "alice").json()
    assert job["owner"] == "alice" and job["name"] == asset
    assert job["spec"]["user_email"] == "alice.lab@example.org"
    assert job["spec"]["email_notification_types"] == ["end", "fail"]
    done = wait_for(portal, job_id, "alice")
    assert done["state"] == "succeeded", portal.api("GET", f"/jobs/{job_id}/tasks", "alice").text

    link.click()
    page.wait_for_url(f"**/jobs/{job_id}")
    expect(page.locator("main")).to_contain_text(asset, timeout=15_000)

    # the asset it registered knows the job that made it
    page.goto(f"/catalog/{asset}")
    expect(page.get_by_role("link", name=f"Job {job_id}")).to_be_visible()
    assert "ferry ls" in page.locator("#cmd-ls").inner_text()


def malformed_csv(tmp_path: Path) -> bytes:
    folder = tmp_path / "behavior"
    folder.mkdir()
    return (
        "project_name,subject-id,acq-datetime,platform,modality0,modality0.source,notes\n"
        f"Behavior Platform,{subject()},2025-01-02 10:00:00,behavior,behavior,{folder},fine\n"
        f"Behavior Platform,{subject()},2025-01-02 10:00:00,behavior,WRONG_MODALITY,{folder},\n"
        f"Behavior Platform,{subject()},not a date,behavior,behavior,{folder},\n"
        f"Behavior Platform,{subject()},2025-01-02 11:00:00,behavior,behavior,relative/dir,\n"
    ).encode()


def check_malformed(page: Any) -> None:
    """The preview of malformed_csv: each problem on its row and field, Submit off."""
    rows = page.locator("#preview tbody tr")
    expect(rows).to_have_count(4)
    modality = page.locator('tr[data-row="3"] td[data-field="modalities"]')
    expect(modality).to_have_class(re.compile(r"\berror-cell\b"))
    assert "'WRONG_MODALITY' is not a known modality" in modality.inner_text()
    date = page.locator('tr[data-row="4"] td[data-field="acquired"]')
    expect(date).to_have_class(re.compile(r"\berror-cell\b"))
    assert "'not a date' is not a date and time" in date.inner_text()
    source = page.locator('tr[data-row="5"] td[data-field="modalities"]')
    assert "'relative/dir' is not an absolute path" in source.inner_text()
    assert page.locator('tr[data-row="2"] .error-cell').count() == 0  # row 2 is fine
    assert page.locator('tr[data-row="3"] td[data-field="subject"]').get_attribute("class") is None
    problems = page.locator("#problems")
    assert "3 problems" in page.locator("#preview").inner_text()
    assert problems.get_by_role("link", name="row 3, modality0").is_visible()
    assert "is not a column of a job sheet" in page.locator("#notes").inner_text()  # notes
    expect(page.get_by_role("button", name=re.compile(r"^Submit \d+ job"))).to_be_disabled()


def test_a_malformed_sheet_marks_each_row_and_field_and_cannot_be_submitted(
    page_as, tmp_path, shot
):
    page = page_as("alice")
    page.goto("/submit")
    choose(page, "sessions.csv", malformed_csv(tmp_path))
    check_malformed(page)
    # the error list leads to the cell
    page.locator("#problems").get_by_role("link", name="row 3, modality0").click()
    expect(
        page.locator('tr[data-row="3"] td[data-field="modalities"] .cell-problem')
    ).to_be_focused()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "submit")
    page.locator('tr[data-row="2"]').get_by_text("View JSON").click()
    dialog = page.get_by_role("dialog", name=re.compile(r"^The job of row 2"))
    assert json.loads(dialog.locator("pre").inner_text())["platform"]["abbreviation"] == "behavior"
    dialog.get_by_role("button", name="Close").click()

    # a file that is not a spreadsheet is refused, naming the file
    choose(page, "sessions.txt", b"hello", "text/plain")
    expect(page.locator("#preview [role=alert]")).to_contain_text(
        "sessions.txt: .txt is not a job sheet; allowed: .csv, .xlsx"
    )


def test_without_javascript_the_form_checks_the_sheet(page_as, browser, portal, tmp_path):
    signed_in = page_as("alice").context.storage_state()
    context = browser.new_context(
        base_url=portal.url, storage_state=signed_in, java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.goto("/submit")
        choose(page, "sessions.csv", malformed_csv(tmp_path))
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Check the file").click()
        assert answer.value.status == 422
        check_malformed(page)
        row = page.locator('tr[data-row="2"]')
        row.get_by_text("View JSON").click()  # opens in its cell
        assert json.loads(row.locator(".json-view pre").inner_text())["platform"]
    finally:
        context.close()


def fixture_sheet(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"the original service's sample sheets are not available ({path})")
    return path.read_bytes()


def test_the_original_services_malformed_sample(page_as):
    data = fixture_sheet("sample_malformed.xlsx")
    page = page_as("bob")
    page.goto("/submit")
    choose(page, "sample_malformed.xlsx", data, XLSX)
    expect(page.locator("#preview tbody tr")).to_have_count(3)
    wrong = page.locator('tr[data-row="3"] td[data-field="modalities"]')
    assert "'WRONG_MODALITY_HERE' is not a known modality" in wrong.inner_text()
    twice = page.locator('tr[data-row="4"] td[data-field="modalities"]')
    assert "behavior-videos is already given in modality0" in twice.inner_text()
    # row 2 reads, but its bucket is not a destination of this service
    other = page.locator('tr[data-row="2"] td[data-field="other"]').inner_text()
    assert "'some_bucket' is not a destination of this service" in other
    assert "process_capsule_id" in page.locator("#notes").inner_text()
    expect(page.get_by_role("button", name=re.compile(r"^Submit \d+ job"))).to_be_disabled()
