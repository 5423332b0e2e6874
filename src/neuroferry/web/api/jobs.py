"""Upload requests (``submit_jobs``, ``validate_json``, ``validate_csv``), a job of any
other installed kind submitted by its spec, and the jobs of every kind: list, show, tasks,
logs, cancel, retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile as StarletteUploadFile

from neuroferry import __version__
from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.engine import (
    SORTABLE,
    TERMINAL,
    JobQuery,
    NewJob,
    cancel_job,
    get_job,
    job_tasks,
    list_jobs,
    read_log_part,
    retry_job,
    submit_jobs,
)
from neuroferry.errors import FerryError, InvalidInput
from neuroferry.pipelines.upload import SheetLimits, check_upload_jobs, submit_upload_jobs
from neuroferry.services import Services
from neuroferry.web._deps import current_user, services
from neuroferry.web._limits import size_text

router = APIRouter(tags=["jobs"])


def sheet_limits(settings: Settings) -> SheetLimits:
    """How much a job spreadsheet may hold, from the settings."""
    return SheetLimits(settings.max_jobs_per_request, settings.sheet_max_expanded_bytes)


async def read_sheet(upload: StarletteUploadFile, settings: Settings) -> tuple[str, bytes]:
    """An uploaded job spreadsheet's name and bytes; :class:`InvalidInput` if it is larger
    than ``max_upload_bytes`` (read no further than that)."""
    name = upload.filename or "upload"
    limit = settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        size = size_text(limit)
        raise InvalidInput(
            f"file: {name} is larger than {size}; at most {size} are allowed (setting "
            "max_upload_bytes): split it into several sheets"
        )
    return name, data


class SubmitJobRequestV2(BaseModel):
    """The original service's request: upload jobs and, for all of them, whom to e-mail."""

    model_config = ConfigDict(extra="allow")

    user_email: str | None = None
    email_notification_types: list[str] | None = None
    upload_jobs: list[dict[str, Any]] = Field(
        ..., description="Upload jobs (SubmitJobRequestV2 entries); see docs/upload.md"
    )


class SubmittedJob(BaseModel):
    id: int
    name: str
    url: str


class SubmitData(BaseModel):
    jobs: list[SubmittedJob]
    responses: list[dict[str, Any]] = Field(
        description="the original service's key: one entry per job created (id, name, url)"
    )
    errors: list[Any] = Field(description="the original service's key: always empty here")


class SubmitResponse(BaseModel):
    message: str
    data: SubmitData


class ValidatedJob(BaseModel):
    """A checked job: its asset ``name``, spreadsheet ``row`` and the ``job`` as it would
    run; the job's own fields are repeated at the top level, as the original service's
    ``data.jobs`` entries hold them."""

    model_config = ConfigDict(extra="allow")

    name: str
    row: int | None = None
    job: dict[str, Any]


class ValidateData(BaseModel):
    """The checked jobs; with the original service's keys beside them (``validate_json``:
    ``version``, ``model_json``, ``validated_model_json``; ``validate_csv``: ``errors``)."""

    model_config = ConfigDict(extra="allow")

    jobs: list[ValidatedJob]


class ValidateResponse(BaseModel):
    message: str
    data: ValidateData


class JobOut(BaseModel):
    id: int
    kind: str
    name: str
    state: str
    owner: str | None
    job_type: str | None
    job_type_version: int | None
    error: str | None
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None
    cancel_requested: datetime | None
    summary: dict[str, Any]


class JobDetail(JobOut):
    spec: dict[str, Any]


class JobPage(BaseModel):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class TaskOut(BaseModel):
    name: str
    map_index: int
    item: str | None
    placement: str
    state: str
    attempt: int
    retries_left: int
    error: str | None
    result: Any
    created: datetime
    started: datetime | None
    finished: datetime | None
    not_before: datetime | None
    worker: str | None


def _job_url(request: Request, job_id: int) -> str:
    return str(request.url_for("show_job", job_id=job_id))


