"""A group's files through the service, with its members' own accounts: as in the
original, a group reaches only its own folder; ``inputs/`` and ``submissions/`` can be
written and deleted but not read back, ``configs/`` can be read and written, ``results/``
read and deleted."""

from __future__ import annotations

from dataclasses import dataclass

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
from neuroferry.errors import Forbidden, InvalidInput, NotFound, UnsafePath
from neuroferry.stores import Store, check_key

READABLE = ("configs", "results")
WRITABLE = ("inputs", "configs", "submissions")
REMOVABLE = ("inputs", "configs", "submissions", "results")
MAX_READ_BYTES = 64 << 20
"""The largest file read through the service (bigger ones: with the store's own tools)."""


@dataclass(frozen=True)
class GroupFiles:
    """One group's folder of one drop-box, for one of its members (or an admin)."""

    box: Dropbox
    group: str
    store: Store

    def key(self, path: str, allowed: tuple[str, ...], action: str) -> str:
        """The store key of ``path`` (relative to the group's folder) if ``action`` is
        allowed in its folder; :class:`Forbidden` or :class:`InvalidInput` otherwise."""
        try:
            check_key(path)
        except UnsafePath as exc:
            raise InvalidInput(f"path: {exc}") from None
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
        return f"{self.group}/{path}"


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
    if prefix and (prefix.split("/", 1)[0] not in FOLDERS or ".." in prefix.split("/")):
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


def read_group_file(files: GroupFiles, path: str) -> bytes:
    key = files.key(path, READABLE, "downloading")
    entry = files.store.head(key)
    if entry.size > MAX_READ_BYTES:
        raise InvalidInput(
            f"path: {path} has {entry.size} bytes, more than {MAX_READ_BYTES} read through "
            "the service; download it from the store directly"
        )
    return files.store.get(key)


def write_group_file(files: GroupFiles, path: str, data: bytes) -> None:
    files.store.put(files.key(path, WRITABLE, "uploading"), data)


def delete_group_file(files: GroupFiles, path: str) -> None:
    key = files.key(path, REMOVABLE, "deleting")
    files.store.head(key)  # NotFound for a file that is not there
    files.store.delete(key)
