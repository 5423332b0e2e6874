"""Readers of chunked arrays: Zarr v2/v3 (``zarr``, local or in a store) and N5 (``n5``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuroferry.errors import FerryError
from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._imageio import same_kind
from neuroferry.pipelines.ingest._n5 import N5Dataset, N5Error
from neuroferry.pipelines.ingest._params import N5Params, ZarrParams, check_axes
from neuroferry.pipelines.ingest._readers import Range, Reader, shown_range, source_error

DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}
"""The axes of an array whose metadata do not name them, by number of dimensions."""

_ORDER = "tczyx"


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


_checked_stores: dict[type, type] = {}


def _checked_store_class(base: type) -> Any:
    """A subclass of zarr's ``LocalStore`` whose reads first pass each file's path to
    ``check_file`` (which refuses a symlink that leads out of the granted folders)."""
    if base not in _checked_stores:

        class CheckedLocalStore(base):  # type: ignore[valid-type,misc]
            check_file: Any = None

            def _check(self, key: str) -> None:
                if self.check_file is not None:
                    self.check_file(self.root / key)

            async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
                self._check(key)
                return await super().get(key, *args, **kwargs)

            async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
                key_ranges = list(key_ranges)
                for key, _ in key_ranges:
                    self._check(key)
                return await super().get_partial_values(prototype, key_ranges)

        _checked_stores[base] = CheckedLocalStore
    return _checked_stores[base]


def _named_axes(names: Any) -> str | None:
    """Axes from metadata names (``["z", "y", "x"]``), if they are valid ones."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        return None
    try:
        return (
            check_axes("".join(n.lower()[0] for n in names))
            if all(len(n) == 1 for n in names)
            else None
        )
    except ValueError:
        return None


class _ArrayReader(Reader):
    """Shared reading of an n-dimensional array with named axes."""

    transient = ("_opened",)
    what = "array"

    def __init__(self, params: Any, config: IngestConfig) -> None:
        super().__init__(params, config)
        p: ZarrParams | N5Params = params
        if not _is_url(p.path):
            self.absolute("source.params.path", p.path)
        self._opened: tuple[Any, str] | None = None

    def source_paths(self) -> list[tuple[str, str]]:
        p: ZarrParams | N5Params = self.params  # type: ignore[assignment]
        return [] if _is_url(p.path) else [("source.params.path", p.path.removeprefix("file://"))]

    def source_urls(self) -> list[tuple[str, str]]:
        p: ZarrParams | N5Params = self.params  # type: ignore[assignment]
        return [("source.params.path", p.path)] if _is_url(p.path) else []

    @property
    def label(self) -> str:
        """The array's location, for messages."""
        raise NotImplementedError

    def _open(self) -> tuple[Any, str | None]:
        """The array (``shape``, ``dtype``) and the axes its metadata name, if any."""
        raise NotImplementedError

    def _get(self, array: Any, region: tuple[slice, ...], index: dict[str, int]) -> np.ndarray:
        raise NotImplementedError

    def _array(self) -> tuple[Any, str]:
        if self._opened is None:
            p: ZarrParams | N5Params = self.params  # type: ignore[assignment]
            array, named = self._open()
            ndim = len(array.shape)
            axes = p.axes or named or DEFAULT_AXES.get(ndim)
            if axes is None or len(axes) != ndim:
                raise source_error(
                    self.label,
                    {},
                    f"the {self.what} has {ndim} dimensions {tuple(array.shape)}"
                    + (f", but source.params.axes is {axes!r}" if axes else "")
                    + "; give source.params.axes (e.g. 'tczyx')",
                )
            self._opened = (array, axes)
        return self._opened

    def _size(self, array: Any, axes: str, axis: str) -> int:
        return int(array.shape[axes.index(axis)]) if axis in axes else 1

    def _check(self, t: int, z: Range, y: Range, x: Range) -> None:
        p: ZarrParams | N5Params = self.params  # type: ignore[assignment]
        array, axes = self._array()
        index = {"t": t}
        found = np.dtype(array.dtype)
        if not same_kind(found, self.dtype):
            raise source_error(
                self.label,
                index,
                f"the data type is {found}, but the config says dtype {self.dtype}; set dtype: "
                f"{found}",
            )
        channels = self._size(array, axes, "c")
        if p.channel is not None:
            if p.channel >= channels:
                raise source_error(
                    self.label, index, f"has {channels} channels, so no channel {p.channel}"
                )
            if self.config.channels != 1:
                raise source_error(
                    self.label, index, "source.params.channel reads one channel; use channels: 1"
                )
        elif channels != self.config.channels:
            raise source_error(
                self.label,
                index,
                f"has {channels} channels (axes {axes!r}), but the config says channels: "
                f"{self.config.channels}",
            )
        if t >= self._size(array, axes, "t"):
            raise source_error(
                self.label,
                index,
                f"has {self._size(array, axes, 't')} time points, so no time point {t}",
            )
        for name, (start, stop) in (("z", z), ("y", y), ("x", x)):
            size = self._size(array, axes, name)
            if stop > size:
                raise source_error(
                    self.label,
                    index,
                    f"the region {shown_range(name, (start, stop))} lies beyond the {self.what} "
                    f"(shape {tuple(array.shape)}, axes {axes!r}: {size} along {name}); check "
                    f"extent.{name}",
                )

    def read(self, t: int, z: Range, y: Range, x: Range) -> np.ndarray:
        p: ZarrParams | N5Params = self.params  # type: ignore[assignment]
        out = self.new_block(z, y, x)
        self._check(t, z, y, x)
        array, axes = self._array()
        ranges = {"t": (t, t + 1), "z": z, "y": y, "x": x}
        if p.channel is not None:
            ranges["c"] = (p.channel, p.channel + 1)
        region = tuple(
            slice(*ranges[a]) if a in ranges else slice(0, int(n))
            for a, n in zip(axes, array.shape, strict=True)
        )
        data = self._get(array, region, {"t": t, "z": z[0]})
        present = [a for a in _ORDER if a in axes]
        data = np.transpose(data, [axes.index(a) for a in present])
        sizes = [data.shape[present.index(a)] if a in axes else 1 for a in _ORDER]
        out[...] = data.reshape(sizes)[0]
        return out

    def check(self) -> None:
        e = self.config.extent
        self._check(e.t[1] - 1, e.z, e.y, e.x)


