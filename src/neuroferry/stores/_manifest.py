"""The manifest a sync keeps in its destination: ``{dest}/.ferry/manifest.json``."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import obstore
from obstore.exceptions import NotFoundError

from neuroferry.errors import FerryError, StoreNotFound
from neuroferry.stores._errors import translate
from neuroferry.stores._obstore import backed
from neuroferry.stores._store import Store

log = logging.getLogger(__name__)

MANIFEST_KEY = ".ferry/manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What was written at a path: size, sha256, the destination's ETag, the source's tag."""

    size: int
    sha256: str
    etag: str | None
    source: str | None


async def load_manifest(store: Store) -> dict[str, ManifestEntry]:
    """The manifest's entries by path; empty when there is none or it is unreadable."""
    try:
        result = await obstore.get_async(backed(store).raw, MANIFEST_KEY)
        data = json.loads(bytes(await result.bytes_async()))
        files: dict[str, Any] = data["files"]
        return {path: ManifestEntry(**fields) for path, fields in files.items()}
    except (NotFoundError, FileNotFoundError):
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable manifest %s/%s: %s", store.url, MANIFEST_KEY, exc)
        return {}
    except FerryError:
        raise
    except Exception as exc:
        raise translate(exc, store.url, "read the manifest") from exc


def read_manifest(store: Store) -> dict[str, ManifestEntry]:
    """:func:`load_manifest` without obstore's async runtime, whose leftover task can abort
    a short-lived process (``ferry ls``) as it exits."""
    try:
        data = json.loads(store.get(MANIFEST_KEY))
        files: dict[str, Any] = data["files"]
        return {path: ManifestEntry(**fields) for path, fields in files.items()}
    except StoreNotFound:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable manifest %s/%s: %s", store.url, MANIFEST_KEY, exc)
        return {}


async def save_manifest(store: Store, entries: dict[str, ManifestEntry], source: str) -> None:
    """Write the manifest in one atomic put (readers see the old or the new one, never half)."""
    body = {
        "version": MANIFEST_VERSION,
        "source": source,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {path: asdict(entry) for path, entry in sorted(entries.items())},
    }
    payload = json.dumps(body, separators=(",", ":")).encode()
    try:
        await obstore.put_async(backed(store).raw, MANIFEST_KEY, payload, use_multipart=False)
    except Exception as exc:
        raise translate(exc, store.url, "write the manifest") from exc
