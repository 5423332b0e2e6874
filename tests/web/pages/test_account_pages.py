"""The tokens page (create, shown once, revoke with a confirmation), the users page
(admins only), the help page and the HTML error pages, in a real browser."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect


def test_tokens_page_creates_shows_once_and_revokes(portal, page_as, shot):
    page = page_as("alice")
    page.goto("/tokens")
    assert page.get_by_role("heading", name="Your tokens").is_visible()
    assert "this sign-in" in page.locator("table").inner_text()
    page.get_by_label("Label").fill("laptop")
    page.get_by_label("Expires after (days)").fill("30")
    page.get_by_role("button", name="Create token").click()
    new = page.get_by_label("The new token")
    token = new.input_value()
    assert token.startswith("nf_")
    assert page.get_by_text("it is shown only this once").is_visible()
    bearer = {"Authorization": f"Bearer {token}"}
    assert portal.api("GET", "/users/me", None, headers=bearer).json()["name"] == "alice"
    page.get_by_role("button", name="Copy").click()  # works without an error
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    shot(page, "tokens")

    page.goto("/tokens")  # shown once: never again
    assert token not in page.content()
    row = page.locator("tr", has_text="laptop")
    assert "active" in row.inner_text() and "never" not in row.inner_text()
    token_id = row.locator("td").first.inner_text()

    # revoking asks first; "Cancel" keeps the token
    row.get_by_role("button", name=f"Revoke token {token_id}").click()
    dialog = page.get_by_role("dialog")
    assert "Revoke token" in dialog.inner_text() and "laptop" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert "active" in page.locator("tr", has_text="laptop").inner_text()

    revoke = page.locator("tr", has_text="laptop").get_by_role(
        "button", name=f"Revoke token {token_id}"
    )
    revoke.click()
    page.get_by_role("dialog").get_by_role("button", name="Yes").click()
    page.wait_for_url(re.compile(rf"/tokens\?revoked={token_id}$"))
    assert f"Token {token_id} is revoked" in page.get_by_role("status").first.inner_text()
    assert "revoked" in page.locator("tr", has_text="laptop").inner_text()
    me = httpx.get(f"{portal.url}/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


def test_a_bad_token_form_says_which_field(page_as):
    page = page_as("alice")
    page.goto("/tokens")
    page.get_by_label("Expires after (days)").fill("9999")
    page.get_by_label("Expires after (days)").evaluate("e => e.removeAttribute('max')")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create token").click()
    assert answer.value.status == 422
    assert "expires_in_days: 9999 is not allowed" in page.get_by_role("alert").inner_text()


def test_users_change_their_password_and_sign_in_with_it(portal, new_page, sign_in):
    page = sign_in(new_page(), "bob")
    page.goto("/tokens")
    page.get_by_label("Current password").fill("not-the-password")
    page.get_by_label("New password", exact=True).fill("bob-new-secret")
    page.get_by_label("New password again").fill("bob-new-secret")
    page.get_by_role("button", name="Change password").click()
    assert "not your current password" in page.get_by_role("alert").inner_text()
    page.get_by_label("Current password").fill(portal.accounts["bob"].password)
    page.get_by_label("New password", exact=True).fill("bob-new-secret")
    page.get_by_label("New password again").fill("bob-new-secret")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url(re.compile(r"/tokens\?password=changed$"))
    # back to the password the other tests know, through the API
    done = portal.api(
        "PUT",
        "/users/bob/password",
        "bob",
        json={"current_password": "bob-new-secret", "password": portal.accounts["bob"].password},
    )
    assert done.status_code == 204, done.text


def test_only_admins_open_the_users_page(portal, page_as, new_page, sign_in):
    page = page_as("alice")
    page.goto("/help")
    assert "Users" not in page.locator("header").inner_text()
    with page.expect_response(lambda r: r.url.endswith("/users")) as answer:
        page.goto("/users")
    assert answer.value.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert "only admins may open /users" in page.get_by_role("alert").inner_text()

    admin = page_as("admin")
    admin.goto("/users")
    assert admin.get_by_role("link", name="Users").get_attribute("aria-current") == "page"
    names = admin.locator("tbody tr td:first-child").all_inner_texts()
    assert {"admin", "alice", "bob"} <= set(names)
    admin.get_by_label("User name").fill("carol")
    admin.get_by_label("E-mail").fill("carol@lab.example.org")
    admin.get_by_label("First password").fill("short")
    admin.get_by_label("First password").evaluate("e => e.removeAttribute('minlength')")
    admin.get_by_role("button", name="Add user").click()
    assert "password: 5 characters is too short" in admin.get_by_role("alert").inner_text()
    assert admin.get_by_label("User name").input_value() == "carol"  # kept for a retry
    admin.get_by_label("First password").fill("carol-first-pw")
    admin.get_by_role("button", name="Add user").click()
    admin.wait_for_url(re.compile(r"/users\?added=carol$"))
    assert "set" in admin.locator("tr", has_text="carol@lab.example.org").inner_text()

    carol = sign_in(new_page(), "carol", "carol-first-pw")
    assert "Signed in as carol" in carol.locator("header").inner_text()
    row = admin.locator("tr", has_text="carol@lab.example.org")
    row.get_by_label("New password for carol").fill("carol-second-pw")
    row.get_by_role("button", name="Set the password of carol").click()
    admin.wait_for_url(re.compile(r"/users\?reset=carol$"))
    carol.goto("/tokens")  # a reset ends carol's sessions
    assert "/sign-in" in carol.url
    sign_in(carol, "carol", "carol-second-pw")


def test_help_page_explains_the_words(portal, new_page, page_as, shot):
    page = new_page()
    page.goto("/help")  # anyone may read it
    assert page.get_by_role("heading", name="Help", exact=True).is_visible()
    words = page.locator(".glossary dt").all_inner_texts()
    assert words == [
        "store",
        "asset",
        "catalog",
        "job",
        "task",
        "job type",
        "analysis",
        "drop-box",
        "executor",
    ]
    states = page.locator("#states ~ .table-wrap tbody tr td:first-child").all_inner_texts()
    assert states == [
        "pending",
        "queued",
        "running",
        "up for retry",
        "up for reschedule",
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
    ]
    assert page.get_by_role("link", name="The API docs").get_attribute("href") == "/docs"
    assert page.get_by_role("link", name="Sign in").is_visible()
    signed_in = page_as("alice")
    signed_in.goto("/help")
    assert (
        signed_in.get_by_role("link", name="Help", exact=True).first.get_attribute("aria-current")
        == "page"
    )
    shot(signed_in, "help")


def test_unknown_pages_are_html_and_the_api_stays_json(portal, page_as):
    page = page_as("alice")
    with page.expect_response(lambda r: "/no-such-page" in r.url) as answer:
        page.goto("/no-such-page")
    assert answer.value.status == 404
    assert "There is no page at /no-such-page." in page.get_by_role("alert").inner_text()
    assert "Signed in as alice" in page.locator("header").inner_text()
    api = httpx.get(f"{portal.url}/api/v2/no-such-thing")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    root = httpx.get(portal.url + "/")
    assert root.status_code == 303 and root.headers["location"] == "/jobs"
    css = httpx.get(f"{portal.url}/static/ferry.css")
    assert css.status_code == 200 and ".state-up_for_retry" in css.text
