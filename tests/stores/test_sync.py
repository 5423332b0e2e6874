"""The sync engine against local folders, the memory store and a real S3 server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

import obstore
import pytest
from obstore.exceptions import NotFoundError

from conftest import use_s3_endpoint
from neuroferry.errors import (
    InvalidInput,
    StoreAuthError,
    StoreError,
    StoreNotFound,
)
from neuroferry.stores import (
    MANIFEST_KEY,
    SyncOptions,
    SyncProgress,
    SyncReport,
    matches,
    open_store,
    sync,
)

MiB = 1024 * 1024
PART = 5 * MiB

SOURCE = {
    "a.txt": b"alpha\n",
    "b.txt": b"bravo bravo\n",
    "empty": b"",
    "sub/c.bin": bytes(range(256)) * 16,
    "sub/deeper/d.bin": os.urandom(10_000),
    "spaces and ünïcode/é.txt": "é\n".encode(),
    **{f"many/{i:02d}.dat": os.urandom(100 + i) for i in range(12)},
}
TOTAL = sum(map(len, SOURCE.values()))

MakeTree = Callable[[Path, dict[str, bytes]], Path]
ReadStore = Callable[[str], dict[str, bytes]]


class Recorder(SyncProgress):
    """Remembers what a sync planned and what happened to each file."""

    def __init__(self) -> None:
        self.plans: list[tuple[int, int]] = []
        self.outcomes: dict[str, str] = {}

    def planned(self, files: int, nbytes: int) -> None:
        self.plans.append((files, nbytes))

    def finished(self, path: str, outcome: str) -> None:
        self.outcomes[path] = outcome


def tree(root: Path) -> dict[str, bytes]:
    """The files of a local folder, except neuroferry's ``.ferry/``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != ".ferry"
    }


def manifest_bytes(url: str) -> bytes | None:
    store = open_store(url)
    try:
        return bytes(obstore.get(store.raw, MANIFEST_KEY).bytes())
    except (FileNotFoundError, NotFoundError):
        return None


def manifest_files(url: str) -> dict[str, dict[str, object]]:
    raw = manifest_bytes(url)
    assert raw is not None, f"no manifest at {url}"
    files: dict[str, dict[str, object]] = json.loads(raw)["files"]
    return files


def put(url: str, key: str, data: bytes) -> None:
    obstore.put(open_store(url, create=True).raw, key, data)


def assert_all_skipped(report: SyncReport, files: dict[str, bytes]) -> None:
    assert report.ok, report.failed
    assert (report.files_copied, report.bytes_copied) == (0, 0)
    assert report.files_skipped == len(files)
    assert report.bytes_skipped == sum(map(len, files.values()))


def wait_for_mtime_tick() -> None:
    """Let the file system clock move on, so that a rewrite gets a new mtime."""
    time.sleep(0.05)


