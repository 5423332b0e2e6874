"""A group's files through the service, with its members' own accounts: as in the
original, a group reaches only its own folder; ``inputs/`` and ``submissions/`` can be
written and deleted but not read back, ``configs/`` can be read and written, ``results/``
read and deleted."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.dropbox._layout import job_folder
from neuroferry.dropbox._registry import (
    FOLDER_MARKER,
    FOLDERS,
    Dropbox,
    list_dropboxes,
    open_dropbox_store,
)
from neuroferry.dropbox._submission import Rejected, check_timestamp
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


def _check_prefix(prefix: str) -> None:
    if prefix:
        check_path("prefix", prefix.removesuffix("/"))
    if prefix and prefix.split("/", 1)[0] not in FOLDERS:
        raise InvalidInput(
            f"prefix: {prefix!r} is not inside the group's folders "
            f"({', '.join(f + '/' for f in FOLDERS)})"
        )


def list_group_files(files: GroupFiles, prefix: str = "") -> list[dict[str, object]]:
    """The group's files under ``prefix`` (relative to its folder), with their sizes."""
    _check_prefix(prefix)
    base = f"{files.group}/"
    return [
        {"path": e.path.removeprefix(base), "size": e.size}
        for e in sorted(files.store.list(base + prefix), key=lambda e: e.path)
        if e.path.rsplit("/", 1)[-1] != FOLDER_MARKER
    ]


def list_group_folders(files: GroupFiles, prefix: str) -> list[str]:
    """The folders one level below ``prefix`` (``results/``) of the group's folder,
    relative to it (``results/job__caiman-ncap-web_1709647330``), by one listing that
    does not read what lies below them."""
    _check_prefix(prefix)
    prefix = prefix.rstrip("/") + "/"
    base = f"{files.group}/"
    return [p.removeprefix(base) for p in files.store.folders(base + prefix)]


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
        return read_confined(real, group_root, MAX_READ_BYTES)
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


@dataclass(frozen=True)
class SubmitFile:
    """A submit file for data and a config already in a group's folder: where it goes
    (``path``, relative to the group's folder) and what it holds."""

    dropbox: str
    group: str
    timestamp: str
    path: str
    body: bytes

    @property
    def results(self) -> str:
        """The submission's results folder, relative to the group's folder."""
        return job_folder(self.group, self.dropbox, self.timestamp).removeprefix(f"{self.group}/")


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def submit_file(
    dropbox: str,
    group: str,
    data: Sequence[str],
    config: str,
    timestamp: str | None = None,
) -> SubmitFile:
    """The submit file that runs ``dropbox``'s analysis on ``data`` (files of the group's
    ``inputs/``) with ``config`` (a file of its ``configs/``), as ``ferry dropbox submit``
    and the drop-box page write it: ``submissions/{timestamp}_submit.json``. Paths may be
    given with or without the ``inputs/``, ``configs/`` or group prefix; ``timestamp``
    (which names the results folder) defaults to now, in seconds since 1970.
    :class:`InvalidInput` names the field that is wrong."""

    def inside(field: str, value: str, folder: str) -> str:
        value = value.strip().removeprefix(f"{group}/")
        path = value if value.startswith(f"{folder}/") else f"{folder}/{value}"
        check_path(field, path)
        return f"{group}/{path}"

    if not data:
        raise InvalidInput("data: choose at least one file of inputs/ to analyse")
    datanames = [inside("data", d, "inputs") for d in data]
    if not config or not config.strip():
        raise InvalidInput("config: choose a config file of configs/ (.json, .yaml or .yml)")
    configname = inside("config", config, "configs")
    if not configname.lower().endswith(CONFIG_SUFFIXES):
        raise InvalidInput(
            f"config: {configname.split('/', 1)[1]} is neither .json nor .yaml/.yml; "
            "give the analysis's parameters in a JSON or YAML file"
        )
    stamp = str(int(time.time())) if timestamp is None or not timestamp.strip() else timestamp
    room = MAX_SEGMENT_BYTES - len(f"job__{dropbox}_".encode())
    try:
        stamp = check_timestamp({"timestamp": stamp}, room)
    except Rejected as exc:
        problem = exc.problem.removeprefix("'timestamp' ")
        raise InvalidInput(f"timestamp: {problem}; {exc.advice}") from None
    fields = {"dataname": datanames, "configname": configname, "timestamp": stamp}
    return SubmitFile(
        dropbox, group, stamp, f"submissions/{stamp}_submit.json", json.dumps(fields).encode()
    )


def submit(
    files: GroupFiles, data: Sequence[str], config: str, timestamp: str | None = None
) -> SubmitFile:
    """Write the submit file of :func:`submit_file` to the group's ``submissions/``,
    unless its timestamp names a submission of the group already (then
    :class:`InvalidInput`: the watcher would refuse it)."""
    made = submit_file(files.box.name, files.group, data, config, timestamp)
    if list_group_files(files, made.results + "/") or _exists(files, made.path):
        raise InvalidInput(
            f"timestamp: {made.timestamp!r} names a submission of your group already "
            f"({made.results}/); give another one, or leave it empty for now"
        )
    write_group_file(files, made.path, made.body)
    return made


def _exists(files: GroupFiles, path: str) -> bool:
    try:
        files.store.head(f"{files.group}/{path}")
    except NotFound:
        return False
    return True
