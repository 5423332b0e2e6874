"""The job type pages in a real browser: the list, a job type's settings task by task, its
history and differences; admins create, edit (checked before anything is saved) and roll
back; users see everything but change nothing."""

from __future__ import annotations

import json
import re
import secrets

from playwright.sync_api import expect

FIRST = {
    "check_s3_folder_exists": {"skip_task": False},
    "upload_data_to_s3": {"image_resources": {"cpus_per_task": 4}},
    "modality_transformation_settings": {
        "ECEPHYS": {
            "command_script": "compress %INPUT_SOURCE %OUTPUT_LOCATION",
            "image_resources": {"cpus_per_task": 8},
        },
        "behavior-videos": {"job_settings": {"transformation": "copy"}},
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def editor(page):
    return page.get_by_label("Task settings (JSON)")


def test_admin_creates_edits_compares_and_rolls_back_a_job_type(portal, page_as, shot):
    name = unique("ephys")
    page = page_as("admin")
    page.goto("/job-types")
    create = page.locator("#create")
    create.get_by_label("Name").fill(name)
    bad = {"check_s3_folder_exists": {"skip_task": "sometimes"}}
    editor(page).fill(json.dumps(bad))
    create.get_by_label("Describe the change").fill("first try")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        create.get_by_role("button", name="Create job type").click()
    assert answer.value.status == 422
    error = page.locator("#f-settings-error")
    expect(error).to_contain_text("check_s3_folder_exists.skip_task")
    assert editor(page).get_attribute("aria-invalid") == "true"
    assert json.loads(editor(page).input_value()) == bad  # what was typed stays
    assert page.locator("#create").get_by_label("Name").input_value() == name
    assert portal.api("GET", f"/job_types/{name}").status_code == 404  # nothing saved

    editor(page).fill(json.dumps(FIRST))
    page.locator("#create").get_by_role("button", name="Create job type").click()
    page.wait_for_url(re.compile(rf"/job-types/{name}\?saved=1$"))
    expect(page.get_by_role("status").first).to_contain_text("Saved version 1.")
    mapped = page.locator(".task-settings", has_text="modality_transformation_settings")
    assert "mapped task compress_data runs once per modality" in mapped.inner_text()
    ecephys = mapped.locator("tr", has_text="ecephys").first
    assert "compress %INPUT_SOURCE %OUTPUT_LOCATION" in ecephys.inner_text()
    assert "behavior-videos" in mapped.inner_text()

    # editing: broken JSON, then settings the kind refuses, then a valid change
    page.get_by_role("link", name="Edit the settings").click()
    page.wait_for_url(f"**/job-types/{name}/edit")
    assert json.loads(editor(page).input_value())["upload_data_to_s3"] == FIRST["upload_data_to_s3"]
    editor(page).fill('{"upload_data_to_s3": {"image_resources": {"cpus_per_task": 8}},}')
    expect(page.locator("#f-settings-status")).to_contain_text("Not valid JSON yet")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.locator("#f-settings-error")).to_contain_text("settings: not valid JSON at line 1")
    editor(page).fill('{"compress_data": {"skip_task": true}}')
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.locator("#f-settings-error")).to_contain_text(
        "'compress_data' runs once per modality: configure it in "
        "tasks.modality_transformation_settings"
    )
    assert portal.api("GET", f"/job_types/{name}").json()["version"] == 1

    second = json.loads(json.dumps(FIRST))
    second["modality_transformation_settings"]["ECEPHYS"]["image_resources"]["cpus_per_task"] = 16
    second["check_s3_folder_exists"] = {"skip_task": True}
    editor(page).fill(json.dumps(second))
    page.get_by_role("button", name="Format the JSON").click()
    assert editor(page).input_value().startswith('{\n  "check_s3_folder_exists"')
    expect(page.locator("#f-settings-status")).to_contain_text("Valid JSON: 3 tasks")
    page.get_by_label("Describe the change").fill("16 cores for compression")
    page.get_by_role("button", name="Save as version 2").click()
    page.wait_for_url(re.compile(rf"/job-types/{name}\?saved=2$"))

    history = page.locator("#history")
    latest = history.locator('tr[data-version="2"]')
    assert "16 cores for compression" in latest.inner_text() and "admin" in latest.inner_text()
    assert "current" in latest.inner_text()
    # the differences of the newest version, by path
    changes = page.locator("#changes")
    cpus = changes.locator(
        "tr", has_text="modality_transformation_settings.ecephys.image_resources.cpus_per_task"
    )
    assert re.search(r"changed\s+8\s+16", cpus.inner_text()), cpus.inner_text()
    assert "true" in changes.locator("tr", has_text="check_s3_folder_exists.skip_task").inner_text()
    page.locator("#diff-title").scroll_into_view_if_needed()
    shot(page, "job-type")

    # any two versions: everything since "no settings"
    page.get_by_label("From version").select_option("0")
    page.get_by_label("To version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff-summary")).to_contain_text("From version 0 to version 2")
    assert "added" in page.locator("#changes").inner_text()
    page.locator("#diff-title").locator("..").get_by_text("Line by line").click()
    assert page.locator("pre.diff .diff-add").count() > 0

    # roll back to version 1: asks first, then saves version 3 with version 1's settings
    history.get_by_role("button", name="Roll back to version 1").click()
    dialog = page.get_by_role("dialog")
    assert "This saves version 3 with the settings of version 1" in dialog.inner_text()
    dialog.get_by_role("button", name="Yes").click()
    page.wait_for_url(re.compile(rf"/job-types/{name}\?saved=3$"))
    current = portal.api("GET", f"/job_types/{name}").json()
    first = portal.api("GET", f"/job_types/{name}", params={"version": 1}).json()
    assert current["version"] == 3 and current["settings"] == first["settings"]
    assert current["comment"] == "rollback to version 1" and current["created_by"] == "admin"
    assert "rollback to version 1" in page.locator('#history tr[data-version="3"]').inner_text()

    # viewing an old version
    page.locator('#history tr[data-version="2"]').get_by_role("link", name="View version 2").click()
    expect(page.locator("#settings-title")).to_have_text("Settings of version 2")

    page.goto("/job-types")
    row = page.locator(f'tr[data-job-type="{name}"]')
    assert re.search(r"upload\s+3\s+admin", row.inner_text()), row.inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "job-types")


