"""/dropboxes: the drop-boxes of the signed-in user's groups (admins: every one), and one
group's page of a drop-box: upload data and configs, pick data and a config and submit
(the submit file ``ferry dropbox submit`` writes), follow each submission's certificate
and dataset status files while it runs, and download its results.

A group's page lists its ``inputs/`` and ``configs/``, the folders (not the files) of its
``results/``, and the files, certificate and dataset status files of the one submission
it shows: however many submissions the group has, a page costs the same few store calls.
It refreshes itself as the jobs page does (``partial=1`` answers with the part that
changes) while the submission shown has not ended. Uploads and downloads go through the
drop-box files API (``/api/v2/dropboxes/{name}/files``), with its rules: ``inputs/`` and
``submissions/`` are written, never read back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from neuroferry.auth import User
from neuroferry.dropbox import (
    END_MARKER,
    Dropbox,
    GroupFiles,
    check_path,
    group_files,
    list_dropboxes,
    list_group_files,
    list_group_folders,
    read_group_file,
    submit,
)
from neuroferry.errors import Forbidden, InvalidInput, NotFound
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._render import page_user, redirect, render
from neuroferry.web.pages.jobs import REFRESH_SECONDS

router = APIRouter()

#: The most submissions a group's page lists (the newest), and files of one submission.
MAX_SUBMISSIONS = 100
MAX_FILES = 500
#: The largest certificate or status file shown in the page (the rest: download it).
MAX_SHOWN_BYTES = 256 * 1024
#: A dataset's status (the original's words) as the state badge that colours it.
STATUS_STATE = {
    "INITIALIZING": "queued",
    "IN PROGRESS": "running",
    "SUCCESS": "succeeded",
    "FAILED": "failed",
}
#: Fields of the submit form; an error that starts with one is shown at it.
FORM_FIELDS = ("data", "config", "timestamp", "group")
_STATUS_FILE = re.compile(r"logs/DATASET_NAME:(?P<name>.+)_STATUS\.txt")
_DIGITS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[Any, ...]:
    """A sort key that orders numbers by value: ``9`` before ``10``."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(text))


def file_url(box: str, group: str, path: str) -> str:
    """The files API's address of ``path`` of ``group``'s folder (a download link)."""
    query = urlencode({"group": group})
    return f"/api/v2/dropboxes/{quote(box, safe='')}/files/{quote(path, safe='/')}?{query}"


def status_badge(status: str) -> Markup:
    """A dataset's status in the original's words, coloured as the state it stands for."""
    state = STATUS_STATE.get(status, "unknown")
    return Markup('<span class="state state-{}">{}</span>').format(state, status or "unknown")


@dataclass(frozen=True)
class FileView:
    """One file of the group's folder as a page lists it."""

    path: str
    size: int
    url: str | None = None
    """Its download link, for the folders members may read (configs/, results/)."""

    @property
    def name(self) -> str:
        return self.path.split("/", 1)[1]


@dataclass
class Submission:
    """One submission's results folder (``results/job__{box}_{timestamp}/``), as the
    group's listing shows it."""

    timestamp: str
    folder: str
    files: list[FileView] = field(default_factory=list)
    ended: bool = False

    @property
    def state(self) -> str:
        """``ended`` once ``process_results/end.txt`` is there, else ``in progress``."""
        return "ended" if self.ended else "in progress"


@dataclass(frozen=True)
class DatasetView:
    """One dataset of a submission, from its status file."""

    name: str
    input: str
    status: str
    started: str
    finished: str
    error: str
    url: str

    @property
    def badge(self) -> Markup:
        return status_badge(self.status)


def submissions(box: str, folders: Iterable[str]) -> list[Submission]:
    """The group's submissions by their results folders (``results/job__{box}_…``),
    newest (by timestamp) first."""
    prefix = f"results/job__{box}_"
    found = [
        Submission(folder.removeprefix(prefix), folder)
        for folder in folders
        if folder.startswith(prefix) and len(folder) > len(prefix)
    ]
    return sorted(found, key=lambda s: _natural(s.timestamp), reverse=True)


