"""Where an upload's folders are, and whether a source folder may be read."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from neuroferry.config import Settings
from neuroferry.engine import TaskFailed
from neuroferry.errors import InvalidInput


def staging_root(settings: Settings) -> Path:
    """The folder under which each upload job stages its files (``FERRY_STAGING_DIR``)."""
    root = settings.staging_dir or settings.home / "staging"
    return Path(root).expanduser().absolute()


def allowed_roots(settings: Settings) -> list[Path]:
    """The folders sources must lie under (``FERRY_SOURCE_ROOTS``); empty allows any."""
    return [Path(r).expanduser().resolve() for r in settings.source_roots]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_source_path(label: str, path: str, settings: Settings) -> None:
    """Refuse, at submission, a source path that can never be read: relative, or (by its
    spelling) outside the allowed source folders. The folder itself is checked by the job."""
    if not posixpath.isabs(path):
        raise InvalidInput(f"{label}: {path!r} is not an absolute path; give the full path")
    roots = allowed_roots(settings)
    if roots and not _inside(Path(posixpath.normpath(path)), roots):
        raise InvalidInput(
            f"{label}: {path} is not under an allowed source folder "
            f"({', '.join(map(str, roots))}); ask an administrator to add its folder to "
            "FERRY_SOURCE_ROOTS"
        )


def source_folder(label: str, path: str, settings: Settings) -> Path:
    """The folder at ``path`` if it exists, can be read and lies under the allowed source
    folders (after following symlinks); :class:`TaskFailed` names ``label`` and the path."""
    given = Path(path)
    if not given.is_absolute():
        raise TaskFailed(f"{label}: {path!r} is not an absolute path")
    if not given.exists():
        raise TaskFailed(f"{label}: {path} does not exist")
    if not given.is_dir():
        raise TaskFailed(f"{label}: {path} is a file, not a folder")
    real = given.resolve()
    roots = allowed_roots(settings)
    if roots and not _inside(real, roots):
        shown = f"{path} (which is {real})" if real != given else path
        raise TaskFailed(
            f"{label}: {shown} is not under an allowed source folder "
            f"({', '.join(map(str, roots))}); ask an administrator to add its folder to "
            "FERRY_SOURCE_ROOTS"
        )
    if not os.access(real, os.R_OK | os.X_OK):
        raise TaskFailed(f"{label}: {path} cannot be read (permission denied)")
    return given


def is_source_root(path: Path, settings: Settings) -> bool:
    """Whether ``path`` is one of the allowed source folders themselves (never removed)."""
    return path.resolve() in allowed_roots(settings)