@pytest.fixture
def src(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(tmp_path / "src", SOURCE)


# -- copying and skipping ---------------------------------------------------------------


def test_second_sync_copies_nothing_and_reads_nothing(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    first = sync(str(src), store_url)
    assert first.ok, first.failed
    assert (first.files_copied, first.bytes_copied) == (len(SOURCE), TOTAL)
    assert first.files_skipped == 0
    assert read_store(store_url) == SOURCE

    progress = Recorder()
    second = sync(str(src), store_url, progress=progress)
    assert_all_skipped(second, SOURCE)
    assert progress.plans == [(0, 0)]  # skipped on size and tags, without reading
    assert progress.outcomes == {}
    assert read_store(store_url) == SOURCE


def test_objects_unknown_to_the_manifest_are_compared_by_content(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    assert sync(str(src), store_url).ok
    obstore.delete(open_store(store_url).raw, MANIFEST_KEY)

    progress = Recorder()
    again = sync(str(src), store_url, progress=progress)
    assert_all_skipped(again, SOURCE)
    assert progress.plans == [(len(SOURCE), TOTAL)]
    assert set(progress.outcomes.values()) == {"same"}
    assert set(manifest_files(store_url)) == set(SOURCE)  # the manifest is rebuilt
    assert read_store(store_url) == SOURCE


def test_changed_and_new_files_are_copied_again(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    assert sync(str(src), store_url).ok
    wait_for_mtime_tick()
    changed = {
        "a.txt": b"ALPHA\n",  # same size, other bytes
        "b.txt": b"bravo, now longer\n",  # other size
        "sub/new.txt": b"new file\n",
    }
    assert len(changed["a.txt"]) == len(SOURCE["a.txt"])
    tag_before = (src / "a.txt").stat().st_mtime_ns
    for rel, data in changed.items():
        (src / rel).write_bytes(data)
    # a local file's version tag is its mtime: a same-size rewrite must show in it
    assert (src / "a.txt").stat().st_mtime_ns != tag_before

    report = sync(str(src), store_url)
    assert report.ok, report.failed
    assert report.files_copied == 3
    assert report.bytes_copied == sum(map(len, changed.values()))
    assert report.files_skipped == len(SOURCE) - 2
    expected = {**SOURCE, **changed}
    assert read_store(store_url) == expected
    manifest = manifest_files(store_url)
    for rel, data in changed.items():
        assert manifest[rel]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.s3)])
def source_url(request: pytest.FixtureRequest) -> str:
    """An empty store to sync from: a memory store, or a prefix on the S3 server."""
    if request.param == "memory":
        return f"memory://src-{os.urandom(6).hex()}"
    return str(request.getfixturevalue("s3_env")) + "/raw"


def test_store_source_is_skipped_when_unchanged_and_copied_when_changed(
    source_url: str, tmp_path: Path
) -> None:
    source = source_url
    store = open_store(source)
    for key, data in SOURCE.items():
        obstore.put(store.raw, key, data)
    out = tmp_path / "out"

    assert sync(source, str(out)).files_copied == len(SOURCE)
    assert tree(out) == SOURCE
    assert_all_skipped(sync(source, str(out)), SOURCE)

    obstore.put(store.raw, "a.txt", b"ALPHA\n")  # same size: only the tag tells
    report = sync(source, str(out))
    assert report.ok, report.failed
    assert (report.files_copied, report.files_skipped) == (1, len(SOURCE) - 1)
    assert tree(out) == {**SOURCE, "a.txt": b"ALPHA\n"}


def test_multipart_upload_arrives_byte_identical(
    store_url: str, tmp_path: Path, make_tree: MakeTree, read_store: ReadStore
) -> None:
    files = {"volume.raw": os.urandom(12 * MiB + 12345), "exactly-one-part.bin": os.urandom(PART)}
    files["small.txt"] = b"small"
    source = make_tree(tmp_path / "src", files)
    opts = SyncOptions(part_size=PART, concurrency=4)

    report = sync(str(source), store_url, opts)
    assert report.ok, report.failed
    assert (report.files_copied, report.bytes_copied) == (3, sum(map(len, files.values())))
    assert read_store(store_url) == files
    manifest = manifest_files(store_url)
    assert manifest["volume.raw"]["sha256"] == hashlib.sha256(files["volume.raw"]).hexdigest()
    assert manifest["volume.raw"]["size"] == len(files["volume.raw"])
    again = Recorder()
    assert_all_skipped(sync(str(source), store_url, opts, progress=again), files)
    assert again.plans == [(0, 0)]  # skipped unread: the manifest holds the listed ETags

    # and back out again, streaming the large object from the store in parts
    out = tmp_path / "out"
    back = sync(store_url, str(out), opts)
    assert back.ok, back.failed
    assert tree(out) == files


# -- dry runs ---------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_reports_what_it_would_copy(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    report = sync(str(src), store_url, SyncOptions(dry_run=True))
    assert report.dry_run
    assert report.ok
    assert (report.files_copied, report.bytes_copied) == (len(SOURCE), TOTAL)
    if store_url.startswith("file://"):
        assert not Path(store_url.removeprefix("file://")).exists()
    else:
        assert read_store(store_url) == {}
        assert manifest_bytes(store_url) is None


def test_dry_run_after_changes_leaves_the_destination_as_it_was(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    assert sync(str(src), store_url).ok
    wait_for_mtime_tick()
    (src / "a.txt").write_bytes(b"ALPHA\n")  # same size
    (src / "added.txt").write_bytes(b"added")
    put(store_url, "stale.txt", b"only at the destination")
    before, manifest_before = read_store(store_url), manifest_bytes(store_url)

    report = sync(str(src), store_url, SyncOptions(dry_run=True, delete=True))

    assert (report.files_copied, report.bytes_copied) == (2, 6 + 5)
    assert report.files_deleted == 1
    assert report.files_skipped == len(SOURCE) - 1
    assert any("1 files of the same size" in note for note in report.notes)
    assert read_store(store_url) == before
    assert manifest_bytes(store_url) == manifest_before


# -- selection and deletion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "patterns", "expected"),
    [
        ("a.tif", ["*.tif"], True),
        ("deep/er/a.tif", ["*.tif"], True),  # no '/': also matches the name
        ("a.tiff", ["*.tif"], False),
        ("raw/a.tif", ["raw/*"], True),
        ("raw/deep/a.tif", ["raw/*"], True),  # '*' crosses '/' in a full-path pattern
        ("x/raw/a.tif", ["raw/*"], False),
        ("A.TIF", ["*.tif"], False),  # case-sensitive everywhere
        ("a.log", ["*.tif", "*.log"], True),
        ("a.log", [], False),
    ],
)
def test_matches(path: str, patterns: list[str], expected: bool) -> None:
    assert matches(path, patterns) is expected


FILTER_SOURCE = {
    "a.tif": b"a",
    "b.txt": b"b",
    "sub/c.tif": b"c",
    "sub/d.log": b"d",
    "raw/e.tif": b"e",
    "raw/deep/f.tif": b"f",
}


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (("*.tif",), (), {"a.tif", "sub/c.tif", "raw/e.tif", "raw/deep/f.tif"}),
        (("*.tif",), ("raw/*",), {"a.tif", "sub/c.tif"}),
        ((), ("*.log", "b.txt"), {"a.tif", "sub/c.tif", "raw/e.tif", "raw/deep/f.tif"}),
        (("sub/*",), (), {"sub/c.tif", "sub/d.log"}),
    ],
)
def test_include_and_exclude_globs(
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    expected: set[str],
    store_url: str,
    tmp_path: Path,
    make_tree: MakeTree,
    read_store: ReadStore,
) -> None:
    source = make_tree(tmp_path / "src", FILTER_SOURCE)
    report = sync(str(source), store_url, SyncOptions(include=include, exclude=exclude))
    assert report.ok, report.failed
    assert report.files_copied == len(expected)
    assert read_store(store_url) == {p: FILTER_SOURCE[p] for p in expected}
    assert set(manifest_files(store_url)) == expected


