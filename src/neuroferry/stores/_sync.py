"""The transfer engine: copy what is missing or differs from one store to another.

One pass over the data: each file is read once, hashed (sha256) while it streams and
written with a single put (multipart above the part size). Every put is atomic, so an
interrupted run never leaves a truncated object that looks complete; the manifest
``{dest}/.ferry/manifest.json`` is written every few seconds and at the end, so a run
started again sends only what is missing or differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO

import obstore

from neuroferry.config import Settings, get_settings
from neuroferry.errors import (
    FerryError,
    InvalidInput,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnreachable,
)
from neuroferry.stores._confine import open_confined
from neuroferry.stores._errors import translate
from neuroferry.stores._listing import Listing, list_store
from neuroferry.stores._manifest import ManifestEntry, load_manifest, save_manifest
from neuroferry.stores._obstore import ObstoreStore, backed
from neuroferry.stores._open import open_store
from neuroferry.stores._store import Entry, Store, clean_etag

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
log = logging.getLogger(__name__)
_HASH_IN_THREAD = MiB  # chunks larger than this are hashed off the event loop


@dataclass(frozen=True)
class SyncOptions:
    """How a sync runs. ``None`` means the value from settings (``FERRY_SYNC_*``)."""

    concurrency: int | None = None
    """Files in flight at once."""
    part_size: int | None = None
    """Multipart part size in bytes; files larger than this are streamed in parts."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    dry_run: bool = False
    verify: bool = False
    follow_symlinks: bool = False
    checkpoint_seconds: float = 5.0
    confine_to: Path | None = None
    """A local source is read only inside this folder (a real path, checked by the caller):
    every file and folder is checked after it is opened, on the open descriptor, so one
    swapped for a symlink between the listing and the read is refused, not read."""

    def resolved(self, settings: Settings) -> SyncOptions:
        opts = replace(
            self,
            concurrency=self.concurrency or settings.sync_concurrency,
            part_size=self.part_size or settings.sync_part_size,
        )
        if opts.concurrency is None or opts.concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1, got {opts.concurrency}")
        if opts.part_size is None or opts.part_size < 5 * MiB:
            raise InvalidInput(f"part size must be at least 5 MiB, got {opts.part_size} bytes")
        if opts.confine_to is not None:
            if not Path(opts.confine_to).is_absolute():
                raise InvalidInput(f"confine_to must be an absolute path, got {opts.confine_to}")
            if opts.follow_symlinks:
                raise InvalidInput("confine_to and follow_symlinks cannot be used together")
        return opts


def memory_budget(concurrency: int, part_size: int) -> int:
    """Most bytes of file data a sync holds in memory at once."""
    return max(concurrency, 3) * part_size


