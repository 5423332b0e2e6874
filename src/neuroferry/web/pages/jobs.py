"""/jobs: the jobs a user may see, filtered, sorted and paged; /jobs/{id}: one job with its
tasks (mapped instances grouped under their task), their logs, cancel and retry.

Both pages refresh themselves while jobs run: their scripts fetch the same URL with
``partial=1``, which answers with the part of the page that changes.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from starlette.datastructures import QueryParams

from neuroferry.auth import User, list_users
from neuroferry.engine import (
    JOB_STATES,
    SORTABLE,
    JobQuery,
    cancel_job,
    get_job,
    job_kinds,
    job_state_counts,
    job_tasks,
    list_job_types,
    list_jobs,
    retry_job,
)
from neuroferry.errors import ConfigError, InvalidInput, NotFound
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._format import (
    EMPTY,
    as_datetime,
    elapsed,
    format_ago,
    format_duration,
    state_badge,
)
from neuroferry.web.pages._render import page_user, pager, redirect, render, url_with

router = APIRouter()

#: Rows a page of the list may have (DEFAULT_LIMIT unless chosen).
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_LIMIT = 50
DEFAULT_SORT = "-created"
#: Seconds between two refreshes of a page whose jobs run.
REFRESH_SECONDS = 3
#: A mapped task shows its instances unless it has more than this many: then only when
#: asked (``?open=TASK``), so that a job of thousands of instances stays quick to show.
OPEN_GROUP_MAX = 12
MAX_TEXT = 200
MAX_JOB_ID = 2**31 - 1
#: Job states that change by themselves (the page keeps refreshing while one is listed).
ACTIVE_JOB = frozenset({"pending", "queued", "running"})
#: The sortable columns of the list: (sort key, heading).
COLUMNS = (
    ("id", "Id"),
    ("name", "Name"),
    ("kind", "Kind"),
    ("job_type", "Job type"),
    ("owner", "Owner"),
    ("state", "State"),
    ("created", "Submitted"),
    ("started", "Started"),
    ("finished", "Finished"),
)


# -- the list -------------------------------------------------------------------------


@dataclass
class Filters:
    """What the jobs list shows, as read from its query string, and what was wrong in it
    (by parameter name)."""

    states: list[str] = field(default_factory=list)
    kind: str = ""
    job_type: str = ""
    owner: str = ""
    name: str = ""
    submitted_from: str = ""
    submitted_to: str = ""
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    page: int = 1
    errors: dict[str, str] = field(default_factory=dict)
    after: datetime | None = None
    before: datetime | None = None

    @property
    def any(self) -> bool:
        """Whether anything narrows the list."""
        return bool(
            self.states
            or self.kind
            or self.job_type
            or self.owner
            or self.name
            or self.submitted_from
            or self.submitted_to
        )

    def query(self, offset: int | None = None) -> JobQuery:
        return JobQuery(
            states=tuple(self.states),
            kinds=(self.kind,) if self.kind else (),
            job_types=(self.job_type,) if self.job_type else (),
            owner=self.owner or None,
            name_contains=self.name or None,
            submitted_after=self.after,
            submitted_before=self.before,
            sort=self.sort,
            limit=self.limit,
            offset=self.offset if offset is None else offset,
        )

    @property
    def offset(self) -> int:
        """The first row of the page asked for, from 0."""
        return (self.page - 1) * self.limit


def _text(params: QueryParams, key: str, errors: dict[str, str]) -> str:
    value = (params.get(key) or "").strip()
    if len(value) > MAX_TEXT:
        errors[key] = f"{key}: at most {MAX_TEXT} characters, got {len(value)}"
        return value[:MAX_TEXT]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        errors[key] = f"{key}: control characters are not allowed"
        return ""
    return value


def _day(text: str, key: str, errors: dict[str, str], *, end: bool) -> datetime | None:
    """A day (``2025-04-01``: from its start, or up to its end) or an ISO time."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        return as_datetime(datetime.fromisoformat(text))
    except ValueError:
        errors[key] = f"{key}: {text!r} is not a date; give one as YYYY-MM-DD (e.g. 2025-04-01)"
        return None


