"""The upload of a job's parts (modality folders, derivatives, metadata) with the sync
engine, one after another, stopped when the job is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroferry.config import Settings
from neuroferry.engine import Cancelled, TaskContext, TaskFailed
from neuroferry.errors import FerryError
from neuroferry.stores import SyncOptions, SyncProgress, SyncReport, sync_async

CANCEL_POLL = 0.25  # seconds between looks at the cancel flag (itself read at most once a second)
FAILURES_SHOWN = 5


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class Part:
    """One folder uploaded to one destination prefix."""

    name: str
    source: str
    """A local folder: its real path, checked against the job owner's grants. Every file
    is read only if, once opened, it lies inside it (see ``SyncOptions.confine_to``)."""
    destination: str
    """A store URL."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class _Counter(SyncProgress):
    """What the part being uploaded has done so far (for a cancelled task's result)."""

    def __init__(self) -> None:
        self.outcomes = {"copied": 0, "same": 0, "failed": 0}
        self.bytes_read = 0

    def advanced(self, nbytes: int) -> None:
        self.bytes_read += nbytes

    def finished(self, path: str, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass
class _Run:
    destination: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    current: tuple[Part, _Counter] | None = None
    failures: list[str] = field(default_factory=list)

    def record(self, part: Part, report: SyncReport) -> None:
        self.done[part.name] = {
            "source": part.source,
            "destination": part.destination,
            "ok": report.ok,
            "files_copied": report.files_copied,
            "bytes_copied": report.bytes_copied,
            "files_skipped": report.files_skipped,
            "bytes_skipped": report.bytes_skipped,
            "files_failed": report.files_failed,
            "seconds": round(report.seconds, 3),
        }
        for path, error in sorted(report.failed.items()):
            self.failures.append(f"{part.name}/{path}: {error}")

    def result(self) -> dict[str, Any]:
        totals = {
            key: sum(int(p[key]) for p in self.done.values())
            for key in ("files_copied", "bytes_copied", "files_skipped", "bytes_skipped")
        }
        result: dict[str, Any] = {"destination": self.destination, "parts": self.done, **totals}
        if self.current is not None:
            part, counter = self.current
            result["interrupted"] = {
                "part": part.name,
                "files_copied": counter.outcomes.get("copied", 0),
                "files_skipped": counter.outcomes.get("same", 0),
                "files_failed": counter.outcomes.get("failed", 0),
                "bytes_read": counter.bytes_read,
            }
        return result


async def _until_cancelled(ctx: TaskContext, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; stop it when the job is cancelled or the task's time runs out."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CANCEL_POLL)
            if done:
                task.result()
                return
            await asyncio.to_thread(ctx.check_cancelled)
    except BaseException:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # lets the sync save its manifest, so that a rerun resumes
        raise


def upload_parts(ctx: TaskContext, destination: str, parts: list[Part]) -> dict[str, Any]:
    """Sync each part to its destination in turn; the bytes and files copied and skipped,
    per part and in total. Raises :class:`TaskFailed` naming the files that failed (a
    retry sends only what is missing), or :class:`Cancelled` with what was done."""
    settings: Settings = ctx.config
    run = _Run(destination)

    async def upload_all() -> None:
        for part in parts:
            counter = _Counter()
            run.current = (part, counter)
            ctx.log.info("uploading %s: %s -> %s", part.name, part.source, part.destination)
            try:
                report = await sync_async(
                    part.source,
                    part.destination,
                    SyncOptions(
                        include=part.include, exclude=part.exclude, confine_to=Path(part.source)
                    ),
                    progress=counter,
                    settings=settings,
                )
            except FerryError as exc:
                raise TaskFailed(
                    f"uploading {part.name} from {part.source} to {part.destination} failed: {exc}"
                ) from exc
            run.current = None
            run.record(part, report)
            ctx.log.info(
                "%s: %d files (%d bytes) copied, %d files already there, %d failed",
                part.name,
                report.files_copied,
                report.bytes_copied,
                report.files_skipped,
                report.files_failed,
            )

    try:
        asyncio.run(_until_cancelled(ctx, upload_all()))
    except Cancelled as exc:
        raise Cancelled(str(exc), run.result()) from exc
    if run.failures:
        for failure in run.failures:
            ctx.log.error("not uploaded: %s", failure)
        shown = "; ".join(run.failures[:FAILURES_SHOWN])
        more = len(run.failures) - FAILURES_SHOWN
        raise TaskFailed(
            f"{count(len(run.failures), 'file')} could not be uploaded to {destination}: {shown}"
            + (f"; and {more} more (see the task's log)" if more > 0 else "")
            + "; a retry sends only what is missing"
        )
    return run.result()
