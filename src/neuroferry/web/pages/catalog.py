"""/catalog: search the catalog's assets with a filter (MongoDB-style JSON, or simple
``field=value`` terms), and a page per asset with its metadata documents, where its data
lies, and the jobs that made it."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from neuroferry.auth import User
from neuroferry.catalog import Catalog
from neuroferry.engine import JobQuery, list_jobs
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._render import json_field, page_user, pager, render

router = APIRouter()

PAGE_SIZE = 50
MAX_FILTER = 10_000
"""Characters a filter may have."""

#: Short names a term may use, and the paths of an asset's document they look at (a term
#: matches if any of them does).
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "subject": ("data_description.subject_id", "subject.subject_id"),
    "subject_id": ("data_description.subject_id", "subject.subject_id"),
    # data descriptions of aind-data-schema 1.x held the platform; neuroferry's uploads
    # record it beside the uploaded files, under upload_job
    "platform": (
        "data_description.platform.abbreviation",
        "data_description.platform.name",
        "upload_job.platform.abbreviation",
        "upload_job.platform.name",
    ),
    "project": ("data_description.project_name",),
    "project_name": ("data_description.project_name",),
    "modality": (
        "data_description.modalities.abbreviation",
        "data_description.modalities.name",
    ),
    "acquired": ("data_description.creation_time",),
    "level": ("data_description.data_level",),
    "location": ("location",),
}

#: The results' sort keys (the table's columns) and the paths they sort by.
SORTS: dict[str, str] = {
    "name": "name",
    "platform": "data_description.platform.abbreviation",
    "subject": "data_description.subject_id",
    "acquired": "data_description.creation_time",
    "location": "location",
}
DEFAULT_SORT = "-acquired"

_TERM = re.compile(r"(?P<field>[^\s=<>!~]+)\s*(?P<op>>=|<=|!=|=|>|<|~)(?P<value>.*)", re.DOTALL)
_COMPARE = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


def _literal(text: str) -> str:
    """``text`` as a regular expression that matches it literally."""
    return _REGEX_SPECIAL.sub(r"\\\1", text)


def _typed(value: str) -> list[Any]:
    """The JSON values a term's text may mean: itself, and the number or boolean it spells."""
    values: list[Any] = [value]
    if _NUMBER.fullmatch(value):
        values.append(float(value) if "." in value else int(value))
    elif value in ("true", "false"):
        values.append(value == "true")
    return values


def _condition(op: str, value: str) -> Any:
    values = _typed(value)
    if op == "=":
        return values[0] if len(values) == 1 else {"$in": values}
    if op == "!=":
        return {"$nin": values}
    if op == "~":
        return {"$regex": _literal(value), "$options": "i"}
    return {_COMPARE[op]: values[-1]}


def _term(token: str) -> dict[str, Any]:
    match = _TERM.fullmatch(token)
    if match is None:  # a bare word: the name contains it
        return {"name": {"$regex": _literal(token), "$options": "i"}}
    field, op, value = match["field"], match["op"], match["value"]
    if not value:
        raise InvalidInput(
            f"filter: {token!r} has no value after {op!r}; write {field}{op}VALUE "
            '(quote values with spaces: project="Ephys Platform")'
        )
    if field.startswith("$") or any(not part for part in field.split(".")):
        raise InvalidInput(
            f"filter: {field!r} is not a field; give a dotted path such as "
            "subject.subject_id, or one of " + ", ".join(ALIASES)
        )
    condition = _condition(op, value)
    paths = ALIASES.get(field, (field,))
    if len(paths) == 1:
        return {paths[0]: condition}
    if op == "!=":  # none of the paths holds the value
        return {"$and": [{p: condition} for p in paths]}
    return {"$or": [{p: condition} for p in paths]}


