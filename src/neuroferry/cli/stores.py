"""``ferry sync`` and ``ferry ls``: the transfer engine and store listings."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import typer

from neuroferry.cli._output import human_bytes, is_terminal, parse_size, print_json
from neuroferry.stores import SyncProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from neuroferry.stores import SyncReport

log = logging.getLogger("neuroferry.sync")

SYNC_HELP = """Copy every file of SRC that is missing or differs at DEST.

SRC and DEST are local folders or store URLs: file:///path, s3://bucket/prefix,
gs://bucket/prefix, az://container/prefix, memory://name. S3 settings come from
FERRY_S3_* or the usual AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_REGION variables (plain http is allowed to a loopback endpoint).

Each file is read once: its sha256 is computed while it streams and is recorded with its
size in DEST/.ferry/manifest.json. Files already at DEST with the manifest's size and tags
are skipped without being read, so running the same command again transfers nothing, and a
run that was interrupted (Ctrl-C, kill -9, the server going away) sends only what is
missing when started again. Uploads are atomic: an interrupted upload never leaves a
truncated object behind.

Memory: at most max(concurrency, 3) x part size of file data is held at once
(16 x 8 MiB = 128 MiB with the defaults).

Symlinks in a local SRC are followed when they point inside SRC; those that point outside
are refused (reported as failed) unless --follow-symlinks is given.

Exit codes: 0 all copied or up to date; 1 some files failed (listed); 2 bad input;
3 a store could not be reached, was not found or refused the credentials; 130 interrupted.
"""


class _Progress(SyncProgress):
    """Rich progress bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, bar: Progress | None) -> None:
        self.bar = bar
        self.task: TaskID | None = None
        self.files = self.files_done = 0
        self.total = self.done = 0
        self._started = time.monotonic()
        self._last_line = self._started

    def planned(self, files: int, nbytes: int) -> None:
        self.files, self.total = files, nbytes
        if self.bar is not None:
            self.task = self.bar.add_task("sync", total=nbytes or None, files=f"0/{files}")
        else:
            log.info("to transfer or check: %d files, %s", files, human_bytes(nbytes))

    def advanced(self, nbytes: int) -> None:
        self.done += nbytes
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=nbytes)
        else:
            self._maybe_log()

    def finished(self, path: str, outcome: str) -> None:
        self.files_done += 1
        if outcome == "failed":
            log.warning("failed: %s", path)
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, files=f"{self.files_done}/{self.files}")
        else:
            self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_line < 5:
            return
        self._last_line = now
        rate = self.done / (now - self._started) / 1e6
        log.info(
            "%d/%d files, %s of %s, %.1f MB/s",
            self.files_done,
            self.files,
            human_bytes(self.done),
            human_bytes(self.total),
            rate,
        )


def _print_summary(report: SyncReport) -> None:
    verb = "would copy" if report.dry_run else "copied"
    lines = [
        f"{verb}: {report.files_copied} files, {human_bytes(report.bytes_copied)}",
        f"up to date: {report.files_skipped} files, {human_bytes(report.bytes_skipped)}",
    ]
    if report.files_deleted:
        lines.append(f"{'would delete' if report.dry_run else 'deleted'}: {report.files_deleted}")
    if report.files_verified:
        lines.append(f"verified: {report.files_verified} files")
    lines.append(f"failed: {report.files_failed} files")
    if not report.dry_run:
        lines.append(f"time: {report.seconds:.2f} s, {report.mb_per_s:.1f} MB/s")
    typer.echo("\n".join(lines))
    for note in report.notes:
        typer.secho(f"note: {note}", fg="yellow", err=True)
    for path, error in sorted(report.failed.items()):
        typer.secho(f"FAILED {path}: {error}", fg="red", err=True)


def sync_command(
    src: str = typer.Argument(..., help="Source folder or store URL."),
    dest: str = typer.Argument(..., help="Destination folder or store URL."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would be done."),
    include: list[str] = typer.Option(
        [], "--include", help="Only paths matching this glob (repeatable); '*' crosses '/'."
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude", help="Skip paths matching this glob (repeatable); wins over --include."
    ),
    delete: bool = typer.Option(
        False, "--delete", help="Delete files at DEST that SRC does not have (not on failures)."
    ),
    verify: bool = typer.Option(
        False, "--verify", help="Re-read every DEST file afterwards and compare its sha256."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-j", min=1, max=512, help="Files in flight (default 16)."
    ),
    part_size: str | None = typer.Option(
        None, "--part-size", help="Multipart part size, at least 5MiB (default 8MiB)."
    ),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Follow symlinks that point outside SRC."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from neuroferry.stores import SyncOptions, sync_async

    options = SyncOptions(
        concurrency=concurrency,
        part_size=parse_size(part_size) if part_size else None,
        include=tuple(include),
        exclude=tuple(exclude),
        delete=delete,
        dry_run=dry_run,
        verify=verify,
        follow_symlinks=follow_symlinks,
    )
    show_bar = is_terminal() and not quiet and not json_out
    if not show_bar and not quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bar = (
        Progress(
            TextColumn("[bold]{task.fields[files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        if show_bar
        else None
    )
    progress = _Progress(bar)
    try:
        if bar is not None:
            with bar:
                report = asyncio.run(sync_async(src, dest, options, progress=progress))
        else:
            report = asyncio.run(sync_async(src, dest, options, progress=progress))
    except KeyboardInterrupt:
        typer.secho(
            f"interrupted after {progress.files_done} files; "
            "run the same command again to send the rest",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(130) from None
    if json_out:
        print_json(report.as_dict())
        for note in report.notes:
            typer.secho(f"note: {note}", fg="yellow", err=True)
    else:
        _print_summary(report)
    if not report.ok:
        raise typer.Exit(1)


def ls_command(
    url: str = typer.Argument(..., help="Folder or store URL to list."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List the files of a store with sizes, ETags and, where a sync recorded it, sha256."""
    from neuroferry.stores import Entry, list_store, open_store, read_manifest

    async def gather() -> list[tuple[Entry, str | None]]:
        store = open_store(url)
        listing = await list_store(store, local=False)
        manifest = await asyncio.to_thread(read_manifest, store)
        for path, problem in sorted(listing.problems.items()):
            typer.secho(f"skipped {path!r}: {problem}", fg="yellow", err=True)
        rows = []
        for path, entry in sorted(listing.entries.items()):
            known = manifest.get(path)
            rows.append((entry, known.sha256 if known and known.size == entry.size else None))
        return rows

    rows = asyncio.run(gather())
    for entry, sha in rows:
        if json_out:
            print_json({"path": entry.path, "size": entry.size, "etag": entry.etag, "sha256": sha})
        else:
            typer.echo(f"{entry.size:>14}  {sha or '-':<64}  {entry.path}")
    if not json_out:
        total = sum(entry.size for entry, _ in rows)
        typer.echo(f"{len(rows)} files, {human_bytes(total)}")