class ZarrReader(_ArrayReader):
    """A Zarr v2 or v3 array in a local folder or a store (``s3://…``); for an OME-Zarr
    image's group, its first (full-resolution) level."""

    name = "zarr"
    params_model = ZarrParams
    what = "Zarr array"

    @property
    def label(self) -> str:
        p: ZarrParams = self.params  # type: ignore[assignment]
        return f"{p.path}/{p.array}" if p.array else p.path

    def _store(self) -> Any:
        from zarr.storage import LocalStore

        p: ZarrParams = self.params  # type: ignore[assignment]
        if _is_url(p.path):
            from neuroferry.stores import open_store, zarr_store

            url = self.store_url("source.params.path", p.path)
            try:
                store = open_store(url, settings=self.settings)
            except FerryError as exc:
                raise source_error(p.path, {}, f"cannot open the store: {exc}") from None
            return zarr_store(store, read_only=True)
        local = self.local_folder(p.path.removeprefix("file://"), "the Zarr store")
        store = _checked_store_class(LocalStore)(local, read_only=True)
        store.check_file = self.local_file
        return store

    def _open(self) -> tuple[Any, str | None]:
        import zarr

        p: ZarrParams = self.params  # type: ignore[assignment]
        try:
            node = zarr.open(store=self._store(), path=p.array or "", mode="r")
        except FerryError:
            raise
        except Exception as exc:
            raise source_error(
                self.label, {}, f"no Zarr array or group here ({type(exc).__name__}: {exc})"
            ) from None
        named: str | None = None
        if isinstance(node, zarr.Group):
            attrs: Any = node.attrs.asdict()
            multiscales: Any = attrs.get("multiscales") or (attrs.get("ome") or {}).get(
                "multiscales"
            )
            try:
                first = multiscales[0]
                level = str(first["datasets"][0]["path"])
                named = _named_axes(
                    [a["name"] if isinstance(a, dict) else a for a in first["axes"]]
                )
            except (TypeError, KeyError, IndexError):
                raise source_error(
                    self.label,
                    {},
                    "is a Zarr group, not an array; give the array's path in source.params.array",
                ) from None
            try:
                node = node[level]
            except KeyError:
                raise source_error(
                    self.label, {}, f"the OME-Zarr level {level!r} is missing"
                ) from None
            if not isinstance(node, zarr.Array):
                raise source_error(self.label, {}, f"{level!r} is not an array")
        else:
            names = getattr(node.metadata, "dimension_names", None)
            named = _named_axes(list(names)) if names else None
        return node, named

    def _get(self, array: Any, region: tuple[slice, ...], index: dict[str, int]) -> np.ndarray:
        try:
            return np.asarray(array[region])
        except Exception as exc:
            raise source_error(
                self.label,
                index,
                f"cannot read the region {region}: {type(exc).__name__}: {exc}",
            ) from None


class N5Reader(_ArrayReader):
    """An N5 dataset in a local folder (raw, gzip, bzip2, xz, blosc or zstd blocks)."""

    name = "n5"
    params_model = N5Params
    what = "N5 dataset"

    @property
    def label(self) -> str:
        p: N5Params = self.params  # type: ignore[assignment]
        return str(Path(p.path.removeprefix("file://"), p.dataset))

    def _open(self) -> tuple[Any, str | None]:
        p: N5Params = self.params  # type: ignore[assignment]
        container = self.local_folder(p.path.removeprefix("file://"), "the N5 container")
        root = self.local_file(container / p.dataset) if p.dataset else container
        try:
            dataset = N5Dataset(root, check_file=self.local_file)
        except N5Error as exc:
            raise source_error(exc.path, {}, str(exc)) from None
        names = dataset.attributes.get("axes")
        named = _named_axes(list(reversed(names))) if isinstance(names, list) else None
        return dataset, named

    def _get(self, array: Any, region: tuple[slice, ...], index: dict[str, int]) -> np.ndarray:
        try:
            return np.asarray(array.read(region))
        except N5Error as exc:
            grid = f" (block {list(reversed(exc.block))} in N5 order)" if exc.block else ""
            raise source_error(exc.path, index, f"{exc}{grid}") from None
