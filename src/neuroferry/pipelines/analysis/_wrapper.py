"""Running one analysis task: the wrapper around an analysis's function.

For one dispatch model, :func:`prepare_task` merges the parameters (fixed < overrides <
distributed, :func:`merge_parameters`), validates them with the analysis's model and
computes the result identity over the code, the input locations (the model's
``file_location`` if given, else its ``s3_location``) and the validated parameters.
:func:`run_task` then runs the function in a private scratch folder, hashes every file it
wrote there, and uploads the folder to ``{results}/{analysis}/{record name}/``: a folder of
its own, so that no two results mix. A run that fails uploads nothing.

The wrapper runs where the data is (a Dask worker): it never opens the database. It
returns a small JSON result, the facts the provenance record is made of
(:mod:`._provenance`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import re
import resource
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from neuroferry.config import Settings
from neuroferry.errors import InvalidInput, StoreError, validation_problems
from neuroferry.pipelines.analysis._identity import CodeIdentity, code_identity, result_identity
from neuroferry.pipelines.analysis._models import DispatchModel, merge_parameters
from neuroferry.pipelines.analysis._provenance import RESULT_KIND, provenance_record, record_name
from neuroferry.pipelines.analysis._registry import Analysis, AnalysisRun, validate_parameters
from neuroferry.stores import Store, SyncOptions, open_store, sync

READ_BYTES = 16 * 2**20
"""The most bytes of an output file read at once to hash it."""


@dataclass(frozen=True)
class PreparedTask:
    """One task's validated parameters and the identity of its result."""

    model: DispatchModel
    parameters: BaseModel
    code: CodeIdentity
    identity: str

    @property
    def locations(self) -> list[str]:
        return input_locations(self.model)


def input_locations(model: DispatchModel) -> list[str]:
    """The locations a task reads, sorted: its files if it names any, else its assets."""
    return sorted(model.file_location or model.s3_location)


