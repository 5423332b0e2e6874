"""Keeping a running drop-box job's files up to date from its tasks: each dataset's state,
its status file and the certificate, ``end.txt`` once the job has ended, and the job
cancelled once a dataset has run longer than its group or config allows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from neuroferry.db import dropbox_submissions, transaction, utc
from neuroferry.dropbox._bypass import deliver_results
from neuroferry.dropbox._layout import (
    END_MARKER,
    FAILED,
    INITIALIZING,
    STATUS_OF_TASK,
    certificate,
    certificate_key,
    end_key,
    stamp,
    status_file,
    status_key,
)
from neuroferry.dropbox._registry import Dropbox, group_limits, open_dropbox_store
from neuroferry.dropbox._submission import ENDED, INDENT, RUNNING, utc_now
from neuroferry.engine import (
    TERMINAL,
    cancel_job,
    get_job,
    job_tasks,
    log_key,
    read_log_part,
    usage_key,
)
from neuroferry.errors import FerryError, InvalidInput, NotFound
from neuroferry.stores import Store

if TYPE_CHECKING:
    from neuroferry.dropbox._watcher import Watch

STD_LINES = 200
"""The last lines of a dataset's log kept in its status file."""
LOG_BYTES = 256 * 1024
"""The most bytes of a dataset's log read for its status file."""
SECONDS_PER_MINUTE = 60.0
"""A minute of the groups' limits and ``__duration__``, in seconds."""


def _iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def _std(watch: Watch, job_id: int, task: Mapping[str, Any], store_url: str) -> list[str]:
    """The last lines of a dataset's task log (its standard output and error), with the
    drop-box's store URL left out of the paths."""
    try:
        data, size = read_log_part(
            watch.engine, watch.log_store(), job_id, "run", task["map_index"], limit=LOG_BYTES
        )
        if size > LOG_BYTES:
            data, _ = read_log_part(
                watch.engine,
                watch.log_store(),
                job_id,
                "run",
                task["map_index"],
                offset=size - LOG_BYTES,
                limit=LOG_BYTES,
            )
    except FerryError:
        return []
    # the group sees its own paths, not where the service keeps the drop-box
    text = data.decode(errors="replace").replace(store_url.rstrip("/") + "/", "")
    return text.splitlines(keepends=True)[-STD_LINES:]


