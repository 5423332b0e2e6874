"""Readers: a source volume, read region by region in source voxel coordinates.

A reader is chosen by ``source.plugin``: a built-in name, an entry point of the group
``neuroferry.ingest_readers``, or a ``package.module:Class`` path. Readers are pickled to
Dask workers, so they keep no open files across pickling.
"""

from __future__ import annotations

import importlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from neuroferry.config import Settings, get_settings
from neuroferry.errors import InvalidInput, SourceDataError
from neuroferry.grants import Access, internal_access
from neuroferry.pipelines.ingest._config import IngestConfig, config_problems

ENTRY_POINT_GROUP = "neuroferry.ingest_readers"

BUILTIN_READERS: dict[str, str] = {
    "image-folder": "neuroferry.pipelines.ingest._reader_images:ImageFolderReader",
    "catmaid": "neuroferry.pipelines.ingest._reader_images:CatmaidReader",
    "multipage-tiff": "neuroferry.pipelines.ingest._reader_tiff:MultipageTiffReader",
    "tiff": "neuroferry.pipelines.ingest._reader_tiff:TiffReader",
    "zarr": "neuroferry.pipelines.ingest._reader_arrays:ZarrReader",
    "n5": "neuroferry.pipelines.ingest._reader_arrays:N5Reader",
}
"""The readers that ship with neuroferry (also registered as entry points)."""

Range = tuple[int, int]


def describe_index(index: Mapping[str, int]) -> str:
    """``t=0, z=7`` for an index."""
    return ", ".join(f"{k}={v}" for k, v in index.items())


def source_error(path: str | Path, index: Mapping[str, int], problem: str) -> SourceDataError:
    """A SourceDataError that names the file (or array) and the position in the source."""
    where = f" ({describe_index(index)})" if index else ""
    return SourceDataError(f"{path}{where}: {problem}", str(path), dict(index))


def shown_range(name: str, value: Range) -> str:
    return f"{name}=[{value[0]}, {value[1]})"


def _carry_on() -> None:
    """The default checkpoint: nothing stops a check."""


class Reader(ABC):
    """Reads a source volume; coordinates are absolute source voxel indices."""

    name: ClassVar[str]
    """The reader's name in ``source.plugin``."""
    params_model: ClassVar[type[BaseModel]]
    """Validates ``source.params``."""
    transient: ClassVar[tuple[str, ...]] = ()
    """Attributes (open files, caches) that are not pickled; they are rebuilt on use."""

    def __init__(self, params: BaseModel, config: IngestConfig) -> None:
        self.params = params
        self.config = config
        self.settings: Settings | None = None
        """The service's settings (store credentials); set by open_reader."""
        self.access: Access | None = None
        """What the job's owner may read; set by open_reader (``None``: the service's own
        job, which may read anything but the service's own files)."""
        self.checkpoint: Callable[[], None] = _carry_on
        """Called between units of a long :meth:`check` (a slice, a file); the ingest's
        tasks set it to raise when the job was cancelled."""

    @property
    def dtype(self) -> np.dtype[Any]:
        """The data type of what :meth:`read` returns (the config's ``dtype``)."""
        return np.dtype(self.config.dtype)

    @abstractmethod
    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        """The voxels of time point ``t`` in the half-open ranges ``z``, ``y``, ``x``, as an
        array of shape (c, nz, ny, nx) and the config's dtype. A missing or unreadable file,
        data of another shape or dtype, or a region beyond the data raise SourceDataError
        naming the file and the index."""

    @abstractmethod
    def check(self) -> None:
        """A quick look at the whole source before any data moves: every file the extent
        needs exists, the first slice (tile, page) has the configured shape and dtype, and
        the extent lies within the data. Raises SourceDataError naming the file and index."""

    def source_paths(self) -> list[tuple[str, str]]:
        """The local files and folders (or path templates) the parameters name, each with
        the parameter's name; they must lie under the folders the job's owner may read."""
        return []

    def source_urls(self) -> list[tuple[str, str]]:
        """The store URLs the parameters name, each with the parameter's name; they must
        lie under the store prefixes the job's owner may read."""
        return []

    # -- helpers for readers --------------------------------------------------------------

    def new_block(self, z: Range, y: Range, x: Range) -> np.ndarray:
        """A zero-filled result array for a region (c, nz, ny, nx)."""
        check_region(z, y, x)
        return np.zeros(
            (self.config.channels, z[1] - z[0], y[1] - y[0], x[1] - x[0]), dtype=self.dtype
        )

    def absolute(self, label: str, path: str) -> Path:
        """``path`` as a Path; InvalidInput naming ``label`` when it is not absolute."""
        if path.startswith("file://"):
            path = path.removeprefix("file://")
        if not path or not os.path.isabs(path):
            raise InvalidInput(
                f"{label}: {path!r} is not an absolute path; give the full path of the source "
                "on the machine that runs the job"
            )
        return Path(path)

    def grants(self) -> Access:
        """What this reader may read: the job owner's grants (set by open_reader)."""
        if self.access is None:
            self.access = internal_access(
                self.settings if self.settings is not None else get_settings()
            )
        return self.access

    def local_file(self, path: str | Path) -> Path:
        """``path``, if its real path (symlinks followed) is one the job's owner may read;
        Forbidden (or InvalidInput for a malformed path) otherwise."""
        self.grants().check_folder("source", str(path), real=True)
        return Path(path)

    def local_folder(self, path: str | Path, what: str) -> Path:
        """``path``, as :meth:`local_file`, which must be a folder: SourceDataError says
        that ``what`` (e.g. ``the image folder``) does not exist or is not a folder."""
        folder = self.local_file(path)
        if not folder.is_dir():
            state = "is not a folder" if folder.exists() else "does not exist"
            raise source_error(folder, {}, f"{what} {state}")
        return folder

    def store_url(self, label: str, url: str) -> str:
        """The canonical form of a source store URL the job's owner may read."""
        return self.grants().check_read_url(label, url)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self.transient:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self.transient:
            self.__dict__.setdefault(name, None)


