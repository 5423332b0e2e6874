"""Passwords: scrypt hashes, the policy, checking one, setting one, and web sessions."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from neuroferry.auth import (
    SIGN_IN_FAILED,
    authenticate,
    check_password,
    check_password_policy,
    create_token,
    create_user,
    end_session,
    get_user,
    hash_password,
    list_tokens,
    set_password,
    start_session,
    token_info,
    verify_password,
)
from neuroferry.db import users
from neuroferry.errors import Forbidden, InvalidInput, NotFound, Unauthorized


def test_hash_is_self_describing_salted_scrypt():
    stored = hash_password("correct horse")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert hash_password("correct horse") != stored  # a new salt each time
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert not verify_password("", stored)
    # the format is what it says: anyone can check it with the standard library
    import base64

    def unb64(text):
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    expected = hashlib.scrypt(b"correct horse", salt=unb64(salt), n=16384, r=8, p=1, dklen=32)
    assert unb64(digest) == expected


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plain",
        "md5$1$2$3$4$5",
        "scrypt$x$8$1$aa$bb",
        "scrypt$1$8$1$aa$bb",
        "scrypt$4194304$8$1$aa$bb",
        "scrypt$16384$8$1$%%%$bb",
    ],
)
def test_malformed_or_unsafe_stored_forms_match_nothing(stored):
    assert verify_password("anything-at-all", stored) is False


def test_the_same_password_matches_composed_or_decomposed():
    stored = hash_password("Müller-secret")
    assert verify_password(unicodedata.normalize("NFD", "Müller-secret"), stored)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "password: 5 characters is too short; use at least 8"),
        ("", "password: 0 characters is too short"),
        ("x" * 1025, "password: 1025 characters is too long; at most 1024"),
        ("tab\there-ok", "password: control characters"),
        ("alice-lab", "password: must not be the user name"),
    ],
)
def test_policy_names_the_rule(password, message):
    with pytest.raises(InvalidInput, match=message):
        check_password_policy(password, "alice-lab")


def test_policy_accepts_long_phrases_and_any_script():
    for password in ("eight ch", "correct horse battery staple", "пароль-на-русском", "x" * 1024):
        assert check_password_policy(password, "alice") == password


def test_check_password_fails_alike_for_every_reason(engine):
    create_user(engine, "alice", password="alice-secret")
    create_user(engine, "tokens-only")
    assert check_password(engine, "alice", "alice-secret").name == "alice"
    for name, password in [
        ("alice", "wrong-secret"),
        ("nobody", "alice-secret"),
        ("tokens-only", ""),
        ("tokens-only", "anything-8"),
        ("../etc", "alice-secret"),
    ]:
        with pytest.raises(Unauthorized) as caught:
            check_password(engine, name, password)
        assert str(caught.value) == SIGN_IN_FAILED


def test_create_user_with_a_bad_password_creates_nothing(engine):
    with pytest.raises(InvalidInput, match="too short"):
        create_user(engine, "carol", password="short")
    with pytest.raises(NotFound):
        get_user(engine, "carol")
    create_user(engine, "carol", password="carol-secret")
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("scrypt$") and "carol-secret" not in stored


def test_own_password_needs_the_current_one_admins_reset_others(engine):
    admin = create_user(engine, "root", "admin", password="root-secret")
    alice = create_user(engine, "alice")
    bob = create_user(engine, "bob", password="bob-secret")
    set_password(engine, "alice", "alice-first", alice)  # none yet: no current one needed
    assert check_password(engine, "alice", "alice-first") == alice
    with pytest.raises(InvalidInput, match="current_password: give your current password"):
        set_password(engine, "alice", "alice-second", alice)
    with pytest.raises(Forbidden, match="current_password: that is not your current password"):
        set_password(engine, "alice", "alice-second", alice, current="alice-wrong")
    set_password(engine, "alice", "alice-second", alice, current="alice-first")
    assert check_password(engine, "alice", "alice-second") == alice
    with pytest.raises(Forbidden, match="only admins may set another user's password"):
        set_password(engine, "bob", "bob-stolen!", alice)
    set_password(engine, "bob", "bob-reset-by-admin", admin)
    assert check_password(engine, "bob", "bob-reset-by-admin") == bob
    with pytest.raises(InvalidInput, match="current_password"):  # admins too, for their own
        set_password(engine, "root", "root-second", admin)
    with pytest.raises(NotFound, match="no user is named 'nobody'"):
        set_password(engine, "nobody", "whatever-pw", admin)
    create_user(engine, "scientist")
    with pytest.raises(InvalidInput, match="must not be the user name"):
        set_password(engine, "scientist", "Scientist", admin)


def test_sessions_expire_end_and_end_with_a_password_change(engine):
    alice = create_user(engine, "alice", password="alice-secret")
    api_token = create_token(engine, alice, "laptop")
    info, first = start_session(engine, alice, 12, "Firefox on Linux")
    assert info.label == "web sign-in (Firefox on Linux)" and info.is_session
    assert info.expires is not None
    assert timedelta(hours=11.9) < info.expires - datetime.now(UTC) <= timedelta(hours=12)
    assert authenticate(engine, first) == alice
    assert token_info(engine, first).id == info.id and token_info(engine, "nf_x") is None
    _, second = start_session(engine, alice, 1, "bad\x00name\n")
    assert token_info(engine, second).label == "web sign-in (badname)"
    _, third = start_session(engine, alice, 1)

    set_password(engine, "alice", "alice-changed", alice, "alice-secret", keep_token=third)
    for ended in (first, second):
        with pytest.raises(Unauthorized, match="revoked"):
            authenticate(engine, ended)
    assert authenticate(engine, third) == alice  # the session that changed it
    assert authenticate(engine, api_token) == alice  # API tokens are not sessions

    assert end_session(engine, third) is True
    assert end_session(engine, third) is False
    with pytest.raises(Unauthorized):
        authenticate(engine, third)
    states = {t.label: t.state for t in list_tokens(engine, alice)}
    assert states["laptop"] == "active" and states["web sign-in (browser)"] == "revoked"
