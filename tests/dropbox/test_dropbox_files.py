"""A group's files through the service in a local-folder drop-box: a symbolic link never
leads a member out of the group's folder, and bad paths are told apart from the
service's own troubles, without naming where the drop-box lies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from neuroferry.auth import create_user
from neuroferry.config import get_settings
from neuroferry.dropbox import (
    GroupFiles,
    add_group,
    delete_group_file,
    group_files,
    list_group_files,
    publish_dropbox,
    read_group_file,
    submit,
    submit_file,
    write_group_file,
)
from neuroferry.errors import Conflict, Forbidden, InvalidInput, NotFound


@pytest.fixture
def mine(engine: Engine, tmp_path: Path) -> GroupFiles:
    settings = get_settings()
    admin = create_user(engine, "root", "admin")
    alice = create_user(engine, "alice")
    publish_dropbox(engine, settings, admin, "box", "file-summary", str(tmp_path))
    add_group(engine, settings, admin, "g1", "box", ["alice"])
    add_group(engine, settings, admin, "g2", "box", [])
    (tmp_path / "g2/inputs/secret.txt").write_text("SECRET")
    return group_files(engine, settings, alice, "box", None)


def test_a_symbolic_link_out_of_the_group_folder_is_not_followed(
    mine: GroupFiles, tmp_path: Path
) -> None:
    secret = tmp_path / "g2/inputs/secret.txt"
    os.symlink(secret, tmp_path / "g1/results/link")
    os.symlink(tmp_path / "g2/inputs", tmp_path / "g1/results/other")
    with pytest.raises(Forbidden, match="path: results/link leads outside the group's folder"):
        read_group_file(mine, "results/link")
    with pytest.raises(Forbidden, match=r"results/other/secret\.txt leads outside"):
        read_group_file(mine, "results/other/secret.txt")
    with pytest.raises(Forbidden, match="leads outside"):
        delete_group_file(mine, "results/other/secret.txt")
    os.symlink(tmp_path / "g2", tmp_path / "g1/inputs/up")
    with pytest.raises(Forbidden, match="leads outside"):
        write_group_file(mine, "inputs/up/inputs/forged.txt", b"x")
    assert secret.read_text() == "SECRET"
    assert not (tmp_path / "g2/inputs/forged.txt").exists()
    # a link inside the group's own folder is read
    write_group_file(mine, "configs/c.yaml", b"a: 1\n")
    os.symlink(tmp_path / "g1/configs/c.yaml", tmp_path / "g1/results/mine")
    assert read_group_file(mine, "results/mine") == b"a: 1\n"


def test_bad_paths_are_named_without_the_service_folders(mine: GroupFiles, tmp_path: Path) -> None:
    where = str(tmp_path)
    write_group_file(mine, "inputs/a", b"x")
    write_group_file(mine, "inputs/d/f", b"x")
    bad = [
        (lambda: write_group_file(mine, "inputs/a/b", b"y"), Conflict, "path: inputs/a/b"),
        (lambda: write_group_file(mine, "inputs/d", b"y"), Conflict, "path: inputs/d "),
        (lambda: write_group_file(mine, "inputs/" + "a" * 300, b"x"), InvalidInput, "255"),
        (lambda: list_group_files(mine, "inputs/./"), InvalidInput, "prefix: 'inputs/.'"),
        (lambda: list_group_files(mine, "inputs/\x01"), InvalidInput, "prefix: "),
        (lambda: read_group_file(mine, "results/none"), NotFound, "path: results/none"),
        (lambda: delete_group_file(mine, "results/none"), NotFound, "path: results/none"),
    ]
    for call, kind, message in bad:
        with pytest.raises(kind) as caught:
            call()
        assert message in str(caught.value) and where not in str(caught.value)
    assert (tmp_path / "g1/inputs/a").read_bytes() == b"x"


def test_the_submit_file_is_checked_naming_its_field(mine: GroupFiles, tmp_path: Path) -> None:
    made = submit_file("box", "g1", ["a.h5", "g1/inputs/b.h5", "inputs/d/c.h5"], "c.yaml", "7")
    assert made.path == "submissions/7_submit.json" and made.results == "results/job__box_7"
    assert json.loads(made.body) == {
        "dataname": ["g1/inputs/a.h5", "g1/inputs/b.h5", "g1/inputs/d/c.h5"],
        "configname": "g1/configs/c.yaml",
        "timestamp": "7",
    }
    assert submit_file("box", "g1", ["a"], "c.json").timestamp.isdigit()  # now
    bad = [
        (([], "c.yaml", None), "data: choose at least one file of inputs/"),
        ((["../x"], "c.yaml", None), "data: 'inputs/../x' has the segment '..'"),
        ((["a"], " ", None), "config: choose a config file"),
        ((["a"], "c.txt", None), "config: configs/c.txt is neither .json nor .yaml/.yml"),
        ((["a"], "c.yml", "a/b"), "timestamp: 'a/b' cannot name a folder: it holds '/'"),
        ((["a"], "c.yml", "x" * 300), "timestamp: 'xxxx"),
    ]
    for args, message in bad:
        with pytest.raises(InvalidInput) as caught:
            submit_file("box", "g1", *args)
        assert str(caught.value).startswith(message), caught.value

    written = submit(mine, ["a.h5"], "c.yaml", "run1")
    assert (tmp_path / "g1" / written.path).read_bytes() == written.body
    with pytest.raises(InvalidInput, match="timestamp: 'run1' names a submission of your group"):
        submit(mine, ["b.h5"], "c.yaml", "run1")
    (tmp_path / "g1/results/job__box_run2/logs").mkdir(parents=True)
    (tmp_path / "g1/results/job__box_run2/logs/certificate.txt").write_text("x")
    with pytest.raises(InvalidInput, match="timestamp: 'run2' names a submission"):
        submit(mine, ["b.h5"], "c.yaml", "run2")
    assert not (tmp_path / "g1/submissions/run2_submit.json").exists()