@router.post("/submit_jobs", response_model=SubmitResponse, summary="Submit upload jobs")
def submit(
    body: SubmitJobRequestV2,
    request: Request,
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> SubmitResponse:
    """Create every upload job of the request, or none: each is validated, its job type's
    preset applied, and refused if the same asset is already queued or running."""
    try:
        created = submit_upload_jobs(
            held.engine, held.settings, body.model_dump(exclude_none=True), user
        )
    except FerryError as exc:
        exc.envelope = {
            "message": "There were validation errors",
            "data": {"responses": [], "errors": _errors(exc)},
        }
        raise
    held.wake()
    jobs = [SubmittedJob(id=i, name=n, url=_job_url(request, i)) for i, n in created]
    return SubmitResponse(
        message=f"submitted {len(jobs)} jobs",
        data=SubmitData(jobs=jobs, responses=[j.model_dump() for j in jobs], errors=[]),
    )


def _errors(exc: FerryError) -> list[Any]:
    """The problems of ``exc`` for the original service's ``data.errors``."""
    problems = exc.problems if isinstance(exc, InvalidInput) else []
    return list(problems) or [str(exc)]


def _validated_jobs(checked: list[Any]) -> list[ValidatedJob]:
    jobs = []
    for c in checked:
        job = c.spec.model_dump(mode="json", exclude_none=True)
        jobs.append(ValidatedJob(**{**job, "name": c.name, "row": c.row, "job": job}))
    return jobs


@router.post("/validate_json", response_model=ValidateResponse, summary="Check upload jobs")
def validate_json(
    body: SubmitJobRequestV2,
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> ValidateResponse:
    """What ``submit_jobs`` would check, without creating anything: the jobs as they would
    run, or 422 with every problem by job and field."""
    request = body.model_dump(exclude_none=True)
    sent = body.model_dump(exclude_unset=True)
    try:
        checked = check_upload_jobs(held.engine, held.settings, request, user=user)
    except FerryError as exc:
        exc.envelope = {
            "message": "There were validation errors",
            "data": {"version": __version__, "model_json": sent, "errors": _errors(exc)},
        }
        raise
    jobs = _validated_jobs(checked)
    validated = {
        **{k: v for k, v in request.items() if k != "upload_jobs"},
        "upload_jobs": [j.job for j in jobs],
    }
    return ValidateResponse(
        message=f"{len(jobs)} valid jobs",
        data=ValidateData.model_validate(
            {
                "jobs": jobs,
                "version": __version__,
                "model_json": sent,
                "validated_model_json": validated,
            }
        ),
    )


@router.post("/validate_csv", response_model=ValidateResponse, summary="Check a job spreadsheet")
async def validate_csv(
    file: UploadFile = File(..., description="A .csv or .xlsx job spreadsheet"),
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> ValidateResponse:
    """Parse a spreadsheet (one upload job per row) and check its jobs: the jobs, or 422
    with every problem by row and column."""
    try:
        return await _check_sheet(file, held, user)
    except FerryError as exc:
        exc.envelope = {
            "message": "There were errors",
            "data": {"jobs": [], "errors": _errors(exc)},
        }
        raise


async def _check_sheet(file: UploadFile, held: Services, user: User) -> ValidateResponse:
    from neuroferry.pipelines.upload import parse_job_sheet

    name, data = await read_sheet(file, held.settings)
    sheet = await asyncio.to_thread(parse_job_sheet, data, name, sheet_limits(held.settings))
    if sheet.errors:
        problems = [
            {"job": None, "row": e.row, "field": e.column, "message": e.message}
            for e in sheet.errors
        ]
        lines = [
            f"row {e.row}: " + (f"{e.column}: " if e.column else "") + e.message
            for e in sheet.errors
        ]
        raise InvalidInput(f"{name}: " + "; ".join(lines), problems)
    request = {"upload_jobs": [j.job for j in sheet.jobs]}
    rows = [j.row for j in sheet.jobs]
    checked = await asyncio.to_thread(
        lambda: check_upload_jobs(held.engine, held.settings, request, rows, user=user)
    )
    jobs = _validated_jobs(checked)
    return ValidateResponse(
        message=f"{len(jobs)} valid jobs",
        data=ValidateData.model_validate({"jobs": jobs, "errors": []}),
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/job_upload_template",
    summary="The job spreadsheet template (.xlsx)",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}}},
)
def template(held: Services = Depends(services), _user: User = Depends(current_user)) -> Response:
    """An .xlsx template for upload jobs: the columns, example rows, and drop-down lists of
    this service's modalities, platforms, job types and projects."""
    from neuroferry.engine import list_job_types
    from neuroferry.pipelines.upload import allowed_terms, job_upload_template

    allowed = allowed_terms(held.engine)
    data = job_upload_template(
        modalities=[t.abbreviation for t in allowed.modalities],
        platforms=[t.abbreviation for t in allowed.platforms],
        job_types=[t.name for t in list_job_types(held.engine, "upload")],
        projects=list(allowed.projects),
    )
    return Response(
        data,
        media_type=XLSX,
        headers={"Content-Disposition": 'attachment; filename="job_upload_template.xlsx"'},
    )


class KindSubmitted(BaseModel):
    job_id: int
    url: str


