"""check_key: the only gate between a store's object names and paths on disk."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from neuroferry.errors import InvalidInput, UnsafePath
from neuroferry.stores import check_key

ROOT = "/srv/ferry/dest"


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "a/b/c.txt",
        "sub dir/file name.tif",
        "ünïcode/ß/数据.zarr",
        ".hidden",
        "..hidden/x",
        "a..b/c...d",
        "x/.../y",
        "scan#1",
        "weird~[chars]{}%20$&'()!@=+,;",
        "emoji/🧠.ome.zarr/0/0/0",
    ],
)
def test_accepts_normal_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("", "empty path"),
        ("/abs/path", "is absolute"),
        ("/", "is absolute"),
        ("..", "segment '..'"),
        ("a/../b", "segment '..'"),
        ("../escape.txt", "segment '..'"),
        ("a/..", "segment '..'"),
        (".", "segment '.'"),
        ("./a", "segment '.'"),
        ("a/./b", "segment '.'"),
        ("a//b", "segment ''"),
        ("a/", "segment ''"),
        ("a\\b", "character '\\\\'"),
        ("..\\escape", "character '\\\\'"),
        ("a\nb", "character '\\n'"),
        ("a\rb", "character '\\r'"),
        ("a\x00b", "character '\\x00'"),
        ("a\tb", "character '\\t'"),
        ("a\x7fb", "character '\\x7f'"),
        ("a\x85b", "character '\\x85'"),
    ],
)
def test_rejects_unsafe_keys_naming_the_problem(key: str, named: str) -> None:
    with pytest.raises(UnsafePath) as info:
        check_key(key)
    assert named in str(info.value)
    # callers that only know the builtins can still catch it
    assert isinstance(info.value, InvalidInput)
    assert isinstance(info.value, ValueError)


_SEGMENTS = st.one_of(
    st.sampled_from(
        ["..", ".", "", "a", "b c", "\\", "..\\..", "x\n", "\x00", "\u2026", "\uff0e\uff0e"]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
)
_KEYS = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="./\\ab\n", max_size=20),
    st.lists(_SEGMENTS, min_size=1, max_size=6).map("/".join),
)


@given(_KEYS)
@example("a/../../etc/passwd")
@example("a/b/../../..")
@example("/etc/passwd")
def test_accepted_keys_never_leave_the_root(key: str) -> None:
    try:
        check_key(key)
    except UnsafePath:
        return
    joined = posixpath.normpath(ROOT + "/" + key)
    assert joined.startswith(ROOT + "/")
    # a safe key needs no normalising: what is checked is what gets used
    assert posixpath.normpath(key) == key
    assert joined == ROOT + "/" + key