def parse_query(text: str) -> dict[str, Any]:
    """The catalog filter a search box holds: a JSON object (MongoDB-style), or terms
    ``field=value`` (also ``!=``, ``>``, ``>=``, ``<``, ``<=``, and ``~`` for "contains")
    separated by spaces or lines, all of which must match; a bare word matches names that
    contain it. InvalidInput says what is wrong and where."""
    text = text.strip()
    if len(text) > MAX_FILTER:
        raise InvalidInput(f"filter: {len(text):,} characters; at most {MAX_FILTER:,}")
    if not text:
        return {}
    if text.startswith("{"):
        value = json_field("filter", text)
        if not isinstance(value, dict):
            raise InvalidInput("filter: a JSON filter is one object: {...}")
        return value
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InvalidInput(f"filter: {exc}; close the quotes around a value") from None
    clauses = [_term(token) for token in tokens]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _at(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _first(doc: Mapping[str, Any], *paths: str) -> Any:
    for path in paths:
        value = _at(doc, path)
        if value not in (None, ""):
            return value
    return None


@dataclass(frozen=True)
class Asset:
    """What the pages show of a catalog document."""

    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.doc.get("name", ""))

    @property
    def location(self) -> str | None:
        value = self.doc.get("location")
        return str(value) if value else None

    @property
    def platform(self) -> Any:
        return _first(
            self.doc,
            "data_description.platform.abbreviation",
            "data_description.platform.name",
            "upload_job.platform.abbreviation",
            "platform",
        )

    @property
    def subject(self) -> Any:
        return _first(self.doc, "data_description.subject_id", "subject.subject_id", "subject_id")

    @property
    def acquired(self) -> str | None:
        value = _first(
            self.doc,
            "data_description.creation_time",
            "acquisition.acquisition_start_time",
            "session.session_start_time",
        )
        return str(value).replace("T", " ") if value else None

    @property
    def project(self) -> Any:
        return _first(self.doc, "data_description.project_name", "project_name")

    @property
    def modalities(self) -> list[str]:
        found = _at(self.doc, "data_description.modalities")
        if not isinstance(found, list):
            return []
        return [
            str(m.get("abbreviation") or m.get("name")) if isinstance(m, Mapping) else str(m)
            for m in found
        ]

    @property
    def documents(self) -> list[tuple[str, str]]:
        """The metadata documents it holds (``data_description``, ``subject`` …) as
        (name, pretty JSON)."""
        return [
            (key, json.dumps(value, indent=2, ensure_ascii=False))
            for key, value in self.doc.items()
            if isinstance(value, Mapping | list)
        ]

    @property
    def fields(self) -> list[tuple[str, str]]:
        """Its other top-level fields, as text."""
        skip = {"name", "location"}
        return [
            (key, value if isinstance(value, str) else json.dumps(value))
            for key, value in self.doc.items()
            if key not in skip and not isinstance(value, Mapping | list)
        ]

    @property
    def whole(self) -> str:
        return json.dumps(self.doc, indent=2, ensure_ascii=False)

    def commands(self) -> list[tuple[str, str, str]]:
        """Commands that list and copy its data: (id, what it does, command)."""
        if not self.location:
            return []
        here = shlex.quote(self.location)
        folder = shlex.quote(f"./{self.name}")
        return [
            ("cmd-ls", "List its files", f"ferry ls {here}"),
            ("cmd-sync", "Copy it to a folder here", f"ferry sync {here} {folder}"),
        ]


def _sort(sort: str) -> tuple[str, list[tuple[str, int]]]:
    key = sort.removeprefix("-")
    if key not in SORTS:
        key, sort = DEFAULT_SORT.removeprefix("-"), DEFAULT_SORT
    order = -1 if sort.startswith("-") else 1
    return sort, [(SORTS[key], order), ("name", 1)]