def _whole(params: QueryParams, key: str, default: int, errors: dict[str, str]) -> int:
    text = (params.get(key) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        errors[key] = f"{key}: {text[:40]!r} is not a whole number"
        return default
    if value < 1:
        errors[key] = f"{key}: must be at least 1, got {value}"
        return default
    return value


def read_filters(params: QueryParams, viewer: User) -> Filters:
    """The list's filters, sort and page from its query string; every problem is kept in
    ``errors`` under the parameter's name, in words."""
    errors: dict[str, str] = {}
    f = Filters(errors=errors)
    for state in params.getlist("state"):
        if state not in JOB_STATES:
            errors["state"] = (
                f"state: {state[:40]!r} is not a job state; allowed: {', '.join(JOB_STATES)}"
            )
        elif state not in f.states:
            f.states.append(state)
    f.kind = _text(params, "kind", errors)
    f.job_type = _text(params, "job_type", errors)
    f.owner = _text(params, "owner", errors) if viewer.is_admin else ""
    f.name = _text(params, "name", errors)
    f.submitted_from = _text(params, "submitted_from", errors)
    f.submitted_to = _text(params, "submitted_to", errors)
    f.after = _day(f.submitted_from, "submitted_from", errors, end=False)
    f.before = _day(f.submitted_to, "submitted_to", errors, end=True)
    if f.after and f.before and f.after >= f.before:
        errors["submitted_to"] = (
            f"submitted_to: {f.submitted_to} is before submitted_from {f.submitted_from}; "
            "give a range that ends after it starts"
        )
    sort = (params.get("sort") or DEFAULT_SORT).strip()
    if sort.removeprefix("-") not in SORTABLE:
        errors["sort"] = (
            f"sort: cannot sort by {sort[:40]!r}; allowed: {', '.join(SORTABLE)}, "
            "with a leading '-' for descending order"
        )
    else:
        f.sort = sort
    f.limit = _whole(params, "limit", DEFAULT_LIMIT, errors)
    if f.limit not in PAGE_SIZES and "limit" not in errors:
        errors["limit"] = (
            f"limit: {f.limit} rows a page is not offered; choose one of "
            f"{', '.join(map(str, PAGE_SIZES))}"
        )
        f.limit = DEFAULT_LIMIT
    f.page = _whole(params, "page", 1, errors)
    return f


def short_time(value: datetime | str | None, now: datetime | None = None) -> Markup:
    """``2025-04-01 14:30`` (UTC) in a ``<time>``, how long before ``now`` in its title."""
    when = as_datetime(value)
    if when is None:
        return Markup(EMPTY)
    iso = when.isoformat()  # 2025-04-01T14:30:15.123456+00:00
    day, clock = iso[:10], iso[11:19]
    # digits, dashes, colons and words only: nothing to escape (and long lists stay quick)
    return Markup(
        f'<time datetime="{iso}" title="{day} {clock} UTC, {format_ago(when, now)}">'
        f"{day} {clock[:5]}</time>"
    )


@functools.cache
def _badge(state: str) -> Markup:
    return state_badge(state)


def breakable(name: str) -> Markup:
    """``name`` with places to wrap a long line after each ``_`` (as in asset names)."""
    return Markup("_<wbr>").join(escape(name).split("_"))


def _options(held: Services, viewer: User, f: Filters) -> dict[str, Any]:
    """The choices of the filter form, each keeping a value the URL asks for."""
    kinds = sorted(set(job_kinds()) | ({f.kind} if f.kind else set()))
    types = sorted({t.name for t in list_job_types(held.engine)})
    owners: list[str] = []
    if viewer.is_admin:
        owners = sorted({u.name for u in list_users(held.engine)} | ({f.owner} - {""}))
    return {"kinds": kinds, "job_types": types, "owners": owners}


def _jobs_context(request: Request, held: Services, viewer: User) -> tuple[int, dict[str, Any]]:
    f = read_filters(request.query_params, viewer)
    rows: list[dict[str, Any]] = []
    total = 0
    if not f.errors:
        rows, total = list_jobs(held.engine, viewer, f.query())
        pages = max(1, math.ceil(total / f.limit))
        if f.page > pages:  # past the end (the list shrank, or a hand-made URL): the last
            f.page = pages
            rows, total = list_jobs(held.engine, viewer, f.query())
    show_owner = viewer.is_admin
    context: dict[str, Any] = {
        "f": f,
        "jobs": rows,
        "paging": pager(request, total, f.offset, f.limit, len(rows), param="page"),
        "counts": job_state_counts(held.engine, viewer),
        "active": any(r["state"] in ACTIVE_JOB for r in rows),
        "columns": [c for c in COLUMNS if show_owner or c[0] != "owner"],
        "show_owner": show_owner,
        "job_states": JOB_STATES,
        "page_sizes": PAGE_SIZES,
        "refresh_seconds": REFRESH_SECONDS,
        "short_time": short_time,
        "breakable": breakable,
    }
    return (422 if f.errors else 200), context


@router.get("/jobs")
def jobs_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """The jobs you may see (admins: everyone's), newest first, filtered, sorted and
    paged by the query string; ``partial=1`` answers with the results part alone."""
    status, context = _jobs_context(request, held, me)
    if request.query_params.get("partial"):
        return render(request, "jobs_results.html", status, **context)
    context.update(_options(held, me, context["f"]))
    return render(request, "jobs.html", status, **context)


# -- one job --------------------------------------------------------------------------


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
        "tasks_error": tasks_error,
        "summary_items": [(str(k), _fact(v)) for k, v in summary.items()],
        "destination": summary.get("destination") or summary.get("volume"),
        "spec_json": json.dumps(job["spec"], indent=2, default=str),
        "can_cancel": state not in ("succeeded", "failed", "cancelled", "skipped")
        and job["cancel_requested"] is None,
        "can_retry": state in ("failed", "cancelled"),
        "active": state in ACTIVE_JOB,
        "refresh_seconds": REFRESH_SECONDS,
        "short_time": short_time,
    }


_DONE = {
    "cancel": (
        "Cancel requested: tasks not started are cancelled, running ones are told to stop "
        "and end as cancelled.",
        "success",
    ),
    "retry": ("The job runs again from the tasks that did not succeed.", "success"),
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
    done = _DONE.get(request.query_params.get("done") or "")
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


@router.post("/jobs/{job_id}/cancel")
def job_cancel(
    request: Request,
    job_id: int,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Cancel the job, then show it again (or why it could not be cancelled)."""
    try:
        cancel_job(held.engine, held.log_store, job_id, me)
    except InvalidInput as exc:
        return _job_page(request, held, me, job_id, exc.status_code, str(exc))
    return redirect(f"/jobs/{job_id}?done=cancel")


@router.post("/jobs/{job_id}/retry")
def job_retry(
    request: Request,
    job_id: int,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Run a failed or cancelled job again, then show it (or why it could not)."""
    try:
        retry_job(held.engine, held.log_store, job_id, me)
    except InvalidInput as exc:
        return _job_page(request, held, me, job_id, exc.status_code, str(exc))
    held.wake()
    return redirect(f"/jobs/{job_id}?done=retry")