def _view(f: Mapping[str, object], linked: GroupFiles | None = None) -> FileView:
    """A listed file; ``linked``: with its download link from that group's folder."""
    path = str(f["path"])
    url = file_url(linked.box.name, linked.group, path) if linked is not None else None
    return FileView(path, int(str(f["size"])), url)


def with_files(files: GroupFiles, sub: Submission) -> Submission:
    """``sub`` with its files (one listing of its folder) and whether it has ended."""
    for f in list_group_files(files, sub.folder + "/"):
        path = str(f["path"])
        sub.files.append(
            FileView(path, int(str(f["size"])), file_url(files.box.name, files.group, path))
        )
        if path == f"{sub.folder}/process_results/end.txt":
            sub.ended = True
    return sub


def _text(files: GroupFiles, path: str) -> str | None:
    """A small file of the group's results as text (None if it is gone or too large)."""
    try:
        data = read_group_file(files, path)
    except (NotFound, InvalidInput, Forbidden):
        return None
    if len(data) > MAX_SHOWN_BYTES:
        return data[:MAX_SHOWN_BYTES].decode(errors="replace") + "\n… (download it to see it all)"
    return data.decode(errors="replace")


def datasets(files: GroupFiles, sub: Submission) -> list[DatasetView]:
    """The datasets of a submission, each read from its status file."""
    found = []
    for f in sub.files:
        match = _STATUS_FILE.fullmatch(f.path.removeprefix(sub.folder + "/"))
        if match is None:
            continue
        text = _text(files, f.path)
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}

        def shown(key: str, body: dict[str, Any] = body) -> str:
            value = body.get(key)
            return "" if value in (None, "N/A") else str(value)

        found.append(
            DatasetView(
                match["name"],
                shown("input"),
                shown("status") or "unknown",
                shown("job_start"),
                shown("job_finish"),
                shown("error"),
                f.url or "",
            )
        )
    return found


def _exists(files: GroupFiles, path: str) -> bool:
    try:
        check_path("job", path)
        files.store.head(f"{files.group}/{path}")
    except (NotFound, InvalidInput):
        return False
    return True


def _outcome(selected: Submission | None, shown: list[DatasetView]) -> str | None:
    """How an ended submission went, by its datasets' status files: ``succeeded`` when
    every dataset did, else ``failed`` (None while it runs or without status files)."""
    if selected is None or not selected.ended or not shown:
        return None
    return "succeeded" if all(d.status == "SUCCESS" for d in shown) else "failed"


def _box(held: Services, me: User, name: str) -> Dropbox:
    """The drop-box ``name`` as ``me`` sees it (users: with their groups only)."""
    box = next((b for b in list_dropboxes(held.engine, me) if b.name == name), None)
    if box is None:  # users learn nothing of drop-boxes they are not in
        raise NotFound(f"no drop-box is named {name!r} for you; the drop-boxes page lists yours")
    return box


def _group_context(
    request: Request, held: Services, files: GroupFiles, chosen: str | None
) -> dict[str, Any]:
    box, group = files.box, files.group
    partial = bool(request.query_params.get("partial"))
    data, configs = [], []
    if not partial:  # the live part shows neither
        data = [
            FileView(str(f["path"]), int(str(f["size"])))
            for f in list_group_files(files, "inputs/")
        ]
        configs = [
            FileView(str(f["path"]), int(str(f["size"])), file_url(box.name, group, str(f["path"])))
            for f in list_group_files(files, "configs/")
        ]
    # the folders of the submissions, not what lies in them: a page costs the same
    # however many submissions the group has
    subs = submissions(box.name, list_group_folders(files, "results/"))
    if chosen is None and subs:
        chosen = subs[0].timestamp
    selected = next((s for s in subs if s.timestamp == chosen), None)
    if selected is not None:
        with_files(files, selected)
    # submitted, not yet taken by the watcher: its submit file is there, not its folder
    waiting = (
        chosen
        if selected is None and chosen and _exists(files, f"submissions/{chosen}_submit.json")
        else None
    )
    certificate = None
    shown_datasets: list[DatasetView] = []
    ended_text = None
    if selected is not None:
        certificate = _text(files, f"{selected.folder}/logs/certificate.txt")
        shown_datasets = datasets(files, selected)
        if selected.ended:
            ended_text = _text(files, f"{selected.folder}/process_results/end.txt")
    return {
        "box": box,
        "group": group,
        "groups": [g.name for g in box.groups],
        "data_files": data,
        "configs": configs,
        "submissions": subs[:MAX_SUBMISSIONS],
        "more_submissions": max(0, len(subs) - MAX_SUBMISSIONS),
        "selected": selected,
        "chosen": chosen,
        "waiting": waiting,
        "certificate": certificate,
        "datasets": shown_datasets,
        "outcome": _outcome(selected, shown_datasets),
        "ended_marker": ended_text == END_MARKER.decode() if ended_text is not None else None,
        "max_files": MAX_FILES,
        "active": waiting is not None or (selected is not None and not selected.ended),
        "refresh_seconds": REFRESH_SECONDS,
        "max_request_bytes": held.settings.max_request_bytes,
        "upload_url": f"/api/v2/dropboxes/{quote(box.name, safe='')}/files/",
        "page_url": f"/dropboxes/{quote(box.name, safe='')}?{urlencode({'group': group})}",
    }


