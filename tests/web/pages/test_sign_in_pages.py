"""Signing in and out in a real browser: password, token, failures, ``next``, the session
cookie with its CSRF token, and the keyboard."""

from __future__ import annotations

import re

import httpx


def _csrf(page):
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def test_sign_in_with_password_goes_to_next_and_shows_the_user(portal, new_page, shot):
    page = new_page()
    page.goto("/tokens")
    assert re.search(r"/sign-in\?next=%2Ftokens$", page.url)  # signed out: sent to sign in
    shot(page, "sign-in")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(portal.accounts["alice"].password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{portal.url}/tokens")
    assert "Signed in as alice" in page.locator("header").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "ferry_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["expires"] > 0  # a session of session_hours, not until the browser closes
    tokens = portal.api("GET", "/tokens", "alice").json()
    assert any(t["label"] == "web sign-in (Chrome on Linux)" for t in tokens), tokens


def test_sign_in_with_a_token(portal, new_page):
    page = new_page()
    page.goto("/sign-in?next=/help")
    page.get_by_label("API token").fill(portal.accounts["bob"].token)
    page.get_by_role("button", name="Sign in with the token").click()
    page.wait_for_url(f"{portal.url}/help")
    assert "Signed in as bob" in page.locator("header").inner_text()
    # the session is a token of its own: signing out leaves bob's API token working
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign-in\?signed_out=1$"))
    assert page.get_by_role("status").inner_text() == "You are signed out."
    assert portal.api("GET", "/users/me", "bob").status_code == 200


def test_wrong_password_unknown_user_and_bad_token_fail_alike(new_page):
    page = new_page()
    page.goto("/sign-in")
    messages = []
    for name, password in [("alice", "not-her-password"), ("nobody", "whatever-pw")]:
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password", exact=True).fill(password)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Sign in", exact=True).click()
        assert answer.value.status == 401
        messages.append(page.get_by_role("alert").inner_text())
        assert page.get_by_label("Password", exact=True).input_value() == ""  # never echoed
        assert page.get_by_label("User name").input_value() == name
    page.get_by_label("API token").fill("nf_not-a-token")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in with the token").click()
    assert answer.value.status == 401
    messages.append(page.get_by_role("alert").inner_text())
    assert messages == ["wrong user name, password or token"] * 3
    assert not [c for c in page.context.cookies() if c["name"] == "ferry_session"]


def test_next_must_be_a_path_of_this_site(portal, new_page, sign_in):
    page = new_page()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page.goto(f"/sign-in?next={target}")
        assert page.locator('input[name="next"]').first.get_attribute("value") == "/jobs"
    page.goto("/sign-in?next=//evil.example/x")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(portal.accounts["alice"].password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{portal.url}/jobs")  # not evil.example


def test_sign_out_revokes_the_session_token(portal, new_page, sign_in):
    page = sign_in(new_page(), "alice")
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "ferry_session")
    assert httpx.get(f"{portal.url}/tokens", cookies={"ferry_session": session}).status_code == 200
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign-in\?signed_out=1$"))
    assert not [c for c in page.context.cookies() if c["name"] == "ferry_session"]
    old = httpx.get(f"{portal.url}/tokens", cookies={"ferry_session": session})
    assert old.status_code == 303 and old.headers["location"].startswith("/sign-in")
    api = httpx.get(f"{portal.url}/api/v2/users/me", headers={"Authorization": f"Bearer {session}"})
    assert api.status_code == 401 and "revoked" in api.json()["detail"]


def test_page_scripts_call_the_api_with_the_cookie_and_the_csrf_token(portal, page_as):
    page = page_as("bob")
    page.goto("/help")
    plain = page.evaluate(
        """() => fetch('/api/v2/tokens', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json'}, body: '{"label": "x"}'})
              .then(async r => [r.status, (await r.json()).detail])"""
    )
    assert plain[0] == 403 and "CSRF token is missing or wrong" in plain[1]
    wrong = page.evaluate(
        """() => fetch('/api/v2/tokens', {method: 'POST', headers: {'X-CSRF-Token': 'f00',
              'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)"""
    )
    assert wrong == 403
    made = page.evaluate("() => ferry.api('POST', '/tokens', {label: 'from a page script'})")
    assert made["user"] == "bob" and made["token"].startswith("nf_")
    me = page.evaluate("() => ferry.api('GET', '/users/me')")  # GET needs no CSRF token
    assert me["name"] == "bob"
    failure = page.evaluate(
        """() => ferry.api('POST', '/tokens', {expires_in_days: 0})
              .catch(e => [e.name, e.status, e.message])"""
    )
    assert failure[:2] == ["ApiError", 422] and "expires_in_days" in failure[2]
    # the same API through a token needs no CSRF token
    assert portal.api("POST", "/tokens", "bob", json={"label": "script"}).status_code == 201
    portal.api("DELETE", f"/tokens/{made['id']}", "bob")


def test_signed_out_pages_send_the_browser_to_sign_in(new_page):
    page = new_page()
    page.goto("/users?x=1")
    assert page.url.endswith("/sign-in?next=%2Fusers%3Fx%3D1")
    assert page.get_by_role("heading", name="Sign in", exact=True).is_visible()


def test_the_sign_in_form_works_with_the_keyboard_alone(portal, new_page):
    page = new_page()
    page.goto("/sign-in?next=/help")
    focused = page.evaluate("() => document.activeElement.id")
    assert focused == "f-name"  # the user name field has the focus at once
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "f-password"
    page.keyboard.type(portal.accounts["alice"].password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{portal.url}/help")
    # the first Tab reaches the skip link, which moves the focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"


def test_csrf_token_of_a_page_form_is_checked(portal, page_as):
    page = page_as("alice")
    page.goto("/tokens")
    token = _csrf(page)
    assert token and len(token) == 64
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{portal.url}/tokens", data={"label": "forged"}, cookies=cookies)
    assert forged.status_code == 403 and "CSRF token" in forged.text
    assert "<html" in forged.text  # a page, not JSON
    assert not [t for t in portal.api("GET", "/tokens", "alice").json() if t["label"] == "forged"]
