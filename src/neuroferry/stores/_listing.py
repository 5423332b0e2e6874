"""Listing a store or a local folder: relative paths with sizes and version tags."""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from neuroferry.errors import UnsafePath
from neuroferry.stores._confine import open_folder_confined
from neuroferry.stores._keys import check_key
from neuroferry.stores._store import Entry, Store

#: Objects neuroferry keeps for itself in a destination (the manifest); never synced.
RESERVED_PREFIX = ".ferry/"


@dataclass
class Listing:
    """The entries of a store, and the paths that could not be listed, with the reason."""

    entries: dict[str, Entry] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def _scan(folder: Path, confine: Path | None) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; with ``confine``, of the folder opened and found inside it."""
    if confine is None:
        with os.scandir(folder) as found:
            return list(found)
    fd, _real = open_folder_confined(folder, confine)
    try:
        with os.scandir(fd) as found:
            return list(found)
    finally:
        os.close(fd)


def _walk_local(root: Path, follow_symlinks: bool, confine: Path | None = None) -> Listing:
    listing = Listing()
    real_root = root.resolve()
    if confine is not None:
        follow_symlinks = False  # nothing outside the confining folder is ever read
        real_root = confine

    def visit(folder: Path, rel: str, ancestors: frozenset[Path]) -> None:
        try:
            items = _scan(folder, confine)
        except UnsafePath as exc:
            listing.problems[rel.rstrip("/") or "."] = str(exc)
            return
        except OSError as exc:
            listing.problems[rel or "."] = f"cannot list folder: {exc.strerror or exc}"
            return
        for item in items:
            key = f"{rel}{item.name}"
            path = str(folder / item.name)
            if key == RESERVED_PREFIX.rstrip("/"):
                continue
            try:
                check_key(key)
            except UnsafePath as exc:
                listing.problems[key] = str(exc)
                continue
            try:
                if item.is_symlink():
                    target = Path(path).resolve()
                    inside = target == real_root or real_root in target.parents
                    if not target.exists():
                        listing.problems[key] = f"broken symlink to {os.readlink(path)}"
                        continue
                    if not inside and not follow_symlinks:
                        listing.problems[key] = (
                            f"symlink to {target}, outside the source folder: refused "
                            "(use --follow-symlinks to copy what it points to)"
                        )
                        continue
                st = os.stat(path)
            except OSError as exc:
                listing.problems[key] = f"cannot read: {exc.strerror or exc}"
                continue
            if stat.S_ISDIR(st.st_mode):
                real = Path(path).resolve()
                if real in ancestors:
                    listing.problems[key] = "symlink loop: points to a folder that contains it"
                    continue
                visit(Path(path), key + "/", ancestors | {real})
            elif stat.S_ISREG(st.st_mode):
                tag = f"mtime:{st.st_mtime_ns}:ctime:{st.st_ctime_ns}"
                listing.entries[key] = Entry(key, st.st_size, tag)
            else:
                listing.problems[key] = "not a regular file (device, socket or pipe): skipped"

    visit(root, "", frozenset({real_root}))
    return listing


async def list_store(
    store: Store,
    *,
    follow_symlinks: bool = False,
    local: bool = True,
    confine_to: Path | None = None,
) -> Listing:
    """List every object below the store root, except neuroferry's own ``.ferry/`` objects.

    A ``file://`` store is walked directly (unless ``local`` is false) so that symlinks
    that leave the folder are refused, or followed with ``follow_symlinks``, and unreadable
    entries are reported rather than fatal. Keys that are unsafe (``..``, control
    characters) are reported as problems, never listed.

    ``confine_to`` (a real path) confines the walk of a local folder: each folder is
    opened and listed only if the open folder's real path lies inside it (a folder swapped
    for a symlink after it was checked is reported, not listed), and no symlink out of it
    is followed.
    """
    if local and store.local_root is not None:
        return await asyncio.to_thread(_walk_local, store.local_root, follow_symlinks, confine_to)
    listing = Listing()
    for entry in await asyncio.to_thread(lambda: list(store.list())):
        if entry.path.startswith(RESERVED_PREFIX):
            continue
        try:
            check_key(entry.path)
        except UnsafePath as exc:
            listing.problems[entry.path] = str(exc)
            continue
        listing.entries[entry.path] = entry
    return listing
