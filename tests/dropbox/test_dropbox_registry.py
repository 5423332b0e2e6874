"""Drop-boxes and groups in the database: admins only, names checked, members must exist,
the service's own files refused, users see only their groups."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from neuroferry.auth import create_user
from neuroferry.config import get_settings
from neuroferry.dropbox import (
    Dropbox,
    Group,
    add_group,
    delete_group_file,
    get_dropbox,
    group_files,
    group_policy,
    list_dropboxes,
    list_group_files,
    publish_dropbox,
    read_group_file,
    write_group_file,
)
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


NOW = datetime.now(UTC)
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "neurocaas"


def test_a_groups_policy_is_the_originals(tmp_path: Path) -> None:
    path = FIXTURES / "platform" / "user_policy_example.json"
    if not path.is_file():
        pytest.skip(f"the original's policy sample is not available ({path})")
    original = json.loads(path.read_text())
    listing = original["Statement"][3]["Condition"]["StringEquals"]["s3:prefix"]
    listing.remove("logs")  # the original's own folder: nothing a group lists here

    group = Group(1, "user1")
    box = Dropbox(1, "caiman", "file-summary", "s3://caiman-ncap-web", None, None, NOW, (group,))
    assert group_policy(box, "user1") == original

    inside = replace(box, store_url="s3://lab/boxes/caiman")
    policy = group_policy(inside, "user1")
    assert policy["Statement"][3]["Condition"]["StringEquals"]["s3:prefix"][:4] == [
        "",
        "boxes/",
        "boxes/caiman/",
        "boxes/caiman/user1/",
    ]
    assert policy["Statement"][5]["Resource"][0] == "arn:aws:s3:::lab/boxes/caiman/user1/inputs/*"
    with pytest.raises(InvalidInput, match="has no group 'user2'"):
        group_policy(box, "user2")
    with pytest.raises(InvalidInput, match="only an s3:// drop-box has a bucket policy"):
        group_policy(replace(box, store_url=tmp_path.as_uri()), "user1")


def test_members_reach_only_their_folder_and_inputs_are_not_read_back(
    engine: Engine, tmp_path: Path
) -> None:
    settings = get_settings()
    admin = create_user(engine, "root", "admin")
    alice = create_user(engine, "alice")
    create_user(engine, "bob")
    publish_dropbox(engine, settings, admin, "box", "file-summary", str(tmp_path))
    add_group(engine, settings, admin, "g1", "box", ["alice"])
    add_group(engine, settings, admin, "g2", "box", ["bob"])
    mine = group_files(engine, settings, alice, "box", None)
    assert mine.group == "g1"
    with pytest.raises(Forbidden, match="'g2' is not a group of drop-box 'box' of yours"):
        group_files(engine, settings, alice, "box", "g2")
    with pytest.raises(NotFound, match="no drop-box is named 'box' for you"):
        group_files(engine, settings, create_user(engine, "carol"), "box", None)

    write_group_file(mine, "inputs/a.bin", b"data")
    write_group_file(mine, "configs/c.yaml", b"bins: 2\n")
    assert (tmp_path / "g1/inputs/a.bin").read_bytes() == b"data"
    with pytest.raises(Forbidden, match="downloading is not allowed in inputs/"):
        read_group_file(mine, "inputs/a.bin")
    assert read_group_file(mine, "configs/c.yaml") == b"bins: 2\n"
    with pytest.raises(Forbidden, match="uploading is not allowed in results/"):
        write_group_file(mine, "results/forged.txt", b"x")
    for bad in ("../g2/inputs/x", "inputs/../../g2/x", "elsewhere/x", "inputs"):
        with pytest.raises(InvalidInput):
            write_group_file(mine, bad, b"x")
    with pytest.raises(InvalidInput, match=r"prefix: '\.\./g2' has the segment '\.\.'"):
        list_group_files(mine, "../g2/")
    with pytest.raises(InvalidInput, match="not inside the group's folders"):
        list_group_files(mine, "elsewhere/")
    assert [f["path"] for f in list_group_files(mine, "inputs/")] == ["inputs/a.bin"]
    delete_group_file(mine, "inputs/a.bin")
    with pytest.raises(NotFound):
        delete_group_file(mine, "inputs/a.bin")
    admins = group_files(engine, settings, admin, "box", "g2")  # admins reach every group
    assert list_group_files(admins) == []
