"""Drop-boxes and groups in the database: admins only, names checked, members must exist,
the service's own files refused, users see only their groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from neuroferry.auth import create_user
from neuroferry.config import get_settings
from neuroferry.dropbox import add_group, get_dropbox, list_dropboxes, publish_dropbox
from neuroferry.errors import Forbidden, InvalidInput, NotFound


def test_admins_publish_and_add_groups_users_see_their_groups(
    engine: Engine, tmp_path: Path
) -> None:
    settings = get_settings()
    admin = create_user(engine, "root", "admin")
    alice, bob = create_user(engine, "alice"), create_user(engine, "bob")
    with pytest.raises(Forbidden, match="only admins may publish drop-boxes"):
        publish_dropbox(engine, settings, alice, "box", "file-summary", str(tmp_path))
    box = publish_dropbox(engine, settings, admin, "box", "file-summary", str(tmp_path))
    assert box.store_url == tmp_path.as_uri() and box.owner == "root"
    with pytest.raises(InvalidInput, match="a drop-box named 'box' already exists"):
        publish_dropbox(engine, settings, admin, "box", "file-summary", str(tmp_path))
    with pytest.raises(InvalidInput, match="'a/b' is not a valid name"):
        publish_dropbox(engine, settings, admin, "a/b", "file-summary", str(tmp_path))
    with pytest.raises(InvalidInput, match="unknown analysis 'nope'"):
        publish_dropbox(engine, settings, admin, "other", "nope", str(tmp_path))
    with pytest.raises(NotFound, match="does not exist"):
        publish_dropbox(engine, settings, admin, "other", "file-summary", str(tmp_path / "no"))
    with pytest.raises(Forbidden, match="home folder"):
        publish_dropbox(engine, settings, admin, "other", "file-summary", str(settings.home))

    with pytest.raises(Forbidden, match="only admins may add drop-box groups"):
        add_group(engine, settings, alice, "g1", "box", ["alice"])
    with pytest.raises(NotFound, match="no user is named 'carol'"):
        add_group(engine, settings, admin, "g1", "box", ["alice", "carol"])
    with pytest.raises(NotFound, match="no drop-box is named 'nobox'"):
        add_group(engine, settings, admin, "g1", "nobox", [])
    add_group(engine, settings, admin, "g1", "box", ["alice", "alice"])
    add_group(engine, settings, admin, "g2", "box", ["bob", "alice"])
    with pytest.raises(InvalidInput, match="has a group 'g1' already"):
        add_group(engine, settings, admin, "g1", "box", [])
    assert sorted(p.name for p in (tmp_path / "g2").iterdir()) == [
        "configs",
        "inputs",
        "results",
        "submissions",
    ]

    every = get_dropbox(engine, "box")
    assert [(g.name, g.members) for g in every.groups] == [
        ("g1", ("alice",)),
        ("g2", ("alice", "bob")),
    ]
    [mine] = list_dropboxes(engine, bob)
    assert [g.name for g in mine.groups] == ["g2"]
    assert len(list_dropboxes(engine, alice)[0].groups) == 2
    assert list_dropboxes(engine, create_user(engine, "carol")) == []
