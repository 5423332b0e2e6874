"""What a job may touch: normalisation of paths and store URLs, and the grants table."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroferry.config import Settings, get_settings
from neuroferry.errors import ConfigError, Forbidden, UnsafePath
from neuroferry.grants import Access, access_for, internal_access, normalise_path, normalise_url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        ("S3://Bucket//a/./b/", "s3://bucket/a/b"),
        ("s3://bucket/a/b/../c", "s3://bucket/a/c"),
        ("s3://bucket/a%2fb", "s3://bucket/a/b"),
        ("s3://bucket/a%252fb/..", "s3://bucket/a"),
        ("file:///data/x/%2e%2e/y", "file:///data/y"),
        ("file://localhost/data//x", "file:///data/x"),
        ("file:///data/a%20b", "file:///data/a b"),
        ("/data/./x/", "file:///data/x"),
        ("memory://logs", "memory://logs"),
    ],
)
def test_urls_are_decoded_and_normalised(url: str, canonical: str) -> None:
    assert normalise_url("f", url) == canonical


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://bucket/..", "climbs above its root"),
        ("s3://bucket/a/%2e%2e/%2E%2E/other", "climbs above its root"),
        ("s3://bucket/%25252e%25252e/x", "climbs above its root"),
        ("file:///%2e%2e/etc", "climbs above its root"),
        ("s3://bucket/a%00b", "control character"),
        ("s3://bucket/a\nb", "control character"),
        ("s3://bucket/a?x=1", "query"),
        ("s3://bucket/a#b", "fragment"),
        ("s3://user@bucket/a", "without a user"),
        ("file://otherhost/data", "names host"),
        ("relative/path", "not an absolute path"),
        ("s3://bucket/%ff", "not UTF-8"),
        ("s3://b/%" + "25" * 12 + "41", "too many times"),
        ("", "give a store URL"),
    ],
)
def test_unsafe_urls_are_refused_naming_the_field(url: str, problem: str) -> None:
    with pytest.raises(UnsafePath, match=problem) as info:
        normalise_url("destination", url)
    assert str(info.value).startswith("destination: ")


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "%2e%2e", "%2E", "%2f", "c%2fd"])))
def test_a_normalised_url_has_no_dot_parts_and_stays_in_its_bucket(parts: list[str]) -> None:
    url = "s3://bucket/" + "/".join(parts)
    try:
        canonical = normalise_url("f", url)
    except UnsafePath:
        return
    assert canonical == "s3://bucket" or canonical.startswith("s3://bucket/")
    path = canonical.removeprefix("s3://bucket")
    assert all(p not in ("", ".", "..") for p in path.split("/")[1:])
    assert normalise_url("f", canonical) == canonical  # stable


@given(st.text(alphabet="ab/.%2e", max_size=30))
def test_percent_encoding_never_changes_what_a_url_names(rest: str) -> None:
    try:
        plain = normalise_url("f", "s3://bucket/" + rest)
    except UnsafePath:
        return
    assert normalise_url("f", "s3://bucket/" + quote(rest, safe="")) == plain


def test_paths_are_absolute_and_normalised() -> None:
    assert normalise_path("f", "/data//x/./y/../z/") == Path("/data/x/z")
    assert normalise_path("f", "file:///data/%2e%2e/x") == Path("/x")
    for bad in ("data/x", "/data/x\x00", "/../etc", "", "/data/\t"):
        with pytest.raises(UnsafePath):
            normalise_path("f", bad)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    folders = {
        "home": tmp_path / "home",
        "shared": tmp_path / "shared",
        "alice": tmp_path / "alice",
        "bob": tmp_path / "bob",
        "outside": tmp_path / "outside",
        "lake": tmp_path / "lake",
        "staging": tmp_path / "staging",
        "config": tmp_path / "conf" / "ferry.toml",
        "db": tmp_path / "db" / "ferry.db",
    }
    for name, folder in folders.items():
        if name not in ("config", "db"):
            folder.mkdir(parents=True)
    monkeypatch.setenv("FERRY_CONFIG", str(folders["config"]))
    return folders


def _settings(w: dict[str, Path]) -> Settings:
    return get_settings(
        home=w["home"],
        database_url=f"sqlite:///{w['db']}",
        store_url=w["lake"].as_uri(),
        staging_dir=w["staging"],
        source_roots=[w["shared"]],
        store_prefixes=["s3://lab-data/shared"],
        grants={
            "alice": {"source_roots": [w["alice"]], "store_prefixes": ["s3://alice-bucket"]},
            "bob": {"source_roots": [w["bob"]]},
        },
        destinations={"archive": "s3://archive/lab"},
    )


READS = [
    # (who, path relative to the world or absolute, allowed)
    ("alice", "shared", True),
    ("alice", "shared/s1", True),
    ("alice", "alice/s1", True),
    ("alice", "bob/s1", False),
    ("alice", "outside", False),
    ("alice", "shared/%2e%2e/bob", False),
    ("alice", "/etc", False),
    ("bob", "alice/s1", False),
    ("admin", "/etc", True),
    ("admin", "outside", True),
    ("admin", "home", False),
    ("admin", "home/token.json", False),
    ("admin", "home/demo/session", True),
    ("admin", "home/demo/../ferry.db", False),
    ("admin", "lake/asset", False),
    ("admin", "staging", False),
    ("admin", "db", False),
    ("admin", "db/ferry.db-wal", False),
    ("admin", "conf/ferry.toml", False),
    ("admin", "", False),  # holds the home, the lake …
    ("service", "/etc", True),
    ("service", "db/ferry.db", False),
]


@pytest.mark.parametrize(("who", "where", "allowed"), READS)
def test_who_reads_which_folder(
    world: dict[str, Path], who: str, where: str, allowed: bool
) -> None:
    settings = _settings(world)
    base = world["home"].parent
    path = where if where.startswith("/") else f"{base}/{where}".rstrip("/")
    if who == "service":
        access = internal_access(settings)
    else:
        access = access_for(settings, who, "admin" if who == "admin" else "user")
    if allowed:
        access.check_folder("metadata_dir", path)
    else:
        with pytest.raises(Forbidden, match=r"^metadata_dir: ") as info:
            access.check_folder("metadata_dir", path)
        if who == "alice":
            assert "[grants.alice]" in str(info.value) or "the service's own" in str(info.value)


def test_real_paths_follow_symlinks(world: dict[str, Path]) -> None:
    alice = access_for(_settings(world), "alice", "user")
    secret = world["outside"] / "secret.json"
    secret.write_text("{}")
    link = world["alice"] / "subject.json"
    link.symlink_to(secret)
    assert alice.check_folder("metadata_dir", str(link)) == link  # by its spelling
    with pytest.raises(Forbidden, match=r"\(which is .*outside/secret.json\)"):
        alice.check_folder("metadata_dir", str(link), real=True)
    into_home = world["shared"] / "home"
    into_home.symlink_to(world["home"])
    admin = access_for(_settings(world), "root", "admin")
    with pytest.raises(Forbidden, match="home folder"):
        admin.check_folder("input_source", str(into_home), real=True)
    inside = world["alice"] / "s1"
    inside.mkdir()
    (world["alice"] / "again").symlink_to(inside)
    assert alice.check_folder("f", str(world["alice"] / "again"), real=True) == inside


@pytest.mark.parametrize(
    ("who", "where", "allowed"),
    [
        ("alice", "alice/s1", True),
        ("alice", "alice", False),  # a root itself
        ("alice", "shared/s1", False),  # shared roots are read only
        ("alice", "shared", False),
        ("alice", "bob/s1", False),
        ("admin", "shared/s1", True),
        ("admin", "shared", False),
        ("admin", "", False),  # holds the source roots
        ("admin", "home/demo/s1", True),
        ("admin", "home/x", False),
    ],
)
def test_who_removes_which_folder(
    world: dict[str, Path], who: str, where: str, allowed: bool
) -> None:
    settings = _settings(world)
    access = access_for(settings, who, "admin" if who == "admin" else "user")
    path = f"{world['home'].parent}/{where}".rstrip("/")
    if allowed:
        assert access.check_removal("input_source", path) == Path(path)
    else:
        with pytest.raises(Forbidden, match=r"^input_source: "):
            access.check_removal("input_source", path)


@pytest.mark.parametrize(
    ("who", "url", "read", "write"),
    [
        ("alice", "s3://lab-data/shared/x.zarr", True, False),
        ("alice", "S3://LAB-DATA//shared/./x.zarr", True, False),
        ("alice", "s3://lab-data/shared%2f..%2fprivate/x", False, False),
        ("alice", "s3://lab-data/sharedx", False, False),
        ("alice", "s3://alice-bucket/any", True, False),
        ("bob", "s3://alice-bucket/any", False, False),
        ("alice", "s3://other-bucket/x", False, False),
        ("alice", "s3://archive/lab/asset", True, True),
        ("alice", "s3://archive/lab/../other", False, False),
        ("alice", "s3://archive/labx", False, False),
        ("alice", "LAKE/asset", True, True),
        ("alice", "LAKE/%2e%2e/x", False, False),
        ("alice", "file:///etc", False, False),
        ("admin", "s3://other-bucket/x", True, True),
        ("admin", "LAKE/asset", True, True),
        ("admin", "LAKE/%2e%2e/home/x", False, False),
        ("admin", "LAKE/%2e%2e/db/ferry.db", False, False),
        ("admin", "file:///etc", True, True),
    ],
)
def test_who_reads_and_writes_which_store(
    world: dict[str, Path], who: str, url: str, read: bool, write: bool
) -> None:
    access = access_for(_settings(world), who, "admin" if who == "admin" else "user")
    url = url.replace("LAKE", world["lake"].as_uri())
    for check, allowed in ((access.check_read_url, read), (access.check_write_url, write)):
        if allowed:
            assert check("destination", url) == normalise_url("destination", url)
        else:
            with pytest.raises((Forbidden, UnsafePath), match=r"^destination: "):
                check("destination", url)


def test_access_travels_to_workers_and_settings_errors_are_named(world: dict[str, Path]) -> None:
    access = access_for(_settings(world), "alice", "user")
    copy = pickle.loads(pickle.dumps(access))
    assert isinstance(copy, Access) and copy == access
    assert os.fspath(copy.own_roots[0]) == str(world["alice"])
    unknown = access_for(_settings(world), "carol", "user")
    assert unknown.own_roots == () and unknown.roots == (world["shared"],)
    bad = get_settings(home=world["home"], store_prefixes=["s3://b/../.."])
    with pytest.raises(ConfigError, match="store_prefixes"):
        access_for(bad, "alice", "user")


def test_access_kept_with_a_job_as_json_is_the_same_access(world: dict[str, Path]) -> None:
    import json

    for name, role in (("alice", "user"), ("admin", "admin"), (None, "admin")):
        access = access_for(_settings(world), name, role)
        copy = Access.from_json(json.loads(json.dumps(access.to_json())))
        assert copy == access


def test_no_one_removes_a_folder_that_holds_a_source_root(tmp_path: Path) -> None:
    settings = get_settings(
        home=tmp_path / "home",
        source_roots=[tmp_path / "data" / "shared"],
        grants={"alice": {"source_roots": [tmp_path / "data" / "alice"]}},
    )
    admin = access_for(settings, "root", "admin")
    with pytest.raises(Forbidden, match="holds a source root"):
        admin.check_removal("input_source", str(tmp_path / "data"))
    with pytest.raises(Forbidden, match="is a source root itself"):
        admin.check_removal("input_source", str(tmp_path / "data" / "alice"))
    assert admin.check_removal("f", str(tmp_path / "data" / "x")) == tmp_path / "data" / "x"
