"""The Store protocol over obstore, with obstore's errors translated into neuroferry's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import GenericError, NotFoundError

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

    @contextlib.contextmanager
    def _translated(self, action: str, key: str | None = None) -> Iterator[None]:
        """obstore's errors while doing ``action`` (to ``key``) as neuroferry's."""
        try:
            yield
        except Exception as exc:
            raise translate(exc, self.url, action, key) from exc

    def get(self, key: str) -> bytes:
        with self._translated("read", key):
            return bytes(obstore.get(self.raw, key).bytes())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self._translated("read", key):
            try:
                return bytes(obstore.get(self.raw, key, options={"range": (start, end)}).bytes())
            except GenericError as exc:
                # HTTP lets a server answer a range request with the whole object (some
                # S3-compatible servers do), which obstore refuses: read it all and cut
                if "non-partial response" not in str(exc):
                    raise
            return bytes(obstore.get(self.raw, key).bytes())[start:end]

    def head(self, key: str) -> Entry:
        with self._translated("look up", key):
            meta = obstore.head(self.raw, key)
        return Entry(meta["path"], int(meta["size"]), clean_etag(meta["e_tag"]))

    def put(self, key: str, data: bytes | memoryview) -> None:
        with self._translated("write", key):
            obstore.put(self.raw, key, data, use_multipart=False)

    def delete(self, key: str) -> None:
        with self._translated("remove", key), contextlib.suppress(NotFoundError, FileNotFoundError):
            obstore.delete(self.raw, key)

    def list(self, prefix: str = "") -> Iterator[Entry]:
        # obstore's synchronous lister: its async stream can leave a runtime task behind
        # that aborts the interpreter at exit.
        with self._translated("list", prefix) if prefix else self._translated("list objects"):
            for chunk in obstore.list(self.raw, prefix=prefix or None, chunk_size=1000):
                for meta in chunk:
                    yield Entry(meta["path"], int(meta["size"]), clean_etag(meta["e_tag"]))

    def folders(self, prefix: str = "") -> Sequence[str]:
        with self._translated("list", prefix) if prefix else self._translated("list folders"):
            found = obstore.list_with_delimiter(self.raw, prefix or None)
        return sorted(p.rstrip("/") for p in found["common_prefixes"])

    def check(self) -> None:
        with self._translated("list its top level"):
            obstore.list_with_delimiter(self.raw)


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