def _group_page(
    request: Request,
    held: Services,
    me: User,
    name: str,
    group: str | None,
    chosen: str | None = None,
    status: int = 200,
    **form: Any,
) -> Response:
    box = _box(held, me, name)
    mine = [g.name for g in box.groups]
    if group is None and len(mine) != 1:
        return render(request, "dropbox_groups.html", status, box=box)
    files = group_files(held.engine, held.settings, me, name, group)
    context = _group_context(request, held, files, chosen)
    if request.query_params.get("partial"):
        return render(request, "dropbox_live.html", status, **context)
    values: dict[str, Any] = {
        "errors": {},
        "error": None,
        "picked_data": [],
        "picked_config": "",
        "timestamp": "",
        "uploaded": _uploaded(request),
    }
    return render(request, "dropbox.html", status, **(values | form | context))


def _uploaded(request: Request) -> str | None:
    """What the page says after the browser uploaded files (``?uploaded=3&to=inputs``)."""
    count, folder = request.query_params.get("uploaded", ""), request.query_params.get("to")
    if not count.isdigit() or len(count) > 6 or folder not in ("inputs", "configs"):
        return None
    n = int(count)
    return f"Uploaded {n} file{'' if n == 1 else 's'} to {folder}/."


@router.get("/dropboxes")
def dropboxes_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """The drop-boxes of the user's groups (admins: every drop-box and group)."""
    return render(request, "dropboxes.html", boxes=list_dropboxes(held.engine, me))


@router.get("/dropboxes/{name}")
def dropbox_page(
    request: Request,
    name: str,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """One group's page of drop-box ``name`` (``?group=``: which, for a member of several;
    ``?job=TIMESTAMP``: the submission shown; ``partial=1``: the part that changes)."""
    group = request.query_params.get("group") or None
    chosen = request.query_params.get("job") or None
    return _group_page(request, held, me, name, group, chosen)


@router.post("/dropboxes/{name}/submit")
def dropbox_submit(
    request: Request,
    name: str,
    group: str = Form(..., max_length=128),
    data: list[str] = Form([]),
    config: str = Form("", max_length=1024),
    timestamp: str = Form("", max_length=1024),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """Write the submit file of the picked data and config to the group's
    ``submissions/``, then show the submission (or what is wrong, at its field)."""
    files = group_files(held.engine, held.settings, me, name, group)
    form = {"picked_data": data, "picked_config": config, "timestamp": timestamp}
    try:
        made = submit(files, data, config, timestamp.strip() or None)
    except InvalidInput as exc:
        message = str(exc)
        where = message.split(":", 1)[0]
        errors = {where: message.split(":", 1)[1].strip()} if where in FORM_FIELDS else {}
        return _group_page(
            request, held, me, name, group, None, 422, errors=errors, error=message, **form
        )
    query = urlencode({"group": files.group, "job": made.timestamp})
    return redirect(f"/dropboxes/{quote(name, safe='')}?{query}#submission")