@router.get("/catalog")
def catalog_page(
    request: Request,
    q: str = Query("", description="The filter"),
    sort: str = Query(DEFAULT_SORT),
    offset: int = Query(0, ge=0),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """The assets a filter selects (among those ``me`` may see), sorted, one page at a time."""
    catalog: Catalog = held.catalog
    sort, order = _sort(sort)
    try:
        query = parse_query(q)
        total = catalog.count(query, viewer=me)
        found = catalog.find(query, sort=order, skip=offset, limit=PAGE_SIZE, viewer=me)
    except InvalidInput as exc:  # QueryError too: the filter's mistake, named
        return render(
            request,
            "catalog.html",
            422,
            q=q,
            sort=sort,
            error=str(exc),
            assets=[],
            page=None,
            aliases=ALIASES,
        )
    assets = [Asset(doc) for doc in found]
    return render(
        request,
        "catalog.html",
        q=q,
        sort=sort,
        error=None,
        assets=assets,
        page=pager(request, total, offset, PAGE_SIZE, len(assets)),
        aliases=ALIASES,
    )


def _jobs_of(held: Services, me: User, name: str) -> list[dict[str, Any]]:
    """The upload and ingest jobs that ``me`` may see whose asset is ``name``, newest
    first (an ingest job is named by its volume, ``lab/em`` for the asset ``lab:em``)."""
    volume = name.replace(":", "/")
    rows: list[dict[str, Any]] = []
    for kind, wanted in (("upload", name), ("ingest", volume)):
        query = JobQuery(kinds=(kind,), name_contains=wanted, limit=100)
        found, _total = list_jobs(held.engine, me, query)
        rows.extend(r for r in found if r["name"] == wanted)
    return sorted(rows, key=lambda r: r["id"], reverse=True)


@dataclass(frozen=True)
class LevelView:
    """One level of a volume as the asset page shows it."""

    level: int
    shape: list[int]
    renderable: bool

    @property
    def size(self) -> str:
        """Its size (z x y x x), with channels and time points when there are several."""
        t, c, z, y, x = self.shape
        text = f"{z} x {y} x {x}"
        if c > 1:
            text += f", {c} channels"
        if t > 1:
            text += f", {t} time points"
        return text


def _levels(doc: Mapping[str, Any]) -> tuple[list[LevelView], list[int]]:
    """The levels of a volume asset that can be shown, and those whose shape in the
    document is no list of positive sizes (not readable)."""
    from neuroferry.pipelines.ingest import VolumeAsset, is_volume

    if not is_volume(doc):
        return [], []
    volume = VolumeAsset(str(doc.get("name")), str(doc["location"]), doc["image"])
    found, unreadable = [], []
    for level in range(len(volume.levels)):
        shape = volume.shape(level)
        if len(shape) == 5:
            found.append(LevelView(level, shape, volume.renderable(level)))
        else:
            unreadable.append(level)
    return found, unreadable


@router.get("/catalog/{name}")
def asset_page(
    request: Request,
    name: str,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """One asset: its metadata documents, where its data lies, and the jobs that made it;
    for an OME-Zarr volume, a slice of each level and a slice viewer."""
    found = held.catalog.find({"name": name}, limit=1, viewer=me)
    if not found:
        raise NotFound(f"no asset named {name!r} in the catalog; search for it on the catalog page")
    asset = Asset(found[0])
    levels, unreadable = _levels(found[0])
    zarr_url = str(request.url_for("volume_object", name=name, key="zarr.json"))
    return render(
        request,
        "asset.html",
        asset=asset,
        jobs=_jobs_of(held, me, name),
        levels=levels,
        zarr_url=zarr_url.removesuffix("zarr.json") if levels else None,
        shown=next((lv for lv in reversed(levels) if lv.renderable), None),
        unreadable=unreadable,
    )


@router.get("/catalog/{name}/slice.png")
def slice_png(
    name: str,
    level: int = Query(0, ge=0, le=64, description="The resolution level"),
    z: int | None = Query(None, ge=0, description="The slice (default: the middle one)"),
    side: int = Query(256, ge=16, le=1024, description="The longest side, in pixels"),
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """A slice of a level of the volume asset ``name`` as PNG (time point 0, every active
    channel in its colour and window; a label image in its label colours)."""
    from neuroferry.pipelines.ingest import render_slice, volume_asset

    volume = volume_asset(held.catalog, name, me)
    png, tag = render_slice(volume, level, held.settings, z=z, side=side)
    return Response(
        png,
        media_type="image/png",
        headers={
            "Cache-Control": "private, max-age=300",
            "ETag": f'"{tag}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
