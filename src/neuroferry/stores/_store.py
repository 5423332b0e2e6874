"""The Store protocol: what the pipelines, the engine and the service do with a store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Entry:
    """One object: its path relative to the store root, size, and a tag that changes with it.

    ``etag`` is the store's ETag (quotes removed); for local files it is made of the
    modification and status-change times, so that a rewrite which restores the old
    modification time (``cp -p``, ``tar``) still counts as a change.
    """

    path: str
    size: int
    etag: str | None


def clean_etag(etag: str | None) -> str | None:
    """An ETag without quotes or a weak prefix, so that list and put results compare."""
    if etag is None:
        return None
    return etag.removeprefix("W/").strip('"')


@runtime_checkable
class Store(Protocol):
    """An object store addressed by URL; keys are relative to the URL.

    Every failure is a :class:`~neuroferry.errors.StoreError`: a missing object or store
    raises :class:`~neuroferry.errors.StoreNotFound`, refused credentials
    :class:`~neuroferry.errors.StoreAuthError`, a store that does not answer
    :class:`~neuroferry.errors.StoreUnreachable`.
    """

    @property
    def url(self) -> str:
        """The canonical URL of the store's root."""
        ...

    @property
    def local_root(self) -> Path | None:
        """The folder behind a ``file://`` store, else None."""
        ...

    @property
    def scheme(self) -> str:
        """``file``, ``s3``, ``gs``, ``az`` or ``memory``."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object at ``key``."""
        ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object at ``key``."""
        ...

    def head(self, key: str) -> Entry:
        """The size and tag of the object at ``key``, without reading it."""
        ...

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Write the object at ``key`` in one atomic put: readers see the old object or the
        new one, never a part."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; an object already gone is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Every object below ``prefix`` (the whole store when empty)."""
        ...

    def folders(self, prefix: str = "") -> Sequence[str]:
        """The folders one level below ``prefix`` (a ``/``-ended key prefix, or empty),
        as key prefixes without the trailing ``/``: one listing by delimiter, without
        the objects below them."""
        ...

    def check(self) -> None:
        """Raise unless the store answers (its top level is listed)."""
        ...
