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
    start_session,
)
from neuroferry.db import api_tokens
from neuroferry.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized


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
    with pytest.raises(InvalidInput, match="allowed: admin, user, worker"):
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


def test_a_worker_account_is_neither_admin_nor_user_and_cannot_sign_in(engine):
    rig = create_user(engine, "rig-3", "worker", password="rig-3-long-secret")
    assert rig.is_worker and not rig.is_admin
    assert authenticate(engine, create_token(engine, rig)) == rig
    with pytest.raises(Forbidden, match="only admins may"):
        rig.require_admin("add users")
    with pytest.raises(Forbidden, match="worker account: it joins the Dask cluster"):
        start_session(engine, rig, 1)
    assert not create_user(engine, "frank").is_worker


def test_a_user_with_unfinished_jobs_is_not_removed(engine):
    from neuroferry.auth import delete_user
    from neuroferry.db import jobs

    admin = create_user(engine, "root-admin", "admin")
    bob = create_user(engine, "bob", "user")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for state in ("running", "succeeded"):
            conn.execute(
                jobs.insert().values(
                    kind="upload",
                    name=f"job-{state}",
                    owner_id=bob.id,
                    state=state,
                    spec={},
                    summary={},
                    created=now,
                    updated=now,
                )
            )
    with pytest.raises(Conflict, match=r"'bob' still has unfinished jobs \(1\); cancel them"):
        delete_user(engine, "bob", admin)
    assert get_user(engine, "bob") == bob  # still there, jobs still owned
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.state == "running").values(state="cancelled"))
    delete_user(engine, "bob", admin)
    with pytest.raises(NotFound):
        get_user(engine, "bob")
    with engine.connect() as conn:
        assert set(conn.execute(select(jobs.c.owner_id)).scalars()) == {None}
