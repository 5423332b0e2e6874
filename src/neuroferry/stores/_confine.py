"""Reading local files confined to a folder, checked on the open file, not on its name.

A path checked and then opened by name can be swapped in between (a folder replaced by a
symlink to somewhere else). Here a file or folder is opened first and the real path of
the open descriptor is then checked against the root: whatever the name pointed to when
it was opened is what is checked, and what is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from neuroferry.errors import InvalidInput, UnsafePath

_PROC_FD = Path("/proc/self/fd")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def fd_real_path(fd: int, path: Path) -> Path:
    """The real path of the open descriptor ``fd`` (opened from ``path``).

    On Linux it is read from ``/proc/self/fd``; elsewhere ``path``'s real path is used
    only if it is still the very file that is open (same device and inode)."""
    if _PROC_FD.is_dir():
        return Path(os.readlink(_PROC_FD / str(fd)))
    real = Path(os.path.realpath(path))
    now, opened = os.stat(real), os.fstat(fd)
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise UnsafePath(f"{path} changed while it was opened: refused")
    return real


def check_fd(fd: int, path: Path, root: Path) -> Path:
    """The real path of ``fd`` if it lies inside ``root`` (a real path); else
    :class:`UnsafePath` naming the file and where it leads."""
    real = fd_real_path(fd, path)
    if not _inside(real, root):
        raise UnsafePath(
            f"{path} resolves to {real}, outside the source folder {root}: refused "
            "(it was replaced or reached through a symlink)"
        )
    return real


def open_confined(path: Path, root: Path) -> BinaryIO:
    """``path`` opened for reading if, once open, it is a regular file inside ``root``.

    A symlink as the last part of ``path`` is opened only if it is inside ``root`` too:
    it is not followed blindly (``O_NOFOLLOW``) but resolved and checked on the open file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if not path.is_symlink():
            raise
        del exc  # a symlink: open what it points to, then check where that is
        fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        check_fd(fd, path, root)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path} is not a regular file: refused")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_folder_confined(path: Path, root: Path) -> tuple[int, Path]:
    """A descriptor of the folder ``path`` and its real path, if inside ``root``."""
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        return fd, check_fd(fd, path, root)
    except BaseException:
        os.close(fd)
        raise


def read_confined(path: Path, root: Path, limit: int | None = None) -> bytes:
    """The bytes of the file at ``path``, checked as :func:`open_confined` does;
    :class:`InvalidInput` for a file of more than ``limit`` bytes (never read whole)."""
    with open_confined(path, root) as f:
        if limit is None:
            return f.read()
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(
            f"{path} has more than {limit} bytes ({limit / 2**20:g} MiB), the most it may have"
        )
    return data