def test_extra_destination_files_are_kept_unless_delete(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    assert sync(str(src), store_url).ok
    extras = {"extra.txt": b"extra", "old/stale.bin": b"stale"}
    for key, data in extras.items():
        put(store_url, key, data)

    kept = sync(str(src), store_url)
    assert kept.ok and kept.files_deleted == 0
    assert read_store(store_url) == {**SOURCE, **extras}

    pruned = sync(str(src), store_url, SyncOptions(delete=True))
    assert pruned.ok, pruned.failed
    assert pruned.files_deleted == 2
    assert pruned.files_copied == 0
    assert read_store(store_url) == SOURCE
    assert set(manifest_files(store_url)) == set(SOURCE)


def test_delete_only_touches_selected_paths(
    store_url: str, tmp_path: Path, make_tree: MakeTree, read_store: ReadStore
) -> None:
    source = make_tree(tmp_path / "src", {"keep.tif": b"k"})
    put(store_url, "gone.tif", b"g")
    put(store_url, "other.log", b"o")
    report = sync(str(source), store_url, SyncOptions(include=("*.tif",), delete=True))
    assert report.ok, report.failed
    assert report.files_deleted == 1
    assert read_store(store_url) == {"keep.tif": b"k", "other.log": b"o"}


def test_nothing_is_deleted_when_some_files_failed(
    src: Path, tmp_path: Path, read_store: ReadStore
) -> None:
    dest = tmp_path / "dest"
    assert sync(str(src), str(dest)).ok
    (dest / "extra.txt").write_bytes(b"extra")
    os.mkfifo(src / "pipe")

    report = sync(str(src), str(dest), SyncOptions(delete=True))
    assert set(report.failed) == {"pipe"}
    assert report.files_deleted == 0
    assert any("not deleted" in note for note in report.notes)
    assert (dest / "extra.txt").read_bytes() == b"extra"


# -- verification -----------------------------------------------------------------------


def test_verify_rereads_every_file(src: Path, store_url: str) -> None:
    first = sync(str(src), store_url, SyncOptions(verify=True))
    assert first.ok, first.failed
    assert first.files_verified == len(SOURCE)
    again = sync(str(src), store_url, SyncOptions(verify=True))
    assert_all_skipped(again, SOURCE)
    assert again.files_verified == len(SOURCE)  # skipped files are verified too


def test_tampered_destination_object_is_copied_again(
    src: Path, store_url: str, read_store: ReadStore
) -> None:
    assert sync(str(src), store_url).ok
    manifest_before = manifest_files(store_url)
    put(store_url, "b.txt", b"X" * len(SOURCE["b.txt"]))  # same size, other bytes
    assert manifest_files(store_url) == manifest_before

    report = sync(str(src), store_url, SyncOptions(verify=True))
    assert report.ok, report.failed
    assert report.files_copied == 1
    assert report.bytes_copied == len(SOURCE["b.txt"])
    assert report.files_verified == len(SOURCE)
    assert read_store(store_url) == SOURCE


def test_verify_catches_corruption_that_the_listing_cannot_see(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert sync(str(src), str(dest)).ok
    # Flip bytes in place and put the mtime back: inode, size and mtime (the folder's
    # ETag) stay the same, as after silent corruption on disk.
    victim = dest / "sub" / "c.bin"
    st = victim.stat()
    with victim.open("r+b") as f:
        f.write(b"\xff" * 16)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    blind = sync(str(src), str(dest))
    assert_all_skipped(blind, SOURCE)

    checked = sync(str(src), str(dest), SyncOptions(verify=True))
    assert checked.failed == {"sub/c.bin": "verify: destination content differs from the source"}
    assert checked.files_verified == len(SOURCE) - 1
    assert "sub/c.bin" not in manifest_files(dest.as_uri())

    repaired = sync(str(src), str(dest), SyncOptions(verify=True))
    assert repaired.ok, repaired.failed
    assert (repaired.files_copied, repaired.files_verified) == (1, len(SOURCE))
    assert tree(dest) == SOURCE


# -- what cannot be read ----------------------------------------------------------------


def test_special_files_are_reported_and_the_rest_copied(src: Path, tmp_path: Path) -> None:
    os.mkfifo(src / "pipe")
    (src / "dangling").symlink_to(src / "does-not-exist")
    dest = tmp_path / "dest"

    report = sync(str(src), str(dest))

    assert set(report.failed) == {"pipe", "dangling"}
    assert "not a regular file" in report.failed["pipe"]
    assert "broken symlink" in report.failed["dangling"]
    assert report.files_copied == len(SOURCE)
    assert tree(dest) == SOURCE
    assert report.as_dict()["files_failed"] == 2 and not report.ok


def test_file_that_vanishes_after_listing_is_reported(src: Path, tmp_path: Path) -> None:
    class Vanish(SyncProgress):
        def planned(self, files: int, nbytes: int) -> None:
            (src / "sub" / "deeper" / "d.bin").unlink()

    dest = tmp_path / "dest"
    report = sync(str(src), str(dest), progress=Vanish())
    assert list(report.failed) == ["sub/deeper/d.bin"]
    assert "No such file" in report.failed["sub/deeper/d.bin"]
    assert report.files_copied == len(SOURCE) - 1
    assert not (dest / "sub" / "deeper" / "d.bin").exists()
    assert "sub/deeper/d.bin" not in manifest_files(dest.as_uri())


def test_source_object_that_vanishes_is_reported_against_the_source(
    source_url: str, tmp_path: Path
) -> None:
    source = source_url
    store = open_store(source)
    objects = {"keep.txt": b"keep", "small.txt": b"small", "large.bin": os.urandom(PART + 1)}
    for key, data in objects.items():
        obstore.put(store.raw, key, data)

    class Vanish(SyncProgress):
        def planned(self, files: int, nbytes: int) -> None:
            obstore.delete(store.raw, "small.txt")
            obstore.delete(store.raw, "large.bin")

    dest = tmp_path / "dest"
    report = sync(source, str(dest), SyncOptions(part_size=PART), progress=Vanish())

    assert set(report.failed) == {"small.txt", "large.bin"}
    for key, why in report.failed.items():
        assert why.startswith(f"cannot read the object: {source}/{key} does not exist"), why
    assert tree(dest) == {"keep.txt": b"keep"}


# -- symlinks ---------------------------------------------------------------------------


def test_symlink_leaving_the_source_is_refused_unless_followed(
    src: Path, tmp_path: Path, make_tree: MakeTree
) -> None:
    outside = make_tree(tmp_path / "outside", {"o.txt": b"outside file", "dir/p.txt": b"p"})
    (src / "link.txt").symlink_to(outside / "o.txt")
    (src / "linkdir").symlink_to(outside / "dir")
    dest = tmp_path / "dest"

    refused = sync(str(src), str(dest))
    assert set(refused.failed) == {"link.txt", "linkdir"}
    for why in refused.failed.values():
        assert "--follow-symlinks" in why and "outside" in why
    assert tree(dest) == SOURCE

    followed = sync(str(src), str(dest), SyncOptions(follow_symlinks=True))
    assert followed.ok, followed.failed
    assert followed.files_copied == 2
    assert tree(dest) == {**SOURCE, "link.txt": b"outside file", "linkdir/p.txt": b"p"}


def test_symlinks_inside_the_source_are_followed(src: Path, tmp_path: Path) -> None:
    (src / "alias.txt").symlink_to("a.txt")
    (src / "sub-alias").symlink_to(src / "sub")
    dest = tmp_path / "dest"

    report = sync(str(src), str(dest))

    assert report.ok, report.failed
    sub = {k: v for k, v in SOURCE.items() if k.startswith("sub/")}
    expected = {
        **SOURCE,
        "alias.txt": SOURCE["a.txt"],
        **{"sub-alias/" + k.removeprefix("sub/"): v for k, v in sub.items()},
    }
    assert tree(dest) == expected
    assert not (dest / "alias.txt").is_symlink()


def test_symlink_loop_is_reported_and_the_rest_copied(src: Path, tmp_path: Path) -> None:
    (src / "sub" / "deeper" / "up").symlink_to(src / "sub")
    dest = tmp_path / "dest"

    report = sync(str(src), str(dest))

    assert list(report.failed) == ["sub/deeper/up"]
    assert "symlink loop" in report.failed["sub/deeper/up"]
    assert tree(dest) == SOURCE


# -- errors -----------------------------------------------------------------------------


def test_missing_source_folder_raises_store_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(StoreNotFound, match="nope"):
        sync(str(missing), str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


def test_same_source_and_destination_is_refused(src: Path) -> None:
    with pytest.raises(InvalidInput, match="same store"):
        sync(str(src), src.as_uri() + "/")


def test_part_size_below_the_s3_minimum_is_refused(src: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 5 MiB"):
        sync(str(src), str(tmp_path / "dest"), SyncOptions(part_size=MiB))


@pytest.mark.s3
def test_missing_bucket_and_empty_prefix_raise_store_not_found(s3_env: str, tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="NoSuchBucket"):
        sync("s3://no-such-bucket-here/raw", str(tmp_path / "out"))
    with pytest.raises(StoreNotFound, match="holds no objects"):
        sync(f"{s3_env}/empty-prefix", str(tmp_path / "out"))


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_bad_credentials_raise_store_auth_error(
    wrong: str, s3_env: str, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3_env, "x.txt", b"x")
    if wrong == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-the-key-id")
    with pytest.raises(StoreAuthError, match="credentials"):
        sync(str(src), s3_env)  # as destination
    with pytest.raises(StoreAuthError, match="credentials"):
        sync(s3_env, str(tmp_path / "out"))  # as source


def test_unreachable_endpoint_raises_store_error_quickly(
    src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # bound but never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{port}", retry_timeout=2)
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            sync(str(src), "s3://bucket/prefix")
        elapsed = time.monotonic() - started
    assert not isinstance(info.value, StoreAuthError | StoreNotFound)
    assert "cannot reach s3://bucket/prefix" in str(info.value)
    assert elapsed < 15


# -- hostile keys in a source store -----------------------------------------------------


@pytest.mark.s3
def test_s3_key_with_a_backslash_is_reported_and_the_rest_copied(
    s3_env: str, s3_server: Any, tmp_path: Path
) -> None:
    bucket = s3_env.removeprefix("s3://")
    for key, body in {"ok.txt": b"ok", "dir/ok2.txt": b"ok2", "..\\escape.txt": b"evil"}.items():
        assert s3_server.put_raw(bucket, key, body).status_code == 200
    dest = tmp_path / "deep" / "dest"

    report = sync(s3_env, str(dest))

    assert list(report.failed) == ["..\\escape.txt"]
    assert "not allowed" in report.failed["..\\escape.txt"]
    assert tree(dest) == {"ok.txt": b"ok", "dir/ok2.txt": b"ok2"}
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["dest"]


@pytest.mark.s3
@pytest.mark.parametrize("key", ["ctl\nchar.txt", "sub/del\x7f.txt"])
def test_s3_key_obstore_cannot_parse_stops_the_sync_before_writing(
    key: str, s3_env: str, s3_server: Any, tmp_path: Path
) -> None:
    """obstore fails the whole listing on such a key: the sync copies nothing at all."""
    bucket = s3_env.removeprefix("s3://")
    assert s3_server.put_raw(bucket, "ok.txt", b"ok").status_code == 200
    assert s3_server.put_raw(bucket, key, b"evil").status_code == 200
    dest = tmp_path / "dest"
    with pytest.raises(StoreError, match="invalid path"):
        sync(s3_env, str(dest))
    assert tree(dest) == {}


class _HostileBucket(http.server.BaseHTTPRequestHandler):
    """Answers ListObjectsV2 and GET for a bucket whose keys no honest server would allow."""

    objects: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        if not key:
            entries = "".join(
                f"<Contents><Key>{escape(k)}</Key>"
                "<LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                f'<ETag>"{hashlib.md5(v).hexdigest()}"</ETag><Size>{len(v)}</Size>'
                "<StorageClass>STANDARD</StorageClass></Contents>"
                for k, v in sorted(self.objects.items())
            )
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{bucket}</Name><Prefix></Prefix><KeyCount>{len(self.objects)}</KeyCount>"
                f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{entries}"
                "</ListBucketResult>"
            ).encode()
            self._answer(200, body, "application/xml")
        elif (data := self.objects.get(unquote(key))) is not None:
            self._answer(200, data, "application/octet-stream")
        else:
            self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """An S3 endpoint serving keys with '..' (rclone refuses to store such keys)."""
    objects: ClassVar[dict[str, bytes]] = {}
    handler = type("Handler", (_HostileBucket,), {"objects": objects})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", retry_timeout=2)
    try:
        yield objects
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../escape.txt", "x//y.txt"])
def test_s3_key_leaving_the_prefix_never_writes_outside_the_destination(
    key: str, hostile_bucket: dict[str, bytes], tmp_path: Path
) -> None:
    """obstore refuses to list such keys at all, so the sync stops before writing."""
    hostile_bucket.update({"ok.txt": b"ok", key: b"evil"})
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(StoreError, match="invalid path") as info:
        sync("s3://hostile", str(dest))
    assert not isinstance(info.value, StoreAuthError | StoreNotFound)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_s3_key_with_a_leading_slash_is_not_written_as_an_absolute_path(
    hostile_bucket: dict[str, bytes], tmp_path: Path
) -> None:
    """obstore lists '/escape.txt' as 'escape.txt', which the source then does not have."""
    hostile_bucket.update({"ok.txt": b"ok", "/escape.txt": b"evil"})
    dest = tmp_path / "deep" / "dest"
    report = sync("s3://hostile", str(dest))
    assert list(report.failed) == ["escape.txt"]
    assert report.failed["escape.txt"] == (
        "cannot read the object: s3://hostile/escape.txt does not exist (NoSuchKey)"
    )
    assert tree(dest) == {"ok.txt": b"ok"}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["manifest.json", "ok.txt"]


def test_hostile_bucket_stub_serves_honest_keys(
    hostile_bucket: dict[str, bytes], tmp_path: Path
) -> None:
    """The stub above is a working S3 endpoint, so the refusal there is about the key."""
    hostile_bucket.update({"ok.txt": b"ok", "dir/x.bin": b"x"})
    report = sync("s3://hostile", str(tmp_path / "dest"))
    assert report.ok, report.failed
    assert tree(tmp_path / "dest") == {"ok.txt": b"ok", "dir/x.bin": b"x"}


# -- resuming after a crash -------------------------------------------------------------

RESUME_SMALL, RESUME_SMALL_SIZE, RESUME_BIG_SIZE = 300, 256 * 1024, 30 * MiB

# The child is the plain library call; its progress hook pauses 5 ms per file (blocking
# the event loop) only so that a local copy lasts long enough to be killed part-way.
_CHILD = """
import sys, time
from neuroferry.stores import SyncOptions, SyncProgress, sync

class Slow(SyncProgress):
    def finished(self, path, outcome):
        time.sleep(0.005)

sync(sys.argv[1], sys.argv[2], SyncOptions(checkpoint_seconds=0.2, concurrency=2), progress=Slow())
"""


@pytest.fixture(scope="module")
def resume_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """300 files of 256 KiB and one of 30 MiB; returns the folder and each file's sha256."""
    root = tmp_path_factory.mktemp("resume-src")
    digests: dict[str, str] = {}
    sizes = {f"small/{i:03d}.bin": RESUME_SMALL_SIZE for i in range(RESUME_SMALL)}
    sizes["big/volume.raw"] = RESUME_BIG_SIZE
    for rel, size in sizes.items():
        data = os.urandom(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digests[rel] = hashlib.sha256(data).hexdigest()
    return root, digests


def _store_digests(url: str) -> dict[str, str]:
    store = open_store(url)
    found = {}
    for chunk in obstore.list(store.raw):
        for meta in chunk:
            if not meta["path"].startswith(".ferry/"):
                data = bytes(obstore.get(store.raw, meta["path"]).bytes())
                assert len(data) == meta["size"]
                found[meta["path"]] = hashlib.sha256(data).hexdigest()
    return found


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_sync_killed_midway_resumes_and_completes(
    backend: str,
    resume_source: tuple[Path, dict[str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    source, digests = resume_source
    total = len(digests)
    if backend == "file":
        dest_url = (tmp_path / "dest").as_uri()
        on_disk = tmp_path / "dest"
    else:
        dest_url = request.getfixturevalue("s3_env")
        on_disk = request.getfixturevalue("s3_server").root / dest_url.removeprefix("s3://")

    def arrived() -> int:
        return sum(1 for p in on_disk.glob("small/*.bin") if p.is_file())

    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(source), dest_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if (on_disk / MANIFEST_KEY).exists() and arrived() >= 40:
                break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        output = child.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, f"the sync ended before it was killed:\n{output}"

    # Every object that made it is whole (puts are atomic), and the checkpointed manifest
    # claims only objects that are there, with their true digest.
    present = _store_digests(dest_url)
    assert 0 < len(present) < total
    for path, digest in present.items():
        assert digest == digests[path], f"{path} at the destination differs from the source"
    checkpoint = manifest_files(dest_url)
    assert checkpoint, "the killed run left no manifest entries"
    for path, entry in checkpoint.items():
        assert present.get(path) == entry["sha256"] == digests[path]

    progress = Recorder()
    report = sync(str(source), dest_url, progress=progress)
    assert report.ok, report.failed
    assert report.files_copied + report.files_skipped == total
    assert report.files_copied < total
    assert report.files_skipped == len(present)
    # what the manifest knew was skipped unread; what arrived after it was compared
    compared = {p for p, outcome in progress.outcomes.items() if outcome == "same"}
    # (a multipart upload is checked against the store's listed ETag as soon as it is
    # complete, so its checkpoint vouches for it too, even where the server lists the MD5)
    assert compared == set(present) - set(checkpoint)
    assert _store_digests(dest_url) == digests
    assert set(manifest_files(dest_url)) == set(digests)
