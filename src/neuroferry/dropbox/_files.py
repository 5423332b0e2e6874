"""A group's files through the service, with its members' own accounts: as in the
original, a group reaches only its own folder; ``inputs/`` and ``submissions/`` can be
written and deleted but not read back, ``configs/`` can be read and written, ``results/``
read and deleted."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.dropbox._registry import (
    FOLDER_MARKER,
    FOLDERS,
    Dropbox,
    list_dropboxes,
    open_dropbox_store,
)
from neuroferry.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotSupported,
    StoreAuthError,
    StoreError,
    StoreUnreachable,
    UnsafePath,
)
from neuroferry.stores import Entry, Store, check_key, presign, read_confined

READABLE = ("configs", "results")
WRITABLE = ("inputs", "configs", "submissions")
REMOVABLE = ("inputs", "configs", "submissions", "results")
MAX_SEGMENT_BYTES = 255
"""The longest name of one file or folder (a local file system's limit)."""
MAX_READ_BYTES = 64 << 20
"""The largest file read through the service (bigger ones: with the store's own tools)."""


def check_path(field: str, path: str) -> None:
    """:class:`InvalidInput` naming ``field`` unless ``path`` is a plain relative path of
    names of at most :data:`MAX_SEGMENT_BYTES` bytes."""
    try:
        check_key(path)
    except UnsafePath as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    long = next((s for s in path.split("/") if len(s.encode()) > MAX_SEGMENT_BYTES), None)
    if long is not None:
        raise InvalidInput(
            f"{field}: the name {long[:40]}... is longer than {MAX_SEGMENT_BYTES} bytes"
        )


@dataclass(frozen=True)
class GroupFiles:
    """One group's folder of one drop-box, for one of its members (or an admin)."""

    box: Dropbox
    group: str
    store: Store

    def key(self, path: str, allowed: tuple[str, ...], action: str) -> str:
        """The store key of ``path`` (relative to the group's folder) if ``action`` is
        allowed in its folder; :class:`Forbidden` or :class:`InvalidInput` otherwise."""
        check_path("path", path)
        folder = path.split("/", 1)[0]
        if folder not in FOLDERS or "/" not in path:
            raise InvalidInput(
                f"path: {path!r} is not a file in one of the group's folders "
                f"({', '.join(f + '/' for f in FOLDERS)})"
            )
        if folder not in allowed:
            raise Forbidden(
                f"{action} is not allowed in {folder}/ (allowed in "
                f"{', '.join(f + '/' for f in allowed)})"
            )
        key = f"{self.group}/{path}"
        self.confined(path, key)
        return key

    def group_root(self) -> Path | None:
        """The real path of the group's folder of a local drop-box (None for a bucket)."""
        root = self.store.local_root
        return None if root is None else Path(os.path.realpath(root / self.group))

    def confined(self, path: str, key: str) -> Path | None:
        """The real path of ``key`` in a local drop-box, :class:`Forbidden` unless it lies
        inside the group's folder (a symbolic link may lead elsewhere)."""
        root, group_root = self.store.local_root, self.group_root()
        if root is None or group_root is None:
            return None
        real = Path(os.path.realpath(root / key))
        if real != group_root and group_root not in real.parents:
            raise Forbidden(f"path: {path} leads outside the group's folder (a symbolic link)")
        return real


def group_files(
    engine: Engine, settings: Settings, user: User, dropbox: str, group: str | None
) -> GroupFiles:
    """The folder of ``group`` (by default the user's only group of ``dropbox``) if
    ``user`` is one of its members or an admin."""
    boxes = {b.name: b for b in list_dropboxes(engine, user)}
    box = boxes.get(dropbox)
    if box is None:
        raise NotFound(f"no drop-box is named {dropbox!r} for you; `ferry dropbox list`")
    names = [g.name for g in box.groups]
    if group is None:
        if len(names) != 1:
            raise InvalidInput(
                f"group: name one of your groups of drop-box {dropbox!r} ({', '.join(names)})"
            )
        group = names[0]
    if group not in names:
        raise Forbidden(f"group: {group!r} is not a group of drop-box {dropbox!r} of yours")
    return GroupFiles(box, group, open_dropbox_store(box, settings))


def list_group_files(files: GroupFiles, prefix: str = "") -> list[dict[str, object]]:
    """The group's files under ``prefix`` (relative to its folder), with their sizes."""
    if prefix:
        check_path("prefix", prefix.removesuffix("/"))
    if prefix and prefix.split("/", 1)[0] not in FOLDERS:
        raise InvalidInput(
            f"prefix: {prefix!r} is not inside the group's folders "
            f"({', '.join(f + '/' for f in FOLDERS)})"
        )
    base = f"{files.group}/"
    return [
        {"path": e.path.removeprefix(base), "size": e.size}
        for e in sorted(files.store.list(base + prefix), key=lambda e: e.path)
        if e.path.rsplit("/", 1)[-1] != FOLDER_MARKER
    ]


def _head(files: GroupFiles, path: str, key: str) -> Entry:
    try:
        return files.store.head(key)
    except NotFound:  # the store's own message names where the drop-box lies
        raise NotFound(f"path: {path} is not a file of the group's folder") from None


def read_group_file(files: GroupFiles, path: str) -> bytes:
    key = files.key(path, READABLE, "downloading")
    entry = _head(files, path, key)
    if entry.size > MAX_READ_BYTES:
        raise InvalidInput(
            f"path: {path} has {entry.size} bytes, more than {MAX_READ_BYTES} read through "
            "the service; download it from the store directly"
        )
    real, group_root = files.confined(path, key), files.group_root()
    if real is None or group_root is None:
        return files.store.get(key)
    try:  # checked on the open file: a link swapped in since is not followed out
        return read_confined(real, group_root)
    except UnsafePath:
        raise Forbidden(f"path: {path} leads outside the group's folder") from None


def write_group_file(files: GroupFiles, path: str, data: bytes) -> None:
    key = files.key(path, WRITABLE, "uploading")
    try:
        files.store.put(key, data)
    except (StoreUnreachable, StoreAuthError):
        raise
    except StoreError:
        if files.store.local_root is None:
            raise
        # the store's own message names the service's folders: not for members
        raise Conflict(
            f"path: {path} cannot be written: a file or folder of its name, or of one of "
            "its folders, is in the way"
        ) from None


def delete_group_file(files: GroupFiles, path: str) -> None:
    key = files.key(path, REMOVABLE, "deleting")
    _head(files, path, key)  # NotFound for a file that is not there
    files.store.delete(key)


def presign_group_file(
    files: GroupFiles, path: str, method: str, seconds: int | None, settings: Settings
) -> tuple[str, datetime]:
    """A URL that lets its holder ``method`` (``PUT`` in ``inputs/``, ``configs/``,
    ``submissions/``; ``GET`` in ``configs/``, ``results/``) the group's file ``path``
    directly at the store, for ``seconds`` (at most ``presign_seconds``), and when it
    expires. :class:`NotSupported` for a drop-box on a local folder."""
    if method not in ("GET", "PUT"):
        raise InvalidInput(f"method: {method!r}; allowed: GET (download), PUT (upload)")
    if method == "GET":
        key = files.key(path, READABLE, "downloading")
    else:
        key = files.key(path, WRITABLE, "uploading")
    longest = settings.presign_seconds
    if seconds is not None and not 1 <= seconds <= longest:
        raise InvalidInput(f"expires_in: {seconds}; give 1 to {longest} seconds")
    if files.store.scheme not in ("s3", "gs", "az"):
        raise NotSupported(
            f"drop-box {files.box.name!r} lies in a local folder, which has no presigned "
            "URLs; upload and download through the service (or copy with the store's "
            "own tools)"
        )
    lasts = timedelta(seconds=seconds or longest)
    expires = datetime.now(UTC) + lasts
    return presign(files.store, method, key, lasts), expires