@router.post(
    "/jobs/{kind}", status_code=201, response_model=KindSubmitted, summary="Submit a job of a kind"
)
def submit_kind(
    kind: str,
    spec: dict[str, Any],
    request: Request,
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> KindSubmitted:
    """Submit one job of an installed kind, owned by you; the body is the kind's spec (an
    unknown kind is a 422 naming the known ones). Upload jobs go through ``submit_jobs`` (their job
    types and checks). 422 naming the field of a spec that does not validate."""
    if kind == "upload":
        raise InvalidInput("submit upload jobs with POST /api/v2/submit_jobs")
    [job_id] = submit_jobs(
        held.engine, [NewJob(kind, spec)], owner_id=user.id, settings=held.settings
    )
    held.wake()
    return KindSubmitted(job_id=job_id, url=_job_url(request, job_id))


@router.get("/jobs", response_model=JobPage, summary="Jobs, filtered, sorted and paged")
def jobs_page(
    held: Services = Depends(services),
    user: User = Depends(current_user),
    state: list[str] = Query([], description="Any of these states"),
    kind: list[str] = Query([], description="Any of these kinds"),
    job_type: list[str] = Query([], description="Any of these job types"),
    owner: str | None = Query(None, description="Jobs of this user (admins)"),
    name: str | None = Query(None, description="The asset name contains this"),
    submitted_after: datetime | None = None,
    submitted_before: datetime | None = None,
    sort: str = Query("-created", description=f"One of {', '.join(SORTABLE)}; '-' descending"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> JobPage:
    """The jobs the caller may see (users their own, admins every job), newest first."""
    query = JobQuery(
        states=tuple(state),
        kinds=tuple(kind),
        job_types=tuple(job_type),
        owner=owner,
        name_contains=name,
        submitted_after=submitted_after,
        submitted_before=submitted_before,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    rows, total = list_jobs(held.engine, user, query)
    return JobPage(
        jobs=[JobOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}", response_model=JobDetail, summary="One job", name="show_job")
def show_job(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> JobDetail:
    return JobDetail.model_validate(get_job(held.engine, job_id, user))


@router.get("/jobs/{job_id}/tasks", response_model=list[TaskOut], summary="A job's tasks")
def show_tasks(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> list[TaskOut]:
    """In pipeline order; a mapped task's instances follow its own row."""
    return [TaskOut.model_validate(t) for t in job_tasks(held.engine, job_id, user)]


@router.get(
    "/jobs/{job_id}/tasks/{task}/logs",
    response_class=PlainTextResponse,
    summary="A task's log",
    responses={200: {"content": {"text/plain": {}}}},
)
async def task_log(
    job_id: int,
    task: str,
    held: Services = Depends(services),
    user: User = Depends(current_user),
    map_index: int = Query(-1, ge=-1, description="The instance of a mapped task"),
    attempt: int | None = Query(None, ge=1, description="Default: the latest"),
    offset: int = Query(0, ge=0, description="Skip this many bytes"),
    follow: bool = Query(False, description="Keep sending new lines until the task ends"),
) -> Any:
    """The log of one attempt of a task, while it runs and after; with ``follow`` the
    response streams new lines until the task has ended."""

    most = held.settings.log_max_bytes

    def read(start: int) -> tuple[bytes, int]:
        return read_log_part(
            held.engine, held.log_store, job_id, task, map_index, attempt, user, start, most
        )

    data, size = await asyncio.to_thread(read, offset)
    if not follow:
        headers = {"X-Log-Size": str(size), "X-Next-Offset": str(offset + len(data))}
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)

    def finished() -> bool:
        rows = job_tasks(held.engine, job_id, user)
        mine = [t for t in rows if t["name"] == task and t["map_index"] == map_index]
        return not mine or mine[0]["state"] in TERMINAL

    async def stream() -> AsyncIterator[bytes]:
        sent = offset
        until = time.monotonic() + held.settings.log_follow_seconds
        while True:
            done = await asyncio.to_thread(finished)
            data, size = await asyncio.to_thread(read, sent)
            if data:
                yield data
                sent += len(data)
            if (done and sent >= size) or time.monotonic() > until:
                return  # ended, or followed long enough: follow again from the bytes had
            if len(data) < most:
                await asyncio.sleep(1.0)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")


@router.post("/jobs/{job_id}/cancel", response_model=JobDetail, summary="Cancel a job")
def cancel(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> JobDetail:
    """Tasks not started are cancelled; running ones stop and report what they did."""
    return JobDetail.model_validate(cancel_job(held.engine, held.log_store, job_id, user))


@router.post("/jobs/{job_id}/retry", response_model=JobDetail, summary="Retry a job")
def retry(
    job_id: int, held: Services = Depends(services), user: User = Depends(current_user)
) -> JobDetail:
    """Run a failed or cancelled job again from the tasks that did not succeed."""
    job = retry_job(held.engine, held.log_store, job_id, user)
    held.wake()
    return JobDetail.model_validate(job)
