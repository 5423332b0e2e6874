"""/job-types: the job types (named, versioned presets of task settings), each one's
settings task by task, its history, the differences between two versions, and, for
admins, creating, editing (checked by the kind's ``check_preset``) and rolling back."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.engine import (
    JobType,
    diff_job_type_versions,
    find_job_type,
    job_kinds,
    job_type_history,
    list_job_types,
    put_job_type,
    rollback_job_type,
)
from neuroferry.errors import InvalidInput
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._render import admin_page_user, json_field, page_user, redirect, render

router = APIRouter()

DEFAULT_KIND = "upload"
MAX_COMMENT = 1000
#: Upload settings that hold one task's settings per modality, and the mapped task
#: (one instance per modality) that runs with them.
PER_MODALITY = {
    "modality_transformation_settings": "compress_data",
    "analysis_settings": "run_analyses",
}
_INLINE = 60
"""Longer JSON values are shown as an indented block."""
_NEW_SETTINGS = '{\n  "check_s3_folder_exists": {"skip_task": false}\n}'


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class TaskView:
    """One task of a job type's settings, for showing: its fields, or (for a task set per
    modality) each modality's fields."""

    name: str
    fields: list[tuple[str, str, bool]]
    """(field, value as text, whether the text is a block of JSON)."""
    per_item: list[tuple[str, list[tuple[str, str, bool]]]]
    mapped_task: str | None


def _fields(settings: Any) -> list[tuple[str, str, bool]]:
    if not isinstance(settings, Mapping):
        return [("(value)", _compact(settings), False)]
    shown = []
    for key, value in settings.items():
        if isinstance(value, Mapping | list) and len(_compact(value)) > _INLINE:
            shown.append((str(key), _pretty(value), True))
        elif isinstance(value, str):
            shown.append((str(key), value, "\n" in value))
        else:
            shown.append((str(key), _compact(value), False))
    return shown


def task_views(settings: Mapping[str, Any]) -> list[TaskView]:
    """A job type's settings task by task, in the order they are stored."""
    views = []
    for name, value in settings.items():
        if name in PER_MODALITY and isinstance(value, Mapping):
            items = [(str(k), _fields(v)) for k, v in value.items()]
            views.append(TaskView(name, [], items, PER_MODALITY[name]))
        else:
            views.append(TaskView(name, _fields(value), [], None))
    return views


@dataclass(frozen=True)
class DiffView:
    """The changes from one version to another, by path and as lines of JSON."""

    old: int
    new: int
    changes: list[dict[str, Any]]
    lines: list[tuple[str, str]]
    """(kind: ``add``, ``del``, ``hunk``, ``head`` or ``same``; the line)."""


