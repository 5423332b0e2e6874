"""Dispatch folders as the original dispatcher writes them: one
``model_dump_json(indent=4)`` file per task, named by a random uuid4, in numbered folders
``0/ 1/ …`` (each folder is one wrapper run's ``job_dict/``), in a local folder or a store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from pydantic import ValidationError

from neuroferry.config import Settings
from neuroferry.errors import InvalidInput, validation_problems
from neuroferry.grants import Access
from neuroferry.pipelines.analysis._dispatch import in_parallel
from neuroferry.pipelines.analysis._models import DispatchModel
from neuroferry.stores import Store, open_store

#: ``<folder number>/<name>.json``, or ``<name>.json`` for a single ``job_dict`` folder.
_DISPATCH_FILE = re.compile(r"(?:(\d+)/)?([^/]+\.json)")


def _check_spread(num_parallel_workers: int | None, tasks_per_job: int | None) -> None:
    if num_parallel_workers is not None and tasks_per_job is not None:
        raise InvalidInput("give num_parallel_workers or tasks_per_job, not both")
    for label, value in (
        ("num_parallel_workers", num_parallel_workers),
        ("tasks_per_job", tasks_per_job),
    ):
        if value is not None and value < 1:
            raise InvalidInput(f"{label} must be at least 1, got {value}")


def folder_of(
    index: int,
    total: int,
    *,
    num_parallel_workers: int | None = None,
    tasks_per_job: int | None = None,
) -> int:
    """The folder of task ``index`` of ``total``.

    With ``tasks_per_job`` (the original dispatcher's setting), task *i* goes to folder
    *i* // ``tasks_per_job``. With ``num_parallel_workers``, the tasks are cut, in order,
    into min(total, workers) folders whose sizes differ by at most one. Neither: one task
    per folder (the original's default)."""
    _check_spread(num_parallel_workers, tasks_per_job)
    if num_parallel_workers is None:
        return index // (tasks_per_job or 1)
    size, bigger = divmod(total, num_parallel_workers)
    edge = bigger * (size + 1)  # the first `bigger` folders hold one task more
    return index // (size + 1) if index < edge else bigger + (index - edge) // size


def _existing(store: Store) -> str | None:
    for entry in store.list():
        if _DISPATCH_FILE.fullmatch(entry.path):
            return entry.path
    return None


def write_dispatch_folder(
    models: Sequence[DispatchModel],
    out: str,
    num_parallel_workers: int | None = None,
    *,
    tasks_per_job: int | None = None,
    settings: Settings | None = None,
    access: Access | None = None,
) -> list[str]:
    """Write one file per model under ``out`` (a local folder or a store URL), spread over
    numbered folders as :func:`folder_of` says; the keys written, in the models' order.

    ``out`` must not hold a dispatch folder already (its tasks would mix with these). With
    ``access``, ``out`` must be a place the job's owner may write."""
    _check_spread(num_parallel_workers, tasks_per_job)
    if access is not None:
        out = access.check_write_url("dispatch folder", out)
    store = open_store(out, create=True, settings=settings)
    found = _existing(store)
    if found is not None:
        raise InvalidInput(
            f"{store.url} already holds a dispatch folder ({found}); write to an empty one"
        )
    spread = {"num_parallel_workers": num_parallel_workers, "tasks_per_job": tasks_per_job}
    total = len(models)
    keys = [f"{folder_of(i, total, **spread)}/{uuid.uuid4()}.json" for i in range(total)]

    def put(i: int) -> None:
        store.put(keys[i], models[i].model_dump_json(indent=4).encode("utf-8"))

    in_parallel(put, range(len(models)))
    return keys


def read_dispatch_folder(
    path_or_url: str, *, settings: Settings | None = None
) -> list[DispatchModel]:
    """The models of a dispatch folder (``0/<uuid>.json`` …, as the original dispatcher or
    :func:`write_dispatch_folder` writes them; or the ``<uuid>.json`` files of one numbered
    folder), by folder number, then file name (the order within a folder is not kept:
    names are random). Other files are ignored. :class:`InvalidInput` names a file that
    is not a dispatch model, and says so when there is none."""
    store = open_store(path_or_url, settings=settings)
    keys: list[tuple[int, str, str]] = []
    for entry in store.list():
        match = _DISPATCH_FILE.fullmatch(entry.path)
        if match is not None:
            folder = int(match[1]) if match[1] is not None else -1
            keys.append((folder, match[2], entry.path))
    if not keys:
        raise InvalidInput(f"{store.url} holds no dispatch files (0/<uuid>.json, 1/<uuid>.json, …)")
    keys.sort()

    def read(key: str) -> DispatchModel:
        try:
            return DispatchModel.model_validate_json(store.get(key))
        except ValidationError as exc:
            raise InvalidInput(
                f"{store.url}/{key} is not a dispatch model: "
                + "; ".join(validation_problems(exc, "the file"))
            ) from exc

    return in_parallel(read, [key for _folder, _name, key in keys])
