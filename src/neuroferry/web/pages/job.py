"""/jobs/{id}: one job with its tasks (mapped instances grouped under their task), their
logs, cancel and retry.

The page refreshes itself while the job runs: its script fetches the same URL with
``partial=1``, which answers with the part of the page that changes.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.engine import (
    DESTINATION_KEY,
    TERMINAL,
    cancel_job,
    get_job,
    job_tasks,
    may_change,
    owner_of_job,
    retry_job,
)
from neuroferry.errors import ConfigError, InvalidInput, NotFound
from neuroferry.pipelines.analysis import KIND as ANALYSIS
from neuroferry.pipelines.analysis import recorded
from neuroferry.services import Services
from neuroferry.stores import Store
from neuroferry.web._deps import services
from neuroferry.web.pages._format import (
    EMPTY,
    elapsed,
    format_duration,
    short_time,
    state_badge,
)
from neuroferry.web.pages._render import page_user, redirect, render, url_with
from neuroferry.web.pages.jobs import ACTIVE_JOB, REFRESH_SECONDS

router = APIRouter()

#: A mapped task shows its instances unless it has more than this many: then only when
#: asked (``?open=TASK``), so that a job of thousands of instances stays quick to show.
OPEN_GROUP_MAX = 12
MAX_JOB_ID = 2**31 - 1


@functools.cache
def _badge(state: str) -> Markup:
    return state_badge(state)


@dataclass(frozen=True, slots=True)
class TaskView:
    """One row of the tasks table, ready to show (a job may have thousands)."""

    key: str
    instance: bool
    name: str
    item: str
    map_index: int
    state: str
    badge: Markup
    attempt: int
    attempt_text: str
    retries_left: int
    error: str
    label: str
    next_try: Markup
    started: Markup
    finished: Markup
    duration: str
    log: str

    @classmethod
    def of(cls, job_id: int, t: Mapping[str, Any], now: datetime | None = None) -> TaskView:
        instance = t["map_index"] >= 0
        mapped = t["placement"] == "map"
        waiting = t["state"] in ("up_for_retry", "up_for_reschedule") and t["not_before"]
        return cls(
            key=f"{t['name']}-{t['map_index']}" if instance else str(t["name"]),
            instance=instance,
            name=str(t["name"]),
            item=str(t["item"] or ""),
            map_index=int(t["map_index"]),
            state=str(t["state"]),
            badge=_badge(str(t["state"])),
            attempt=int(t["attempt"]),
            attempt_text=EMPTY if mapped or not t["attempt"] else str(t["attempt"]),
            retries_left=int(t["retries_left"]),
            error=str(t["error"] or ""),
            label=f"{t['name']} [{t['item']}]" if instance else str(t["name"]),
            next_try=short_time(t["not_before"], now) if waiting else Markup(""),
            started=short_time(t["started"], now),
            finished=short_time(t["finished"], now),
            duration=format_duration(elapsed(t["started"], t["finished"]))
            if t["started"]
            else EMPTY,
            log=log_url(job_id, t) if not mapped and t["attempt"] > 0 else "",
        )


@dataclass
class TaskGroup:
    """A task's row and, for a mapped task, its instances with how many are in each
    state."""

    task: dict[str, Any]
    instances: list[dict[str, Any]]
    open: bool = True
    toggle_url: str = ""
    view: TaskView | None = None
    shown: list[TaskView] = field(default_factory=list)

    @property
    def mapped(self) -> bool:
        return bool(self.task["placement"] == "map")

    @property
    def lazy(self) -> bool:
        """Whether its instances come with the page only when asked for."""
        return len(self.instances) > OPEN_GROUP_MAX

    @property
    def key(self) -> str:
        return str(self.task["name"])

    @property
    def counts(self) -> list[tuple[str, int]]:
        found = Counter(i["state"] for i in self.instances)
        order = [
            "running",
            "queued",
            "up_for_retry",
            "up_for_reschedule",
            "pending",
            "failed",
            "cancelled",
            "succeeded",
            "skipped",
        ]
        return [(s, found[s]) for s in order if found.get(s)] + [
            (s, n) for s, n in found.items() if s not in order
        ]


def task_groups(rows: Iterable[Mapping[str, Any]]) -> list[TaskGroup]:
    """Tasks in pipeline order, each with its mapped instances (rows as ``job_tasks``
    gives them: a mapped task's instances after its own row)."""
    groups: list[TaskGroup] = []
    by_name: dict[str, TaskGroup] = {}
    for row in rows:
        row = dict(row)
        if row["map_index"] < 0 or row["name"] not in by_name:
            group = TaskGroup(row, [])
            groups.append(group)
            by_name[row["name"]] = group
        else:
            by_name[row["name"]].instances.append(row)
    return groups


def _fact(value: Any) -> str:
    """A summary value as a line of text."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return str(value)


def log_url(job_id: int, task: Mapping[str, Any], attempt: int | None = None) -> str:
    """The API's URL of a task's log (the latest attempt unless ``attempt``)."""
    params = [f"map_index={int(task['map_index'])}"] if task["map_index"] >= 0 else []
    if attempt is not None:
        params.append(f"attempt={int(attempt)}")
    query = "?" + "&".join(params) if params else ""
    return f"/api/v2/jobs/{job_id}/tasks/{quote(str(task['name']), safe='')}/logs{query}"


def _open_groups(request: Request, job_id: int, groups: list[TaskGroup]) -> None:
    """Which mapped tasks show their instances (the small ones and those the URL opens),
    their rows as shown, and the link that shows or hides each (the page's script does it
    in place)."""
    asked = request.query_params.getlist("open")
    now = datetime.now(UTC)
    for g in groups:
        g.open = not g.lazy or g.key in asked
        g.view = TaskView.of(job_id, g.task, now)
        g.shown = [TaskView.of(job_id, t, now) for t in g.instances] if g.open else []
        others = [name for name in asked if name != g.key]
        g.toggle_url = url_with(request, open=others if g.open else [*others, g.key])
        g.toggle_url += f"#t-{g.key}"


def _record_pages(
    held: Services, job: Mapping[str, Any], groups: list[TaskGroup]
) -> dict[str, str]:
    """An analysis job's provenance record pages, by the key of each ``run`` instance
    shown that computed its result or was skipped as computed before."""
    if job["kind"] != ANALYSIS.name:
        return {}
    done = {
        v.item: v.key
        for g in groups
        if g.key == "run"
        for v in g.shown
        if v.state in ("succeeded", "skipped")
    }
    if not done:
        return {}
    owner = owner_of_job(held.engine, job["owner_id"])
    found = recorded(held.catalog, list(done), owner, include_dirty=True)
    return {done[i]: f"/analyses/records/{quote(str(r['id']), safe='')}" for i, r in found.items()}


def _job_context(request: Request, held: Services, viewer: User, job_id: int) -> dict[str, Any]:
    if not 1 <= job_id <= MAX_JOB_ID:
        raise NotFound(f"job {job_id} does not exist")
    job = get_job(held.engine, job_id, viewer)
    try:
        rows = job_tasks(held.engine, job_id, viewer)
        tasks_error = None
    except (InvalidInput, ConfigError) as exc:  # its kind is gone: the job shows, not its tasks
        rows, tasks_error = [], str(exc)
    state = job["state"]
    summary = job.get("summary") or {}
    groups = task_groups(rows)
    _open_groups(request, job_id, groups)
    return {
        "job": job,
        "groups": groups,
        "records": _record_pages(held, job, groups),
        "tasks_error": tasks_error,
        "summary_items": [(str(k), _fact(v)) for k, v in summary.items()],
        "destination": summary.get(DESTINATION_KEY) or summary.get("volume"),
        "spec_json": json.dumps(job["spec"], indent=2, default=str),
        "can_cancel": may_change(job, viewer)
        and state not in TERMINAL
        and job["cancel_requested"] is None,
        "can_retry": may_change(job, viewer) and state in ("failed", "cancelled"),
        "active": state in ACTIVE_JOB,
        "refresh_seconds": REFRESH_SECONDS,
        "short_time": short_time,
    }


@dataclass(frozen=True)
class JobAction:
    """What a button of the job page does: the engine's function, whether the
    orchestrator has new work afterwards, and what the page then says."""

    run: Callable[[Engine, Store, int, User], object]
    wakes: bool
    done: str


#: The job page's buttons, by the last part of the URL they post to.
ACTIONS = {
    "cancel": JobAction(
        cancel_job,
        False,
        "Cancel requested: tasks not started are cancelled, running ones are told to stop "
        "and end as cancelled.",
    ),
    "retry": JobAction(retry_job, True, "The job runs again from the tasks that did not succeed."),
}


def _job_page(
    request: Request,
    held: Services,
    viewer: User,
    job_id: int,
    status: int = 200,
    error: str | None = None,
) -> Response:
    context = _job_context(request, held, viewer, job_id)
    if request.query_params.get("partial"):
        return render(request, "job_live.html", status, **context)
    action = ACTIONS.get(request.query_params.get("done") or "")
    done = (action.done, "success") if action else None
    return render(request, "job.html", status, error=error, done=done, **context)


@router.get("/jobs/{job_id}")
def job_page(
    request: Request,
    job_id: int,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """One job: its facts, spec, tasks (mapped instances grouped), logs, cancel and retry;
    ``partial=1`` answers with the part that changes while it runs."""
    return _job_page(request, held, me, job_id)


@router.post("/jobs/{job_id}/cancel", name="job_cancel")
@router.post("/jobs/{job_id}/retry", name="job_retry")
def job_action(
    request: Request,
    job_id: int,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Cancel or retry the job (the last part of the URL), then show it again (or why
    that could not be done)."""
    name = request.url.path.rsplit("/", 1)[1]
    action = ACTIONS[name]
    try:
        action.run(held.engine, held.log_store, job_id, me)
    except InvalidInput as exc:
        return _job_page(request, held, me, job_id, exc.status_code, str(exc))
    if action.wakes:
        held.wake()
    return redirect(f"/jobs/{job_id}?done={name}")
