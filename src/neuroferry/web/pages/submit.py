"""/submit: upload a job spreadsheet (CSV or XLSX), see it checked as a preview (one row
per job, problems on their row and field), then submit its jobs.

The checks are the API's (``parse_job_sheet`` then ``check_upload_jobs``, as
``validate_csv`` does) and submitting sends the same request ``submit_jobs`` takes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.engine import get_job
from neuroferry.errors import Conflict, FerryError, Forbidden, InvalidInput
from neuroferry.pipelines.upload import (
    NOTIFICATION_TYPES,
    CheckedJob,
    SheetJob,
    SheetNote,
    UploadJobSpec,
    check_upload_jobs,
    column_key,
    parse_job_sheet,
    submit_upload_jobs,
)
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.api.jobs import read_sheet, sheet_limits
from neuroferry.web.pages._render import page_user, redirect, render

router = APIRouter()

#: The preview's columns: (key, heading). A problem is shown in the cell of its field.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("asset", "Asset name"),
    ("project", "Project"),
    ("subject", "Subject"),
    ("acquired", "Acquired"),
    ("platform", "Platform"),
    ("modalities", "Modalities and their sources"),
    ("job_type", "Job type"),
    ("other", "Other settings"),
)
_COLUMN_OF_FIELD = {
    "s3_prefix": "asset",
    "project_name": "project",
    "subject_id": "subject",
    "acq_datetime": "acquired",
    "platform": "platform",
    "modalities": "modalities",
    "job_type": "job_type",
}
_OTHER_FIELDS = frozenset(
    {
        "s3_bucket",
        "metadata_dir",
        "derivatives_dir",
        "user_email",
        "email_notification_types",
        "force_cloud_sync",
    }
)
#: Fields of the submit form: their problems are also shown next to the form.
FORM_FIELDS = ("user_email", "email_notification_types")
_NOTIFICATION_HELP = {
    "begin": "when a job starts",
    "end": "when a job ends",
    "fail": "when a job fails",
    "retry": "when a task is retried",
    "all": "every one of these",
}
_SUBMITTED = re.compile(r"\d{1,18}(,\d{1,18}){0,999}")


@dataclass
class Problem:
    """One problem of the file, a row or a field, with the anchor the error list links to."""

    anchor: str
    row: int | None
    column: str
    """The preview column it is shown in (a key of COLUMNS), or ``row`` for a whole row."""
    label: str | None
    """The field or spreadsheet column as the user knows it."""
    message: str
    value: str | None = None

    @property
    def where(self) -> str:
        parts = [f"row {self.row}"] if self.row is not None else []
        if self.label:
            parts.append(self.label)
        return ", ".join(parts)


@dataclass
class PreviewRow:
    """One spreadsheet row: the job it asks for (None if the row could not be read), the
    job as it would run (with its job type's settings), and its problems by column."""

    row: int
    job: dict[str, Any] | None
    checked: CheckedJob | None = None
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.job is not None and not self.problems

    def problems_in(self, column: str) -> list[Problem]:
        return self.problems.get(column, [])

    @property
    def asset(self) -> str | None:
        if self.checked is not None:
            return self.checked.name
        if self.job is None:
            return None
        try:
            return UploadJobSpec.model_validate(self.job).asset_name
        except ValueError:
            return None

    @property
    def platform(self) -> str | None:
        platform = (self.job or {}).get("platform")
        if isinstance(platform, Mapping):
            return str(platform.get("abbreviation") or platform.get("name") or "") or None
        return str(platform) if platform else None

    @property
    def acquired(self) -> str | None:
        value = (self.job or {}).get("acq_datetime")
        return str(value).replace("T", " ") if value else None

    @property
    def modalities(self) -> list[tuple[str, str]]:
        found = []
        for modality in (self.job or {}).get("modalities") or []:
            if isinstance(modality, Mapping):
                name = str(modality.get("abbreviation") or modality.get("name") or "?")
                found.append((name, str(modality.get("input_source") or "—")))
        return found

    @property
    def job_type(self) -> str:
        name = str((self.job or {}).get("job_type") or "default")
        if self.checked is not None and self.checked.job_type_version is not None:
            return f"{name} (version {self.checked.job_type_version})"
        return name

    @property
    def other(self) -> list[tuple[str, str]]:
        """The row's settings that have no column of their own, as (label, value)."""
        job = self.job or {}
        labels = (
            ("s3_bucket", "destination"),
            ("metadata_dir", "metadata"),
            ("derivatives_dir", "derivatives"),
            ("user_email", "e-mail"),
            ("email_notification_types", "e-mails on"),
            ("force_cloud_sync", "force upload"),
        )
        found = []
        for key, label in labels:
            value = job.get(key)
            if value in (None, "", []):
                continue
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            found.append((label, "yes" if value is True else str(value)))
        tasks = job.get("tasks")
        if isinstance(tasks, Mapping) and tasks:
            found.append(("task settings", ", ".join(sorted(tasks))))
        return found

    @property
    def json(self) -> str:
        """The job as it will run (checked), else as the row gives it."""
        if self.checked is not None:
            shown = self.checked.spec.model_dump(mode="json", exclude_none=True)
        else:
            shown = self.job or {}
        return json.dumps(shown, indent=2, ensure_ascii=False)


@dataclass
class Preview:
    """A checked spreadsheet: its rows, every problem (in row order) and notes."""

    filename: str
    rows: list[PreviewRow]
    problems: list[Problem]
    notes: list[SheetNote]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not self.problems and all(r.ok for r in self.rows)

    @property
    def submittable(self) -> bool:
        """Whether Submit may be pressed: every row is a job, and every problem left (if
        any) is in a field of the submit form, which can be fixed there."""
        return (
            bool(self.rows)
            and all(r.job is not None for r in self.rows)
            and all(p.label and column_key(p.label) in FORM_FIELDS for p in self.problems)
        )

    @property
    def jobs(self) -> list[PreviewRow]:
        return [r for r in self.rows if r.job is not None]

    def form_problems(self, name: str) -> list[str]:
        """The distinct messages about a field of the submit form (``user_email`` …)."""
        found = [p.message for p in self.problems if p.label and column_key(p.label) == name]
        return list(dict.fromkeys(found))

    @property
    def payload(self) -> str:
        """The checked jobs with their row numbers, for the submit form."""
        jobs = [{"row": r.row, "job": r.job} for r in self.rows if r.job is not None]
        return json.dumps({"filename": self.filename, "jobs": jobs}, ensure_ascii=False)


def _sheet_column(column: str | None) -> str:
    """The preview column of a spreadsheet column (as the header names it)."""
    if not column:
        return "row"
    key = column_key(column)
    if key.startswith("modality"):
        return "modalities"
    return _COLUMN_OF_FIELD.get(key, "other")


def _field_column(field_path: str | None, message: str) -> str:
    """The preview column of a checked job's field: a dotted path, or (when that is None)
    the field the message starts with (``modality ecephys: input_source: …``)."""
    if field_path:
        first = field_path.split(".", 1)[0]
    else:
        head, sep, _rest = message.partition(":")
        words = head.split()
        if not sep or not words:
            return "row"
        first = words[0].split(".", 1)[0]
        if first == "modality":
            return "modalities"
    if first == "tasks":
        inside = field_path or message
        return "modalities" if "modality_transformation_settings" in inside else "other"
    if first in _COLUMN_OF_FIELD:
        return _COLUMN_OF_FIELD[first]
    return "other" if first in _OTHER_FIELDS else "row"


class _Builder:
    """Collects rows and problems, numbering the problems' anchors in order."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.rows: dict[int, PreviewRow] = {}
        self.problems: list[Problem] = []

    def row(self, number: int) -> PreviewRow:
        return self.rows.setdefault(number, PreviewRow(number, None))

    def add(
        self,
        row: int | None,
        column: str,
        label: str | None,
        message: str,
        value: str | None = None,
    ) -> None:
        problem = Problem(f"problem-{len(self.problems) + 1}", row, column, label, message, value)
        self.problems.append(problem)
        if row is not None:
            self.row(row).problems.setdefault(column, []).append(problem)

    def preview(self, notes: Sequence[SheetNote]) -> Preview:
        rows = [self.rows[n] for n in sorted(self.rows)]
        order = {r.row: i for i, r in enumerate(rows)}
        problems = sorted(
            self.problems,
            key=lambda p: (-1 if p.row is None else order.get(p.row, len(order)), p.anchor),
        )
        return Preview(self.filename, rows, problems, list(notes))


def _check(
    held: Services, user: User, jobs: Sequence[SheetJob], defaults: Mapping[str, Any]
) -> tuple[list[CheckedJob], list[dict[str, Any]], str | None]:
    """The checked jobs (against the submitter's grants), the problems by job, and a
    problem of the whole request."""
    settings: Settings = held.settings
    request = {"upload_jobs": [j.job for j in jobs], **defaults}
    rows = [j.row for j in jobs]
    try:
        return check_upload_jobs(held.engine, settings, request, rows, user=user), [], None
    except InvalidInput as exc:
        if not exc.problems:
            return [], [], str(exc)
        problems = exc.problems
    # the rows without problems, checked again, to show them as they would run
    bad = {p.get("row") for p in problems}
    good = [j for j in jobs if j.row not in bad]
    checked: list[CheckedJob] = []
    if good:
        try:
            checked = check_upload_jobs(
                held.engine,
                settings,
                {**request, "upload_jobs": [j.job for j in good]},
                [j.row for j in good],
                user=user,
            )
        except InvalidInput:
            checked = []
    return checked, problems, None


def build_preview(
    held: Services,
    user: User,
    filename: str,
    jobs: Sequence[SheetJob],
    errors: Sequence[Any] = (),
    notes: Sequence[SheetNote] = (),
    defaults: Mapping[str, Any] | None = None,
) -> Preview:
    """Check a spreadsheet's jobs as ``validate_csv`` does and lay out the preview: the
    rows that could not be read (``errors``: SheetErrors) with their problems, and the jobs
    with the problems ``check_upload_jobs`` finds."""
    build = _Builder(filename)
    for job in jobs:
        build.row(job.row).job = job.job
    for error in errors:
        build.add(error.row, _sheet_column(error.column), error.column, error.message, error.value)
    if jobs:
        checked, problems, general = _check(held, user, jobs, defaults or {})
        for c in checked:
            if c.row is not None:
                build.row(c.row).checked = c
        for p in problems:
            message = str(p.get("message") or "")
            build.add(p.get("row"), _field_column(p.get("field"), message), p.get("field"), message)
        if general:
            build.add(None, "row", None, general)
    return build.preview(notes)


async def _read_upload(request: Request, held: Services) -> tuple[str, bytes]:
    """The spreadsheet of the upload form: its name and bytes."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidInput("file: choose a .csv or .xlsx job spreadsheet to check")
    return await read_sheet(upload, held.settings)


def _page(
    request: Request, held: Services, me: User, status: int = 200, **context: Any
) -> Response:
    values: dict[str, Any] = {
        "max_jobs": held.settings.max_jobs_per_request,
        "max_mib": f"{held.settings.max_upload_bytes / 2**20:g}",
        "columns": COLUMNS,
        "preview": None,
        "error": None,
        "submitted": [],
        "submit_error": None,
        "user_email": me.email or "",
        "notification_types": NOTIFICATION_TYPES,
        "notification_help": _NOTIFICATION_HELP,
        "chosen_types": ["fail"],
    }
    return render(request, "submit.html", status, **(values | context))


def _submitted(held: Services, me: User, text: str | None) -> list[dict[str, Any]]:
    """The jobs whose ids the page was sent back with, as far as ``me`` may see them."""
    if not text or not _SUBMITTED.fullmatch(text):
        return []
    found = []
    for job_id in dict.fromkeys(int(i) for i in text.split(",")):
        try:
            found.append(get_job(held.engine, job_id, me))
        except FerryError:
            continue
    return found


@router.get("/submit")
def submit_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """The upload form, and the jobs just submitted (``?submitted=12,13``)."""
    jobs = _submitted(held, me, request.query_params.get("submitted"))
    return _page(request, held, me, submitted=jobs)


@router.post("/submit")
async def submit_check(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """Check an uploaded spreadsheet and show its preview (422 when anything is wrong)."""
    try:
        filename, data = await _read_upload(request, held)
        limits = sheet_limits(held.settings)
        sheet = await asyncio.to_thread(parse_job_sheet, data, filename, limits)
    except InvalidInput as exc:
        return _page(request, held, me, 422, error=str(exc))
    preview = await asyncio.to_thread(
        build_preview, held, me, filename, sheet.jobs, sheet.errors, sheet.notes
    )
    return _page(request, held, me, 200 if preview.ok else 422, preview=preview)


def _payload(text: str) -> tuple[str, list[SheetJob]]:
    """The checked jobs the submit form carries back."""
    damaged = InvalidInput(
        "jobs: the checked jobs are missing or damaged; upload the spreadsheet again"
    )
    try:
        data = json.loads(text)
    except ValueError:
        raise damaged from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list) or not data["jobs"]:
        raise damaged
    jobs = []
    for item in data["jobs"]:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("row"), int)
            or not isinstance(item.get("job"), dict)
        ):
            raise damaged
        jobs.append(SheetJob(item["row"], item["job"]))
    return str(data.get("filename") or "the spreadsheet"), jobs


@router.post("/submit/jobs")
def submit_jobs(
    request: Request,
    jobs: str = Form(""),
    user_email: str = Form(""),
    email_notification_types: list[str] = Form([]),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Submit the checked jobs (all or none, as ``submit_jobs``) and show their ids."""
    form = {"user_email": user_email, "chosen_types": email_notification_types}
    try:
        filename, sheet_jobs = _payload(jobs)
    except InvalidInput as exc:
        return _page(request, held, me, 422, error=str(exc), **form)
    defaults: dict[str, Any] = {"email_notification_types": email_notification_types}
    if user_email.strip():
        defaults["user_email"] = user_email.strip()
    body = {"upload_jobs": [j.job for j in sheet_jobs], **defaults}
    try:
        created = submit_upload_jobs(
            held.engine, held.settings, body, me, [j.row for j in sheet_jobs]
        )
    except (InvalidInput, Conflict, Forbidden) as exc:  # an asset busy or another user's
        preview = build_preview(held, me, filename, sheet_jobs, defaults=defaults)
        status = exc.status_code
        return _page(request, held, me, status, preview=preview, submit_error=str(exc), **form)
    held.wake()
    return redirect("/submit?submitted=" + ",".join(str(job_id) for job_id, _name in created))
