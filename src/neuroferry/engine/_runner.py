"""Running one task instance, on a Dask worker or in the orchestrator."""

from __future__ import annotations

import json
import logging
import os
import pickle
import platform
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuroferry import __version__
from neuroferry.config import Settings
from neuroferry.engine._context import (
    Cancelled,
    Reschedule,
    Skipped,
    TaskContext,
    TaskFailed,
    TaskInstance,
    TaskLog,
    log_key,
)
from neuroferry.engine._kinds import import_function
from neuroferry.engine._usage import UsageMeter, usage_key
from neuroferry.errors import FerryError
from neuroferry.grants import Access
from neuroferry.redaction import redact, secret_values
from neuroferry.stores import Store, open_store

_log_stores: dict[str, Store] = {}


@dataclass
class TaskCall:
    """Everything a worker needs to run one task instance (sent to it by Dask)."""

    instance: TaskInstance
    fn: str
    settings: Settings
    access: Access | None = None
    """What the job's owner may touch (``None``: a job of the service itself)."""
    kind_settings: Any = None
    """The kind's own settings (see ``JobKind.settings_model``)."""
    local: dict[str, Any] = field(default_factory=dict)
    """Local tasks only: ``db``, ``catalog``, ``submit_job`` and ``owner_id`` for the
    context."""

    def __reduce__(self) -> tuple[Any, ...]:
        # the settings, access and kind settings are the same for many calls: pickled
        # once (a batch of calls pickled together holds them once) and decoded once per
        # process, rather than a pydantic model rebuilt for every task
        shared = _shared_blob(self.settings, self.access, self.kind_settings)
        return (_rebuild_call, (self.instance, self.fn, shared, self.local))


_KEPT = 64
_blobs: dict[tuple[int, int, int], tuple[Any, bytes]] = {}
"""Pickled settings, access and kind settings, by the objects' ids (with the objects, so
that the ids stay theirs)."""
_decoded: dict[bytes, tuple[Settings, Access | None, Any]] = {}
"""The same, decoded, by their pickle."""


def _shared_blob(settings: Settings, access: Access | None, kind_settings: Any) -> bytes:
    key = (id(settings), id(access), id(kind_settings))
    known = _blobs.get(key)
    if known is None:
        if len(_blobs) >= _KEPT:
            _blobs.clear()
        objects = (settings, access, kind_settings)
        known = _blobs[key] = (objects, pickle.dumps(objects, pickle.HIGHEST_PROTOCOL))
    return known[1]


def _rebuild_call(
    instance: TaskInstance, fn: str, shared: bytes, local: dict[str, Any]
) -> TaskCall:
    objects = _decoded.get(shared)
    if objects is None:
        if len(_decoded) >= _KEPT:
            _decoded.clear()
        objects = _decoded[shared] = pickle.loads(shared)
    settings, access, kind_settings = objects
    return TaskCall(instance, fn, settings, access, kind_settings, local)


def _log_store(settings: Settings) -> Store:
    url = settings.log_store_url
    if url not in _log_stores:
        _log_stores[url] = open_store(url, create=True, settings=settings)
    return _log_stores[url]


def _time_limit(params: dict[str, Any]) -> float | None:
    minutes = (params.get("image_resources") or {}).get("time_limit")
    if isinstance(minutes, int | float) and not isinstance(minutes, bool) and minutes > 0:
        return float(minutes) * 60
    return None


_JSON_SCALARS = (str, int, float, bool, type(None))
_ALLOWED = (
    "None or JSON values: dicts with str keys, lists, str, int, float, bool and None "
    "(convert others: a set or tuple to a list, a Path or datetime to str)"
)