def _usage(watch: Watch, job_id: int, task: Mapping[str, Any]) -> dict[str, Any]:
    """The last CPU and memory use its worker wrote for a dataset's task ({} if none)."""
    key = usage_key(log_key(job_id, "run", task["map_index"], task["attempt"]))
    try:
        found = json.loads(watch.log_store().get(key))
    except (FerryError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _elapsed(task: Mapping[str, Any], usage: Mapping[str, Any], done: bool) -> float | None:
    """Seconds the dataset's task has run: its start to its end once done, else as of
    its last sample (so that the files change with the samples, not every refresh)."""
    if done and task["started"] is not None and task["finished"] is not None:
        seconds: float = (task["finished"] - task["started"]).total_seconds()
        return max(seconds, 0.0)
    value = usage.get("elapsed_seconds")
    return float(value) if isinstance(value, int | float) else None


def dataset_states(
    watch: Watch, box: Dropbox, row: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """Each dataset's state from its job's tasks, and whether the job has ended."""
    job_id = row["job_id"]
    try:
        job = get_job(watch.engine, job_id)
        tasks = job_tasks(watch.engine, job_id)
    except NotFound:
        job, tasks = {"state": "cancelled", "error": f"job {job_id} was deleted"}, []
    ended = job["state"] in TERMINAL
    by_url: dict[str, Mapping[str, Any]] = {}
    dispatch_error = None
    for task in tasks:
        if task["name"] == "dispatch" and task["state"] in ("failed", "cancelled"):
            dispatch_error = task.get("error") or task["state"]
        if task["name"] == "run" and task["map_index"] >= 0:
            model = (task.get("params") or {}).get("model") or {}
            for url in model.get("file_location") or []:
                by_url[url] = task
    out = []
    created = utc(row["created"])
    prefix = box.store_url.rstrip("/") + "/"
    for d in row["datasets"]:
        run_task = by_url.get(d["url"])
        entry: dict[str, Any] = {"dataname": d["dataname"], "name": d["name"]}
        if run_task is None:
            failed = dispatch_error or (job.get("error") or job["state"] if ended else None)
            entry.update(
                status=FAILED if failed else INITIALIZING,
                time=str(created.replace(tzinfo=None)),
                error=failed,
                finished=bool(failed),
            )
        else:
            status = STATUS_OF_TASK.get(run_task["state"], INITIALIZING)
            if ended and status == INITIALIZING:
                status = FAILED
            done = run_task["state"] in TERMINAL or ended
            started = run_task["started"] is not None
            std = _std(watch, job_id, run_task, box.store_url) if started else []
            last = next((s.strip() for s in reversed(std) if s.strip()), None)
            location = (run_task.get("params") or {}).get("location")
            usage = _usage(watch, job_id, run_task) if started else {}
            entry.update(
                cpu=usage.get("cpu_percent"),
                memory=usage.get("memory_bytes"),
                elapsed=_elapsed(run_task, usage, done) if started else None,
            )
            entry.update(
                status=status,
                time=stamp(run_task["finished"] if done else run_task["started"] or created),
                finished=done,
                error=run_task.get("error") or (run_task["state"] if status == FAILED else None),
                worker=run_task.get("worker"),
                command=f"job {job_id} run[{run_task['item']}] attempt {run_task['attempt']}",
                start=_iso(run_task["started"]),
                finish=_iso(run_task["finished"]) if done else None,
                std=std,
                last=last,
                results=location.removeprefix(prefix)
                if status != FAILED and isinstance(location, str)
                else None,
            )
        out.append(entry)
    return out, ended


def enforce_duration(watch: Watch, box: Dropbox, row: dict[str, Any]) -> None:
    """Cancel a submission's job once one of its datasets has run longer than its group's
    ``max_minutes`` or the config's ``__duration__`` (the smaller), saying so in the
    certificate."""
    own = (row.get("parameters") or {}).get("own") or {}
    caps = [
        m for m in (group_limits(box, row["group_name"]).max_minutes, own.get("__duration__")) if m
    ]
    if not caps:
        return
    limit = min(caps)
    now = utc_now()
    try:
        tasks = job_tasks(watch.engine, row["job_id"])
    except NotFound:
        return
    late = [
        t
        for t in tasks
        if t["name"] == "run"
        and t["state"] == "running"
        and t["started"] is not None
        and (now - t["started"]).total_seconds() > limit * SECONDS_PER_MINUTE
    ]
    if not late:
        return
    try:
        cancel_job(watch.engine, watch.log_store(), row["job_id"])
    except InvalidInput:  # it ended meanwhile
        return
    at = (now - utc(row["created"])).total_seconds()
    line = (
        f"{INDENT}[Internal (limits)] {len(late)} dataset(s) ran longer than {limit} minutes "
        "(the group's limit or the config's __duration__): the job is cancelled."
    )
    row["setup_log"] = [*row["setup_log"], [line, round(at, 2)]]
    row["written"] = None
    with transaction(watch.engine) as conn:
        conn.execute(
            update(dropbox_submissions)
            .where(dropbox_submissions.c.id == row["id"])
            .values(setup_log=row["setup_log"], written=None)
        )


def write_files(
    store: Store,
    folder: str,
    setup_log: Sequence[Sequence[Any]],
    datasets: Sequence[Mapping[str, Any]],
    refresh: float,
) -> None:
    """A submission's dataset status files, then its certificate."""
    for d in datasets:
        store.put(status_key(folder, d["name"]), status_file(d))
    store.put(certificate_key(folder), certificate(setup_log, datasets, refresh).encode())


def refresh_submission(watch: Watch, box: Dropbox, row: Mapping[str, Any]) -> None:
    """Rewrite a running submission's certificate and status files when a dataset's state
    changed, and write ``end.txt`` (last) once its job has ended."""
    row = dict(row)
    enforce_duration(watch, box, row)
    datasets, ended = dataset_states(watch, box, row)
    store = open_dropbox_store(box, watch.settings)
    if ended:  # a storage bypass's results go to its resultpath first
        noted = deliver_results(watch, box, row, store)
        at = round((utc_now() - utc(row["created"])).total_seconds(), 2)
        row["setup_log"] = [*row["setup_log"], *([line, at] for line in noted)]
    fingerprint = hashlib.sha256(
        json.dumps([datasets, ended], sort_keys=True, default=str).encode()
    ).hexdigest()
    folder = row["folder"]
    if fingerprint != row["written"]:
        write_files(store, folder, row["setup_log"], datasets, watch.settings.dropbox_refresh)
    if ended:
        store.put(end_key(folder), END_MARKER)
    elif fingerprint == row["written"]:
        return  # nothing changed: no write (the refresher looks at every running job)
    with transaction(watch.engine) as conn:
        conn.execute(
            update(dropbox_submissions)
            .where(dropbox_submissions.c.id == row["id"])
            .values(
                written=fingerprint,
                state=ENDED if ended else RUNNING,
                setup_log=row["setup_log"],
                updated=utc_now(),
            )
        )