def check_region(z: Range, y: Range, x: Range) -> None:
    """Refuse an empty or negative region (a caller's mistake, not the data's)."""
    for name, (start, stop) in (("z", z), ("y", y), ("x", x)):
        if start < 0 or stop <= start:
            raise ValueError(f"{name} range [{start}, {stop}) is empty or negative")


# -- the registry ------------------------------------------------------------------------

_installed: dict[str, str] | None = None
_lock = threading.Lock()


def _entry_points() -> dict[str, str]:
    global _installed
    with _lock:
        if _installed is None:
            _installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return dict(_installed)


def reader_names() -> list[str]:
    """The names of the built-in and installed readers."""
    return sorted({*BUILTIN_READERS, *_entry_points()})


def _import(target: str, what: str) -> Any:
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise InvalidInput(f"source.plugin: {what} is not a 'package.module:Class' path")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise InvalidInput(
            f"source.plugin: cannot import reader {what}: {type(exc).__name__}: {exc}"
        ) from exc
    except AttributeError:
        raise InvalidInput(f"source.plugin: {module_name} has no {attr} (reader {what})") from None
    return obj


def reader_class(plugin: str) -> type[Reader]:
    """The reader class that ``source.plugin`` names; InvalidInput lists the known readers
    when it names none."""
    installed = _entry_points()
    target = installed.get(plugin) or BUILTIN_READERS.get(plugin)
    if target is None:
        if "." not in plugin and ":" not in plugin:
            raise InvalidInput(
                f"source.plugin: unknown reader {plugin!r}; known readers: "
                f"{', '.join(reader_names())}, or a 'package.module:Class' path of your own",
                [{"field": "source.plugin", "message": f"unknown reader {plugin!r}"}],
            )
        target = plugin
    cls = _import(target, repr(plugin))
    if not (isinstance(cls, type) and issubclass(cls, Reader)):
        raise InvalidInput(
            f"source.plugin: {plugin!r} is not a reader (a subclass of "
            "neuroferry.pipelines.ingest.Reader)"
        )
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise InvalidInput(f"source.plugin: reader {plugin!r} does not define {missing}")
    return cls


def open_reader(
    config: IngestConfig, *, settings: Settings | None = None, access: Access | None = None
) -> Reader:
    """The reader of ``config.source``, its parameters validated. Touches no file (that is
    :meth:`Reader.check`'s job), but refuses sources (folders by their spelling, store
    URLs) that ``access`` does not allow (default: the service's own access, which refuses
    only its own files; the settings are read when not given)."""
    settings = settings if settings is not None else get_settings()
    plugin = config.source.plugin
    if plugin not in BUILTIN_READERS and plugin not in _entry_points():
        allowed = settings.ingest_reader_paths
        if allowed is False or (allowed is None and settings.mode == "production"):
            raise InvalidInput(
                f"source.plugin: {plugin!r} is not an installed reader, and this service "
                "does not load readers by module path (FERRY_INGEST_READER_PATHS); "
                f"installed readers: {', '.join(reader_names())}",
                [{"field": "source.plugin", "message": "reader paths are not allowed here"}],
            )
    cls = reader_class(plugin)
    try:
        params = cls.params_model.model_validate(config.source.params)
    except ValidationError as exc:
        problems = [
            {"field": f"source.params.{p['field']}".rstrip("."), "message": p["message"]}
            for p in config_problems(exc, cls.params_model)
        ]
        lines = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidInput(f"invalid reader parameters: {lines}", problems) from exc
    reader = cls(params, config)
    reader.settings = settings
    reader.access = access if access is not None else internal_access(settings)
    for label, value in [*reader.source_paths(), *reader.source_urls()]:
        reader.access.check_read(label, value)
    return reader
