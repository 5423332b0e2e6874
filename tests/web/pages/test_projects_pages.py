"""The projects page (admins): add a project, set its facts (institution, funding sources,
investigators) as the API checks them, a wrong one shown at its field; users are refused."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from neuroferry.web.pages.projects import funding_text, parse_funding


@pytest.fixture
def project(portal) -> Iterator[str]:
    """A project name the test adds; removed afterwards (while any project is listed,
    uploads must name one, which other tests of the session do not)."""
    name = f"Atlas {uuid.uuid4().hex[:8]}"
    yield name
    portal.api("DELETE", f"/projects/{name}")


def _facts(portal, name: str) -> dict:
    listed = portal.api("GET", "/projects", "alice").json()["projects"]
    return next(p for p in listed if p["name"] == name)


def test_an_admin_adds_a_project_and_sets_its_facts(portal, page_as, project, shot):
    page = page_as("admin")
    page.goto("/projects")
    assert page.get_by_role("link", name="Projects").get_attribute("aria-current") == "page"
    add = page.get_by_role("region", name="Add a project")
    add.get_by_label("Project name").fill(project)
    add.get_by_role("button", name="Add project").click()
    page.wait_for_url(re.compile(r"/projects\?added="))
    assert f"Added project {project}." in page.get_by_role("status").first.inner_text()
    assert _facts(portal, project)["institution"] is None

    card = page.locator(f'section[data-project="{project}"]')
    card.get_by_label("Institution").fill("Allen Institute for Neural Dynamics")
    card.get_by_label("Funding sources").fill("AIND | R01-123 | Jane Doe, John Roe\n\nNIMH")
    card.get_by_label("Investigators").fill("Jane Doe\n  John Roe \n")
    card.get_by_role("button", name=f"Save the facts of {project}").click()
    page.wait_for_url(re.compile(r"/projects\?saved="))
    assert "are saved" in page.get_by_role("status").first.inner_text()
    shot(page, "projects")

    facts = _facts(portal, project)  # seen by a user through the API
    assert facts["institution"] == "AIND"
    assert facts["funding_source"] == [
        {"funder": "AIND", "grant_number": "R01-123", "fundee": ["Jane Doe", "John Roe"]},
        {"funder": "NIMH"},
    ]
    assert facts["investigators"] == ["Jane Doe", "John Roe"]
    card = page.locator(f'section[data-project="{project}"]')  # the form shows them back
    expect(card.get_by_label("Institution")).to_have_value("AIND")
    expect(card.get_by_label("Funding sources")).to_have_value(
        "AIND | R01-123 | Jane Doe, John Roe\nNIMH"
    )

    # an empty field clears its fact; the others are kept
    card.get_by_label("Investigators").fill("")
    card.get_by_role("button", name=f"Save the facts of {project}").click()
    page.wait_for_url(re.compile(r"/projects\?saved="))
    facts = _facts(portal, project)
    assert facts["investigators"] is None and facts["institution"] == "AIND"


def test_a_wrong_fact_is_named_at_its_field(portal, page_as, project):
    assert portal.api("POST", "/projects", json={"name": project}).status_code == 201
    page = page_as("admin")
    page.goto("/projects")
    card = page.locator(f'section[data-project="{project}"]')
    card.get_by_label("Institution").fill("Nowhere Institute")
    card.get_by_label("Investigators").fill("Jane Doe")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        card.get_by_role("button", name=f"Save the facts of {project}").click()
    assert answer.value.status == 422
    card = page.locator(f'section[data-project="{project}"]')
    field = card.get_by_label("Institution")
    expect(field).to_have_attribute("aria-invalid", "true")
    error = card.locator(".field.has-error .error")
    expect(error).to_have_count(1)
    assert "institution: 'Nowhere Institute' is not an organization" in error.inner_text()
    expect(field).to_have_value("Nowhere Institute")  # kept for a retry
    expect(card.get_by_label("Investigators")).to_have_value("Jane Doe")
    assert _facts(portal, project)["investigators"] is None  # nothing was saved

    card.get_by_label("Funding sources").fill("AIND | 1 | Jane | extra")
    card.get_by_label("Institution").fill("AIND")
    card.get_by_role("button", name=f"Save the facts of {project}").click()
    card = page.locator(f'section[data-project="{project}"]')
    expect(card.get_by_label("Funding sources")).to_have_attribute("aria-invalid", "true")
    assert "funding_source[0]" in card.locator(".has-error .error").inner_text()

    # the add form: a wrong funder is named there, and no project is added
    add = page.get_by_role("region", name="Add a project")
    other = f"{project} two"
    add.get_by_label("Project name").fill(other)
    add.get_by_label("Funding sources").fill("Nobody")
    add.get_by_role("button", name="Add project").click()
    add = page.get_by_role("region", name="Add a project")
    assert "funding_source[0].funder" in add.locator(".has-error .error").inner_text()
    expect(add.get_by_label("Project name")).to_have_value(other)
    names = [p["name"] for p in portal.api("GET", "/projects").json()["projects"]]
    assert other not in names
    # a name taken already is named at the name field
    add.get_by_label("Project name").fill(project)
    add.get_by_label("Funding sources").fill("")
    add.get_by_role("button", name="Add project").click()
    add = page.get_by_role("region", name="Add a project")
    expect(add.get_by_label("Project name")).to_have_attribute("aria-invalid", "true")
    assert "exists already" in add.locator(".has-error .error").inner_text()


def test_users_are_refused_and_forms_need_the_csrf_token(portal, page_as, project):
    assert portal.api("POST", "/projects", json={"name": project}).status_code == 201
    page = page_as("alice")
    page.goto("/help")
    assert "Projects" not in page.locator("header").inner_text()
    answer = page.goto("/projects")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert "only admins may open /projects" in page.get_by_role("alert").inner_text()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    for path, form in {
        "/projects/facts": {"name": project, "institution": "AIND"},
        "/projects": {"name": f"{project} mine"},
    }.items():
        refused = page.request.post(path, form={**form, "csrf_token": csrf})
        assert refused.status == 403, (path, refused.status)
        assert "only admins may" in refused.text()

    admin = page_as("admin")
    admin.goto("/projects")
    refused = admin.request.post("/projects/facts", form={"name": project, "institution": "AIND"})
    assert refused.status == 403 and "CSRF token" in refused.text()
    names = [p["name"] for p in portal.api("GET", "/projects").json()["projects"]]
    assert f"{project} mine" not in names
    assert _facts(portal, project)["institution"] is None

    # an unknown project is a 404 naming it, never a 500
    csrf = admin.locator('meta[name="csrf-token"]').get_attribute("content")
    gone = admin.request.post(
        "/projects/facts", form={"name": "no such", "institution": "AIND", "csrf_token": csrf}
    )
    assert gone.status == 404 and "no project" in gone.text()


def test_funding_text_reads_back_as_it_is_shown():
    sources = [
        {"funder": "AIND", "grant_number": "R01", "fundee": ["A B", "C D"]},
        {"funder": "NIMH", "fundee": ["E F"]},
        {"funder": "NIH"},
    ]
    text = funding_text(sources)
    assert text == "AIND | R01 | A B, C D\nNIMH |  | E F\nNIH"
    assert parse_funding(text) == sources
    assert parse_funding(" \n") is None
