"""Relative object keys that can never escape their store's root."""

from __future__ import annotations

import unicodedata

from neuroferry.errors import UnsafePath


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key; raise :class:`UnsafePath` naming the problem.

    Allowed: ``/``-separated segments that are not empty, ``.`` or ``..``, with no control
    characters and no backslash.
    """
    if not key:
        raise UnsafePath("empty path")
    if key.startswith("/"):
        raise UnsafePath(f"{key!r} is absolute; paths must be relative to the store")
    for ch in key:
        if ch == "\\" or unicodedata.category(ch) == "Cc":
            raise UnsafePath(
                f"{key!r} contains the character {ch!r}; "
                "control characters and '\\' are not allowed"
            )
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafePath(
                f"{key!r} has the segment {segment!r}; empty, '.' and '..' segments are not allowed"
            )
    return key
