"""Web sessions over HTTP (in process, SQLite and PostgreSQL): sign-in, the cookie, CSRF,
sign-out, expiry, the throttle, HTML errors for pages, and the password API."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from neuroferry.auth import create_token, create_user, hash_token
from neuroferry.config import get_settings
from neuroferry.db import api_tokens
from neuroferry.services import Services
from neuroferry.web import create_app
from neuroferry.web._deps import csrf_token
from neuroferry.web.pages._throttle import Busy, Throttle, sign_in_keys

PASSWORD = "alice-secret-pw"


@pytest.fixture
def held(database_url, tmp_path):
    settings = get_settings(database_url=database_url, store_url=tmp_path.as_uri(), session_hours=2)
    services = Services.start(settings, orchestrate=False)
    create_user(services.engine, "alice", password=PASSWORD)
    create_user(services.engine, "root", "admin", password="root-secret-pw")
    yield services


@pytest.fixture
def web(held):
    with TestClient(create_app(held.settings, held), follow_redirects=False) as client:
        yield client


def sign_in(client, name="alice", password=PASSWORD, headers=None, **extra):
    data = {"name": name, "password": password, **extra}
    return client.post("/sign-in", data=data, headers=headers)


def session_of(client):
    return client.cookies["ferry_session"]


def test_sign_in_sets_a_strict_cookie_that_lasts_session_hours(web, held):
    answer = sign_in(web, next="/tokens?x=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/tokens?x=1"
    cookie = answer.headers["set-cookie"]
    for part in ("HttpOnly", "Max-Age=7200", "Path=/", "SameSite=lax"):
        assert part in cookie
    assert "Secure" not in cookie  # plain http in development mode
    token = session_of(web)
    assert token.startswith("nf_") and answer.headers["cache-control"] == "no-store"
    mine = web.get("/api/v2/tokens").json()  # the cookie works for the API's GETs
    session = next(t for t in mine if t["label"].startswith("web sign-in ("))
    expires = datetime.fromisoformat(session["expires"])
    assert timedelta(hours=1.9) < expires - datetime.now(UTC) <= timedelta(hours=2)


def test_the_cookie_is_secure_over_https_and_in_production(held, tmp_path):
    app = create_app(held.settings, held)
    with TestClient(app, base_url="https://ferry.example", follow_redirects=False) as client:
        assert "Secure" in sign_in(client).headers["set-cookie"]
    held.settings.mode = "production"
    with TestClient(app, follow_redirects=False) as client:
        assert "Secure" in sign_in(client).headers["set-cookie"]


def test_next_only_goes_to_a_path_of_this_site(web):
    for target, lands in [
        ("/jobs?state=running", "/jobs?state=running"),
        ("https://evil.example/", "/jobs"),
        ("//evil.example", "/jobs"),
        ("/\\evil.example", "/jobs"),
        ("http:/evil.example", "/jobs"),
        ("javascript:alert(1)", "/jobs"),
        ("/jobs\r\nSet-Cookie: x=1", "/jobs"),
        ("", "/jobs"),
    ]:
        assert sign_in(web, next=target).headers["location"] == lands, target


def test_a_sign_in_form_sent_from_another_site_is_refused(web):
    for site in ("cross-site", "same-site"):
        answer = sign_in(web, headers={"sec-fetch-site": site})
        assert answer.status_code == 403 and "ferry_session" not in web.cookies
        assert "sign in on the sign-in page of this site" in answer.text
    # a browser without Sec-Fetch-Site still says where the form came from
    for origin in ("https://evil.example.org", "null"):
        answer = sign_in(web, headers={"origin": origin})
        assert answer.status_code == 403 and "ferry_session" not in web.cookies
    assert sign_in(web, headers={"sec-fetch-site": "same-origin"}).status_code == 303
    web.cookies.clear()
    host = web.base_url.netloc.decode()
    assert sign_in(web, headers={"origin": f"{web.base_url.scheme}://{host}"}).status_code == 303


def test_failed_sign_ins_are_generic_401_pages_and_set_nothing(web):
    for data in (
        {"name": "alice", "password": "wrong-password"},
        {"name": "nobody", "password": PASSWORD},
        {"token": "nf_unknown"},
        {},
    ):
        answer = web.post("/sign-in", data=data)
        assert answer.status_code == 401, data
        assert "wrong user name, password or token" in answer.text
        assert "set-cookie" not in answer.headers


def test_token_sign_in_makes_a_session_of_its_own(web, held):
    root = create_token(held.engine, create_user(held.engine, "bob"), "laptop")
    answer = web.post("/sign-in", data={"token": root}, headers={"user-agent": "Firefox/140"})
    assert answer.status_code == 303
    assert session_of(web) != root
    labels = [t["label"] for t in web.get("/api/v2/tokens").json()]
    assert labels == ["laptop", "web sign-in (Firefox)"]


def test_cookie_requests_that_change_something_need_the_csrf_token(web, held):
    sign_in(web)
    csrf = csrf_token(session_of(web))
    refused = web.post("/api/v2/tokens", json={"label": "x"})
    assert refused.status_code == 403
    assert "CSRF token is missing or wrong" in refused.json()["detail"]
    wrong = web.post("/api/v2/tokens", json={}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    made = web.post("/api/v2/tokens", json={"label": "x"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    gone = web.delete(f"/api/v2/tokens/{made.json()['id']}", headers={"X-CSRF-Token": csrf})
    assert gone.status_code == 204
    # a page form carries it in the csrf_token field
    page = web.get("/tokens")
    assert f'name="csrf_token" value="{csrf}"' in page.text
    form = web.post("/tokens", data={"label": "from the form", "csrf_token": csrf})
    assert form.status_code == 201 and "from the form" in form.text
    forged = web.post("/tokens", data={"label": "forged"})
    assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")


def test_bearer_tokens_need_no_csrf_token_even_with_a_cookie(web, held):
    sign_in(web)
    token = create_token(held.engine, create_user(held.engine, "script"))
    made = web.post(
        "/api/v2/tokens", json={"label": "y"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert made.status_code == 201 and made.json()["user"] == "script"
    bad = web.get("/api/v2/users/me", headers={"Authorization": "Bearer nf_bad"})
    assert bad.status_code == 401  # a wrong token is not rescued by the cookie


def test_sign_out_needs_the_csrf_token_and_revokes_the_session(web):
    sign_in(web)
    session = session_of(web)
    assert web.post("/sign-out").status_code == 403
    assert web.get("/api/v2/users/me").status_code == 200
    out = web.post("/sign-out", data={"csrf_token": csrf_token(session)})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in?signed_out=1"
    assert 'ferry_session=""' in out.headers["set-cookie"]
    assert "ferry_session" not in web.cookies
    old = {"Authorization": f"Bearer {session}"}
    assert web.get("/api/v2/users/me", headers=old).status_code == 401
    page = web.get("/tokens", cookies={"ferry_session": session})
    assert page.status_code == 303 and page.headers["location"] == "/sign-in?next=%2Ftokens"
    assert 'ferry_session=""' in page.headers["set-cookie"]  # the dead cookie is dropped
    assert web.post("/sign-out").status_code == 303  # signed out already: fine


def test_an_expired_session_sends_pages_to_sign_in(web, held):
    sign_in(web)
    with held.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.hash == hash_token(session_of(web)))
            .values(expires=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert "expired" in web.get("/api/v2/users/me").json()["detail"]
    page = web.get("/tokens?revoked=3")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=%2Ftokens%3Frevoked%3D3"
    assert "ferry_session" not in web.cookies  # the dead cookie is dropped
    assert web.get("/sign-in").status_code == 200  # the form, not a loop


def test_an_attempt_too_soon_after_a_failure_is_refused_unchecked(web):
    assert sign_in(web, password="wrong-password").status_code == 401
    refused = sign_in(web)  # the right password, but within the wait: not even checked
    assert refused.status_code == 429 and "too many sign-in attempts" in refused.text
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 8
    time.sleep(wait)
    assert sign_in(web).status_code == 303
    web.cookies.clear()
    assert sign_in(web).status_code == 303  # success forgets the failures


def test_throttle_turns_are_shared_grow_with_failures_and_are_forgotten(held):
    throttle = Throttle(held.engine, step=0.5, most=2.0, hold=30, window=60)
    other = Throttle(held.engine, step=0.5, most=2.0)  # another process, same database
    keys = sign_in_keys(" Alice ", "10.0.0.1")
    assert keys == ["user:alice", "address:10.0.0.1"]  # names first, in every process
    assert sign_in_keys("alice", "10.0.0.1", token=True) == ["address:10.0.0.1"]
    throttle.take(keys)
    with pytest.raises(Busy) as busy:  # the turn is held while the password is checked
        other.take(sign_in_keys("ALICE", "10.0.0.2"))
    assert 29 < busy.value.wait <= 30 and busy.value.held and busy.value.key == "user:alice"
    with pytest.raises(Busy) as busy:  # another name from the same address: held too
        other.take(sign_in_keys("carol", "10.0.0.1"))
    assert busy.value.held and busy.value.key == "address:10.0.0.1"
    other.take(sign_in_keys("bob", "10.0.0.2"))  # other names and addresses are free
    for expected in (0.5, 1.0, 1.5, 2.0, 2.0):
        throttle.failed(keys)
        with pytest.raises(Busy) as busy:
            other.take(keys)
        assert expected - 0.2 < busy.value.wait <= expected and not busy.value.held
        time.sleep(expected)
        throttle.take(keys)
    throttle.succeeded(keys)  # the name's failures are forgotten, the address's turn freed
    other.take(keys)
    other.failed(keys)
    with pytest.raises(Busy) as busy:
        throttle.take(["user:alice"])
    assert busy.value.wait <= 0.5  # the name starts again from one failure
    with pytest.raises(Busy) as busy:
        throttle.take(["address:10.0.0.1"])
    assert 1.5 < busy.value.wait <= 2.0  # the address keeps its recent failures
    throttle.release(keys)
    throttle.take(keys)  # given back unused: free at once


def test_throttle_forgets_failures_after_its_window(held):
    throttle = Throttle(held.engine, step=1.0, most=5.0, window=1.0)
    keys = ["user:carol"]
    throttle.take(keys)
    for _ in range(3):
        throttle.failed(keys)
    with pytest.raises(Busy) as busy:
        throttle.take(keys)
    assert 2.5 < busy.value.wait <= 3.0
    time.sleep(3.1)
    throttle.take(keys)  # the failures are older than the window: counting starts again
    throttle.failed(keys)
    with pytest.raises(Busy) as busy:
        throttle.take(keys)
    assert busy.value.wait <= 1.0


def test_page_errors_are_html_and_api_errors_stay_json(web):
    sign_in(web)
    bad = web.get("/sign-in?signed_out=perhaps")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "signed_out" in bad.text and "Not accepted" in bad.text
    assert "default-src 'self'" in bad.headers["content-security-policy"]
    missing = web.post("/tokens/999/revoke", data={"csrf_token": csrf_token(session_of(web))})
    assert missing.status_code == 404 and "you have no token with id 999" in missing.text
    api = web.get("/api/v2/jobs?limit=abc")
    assert api.status_code == 422 and api.headers["content-type"] == "application/json"
    assert web.get("/metrics/nope").headers["content-type"] == "application/json"
    assert "/sign-in" not in web.get("/openapi.json").text  # pages stay out of the API schema


def bearer(held, name):
    from neuroferry.auth import get_user

    return {"Authorization": f"Bearer {create_token(held.engine, get_user(held.engine, name))}"}


def test_password_api_self_with_the_current_one_or_admins(web, held):
    alice, root = bearer(held, "alice"), bearer(held, "root")
    url = "/api/v2/users/alice/password"
    answer = web.put(url, json={"password": "alice-next-pw"}, headers=alice)
    assert answer.status_code == 422
    assert "current_password: give your current password" in answer.json()["detail"]
    answer = web.put(
        url, json={"password": "alice-next-pw", "current_password": "nope"}, headers=alice
    )
    assert answer.status_code == 403 and "not your current password" in answer.json()["detail"]
    answer = web.put(url, json={"password": "short", "current_password": PASSWORD}, headers=alice)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("password: 5")
    answer = web.put(
        url, json={"password": "alice-next-pw", "current_password": PASSWORD}, headers=alice
    )
    assert answer.status_code == 204
    assert sign_in(web, password="alice-next-pw").status_code == 303
    answer = web.put("/api/v2/users/root/password", json={"password": "x" * 9}, headers=alice)
    assert answer.status_code == 403 and "only admins may" in answer.json()["detail"]
    assert web.put(url, json={"password": "reset-by-root"}, headers=root).status_code == 204
    assert sign_in(web, password="reset-by-root").status_code == 303
    answer = web.put("/api/v2/users/nobody/password", json={"password": "x" * 9}, headers=root)
    assert answer.status_code == 404
    answer = web.put(url, json={"password": "x" * 9, "colour": "red"}, headers=root)
    assert answer.status_code == 422
    web.cookies.clear()
    assert web.put(url, json={"password": "x" * 9}).status_code == 401


def test_users_api_adds_users_with_a_password_atomically(web, held):
    root = bearer(held, "root")
    refused = web.post("/api/v2/users", json={"name": "carol", "password": "short"}, headers=root)
    assert refused.status_code == 422 and "password: 5 characters" in refused.json()["detail"]
    assert web.get("/api/v2/users", headers=root).json()[0]["name"] == "alice"
    assert "carol" not in [u["name"] for u in web.get("/api/v2/users", headers=root).json()]
    made = web.post(
        "/api/v2/users", json={"name": "carol", "password": "carol-secret"}, headers=root
    )
    assert made.status_code == 201 and made.json()["has_password"] is True
    listed = {u["name"]: u["has_password"] for u in web.get("/api/v2/users", headers=root).json()}
    assert listed == {"alice": True, "carol": True, "root": True}
    assert sign_in(web, "carol", "carol-secret").status_code == 303
    assert re.fullmatch(r"nf_\S+", session_of(web))


def test_an_invalid_api_request_does_not_echo_what_was_sent(web, held):
    from neuroferry.auth import create_token, get_user

    token = create_token(held.engine, get_user(held.engine, "alice"), "echo test")
    secret = "s3cr3t-" + "x" * 2000
    answer = web.post(
        "/api/v2/tokens",
        json={"label": secret},  # longer than a label may be
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "label"]
    assert secret not in answer.text