def part_size_for(size: int, part_size: int) -> int:
    """The part size for one file: ``part_size``, or larger (whole MiB) when the file would
    otherwise need more than the 10,000 parts S3 allows in one upload."""
    needed = -(-size // MAX_PARTS)
    return max(part_size, -(-needed // MiB) * MiB)


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Whether a relative path matches any glob; a pattern without ``/`` also matches names."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatchcase(path, p) or ("/" not in p and fnmatchcase(name, p)) for p in patterns)


@dataclass
class SyncReport:
    """What a sync did. In a dry run, "copied" and "deleted" are what it would do."""

    source: str
    destination: str
    dry_run: bool = False
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_deleted: int = 0
    files_verified: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_failed(self) -> int:
        return len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def mb_per_s(self) -> float:
        return self.bytes_copied / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "files_copied": self.files_copied,
            "bytes_copied": self.bytes_copied,
            "files_skipped": self.files_skipped,
            "bytes_skipped": self.bytes_skipped,
            "files_failed": self.files_failed,
            "files_deleted": self.files_deleted,
            "files_verified": self.files_verified,
            "failed": [{"path": p, "error": e} for p, e in sorted(self.failed.items())],
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 2),
        }


class SyncProgress:
    """Callbacks a sync makes as it goes; the defaults do nothing."""

    def planned(self, files: int, nbytes: int) -> None:
        """Called once with what is to be transferred (or checked)."""

    def advanced(self, nbytes: int) -> None:
        """Called as bytes of planned files are read."""

    def finished(self, path: str, outcome: str) -> None:
        """Called per file with ``copied``, ``same`` or ``failed``."""


class _Budget:
    """A byte semaphore: bounds the file data held in memory by all transfers together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        nbytes = max(1, min(nbytes, self.limit))
        async with self._cond:
            await self._cond.wait_for(lambda: self.free >= nbytes)
            self.free -= nbytes
        try:
            yield
        finally:
            async with self._cond:
                self.free += nbytes
                self._cond.notify_all()


def _describe(exc: BaseException, store: Store, path: str) -> FerryError | str:
    """The error of one file: a neuroferry error for store failures, else a reason."""
    if isinstance(exc, FerryError):
        return exc
    if isinstance(exc, PermissionError):
        return "permission denied reading the file"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return translate(exc, store.url, f"write {path}")


async def _hash_chunks(chunks: AsyncIterator[Any], hasher: Any) -> AsyncGenerator[Any]:
    async for chunk in chunks:
        if len(chunk) > _HASH_IN_THREAD:
            await asyncio.to_thread(hasher.update, chunk)
        else:
            hasher.update(chunk)
        yield chunk


_STAGING = re.compile(r"#\d+$")  # obstore writes a local file as "name#N", then renames it


def _remove_partial_uploads(root: Path, paths: set[str]) -> int:
    """Delete staging files that an interrupted run left in a local destination."""
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not _STAGING.search(name):
                continue
            full = Path(folder, name)
            if _STAGING.sub("", full.relative_to(root).as_posix()) in paths:
                full.unlink(missing_ok=True)
                removed += 1
    return removed


def _open_local(path: Path, confine: Path | None) -> BinaryIO:
    """A source file opened for reading; with ``confine``, checked on the open file."""
    if confine is not None:
        return open_confined(path, confine)
    return open(path, "rb")


def _read_small(path: Path, confine: Path | None = None) -> tuple[bytes, str]:
    with _open_local(path, confine) as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


class _Sync:
    def __init__(
        self,
        src: ObstoreStore,
        dest: ObstoreStore | None,
        opts: SyncOptions,
        progress: SyncProgress,
    ) -> None:
        assert opts.concurrency is not None and opts.part_size is not None
        self.src, self.dest, self.opts, self.progress = src, dest, opts, progress
        self.part = opts.part_size
        self.workers = opts.concurrency
        self.budget = _Budget(memory_budget(opts.concurrency, opts.part_size))
        # parts of one large file in flight, leaving room for the buffer being filled
        self.parts_in_flight = max(1, min(8, self.budget.limit // self.part // 2 - 2))
        self.report = SyncReport(src.url, dest.url if dest else "", dry_run=opts.dry_run)
        self.manifest: dict[str, ManifestEntry] = {}
        self.copied: dict[str, int] = {}
        self._dirty = False
        self._save_lock = asyncio.Lock()
        self.stopped: FerryError | None = None
        """Set when a store went away or refused the credentials mid-run."""

    # -- reading ----------------------------------------------------------------------

    async def _open(self, path: Path) -> BinaryIO:
        return await asyncio.to_thread(_open_local, path, self.opts.confine_to)

    async def _local_chunks(
        self, path: Path, opened: BinaryIO | None = None
    ) -> AsyncIterator[bytes]:
        f = opened if opened is not None else await self._open(path)
        try:
            while chunk := await asyncio.to_thread(f.read, self.part):
                yield chunk
        finally:
            f.close()

    async def _store_chunks(self, store: ObstoreStore, key: str) -> AsyncIterator[Any]:
        try:
            result = await obstore.get_async(store.raw, key)
            async for chunk in result.stream(min_chunk_size=self.part):
                yield chunk
        except Exception as exc:  # name the object read, not the store being written
            raise translate(exc, f"{store.url}/{key}", "read the object") from exc

    def _source_chunks(self, entry: Entry) -> AsyncIterator[Any]:
        if self.src.local_root is not None:
            return self._local_chunks(self.src.local_root / entry.path)
        return self._store_chunks(self.src, entry.path)

    async def _counted(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for chunk in chunks:
            self.progress.advanced(len(chunk))
            yield chunk

    async def _digest(self, chunks: AsyncIterator[Any]) -> str:
        hasher = hashlib.sha256()
        async with contextlib.aclosing(_hash_chunks(chunks, hasher)) as hashed:
            async for _ in hashed:
                pass
        return hasher.hexdigest()

    # -- one file ---------------------------------------------------------------------

    async def _copy(self, entry: Entry) -> ManifestEntry:
        assert self.dest is not None
        if entry.size <= self.part:
            if self.src.local_root is not None:
                data, sha = await asyncio.to_thread(
                    _read_small, self.src.local_root / entry.path, self.opts.confine_to
                )
                size = len(data)
                put = await obstore.put_async(self.dest.raw, entry.path, data, use_multipart=False)
            else:  # one part at most: usually a single chunk
                parts = [c async for c in self._store_chunks(self.src, entry.path)]
                buf = parts[0] if len(parts) == 1 else b"".join(map(memoryview, parts))
                size = len(buf)
                sha = hashlib.sha256(memoryview(buf)).hexdigest()
                put = await obstore.put_async(self.dest.raw, entry.path, buf, use_multipart=False)
            self.progress.advanced(size)
        else:
            hasher = hashlib.sha256()
            size = 0
            part = part_size_for(entry.size, self.part)
            opened: BinaryIO | None = None
            if self.src.local_root is not None:  # opened (and checked) before anything is put
                path = self.src.local_root / entry.path
                opened = await self._open(path)
                source = self._local_chunks(path, opened)
            else:
                source = self._store_chunks(self.src, entry.path)

            async def stream() -> AsyncGenerator[Any]:
                nonlocal size
                async for chunk in _hash_chunks(self._counted(source), hasher):
                    size += len(chunk)
                    yield chunk

            try:
                async with contextlib.aclosing(stream()) as chunks:
                    put = await obstore.put_async(
                        self.dest.raw,
                        entry.path,
                        chunks,
                        chunk_size=part,
                        max_concurrency=self.parts_in_flight,
                    )
            finally:
                if opened is not None:
                    opened.close()
            sha = hasher.hexdigest()
            return ManifestEntry(size, sha, await self._stored_etag(entry.path, size), entry.etag)
        return ManifestEntry(size, sha, clean_etag(put.get("e_tag")), entry.etag)

    async def _stored_etag(self, path: str, size: int) -> str | None:
        """Check a multipart upload against the store: its size, and the ETag the store
        lists (some servers list another ETag than the one completing the upload gave)."""
        assert self.dest is not None
        meta = await obstore.head_async(self.dest.raw, path)
        if meta["size"] != size:
            raise StoreError(f"destination holds {meta['size']} bytes after an upload of {size}")
        return clean_etag(meta["e_tag"])

    async def _same(self, entry: Entry, dest_entry: Entry) -> ManifestEntry | None:
        """Read both sides; the manifest entry if they hold the same bytes, else None."""
        assert self.dest is not None
        src_sha = await self._digest(self._counted(self._source_chunks(entry)))
        dest_sha = await self._digest(self._store_chunks(self.dest, entry.path))
        if src_sha != dest_sha:
            return None
        return ManifestEntry(entry.size, src_sha, dest_entry.etag, entry.etag)

    async def _transfer(self, entry: Entry, dest_entry: Entry | None) -> None:
        assert self.dest is not None
        if entry.size <= self.part:
            hold = entry.size
        else:
            hold = (self.parts_in_flight + 2) * part_size_for(entry.size, self.part)
        try:
            async with self.budget.hold(hold):
                if dest_entry is not None and (same := await self._same(entry, dest_entry)):
                    self.manifest[entry.path] = same
                    self.report.files_skipped += 1
                    self.report.bytes_skipped += entry.size
                    self._dirty = True
                    self.progress.finished(entry.path, "same")
                    return
                written = await self._copy(entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.manifest.pop(entry.path, None)
            error = _describe(exc, self.dest, entry.path)
            self.report.failed[entry.path] = str(error)
            self.progress.finished(entry.path, "failed")
            if isinstance(error, StoreUnreachable | StoreAuthError) and self.stopped is None:
                self.stopped = error  # every other file would fail the same way: stop
            return
        self.manifest[entry.path] = written
        self.copied[entry.path] = written.size
        self._dirty = True
        self.progress.finished(entry.path, "copied")

    # -- the run ----------------------------------------------------------------------

    async def _save(self) -> None:
        assert self.dest is not None
        async with self._save_lock:
            if not self._dirty:
                return
            self._dirty = False
            await save_manifest(self.dest, dict(self.manifest), self.src.url)

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.opts.checkpoint_seconds)
            try:
                await self._save()
            except FerryError as exc:  # the store is away: try again at the next checkpoint
                log.warning("cannot save the manifest checkpoint: %s", exc)
                self._dirty = True

    async def _pool(self, jobs: list[Any], work: Callable[..., Any]) -> None:
        queue = iter(jobs)

        async def worker() -> None:
            for job in queue:
                if self.stopped is not None:
                    return
                await work(*job)

        await asyncio.gather(*(worker() for _ in range(min(self.workers, len(jobs)))))

    def _selected(self, path: str) -> bool:
        if self.opts.include and not matches(path, self.opts.include):
            return False
        return not matches(path, self.opts.exclude)

    async def _dest_state(self) -> tuple[Listing, dict[str, ManifestEntry]]:
        """The destination's listing and manifest (empty for a folder not made yet)."""
        if self.dest is None:
            return Listing(), {}
        listing, manifest = await asyncio.gather(
            list_store(self.dest, local=False), load_manifest(self.dest)
        )
        return listing, manifest

    def _plan(self, entries: dict[str, Entry], dest: Listing) -> list[tuple[Entry, Entry | None]]:
        """What to transfer: (entry, None) to copy, (entry, dest entry) to compare first.

        Files whose size and tags match the manifest are counted as skipped, unread.
        """
        jobs: list[tuple[Entry, Entry | None]] = []
        for path, entry in entries.items():
            dest_entry = dest.entries.get(path)
            known = self.manifest.get(path)
            if dest_entry is None or dest_entry.size != entry.size:
                jobs.append((entry, None))
            elif (
                known is not None
                and known.size == entry.size
                and known.source == entry.etag
                and known.etag == dest_entry.etag
            ):
                self.report.files_skipped += 1
                self.report.bytes_skipped += entry.size
            else:
                jobs.append((entry, dest_entry))
        jobs.sort(key=lambda job: -job[0].size)  # large files first: they set the pace
        return jobs

    async def run(self) -> SyncReport:
        started = time.monotonic()
        report = self.report
        src_listing, (dest_listing, self.manifest) = await asyncio.gather(
            list_store(
                self.src,
                follow_symlinks=self.opts.follow_symlinks,
                confine_to=self.opts.confine_to,
            ),
            self._dest_state(),
        )
        if not src_listing.entries and not src_listing.problems and self.src.local_root is None:
            raise StoreNotFound(f"source {self.src.url} holds no objects; check the URL")
        report.failed.update({p: e for p, e in src_listing.problems.items() if self._selected(p)})
        entries = {p: e for p, e in src_listing.entries.items() if self._selected(p)}

        jobs = self._plan(entries, dest_listing)
        to_delete = (
            sorted(p for p in dest_listing.entries if p not in entries and self._selected(p))
            if self.opts.delete
            else []
        )

        self.progress.planned(len(jobs), sum(e.size for e, _ in jobs))
        if self.opts.dry_run:
            report.files_copied = len(jobs)
            report.bytes_copied = sum(e.size for e, _ in jobs)
            report.files_deleted = len(to_delete)
            if unverified := sum(1 for _, d in jobs if d is not None):
                report.notes.append(
                    f"{unverified} files of the same size already at the destination were "
                    "counted as to copy; a real run compares their contents first"
                )
            report.seconds = time.monotonic() - started
            return report

        if self.dest is not None and self.dest.local_root is not None:
            root = self.dest.local_root
            if removed := await asyncio.to_thread(_remove_partial_uploads, root, set(entries)):
                report.notes.append(f"removed {removed} partial uploads of an interrupted run")
        checkpoints = asyncio.create_task(self._checkpoints())
        try:
            await self._pool(jobs, self._transfer)
            if self.stopped is not None:
                raise type(self.stopped)(
                    f"{self.stopped} ({len(self.copied)} files were copied before it stopped; "
                    "run the same command again to send the rest)"
                )
            if self.opts.verify:
                await self._verify(entries)
            if to_delete:
                if report.failed:
                    report.notes.append(
                        f"{len(to_delete)} files not deleted from the destination "
                        "because some files failed"
                    )
                else:
                    await self._delete(to_delete)
        except BaseException:
            checkpoints.cancel()
            with contextlib.suppress(Exception):  # best effort: keep what is done for a rerun
                await self._save()
            raise
        checkpoints.cancel()
        await self._save()
        report.files_copied = len(self.copied)
        report.bytes_copied = sum(self.copied.values())
        report.seconds = time.monotonic() - started
        return report

    async def _verify(self, entries: dict[str, Entry]) -> None:
        """Re-read every destination object of this sync and compare its sha256."""
        assert self.dest is not None
        dest = self.dest

        async def check(path: str) -> None:
            known = self.manifest.get(path)
            if known is None:
                return
            async with self.budget.hold(self.part):
                try:
                    sha = await self._digest(self._store_chunks(dest, path))
                except Exception as exc:
                    self.report.failed[path] = f"verify: {_describe(exc, dest, path)}"
                    return
            if sha != known.sha256:
                self.report.failed[path] = "verify: destination content differs from the source"
                self.manifest.pop(path, None)
                self.copied.pop(path, None)
                self._dirty = True
            else:
                self.report.files_verified += 1

        await self._pool([(p,) for p in entries if p not in self.report.failed], check)

    async def _delete(self, paths: list[str]) -> None:
        assert self.dest is not None
        dest = self.dest

        async def remove(path: str) -> None:
            try:
                await obstore.delete_async(dest.raw, path)
            except Exception as exc:
                self.report.failed[path] = f"delete: {_describe(exc, dest, path)}"
                return
            self.manifest.pop(path, None)
            self._dirty = True
            self.report.files_deleted += 1

        await self._pool([(p,) for p in paths], remove)


async def sync_async(
    src: str | Store,
    dest: str | Store,
    options: SyncOptions | None = None,
    *,
    progress: SyncProgress | None = None,
    settings: Settings | None = None,
) -> SyncReport:
    """Copy what is missing or differs from ``src`` to ``dest``; see :func:`sync`."""
    settings = settings or get_settings()
    opts = (options or SyncOptions()).resolved(settings)
    src_store = backed(open_store(src, settings=settings) if isinstance(src, str) else src)
    dest_store: ObstoreStore | None
    if not isinstance(dest, str):
        dest_store = backed(dest)
    else:
        try:
            dest_store = backed(open_store(dest, create=not opts.dry_run, settings=settings))
        except StoreNotFound:
            dest_store = None  # a dry run into a local folder that does not exist yet
    if opts.confine_to is not None and src_store.local_root is None:
        raise InvalidInput(f"confine_to applies to a local source only, not {src_store.url}")
    if dest_store is not None and dest_store.url == src_store.url:
        raise InvalidInput(f"source and destination are the same store: {src_store.url}")
    job = _Sync(src_store, dest_store, opts, progress or SyncProgress())
    if dest_store is None:
        job.report.destination = str(dest)
    return await job.run()


def sync(
    src: str | Store,
    dest: str | Store,
    options: SyncOptions | None = None,
    *,
    progress: SyncProgress | None = None,
    settings: Settings | None = None,
) -> SyncReport:
    """Copy every object of ``src`` that is missing or differs at ``dest``; return a report.

    Objects already at the destination with the manifest's size and tags are skipped
    without being read; objects of the same size that the manifest does not know are
    compared by content. Files that fail are listed in ``report.failed`` and the rest are
    still copied. File data held in memory is bounded by
    ``max(concurrency, 3) * part_size``.
    """
    return asyncio.run(sync_async(src, dest, options, progress=progress, settings=settings))
