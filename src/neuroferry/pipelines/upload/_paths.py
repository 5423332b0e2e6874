"""Where an upload's folders are, and whether the job's owner may read or remove them."""

from __future__ import annotations

import os
from pathlib import Path

from neuroferry.config import Settings
from neuroferry.engine import TaskFailed
from neuroferry.errors import FerryError
from neuroferry.grants import Access, normalise_path


def staging_root(settings: Settings) -> Path:
    """The folder under which each upload job stages its files (``FERRY_STAGING_DIR``)."""
    root = settings.staging_dir or settings.home / "staging"
    return Path(root).expanduser().absolute()


def check_source_path(label: str, path: str) -> None:
    """Refuse, at submission, a source path that can never be read (relative, control
    characters, ``..`` above the root); whether its owner may read it is checked by the
    engine against their grants (the job's ``reads``)."""
    normalise_path(label, path)


def source_folder(label: str, path: str, access: Access) -> Path:
    """The real path of the folder at ``path`` if it exists, can be read and its real path
    (symlinks followed) is one the job's owner may read; :class:`TaskFailed` names
    ``label`` and the path otherwise."""
    given = Path(path)
    if not given.is_absolute():
        raise TaskFailed(f"{label}: {path!r} is not an absolute path")
    if not given.exists():
        raise TaskFailed(f"{label}: {path} does not exist")
    if not given.is_dir():
        raise TaskFailed(f"{label}: {path} is a file, not a folder")
    try:
        real = access.check_folder(label, path, real=True)
    except FerryError as exc:
        raise TaskFailed(str(exc)) from exc
    if not os.access(real, os.R_OK | os.X_OK):
        raise TaskFailed(f"{label}: {path} cannot be read (permission denied)")
    return real


def source_file(label: str, path: Path, access: Access) -> Path:
    """The real path of a file the job reads from a source folder, if its owner may read
    it (a symlink to a file elsewhere is refused); :class:`TaskFailed` otherwise."""
    try:
        return access.check_folder(label, str(path), real=True)
    except FerryError as exc:
        raise TaskFailed(str(exc)) from exc


def removable_folder(label: str, path: str, access: Access) -> Path:
    """The real path of a source folder the job's owner may remove (inside a folder
    granted to them alone, never a source root); :class:`TaskFailed` otherwise."""
    source_folder(label, path, access)
    try:
        return access.check_removal(label, path, real=True)
    except FerryError as exc:
        raise TaskFailed(str(exc)) from exc