def _diff_lines(old: int, new: int, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Any]:
    before = json.dumps(a, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    after = json.dumps(b, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    lines = []
    for line in difflib.unified_diff(
        before, after, f"version {old}", f"version {new}", lineterm="", n=3
    ):
        if line.startswith(("---", "+++")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


def _diff(
    engine: Engine,
    name: str,
    kind: str,
    versions: dict[int, JobType],
    old: int | None,
    new: int | None,
) -> DiffView:
    first, second, changes = diff_job_type_versions(engine, kind, name, old, new)
    a = versions[first].settings if first in versions else {}
    b = versions[second].settings if second in versions else {}
    shown = [
        {**c.as_dict(), "old_text": _compact(c.old), "new_text": _compact(c.new)} for c in changes
    ]
    return DiffView(first, second, shown, _diff_lines(first, second, a, b))


def _kinds_with_presets() -> list[str]:
    return sorted(name for name, kind in job_kinds().items() if kind.check_preset is not None)


def _check_kind(kind: str) -> str:
    kinds = _kinds_with_presets()
    if kind not in kinds:
        raise InvalidInput(f"kind: {kind!r} has no job types; allowed: {', '.join(kinds)}")
    return kind


def _settings_from(text: str) -> dict[str, Any]:
    """The settings typed in the editor; InvalidInput says where the JSON breaks."""
    if not text.strip():
        raise InvalidInput("settings: empty; give an object of task name to task settings: {}")
    value = json_field("settings", text)
    if not isinstance(value, dict):
        raise InvalidInput(
            f"settings: a job type's settings are an object of task name to task settings "
            f"({{…}}), not {type(value).__name__}"
        )
    return value


def _comment(text: str) -> str | None:
    text = text.strip()
    if len(text) > MAX_COMMENT:
        raise InvalidInput(f"comment: {len(text)} characters; at most {MAX_COMMENT}")
    return text or None


def _task_help(kind: str) -> dict[str, Any] | None:
    """What the editor may name, for the kinds whose tasks the pages know."""
    if kind != "upload":
        return None
    from neuroferry.pipelines.upload import SETTABLE_TASKS, Task

    return {
        "tasks": [t for t in SETTABLE_TASKS if t not in PER_MODALITY],
        "per_modality": list(PER_MODALITY),
        "fields": list(Task.model_fields),
    }


# -- the list and creating ---------------------------------------------------------------


def _list_page(
    request: Request, held: Services, me: User, status: int = 200, **context: Any
) -> Response:
    kinds = _kinds_with_presets()
    values: dict[str, Any] = {
        "job_types": list_job_types(held.engine),
        "kinds": kinds,
        "error": None,
        "form": {
            "name": "",
            "kind": DEFAULT_KIND if DEFAULT_KIND in kinds else (kinds or [""])[0],
            "settings": _NEW_SETTINGS,
            "comment": "",
        },
        "task_help": _task_help(DEFAULT_KIND),
    }
    return render(request, "job_types.html", status, **(values | context))


@router.get("/job-types")
def job_types_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """Every job type's current version; admins also get the form that creates one."""
    return _list_page(request, held, me)


@router.post("/job-types")
def job_types_create(
    request: Request,
    name: str = Form(""),
    kind: str = Form(DEFAULT_KIND),
    settings: str = Form(""),
    comment: str = Form(""),
    held: Services = Depends(services),
    admin: User = Depends(admin_page_user),
) -> Response:
    """Create a job type (admins); the settings are checked by its kind first."""
    name = name.strip()
    try:
        _check_kind(kind)
        if name and find_job_type(held.engine, kind, name) is not None:
            raise InvalidInput(
                f"name: job type {name!r} ({kind}) exists already; open it and edit it instead"
            )
        saved = put_job_type(
            held.engine, kind, name, _settings_from(settings), admin.name, _comment(comment)
        )
    except InvalidInput as exc:
        form = {"name": name, "kind": kind, "settings": settings, "comment": comment}
        return _list_page(request, held, admin, 422, error=str(exc), form=form)
    return redirect(_url(saved.name, saved.kind, saved=saved.version))


def _url(name: str, kind: str, suffix: str = "", **params: Any) -> str:
    """The page of job type ``name`` (``suffix``: a page under it), with ``params``."""
    query = {"kind": kind} if kind != DEFAULT_KIND else {}
    query.update({k: str(v) for k, v in params.items() if v is not None})
    page = f"/job-types/{quote(name, safe='')}{suffix}"
    return page + (f"?{urlencode(query)}" if query else "")


# -- one job type ---------------------------------------------------------------------------


@router.get("/job-types/{name}")
def job_type_page(
    request: Request,
    name: str,
    kind: str = Query(DEFAULT_KIND),
    version: int | None = Query(None, ge=1),
    from_version: int | None = Query(None, alias="from", ge=0),
    to_version: int | None = Query(None, alias="to", ge=0),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """A job type's settings (current or ``version``), history, and a diff of two versions."""
    history = job_type_history(held.engine, kind, name)
    versions = {v.version: v for v in history}
    current = history[-1]
    shown = versions.get(version or current.version)
    version_error = None
    if shown is None:
        version_error = (
            f"version {version}: no such version; its versions are 1 to {current.version}"
        )
        shown = current
    diff = diff_error = None
    try:
        diff = _diff(held.engine, name, kind, versions, from_version, to_version)
    except InvalidInput as exc:
        diff_error = str(exc)
    saved = request.query_params.get("saved")
    choices = [("0", "0 (no settings)")] + [(str(v), str(v)) for v in sorted(versions)]
    return render(
        request,
        "job_type.html",
        name=name,
        kind=kind,
        current=current,
        shown=shown,
        tasks=task_views(shown.settings),
        settings_json=_pretty(shown.settings),
        history=list(reversed(history)),
        diff=diff,
        diff_error=diff_error,
        version_error=version_error,
        saved=int(saved) if saved and saved.isdigit() else None,
        unchanged=request.query_params.get("unchanged") == "1",
        version_choices=choices,
        edit_url=_url(name, kind, suffix="/edit"),
        version_url=lambda v: _url(name, kind, version=v) + "#settings-title",
        changes_url=lambda v: _url(name, kind, **{"from": v - 1, "to": v}) + "#diff-title",
    )


def _edit_page(
    request: Request,
    name: str,
    kind: str,
    current: JobType,
    status: int = 200,
    **context: Any,
) -> Response:
    values: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "current": current,
        "settings": _pretty(current.settings),
        "comment": "",
        "error": None,
        "task_help": _task_help(kind),
        "base_url": _url(name, kind),
    }
    return render(request, "job_type_edit.html", status, **(values | context))


@router.get("/job-types/{name}/edit")
def job_type_edit_page(
    request: Request,
    name: str,
    kind: str = Query(DEFAULT_KIND),
    held: Services = Depends(services),
    _admin: User = Depends(admin_page_user),
) -> Response:
    """The editor of a job type's settings (admins), holding the current version's."""
    current = job_type_history(held.engine, kind, name)[-1]
    return _edit_page(request, name, kind, current)


@router.post("/job-types/{name}/edit")
def job_type_save(
    request: Request,
    name: str,
    kind: str = Form(DEFAULT_KIND),
    settings: str = Form(""),
    comment: str = Form(""),
    held: Services = Depends(services),
    admin: User = Depends(admin_page_user),
) -> Response:
    """Save the edited settings as a new version (admins), once the kind accepts them;
    nothing is saved otherwise, and the editor shows what is wrong."""
    current = job_type_history(held.engine, kind, name)[-1]
    try:
        before = find_job_type(held.engine, kind, name)
        saved = put_job_type(
            held.engine, kind, name, _settings_from(settings), admin.name, _comment(comment)
        )
    except InvalidInput as exc:
        return _edit_page(
            request, name, kind, current, 422, settings=settings, comment=comment, error=str(exc)
        )
    if before is not None and saved.version == before.version:
        return redirect(_url(name, kind, unchanged=1))
    return redirect(_url(name, kind, saved=saved.version))


@router.post("/job-types/{name}/rollback")
def job_type_rollback(
    request: Request,
    name: str,
    version: int = Form(..., ge=1),
    kind: str = Form(DEFAULT_KIND),
    held: Services = Depends(services),
    admin: User = Depends(admin_page_user),
) -> Response:
    """Make an old version's settings current again, as a new version (admins)."""
    before = job_type_history(held.engine, kind, name)[-1]
    saved = rollback_job_type(held.engine, kind, name, version, admin.name)
    if saved.version == before.version:
        return redirect(_url(name, kind, unchanged=1))
    return redirect(_url(name, kind, saved=saved.version))
