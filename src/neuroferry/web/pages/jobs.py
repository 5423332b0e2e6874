"""/jobs: the jobs a user may see, filtered, sorted and paged.

The page refreshes itself while jobs run: its script fetches the same URL with
``partial=1``, which answers with the part of the page that changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from starlette.datastructures import QueryParams

from neuroferry.auth import User, list_users
from neuroferry.engine import (
    JOB_STATES,
    SORTABLE,
    TERMINAL,
    JobQuery,
    job_kinds,
    job_state_counts,
    list_job_types,
    list_jobs,
)
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._format import as_datetime, short_time
from neuroferry.web.pages._render import page_user, pager, render

router = APIRouter()

#: Rows a page of the list may have (DEFAULT_LIMIT unless chosen).
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_LIMIT = 50
DEFAULT_SORT = "-created"
#: Seconds between two refreshes of a page whose jobs run (the list and a job's page).
REFRESH_SECONDS = 3
MAX_TEXT = 200
#: Job states that change by themselves (a page keeps refreshing while one is shown).
ACTIVE_JOB = frozenset(JOB_STATES) - TERMINAL
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