def test_users_see_job_types_but_cannot_change_them(portal, page_as):
    name = unique("spim")
    saved = portal.api("PUT", f"/job_types/{name}", json={"settings": FIRST, "comment": "one"})
    assert saved.status_code == 200, saved.text
    portal.api("PUT", f"/job_types/{name}", json={"settings": {}, "comment": "two"})

    page = page_as("bob")
    page.goto("/job-types")
    expect(page.locator(f'tr[data-job-type="{name}"]')).to_be_visible()
    assert page.get_by_role("heading", name="Create a job type").count() == 0
    assert page.locator("textarea").count() == 0
    page.locator(f'tr[data-job-type="{name}"]').get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=f"Job type {name}")).to_be_visible()
    assert page.get_by_role("link", name="Edit the settings").count() == 0
    assert page.get_by_role("button", name=re.compile("Roll back")).count() == 0
    assert page.locator("#history tbody tr").count() == 2  # the history and diff are shown
    expect(page.locator("#diff-summary")).to_contain_text("From version 1 to version 2")

    response = page.goto(f"/job-types/{name}/edit")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    # a POST made by hand, with the page's CSRF token, is refused too
    page.goto("/job-types")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    attempts = {
        f"/job-types/{name}/edit": {"settings": "{}", "kind": "upload"},
        f"/job-types/{name}/rollback": {"version": "1", "kind": "upload"},
        "/job-types": {"name": unique("mine"), "kind": "upload", "settings": "{}"},
    }
    for path, form in attempts.items():
        answer = page.request.post(path, form={**form, "csrf_token": csrf})
        assert answer.status == 403, (path, answer.status)
        assert "only admins may" in answer.text() and "Not allowed" in answer.text()
    after = portal.api("GET", f"/job_types/{name}").json()
    assert after["version"] == 2 and after["created_by"] == "admin"