def task_parameters(
    analysis: Analysis,
    model: DispatchModel,
    fixed: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BaseModel:
    """The parameters one task runs with: ``fixed`` < ``overrides`` < the model's
    distributed set, validated by the analysis's model (:class:`InvalidInput` names each
    wrong field)."""
    merged = merge_parameters(fixed, overrides, model.distributed_parameters)
    return validate_parameters(analysis, merged)


def prepare_task(
    analysis: Analysis,
    model: DispatchModel,
    code: CodeIdentity,
    fixed: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PreparedTask:
    """The task's validated parameters and result identity."""
    parameters = task_parameters(analysis, model, fixed, overrides)
    identity = result_identity(code, input_locations(model), parameters)
    return PreparedTask(model, parameters, code, identity)


def results_location(results: str, analysis: str, identity: str, owner_id: int | None) -> str:
    """Where one result's files go: ``{results}/{analysis}/{record name}``, the record
    name being the identity and the owner (one user's run never replaces another's
    files, nor its record)."""
    return f"{results.rstrip('/')}/{analysis}/{record_name(identity, owner_id)}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _usage() -> resource.struct_rusage:
    # the task's own thread where the platform can tell (thread workers share a process)
    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    return resource.getrusage(who)


def _resources(before: resource.struct_rusage, after: resource.struct_rusage) -> dict[str, Any]:
    return {
        "user_seconds": round(after.ru_utime - before.ru_utime, 6),
        "system_seconds": round(after.ru_stime - before.ru_stime, 6),
        # ru_maxrss is the peak of the whole process (KiB on Linux), not of the task
        "max_rss_kib": after.ru_maxrss,
        "blocks_read": after.ru_inblock - before.ru_inblock,
        "blocks_written": after.ru_oublock - before.ru_oublock,
    }


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def output_files(folder: Path) -> list[dict[str, Any]]:
    """Every file under ``folder`` (by path, ``/``-separated): path, size and sha256."""
    return [
        {
            "path": p.relative_to(folder).as_posix(),
            "size": p.stat().st_size,
            "sha256": _hash_file(p),
        }
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def input_files(model: DispatchModel, open_input: Callable[[str], Store]) -> list[dict[str, Any]]:
    """Size and store tag of each file the model names (a head, not a read); a folder
    (``x.zarr``) counts its files and their total size."""
    found = []
    for url in model.file_location or []:
        parent, _, name = url.rstrip("/").rpartition("/")
        store = open_input(parent)
        try:
            entry = store.head(name)
            found.append({"location": url, "size": entry.size, "etag": entry.etag})
        except StoreError:
            entries = list(store.list(name + "/"))
            found.append(
                {"location": url, "size": sum(e.size for e in entries), "files": len(entries)}
            )
    return found


def _package_versions(code: CodeIdentity) -> dict[str, str]:
    """The versions of neuroferry, of the analysis's distribution and of what it requires."""
    return dict(_versions(code.source))


@functools.lru_cache(maxsize=64)
def _versions(source: str | None) -> tuple[tuple[str, str], ...]:
    """:func:`_package_versions` of a distribution, read once per process (as the code
    that runs is imported once)."""
    names = ["neuroferry", "pydantic"]
    if source:
        names.append(source)
        for requirement in requires(source) or []:
            if "extra ==" not in requirement:
                names.append(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
    found = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return tuple(sorted(found.items()))


def _outputs(analysis: Analysis, returned: Any) -> Any:
    """The function's small outputs as JSON, validated by the output model if any."""
    if analysis.outputs is None:
        if returned is None:
            return None
        if isinstance(returned, BaseModel):
            return returned.model_dump(mode="json")
        return dict(returned)
    try:
        if isinstance(returned, analysis.outputs):
            return returned.model_dump(mode="json")
        if isinstance(returned, BaseModel):
            returned = returned.model_dump()
        return analysis.outputs.model_validate(returned or {}).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInput(
            f"analysis {analysis.name!r} returned outputs its output model refuses: "
            + "; ".join(validation_problems(exc))
        ) from None


@contextlib.contextmanager
def _scratch_folder(parent: Path | None) -> Iterator[Path]:
    """A private folder holding an empty ``results`` folder, removed afterwards: one left
    empty (a short task's usual case) with two ``rmdir`` calls, anything else whole. Never
    used for a second run: what a run leaves running cannot reach the next one's files."""
    folder = Path(tempfile.mkdtemp(prefix="ferry-analysis-", dir=parent))
    (folder / "results").mkdir()
    try:
        yield folder
    finally:
        try:
            os.rmdir(folder / "results")
            os.rmdir(folder)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)


def run_task(
    analysis: Analysis,
    task: PreparedTask,
    *,
    results: str | None,
    location: str | None = None,
    open_input: Callable[[str], Store],
    log: logging.Logger,
    check_cancelled: Callable[[], None] = lambda: None,
    settings: Settings | None = None,
    dry_run: bool = False,
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Run one task and upload its results folder to ``location`` (by default
    ``{results}/{analysis}/{identity}``; ``dry_run``: nothing is uploaded, and ``results``
    may be None). The result: what the
    provenance record says (see :func:`neuroferry.pipelines.analysis.provenance_record`).
    An exception of the analysis propagates, and nothing is uploaded."""
    if location is None and results:  # a run of the service itself (no owner)
        location = results_location(results, analysis.name, task.identity, None)
    started = _now()
    before = _usage()
    with _scratch_folder(scratch) as folder:
        out = folder / "results"
        returned = analysis.run(
            AnalysisRun(
                inputs=task.model,
                parameters=task.parameters,
                results=out,
                open_store=open_input,
                log=log,
                check_cancelled=check_cancelled,
                location=None if dry_run else location,
            )
        )
        outputs = _outputs(analysis, returned)
        files = output_files(out)
        resources = _resources(before, _usage())
        finished = _now()
        inputs = input_files(task.model, open_input)
        if not dry_run:
            assert location is not None, "a run that uploads needs a results store"
            check_cancelled()
            _upload(out, location, settings)
            log.info("uploaded %d files to %s", len(files), location)
    return {
        "kind": RESULT_KIND,
        "identity": task.identity,
        "analysis": analysis.name,
        "location": location,
        "code": task.code.as_dict(),
        "parameters": task.parameters.model_dump(mode="json"),
        "inputs": task.model.model_dump(mode="json"),
        "input_files": inputs,
        "outputs": outputs,
        "files": files,
        "python": platform.python_version(),
        "packages": _package_versions(task.code),
        "host": socket.gethostname(),
        "started": started,
        "finished": finished,
        "resources": resources,
    }


def _upload(folder: Path, location: str, settings: Settings | None) -> None:
    """Copy ``folder`` to ``location``, replacing what an earlier attempt left there."""
    dest = open_store(location, create=True, settings=settings)
    if not any(folder.iterdir()) and next(iter(dest.list()), None) is None:
        return  # nothing made and nothing to replace
    report = sync(
        folder.as_uri(),
        dest,
        SyncOptions(delete=True, confine_to=folder.resolve()),
        settings=settings,
    )
    if not report.ok:
        raise StoreError(f"uploading the results to {location} failed: {report.failed}")


def run_locally(
    analysis: Analysis,
    model: DispatchModel,
    parameters: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = True,
    results: str | None = None,
    allow_dirty: bool = False,
    settings: Settings | None = None,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Run ``analysis`` on one dispatch model here, with ``parameters`` (overridden by the
    model's distributed set), in a temporary folder. ``dry_run`` (the default) uploads
    nothing and writes no record: the result says what would be uploaded (``files``),
    where (``location``, when ``results`` is given) and what the provenance record would
    say (``record``). Without ``dry_run``, the files go to ``results`` (a store URL)."""
    if not dry_run and not results:
        raise InvalidInput("results: give the store URL to upload the results to")
    task = prepare_task(analysis, model, code_identity(analysis, allow_dirty), parameters)
    result = run_task(
        analysis,
        task,
        results=results,
        open_input=lambda url: open_store(url, settings=settings),
        log=log or logging.getLogger(f"neuroferry.analysis.{analysis.name}"),
        settings=settings,
        dry_run=dry_run,
    )
    return {**result, "record": provenance_record(result)}
