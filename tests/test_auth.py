import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from neuroferry.auth import (
    authenticate,
    create_token,
    create_user,
    ensure_first_admin,
    get_user,
    hash_token,
    revoke_tokens,
)
from neuroferry.db import api_tokens, make_engine, upgrade
from neuroferry.errors import Forbidden, InvalidInput, NotFound, Unauthorized


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_token_authenticates_its_user_and_only_its_hash_is_stored(engine):
    alice = create_user(engine, "alice", "user", "alice@lab.example.org")
    token = create_token(engine, alice, "laptop")
    assert token.startswith("nf_") and len(token) > 40
    assert authenticate(engine, token) == alice
    with engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.hash)).scalars().all()
    assert stored == [hash_token(token)] and token not in stored


@pytest.mark.parametrize("token", [None, "", "nf_not-a-real-token"])
def test_missing_or_unknown_token_is_unauthorized(engine, token):
    with pytest.raises(Unauthorized):
        authenticate(engine, token)


def test_revoked_and_expired_tokens_are_refused(engine):
    bob = create_user(engine, "bob")
    live = create_token(engine, bob)
    old = create_token(engine, bob, expires=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        authenticate(engine, old)
    assert revoke_tokens(engine, bob) == 2
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(engine, live)


def test_roles_and_names_are_checked(engine):
    with pytest.raises(InvalidInput, match="allowed: admin, user"):
        create_user(engine, "carol", "root")
    with pytest.raises(InvalidInput, match="must be 1 to 128 letters"):
        create_user(engine, "../etc")
    create_user(engine, "dave")
    with pytest.raises(InvalidInput, match="already exists"):
        create_user(engine, "dave")
    with pytest.raises(Forbidden, match="only admins may change the catalog"):
        get_user(engine, "dave").require_admin("change the catalog")
    with pytest.raises(NotFound):
        get_user(engine, "erin")


def test_first_admin_is_created_once_with_a_private_token_file(engine, tmp_path):
    path = ensure_first_admin(engine, tmp_path)
    assert path == tmp_path / "token.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    admin = authenticate(engine, saved["token"])
    assert (admin.name, admin.is_admin, saved["user"]) == ("admin", True, "admin")
    assert ensure_first_admin(engine, tmp_path) is None  # users exist: nothing happens
    assert json.loads(path.read_text()) == saved
    path.chmod(0o644)  # a copy others may read is made private again at the next start
    assert ensure_first_admin(engine, tmp_path) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text()) == saved


def test_first_admin_never_overwrites_a_token_file_of_a_lost_database(engine, tmp_path):
    from neuroferry.errors import ConfigError

    kept = tmp_path / "token.json"
    kept.write_text('{"user": "admin", "token": "nf_of_the_lost_database"}')
    with pytest.raises(ConfigError, match=r"token\.json exists, but the database has no users"):
        ensure_first_admin(engine, tmp_path)
    assert kept.read_text() == '{"user": "admin", "token": "nf_of_the_lost_database"}'
    with engine.connect() as conn:  # and no admin without a token file was left behind
        assert conn.execute(select(api_tokens)).first() is None


def test_first_admin_token_file_is_private_whatever_the_umask(engine, tmp_path):
    import os

    old = os.umask(0)
    try:
        path = ensure_first_admin(engine, tmp_path)
    finally:
        os.umask(old)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
