"""The Store protocol over obstore, with obstore's errors translated into neuroferry's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import NotFoundError

from neuroferry.stores._errors import translate
from neuroferry.stores._store import Entry, Store, clean_etag

if TYPE_CHECKING:
    from obstore.store import ObjectStore


@dataclass(frozen=True)
class ObstoreStore:
    """A :class:`Store` over obstore; ``raw`` is the obstore store rooted at the URL."""

    url: str
    raw: ObjectStore = field(repr=False)
    local_root: Path | None = None
    """The folder behind a ``file://`` store, else None."""

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    def get(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self.raw, key).bytes())
        except Exception as exc:
            raise translate(exc, self.url, "read", key) from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            return bytes(obstore.get(self.raw, key, options={"range": (start, end)}).bytes())
        except Exception as exc:
            raise translate(exc, self.url, "read", key) from exc

    def head(self, key: str) -> Entry:
        try:
            meta = obstore.head(self.raw, key)
        except Exception as exc:
            raise translate(exc, self.url, "look up", key) from exc
        return Entry(meta["path"], int(meta["size"]), clean_etag(meta["e_tag"]))

    def put(self, key: str, data: bytes | memoryview) -> None:
        try:
            obstore.put(self.raw, key, data, use_multipart=False)
        except Exception as exc:
            raise translate(exc, self.url, "write", key) from exc

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self.raw, key)
        except (NotFoundError, FileNotFoundError):
            pass
        except Exception as exc:
            raise translate(exc, self.url, "remove", key) from exc

    def list(self, prefix: str = "") -> Iterator[Entry]:
        # obstore's synchronous lister: its async stream can leave a runtime task behind
        # that aborts the interpreter at exit.
        try:
            for chunk in obstore.list(self.raw, prefix=prefix or None, chunk_size=1000):
                for meta in chunk:
                    yield Entry(meta["path"], int(meta["size"]), clean_etag(meta["e_tag"]))
        except Exception as exc:
            if prefix:
                raise translate(exc, self.url, "list", prefix) from exc
            raise translate(exc, self.url, "list objects") from exc

    def check(self) -> None:
        try:
            obstore.list_with_delimiter(self.raw)
        except Exception as exc:
            raise translate(exc, self.url, "list its top level") from exc


def backed(store: Store) -> ObstoreStore:
    """``store`` as the obstore store that :func:`open_store` made: the sync engine and
    the Zarr adapter work with obstore's own objects."""
    if isinstance(store, ObstoreStore):
        return store
    raise TypeError(f"{store.url} is not a store opened by open_store")


def zarr_store(store: Store, *, read_only: bool = True) -> Any:
    """A Zarr (v3) store over ``store``."""
    from zarr.storage import ObjectStore as ZarrObjectStore

    return ZarrObjectStore(backed(store).raw, read_only=read_only)
