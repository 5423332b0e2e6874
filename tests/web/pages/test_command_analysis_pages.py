"""A command analysis on the analyses pages: listed with the installed ones, its form made
from the parameters its admin declared, its command shown."""

from __future__ import annotations

from playwright.sync_api import expect


def test_a_command_analysis_has_a_form_and_shows_its_command(portal, page_as):
    definition = {
        "description": "Counts the lines of every input.",
        "command_script": "wc -l %INPUT_SOURCE",
        "parameters": {"minimum_lines": {"type": "integer", "default": 3, "minimum": 0}},
    }
    saved = portal.api("PUT", "/analyses/line-count", json=definition)
    assert saved.status_code == 200, saved.text
    page = page_as("alice")
    page.goto("/analyses")
    row = page.locator("tbody tr").filter(has=page.get_by_role("link", name="line-count"))
    expect(row).to_contain_text("Counts the lines of every input.")
    row.get_by_role("link", name="line-count").click()
    page.wait_for_url("**/analyses/line-count")
    expect(page.get_by_text("wc -l %INPUT_SOURCE")).to_be_visible()
    expect(page.get_by_label("Minimum Lines")).to_have_value("3")
    expect(page.get_by_label("Minimum Lines")).to_have_attribute("type", "number")
