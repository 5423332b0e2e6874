"""Object stores (the Store protocol over obstore), listings with checksums, and the
transfer (sync) engine. No other package imports obstore."""

from neuroferry.stores._confine import check_fd, fd_real_path, open_confined, read_confined
from neuroferry.stores._foreign import (
    TooLarge,
    check_bucket,
    check_endpoint,
    copy_object,
    open_s3_with,
    presign,
)
from neuroferry.stores._keys import check_key
from neuroferry.stores._listing import RESERVED_PREFIX, Listing, list_store
from neuroferry.stores._manifest import MANIFEST_KEY, ManifestEntry, load_manifest, read_manifest
from neuroferry.stores._obstore import zarr_store
from neuroferry.stores._open import SCHEMES, open_store
from neuroferry.stores._store import Entry, Store
from neuroferry.stores._sync import (
    SyncOptions,
    SyncProgress,
    SyncReport,
    matches,
    memory_budget,
    part_size_for,
    sync,
    sync_async,
)

__all__ = [
    "MANIFEST_KEY",
    "RESERVED_PREFIX",
    "SCHEMES",
    "Entry",
    "Listing",
    "ManifestEntry",
    "Store",
    "SyncOptions",
    "SyncProgress",
    "SyncReport",
    "TooLarge",
    "check_bucket",
    "check_endpoint",
    "check_fd",
    "check_key",
    "copy_object",
    "fd_real_path",
    "list_store",
    "load_manifest",
    "matches",
    "memory_budget",
    "open_confined",
    "open_s3_with",
    "open_store",
    "part_size_for",
    "presign",
    "read_confined",
    "read_manifest",
    "sync",
    "sync_async",
    "zarr_store",
]