def _not_json(value: Any, where: str) -> tuple[str, str] | None:
    """Where in ``value`` a part lies that cannot be stored as JSON, and its type."""
    if isinstance(value, _JSON_SCALARS):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, _JSON_SCALARS):
                return f"{where} (a key)", type(key).__name__
            found = _not_json(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _not_json(item, f"{where}[{i}]")
            if found:
                return found
        return None
    return where, type(value).__name__


def check_result(task: TaskInstance, value: Any, what: str = "result") -> None:
    """:class:`TaskFailed` naming the task, the place and the type if ``value`` (what a
    task returned) cannot be stored as JSON."""
    found = _not_json(value, what)
    if found:
        where, type_name = found
        raise TaskFailed(
            f"{task.label} returned a {type_name} as its {where}, which cannot be stored; "
            f"a task returns {_ALLOWED}"
        )


def run_task(call: TaskCall) -> dict[str, Any]:
    """Run one task instance and return its outcome as a small dict: ``state``
    (succeeded, failed, cancelled, up_for_reschedule), ``result``, ``error``, ``after``,
    ``saved_state``, ``worker``, ``seconds`` (how long the function ran). Never raises
    for the task's own errors."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    task = call.instance
    store = _log_store(call.settings)
    secrets = secret_values(call.settings)
    key = log_key(task.job_id, task.task, task.map_index, task.attempt)
    handler = TaskLog(store, key, secrets=secrets)
    # a logger of its own, not kept by the logging module: one per task instance would
    # pile up in a long-lived worker, and each setLevel walks every logger kept
    logger = logging.Logger(
        f"neuroferry.task.{task.job_id}.{task.task}.{task.map_index}", logging.INFO
    )
    logger.handlers = [handler]
    logger.propagate = False
    limit = _time_limit(task.params)
    ctx = TaskContext(
        task,
        config=call.settings,
        log_store=store,
        log=logger,
        deadline=time.monotonic() + limit if limit else None,
        access=call.access,
        kind_settings=call.kind_settings,
        **call.local,
    )
    logger.info(
        "%s of %s job %d (%s), attempt %d, on %s (neuroferry %s, Python %s)",
        task.label,
        task.kind,
        task.job_id,
        task.job_name,
        task.attempt,
        worker,
        __version__,
        platform.python_version(),
    )
    logger.info("function %s with settings %s", call.fn, json.dumps(task.params, default=str))
    handler.start()
    meter = UsageMeter(store, usage_key(key))
    meter.start()
    started = time.monotonic()
    outcome: dict[str, Any]
    try:
        ctx.check_cancelled()
        fn = import_function(call.fn)
        returned = fn(ctx)
        if isinstance(returned, Reschedule):
            check_result(task, dict(returned.state), "Reschedule state")
            logger.info("waiting; looking again in %.0f s", returned.after)
            outcome = {
                "state": "up_for_reschedule",
                "after": returned.after,
                "saved_state": dict(returned.state),
            }
        elif isinstance(returned, Skipped):
            result = {**returned.result, "reason": returned.reason}
            check_result(task, result)
            logger.info("skipped: %s", returned.reason)
            outcome = {"state": "skipped", "result": result}
        else:
            check_result(task, returned)  # results are stored as JSON: fail here, not later
            outcome = {"state": "succeeded", "result": returned}
    except Cancelled as exc:
        logger.info("stopped: the job was cancelled")
        outcome = {"state": "cancelled", "result": exc.result, "error": "cancelled"}
    except FerryError as exc:
        logger.error("failed: %s", exc)
        outcome = {"state": "failed", "error": str(exc)}
    except Exception as exc:  # a task's own bug: keep the traceback in its log
        logger.error("failed: %s: %s\n%s", type(exc).__name__, exc, traceback.format_exc())
        outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        seconds = time.monotonic() - started
        logger.info("finished in %.2f s", seconds)
        meter.close()
        handler.close()
        logger.handlers = []
    if isinstance(outcome.get("error"), str):  # shown to the job's owner: no secrets
        outcome["error"] = redact(outcome["error"], secrets)
    outcome["worker"] = worker
    outcome["seconds"] = seconds
    return outcome
