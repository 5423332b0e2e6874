"""One conformance suite, run against every backend: local folder, memory and S3."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from neuroferry.errors import StoreNotFound
from neuroferry.stores import (
    MANIFEST_KEY,
    Entry,
    ManifestEntry,
    Store,
    SyncOptions,
    list_store,
    load_manifest,
    open_store,
    sync,
)

FILES = {
    "a.txt": b"alpha\n",
    "empty.bin": b"",
    "nested/deeper/b.bin": bytes(range(256)) * 40,
    "with space/ünïcode ß.txt": "grüße\n".encode(),
    "random.dat": os.urandom(300_000),
}


def _backend(url: str) -> str:
    return url.split("://", 1)[0]


def _open(url: str) -> Store:
    return open_store(url, create=True)


def _put_all(store: Store, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        store.put(key, data)


def test_open_store_returns_a_store_with_the_canonical_url(store_url: str) -> None:
    store = _open(store_url)
    assert isinstance(store, Store)
    assert store.url == store_url
    assert store.scheme == _backend(store_url)
    # the same place written with a trailing slash is the same store
    again = open_store(store_url + "/")
    assert again.url == store.url
    store.put("seen.txt", b"from the first handle")
    assert again.get("seen.txt") == b"from the first handle"
    if store.scheme == "file":
        assert store.local_root == Path(store_url.removeprefix("file://"))
        assert store.local_root.is_dir()
    else:
        assert store.local_root is None


def test_put_get_list_delete_round_trip(store_url: str) -> None:
    store = _open(store_url)
    _put_all(store, FILES)

    for key, data in FILES.items():
        assert store.get(key) == data
    listed = {e.path: e.size for e in store.list()}
    assert listed == {k: len(v) for k, v in FILES.items()}

    store.delete("a.txt")
    with pytest.raises(StoreNotFound, match=f"cannot read: {store.url}/a.txt does not exist"):
        store.get("a.txt")
    listed_after = {e.path for e in store.list()}
    assert listed_after == set(FILES) - {"a.txt"}
    store.delete("a.txt")  # already gone: not an error


def test_get_range_reads_only_the_bytes_asked_for(store_url: str) -> None:
    store = _open(store_url)
    data = FILES["nested/deeper/b.bin"]
    store.put("b.bin", data)
    assert store.get_range("b.bin", 0, 10) == data[:10]
    assert store.get_range("b.bin", 300, 5000) == data[300:5000]
    assert store.get_range("b.bin", len(data) - 1, len(data)) == data[-1:]
    with pytest.raises(StoreNotFound):
        store.get_range("missing.bin", 0, 1)


def test_head_gives_the_size_and_the_tag_that_list_gives(store_url: str) -> None:
    store = _open(store_url)
    store.put("dir/x.bin", memoryview(b"x" * 1234))
    found = store.head("dir/x.bin")
    assert isinstance(found, Entry)
    assert (found.path, found.size) == ("dir/x.bin", 1234)
    listed = {e.path: e for e in store.list()}
    assert listed["dir/x.bin"] == found
    with pytest.raises(StoreNotFound, match=f"cannot look up: {store.url}/nope does not exist"):
        store.head("nope")


def test_list_below_a_prefix(store_url: str) -> None:
    store = _open(store_url)
    _put_all(store, FILES)
    assert {e.path for e in store.list("nested/")} == {"nested/deeper/b.bin"}
    with contextlib.suppress(StoreNotFound):  # a backend may say so instead of listing nothing
        assert list(store.list("absent/")) == []


def test_folders_one_level_below_a_prefix(store_url: str) -> None:
    store = _open(store_url)
    _put_all(store, FILES)
    store.put("nested/other/c.bin", b"c")
    store.put("nested/top.bin", b"t")
    assert store.folders("nested/") == ["nested/deeper", "nested/other"]
    assert "nested" in store.folders()
    with contextlib.suppress(StoreNotFound):
        assert store.folders("absent/") == []


def test_put_replaces_an_object_whole(store_url: str) -> None:
    store = _open(store_url)
    store.put("x.json", b'{"a": 1, "longer": true}')
    store.put("x.json", b"{}")
    assert store.get("x.json") == b"{}"
    assert store.head("x.json").size == 2


def test_check_answers_for_a_store_that_is_up(store_url: str) -> None:
    _open(store_url).check()


def test_list_store_gives_relative_paths_sizes_and_etags(store_url: str) -> None:
    store = _open(store_url)
    _put_all(store, FILES)
    store.put(MANIFEST_KEY, b"{}")
    store.put(".ferry/other/state.json", b"{}")

    listing = asyncio.run(list_store(store))

    assert listing.problems == {}
    assert set(listing.entries) == set(FILES)
    for path, entry in listing.entries.items():
        assert entry.path == path
        assert entry.size == len(FILES[path])
        if store.scheme in ("file", "s3"):
            assert entry.etag, f"{path} has no etag"
        if entry.etag is not None:
            assert not entry.etag.startswith(('"', "W/"))


def test_list_store_etag_changes_when_an_object_is_rewritten(store_url: str) -> None:
    store = _open(store_url)
    store.put("x.bin", b"0" * 100)
    before = asyncio.run(list_store(store)).entries["x.bin"]
    if store.local_root is not None:  # a rewrite within one clock tick keeps the mtime
        os.utime(store.local_root / "x.bin", ns=(1, 1))
    store.put("x.bin", b"1" * 100)
    after = asyncio.run(list_store(store)).entries["x.bin"]
    assert after.size == before.size == 100
    assert after.etag != before.etag


# Unsafe keys that each backend can hold and obstore can list. A folder cannot hold '..'
# as a name, obstore refuses to write control characters or '..', and rclone refuses '..';
# what obstore cannot list at all (control characters on S3) is in test_sync.py.
_UNSAFE_KEYS = {
    "file": ["back\\slash.txt", "sub/ctl\nchar.txt", "del\x7fchar.txt", "soh\x01/x.txt"],
    "memory": ["back\\slash.txt", "sub/back\\slash.txt"],
    "s3": ["back\\slash.txt", "sub/back\\slash.txt"],
}


def _plant(store: Store, url: str, key: str, request: pytest.FixtureRequest) -> None:
    """Create an object under an unsafe key by whatever means the backend has."""
    if store.local_root is not None:
        path = store.local_root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"unsafe")
    elif store.scheme == "memory":
        store.put(key, b"unsafe")
    else:
        server = request.getfixturevalue("s3_server")
        bucket, prefix = url.removeprefix("s3://").split("/", 1)
        response = server.put_raw(bucket, f"{prefix}/{key}", b"unsafe")
        assert response.status_code == 200, response.text


def test_list_store_reports_unsafe_keys_as_problems(
    store_url: str, request: pytest.FixtureRequest
) -> None:
    store = _open(store_url)
    store.put("good.txt", b"fine")
    store.put("sub/good.txt", b"fine too")
    unsafe = _UNSAFE_KEYS[store.scheme]
    for key in unsafe:
        _plant(store, store_url, key, request)

    listing = asyncio.run(list_store(store))

    assert set(listing.entries) == {"good.txt", "sub/good.txt"}
    # a folder with an unsafe name is reported once, and not descended into
    assert set(listing.problems) == {k.replace("\x01/x.txt", "\x01") for k in unsafe}
    for key, why in listing.problems.items():
        assert repr(key) in why and "not allowed" in why


def test_sync_in_and_out_reproduces_the_bytes(
    store_url: str,
    tmp_path: Path,
    make_tree: Callable[[Path, dict[str, bytes]], Path],
    read_store: Callable[[str], dict[str, bytes]],
) -> None:
    src = make_tree(tmp_path / "src", FILES)

    report_in = sync(str(src), store_url)
    assert report_in.ok, report_in.failed
    assert report_in.files_copied == len(FILES)
    assert report_in.bytes_copied == sum(map(len, FILES.values()))
    assert read_store(store_url) == FILES

    out = tmp_path / "out"
    report_out = sync(store_url, out.as_uri())
    assert report_out.ok, report_out.failed
    assert report_out.files_copied == len(FILES)
    copied = {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and ".ferry" not in p.relative_to(out).parts
    }
    assert copied == FILES


def test_manifest_records_size_and_sha256_of_every_file(
    store_url: str,
    tmp_path: Path,
    make_tree: Callable[[Path, dict[str, bytes]], Path],
) -> None:
    src = make_tree(tmp_path / "src", FILES)
    report = sync(str(src), store_url, SyncOptions(part_size=5 * 1024 * 1024))
    assert report.ok, report.failed

    store = open_store(store_url)
    doc = json.loads(store.get(MANIFEST_KEY))
    assert doc["version"] == 1
    assert doc["source"] == src.as_uri()
    assert set(doc["files"]) == set(FILES)
    for path, data in FILES.items():
        assert doc["files"][path]["size"] == len(data)
        assert doc["files"][path]["sha256"] == hashlib.sha256(data).hexdigest()

    manifest = asyncio.run(load_manifest(store))
    assert set(manifest) == set(FILES)
    assert all(isinstance(e, ManifestEntry) for e in manifest.values())
    listed = asyncio.run(list_store(store, local=False)).entries
    for path, entry in manifest.items():
        # the recorded destination tag is the one the store lists, so reruns can skip
        assert entry.etag == listed[path].etag
