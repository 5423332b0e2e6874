"""Dispatch: the data to analyse x the parameter sets → one dispatch model per task.

The data comes from one of four places: a catalog filter, a CSV with an ``asset_id``
column (catalog ``_id``\\ s or asset names), those ids as a list, or store URLs. Every
asset's location is checked against the job owner's grants and must hold none of another
user's data (:func:`check_not_others`); with a file extension, each asset's store is
listed once (at most ``analysis_max_listed`` objects) and its matching files become the
inputs (one task per file with ``split_files``, else one per asset). A file extension is
given with or without its dot and matches ignoring case (``.nwb`` finds ``x.NWB``, which
the original's glob misses), a file or a folder (``.zarr``). N inputs x M distributed
parameter sets give N x M models, inputs in order (assets by name for a filter, in row
order for a CSV, as given for ids and URLs; files by path), each input's parameter sets
together.

Where the original dispatcher's behaviour shows in its files, it is kept: ``query`` is
the filter as ``json.dumps`` writes it, but None for CSV, id or URL inputs and when files
are listed without ``split_files`` (the original builds a new model there and drops it); an
asset without a matching file is left out (and named in the :class:`Preview`);
locations are written in the canonical form they were checked in (see
:func:`neuroferry.grants.normalise_url`);
without a file extension nothing is listed, ``file_location`` is None and ``split_files``
changes nothing; without distributed sets each input gives one model whose
``distributed_parameters`` is None.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from neuroferry.catalog import Catalog, Person
from neuroferry.config import Settings, get_settings
from neuroferry.errors import Forbidden, InvalidInput, StoreError, validation_problems
from neuroferry.grants import Access, normalise_url
from neuroferry.pipelines.analysis._kind import AnalysisSpec
from neuroferry.pipelines.analysis._models import (
    AnalysisParameters,
    DispatchModel,
    merge_parameters,
)
from neuroferry.pipelines.analysis._registry import Analysis
from neuroferry.stores import open_store

#: At most this many stores are listed (or objects written) at the same time.
PARALLEL_STORE_CALLS = 16
#: Ids looked up in the catalog per query (below the filter's ``$in`` limit).
LOOKUP_BATCH = 1000
#: Unknown CSV ids named in one error (the others are counted).
SHOWN_PROBLEMS = 10

T = TypeVar("T")
R = TypeVar("R")


def in_parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` of each item, in order, run on up to :data:`PARALLEL_STORE_CALLS`
    threads (store calls wait on the network, not the interpreter)."""
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(PARALLEL_STORE_CALLS, len(items)), "ferry-dispatch") as pool:
        return list(pool.map(function, items))


@dataclass(frozen=True)
class Asset:
    """One asset to analyse: its store URL (canonical, checked against the grants), name
    and catalog ``_id`` ("" for a store URL that no catalog document names)."""

    location: str
    name: str
    record_id: str


@dataclass(frozen=True)
class Preview:
    """What a dispatch would run, before anything is submitted."""

    assets: int
    """Assets selected (and readable)."""
    inputs: int
    """N: inputs after listing files (a file each with ``split_files``, else an asset each)."""
    parameter_sets: int
    """M: distributed parameter sets (at least 1: no sets run the fixed parameters once)."""
    models: int
    """K = N x M: tasks."""
    first: list[DispatchModel]
    """The first few models, in order."""
    without_files: list[str] = field(default_factory=list)
    """Names of the assets left out because no file matched the file extension."""
    already_computed: int | None = None
    """J: tasks whose result exists already (filled in by the analysis kind)."""


class Dispatched(list[DispatchModel]):
    """The dispatch models, in order, with what a preview shows about them."""

    def __init__(
        self,
        models: Iterable[DispatchModel],
        assets: Sequence[Asset],
        without_files: Sequence[Asset],
        inputs: int,
        parameter_sets: int,
    ) -> None:
        super().__init__(models)
        self.assets = list(assets)
        """The assets selected (locations canonical)."""
        self.without_files = list(without_files)
        """The assets left out because no file matched the file extension."""
        self.inputs = inputs
        self.parameter_sets = parameter_sets

    def preview(self, first: int = 5) -> Preview:
        """The counts and the first ``first`` models."""
        return Preview(
            assets=len(self.assets),
            inputs=self.inputs,
            parameter_sets=self.parameter_sets,
            models=len(self),
            first=list(self[:first]),
            without_files=[a.name for a in self.without_files],
        )


# -- selecting assets --------------------------------------------------------------------


def _asset_of(doc: Mapping[str, Any]) -> Asset:
    location = doc.get("location")
    if not isinstance(location, str) or not location:
        raise InvalidInput(
            f"catalog asset {doc.get('name')!r} has no location (store URL), so it cannot be "
            "analysed: narrow the filter or give the asset a location"
        )
    return Asset(location, str(doc["name"]), str(doc["_id"]))


def assets_from_filter(
    catalog: Catalog, filter: Mapping[str, Any], viewer: Person | None
) -> list[Asset]:
    """The catalog assets matching a MongoDB-style filter that ``viewer`` may see (users:
    their own), by name."""
    docs = catalog.find(filter, sort=[("name", 1)], viewer=viewer)
    return [_asset_of(doc) for doc in docs]


def read_asset_ids(csv_text: str) -> list[tuple[int, str]]:
    """The ``asset_id`` values of a CSV, each with its row as a spreadsheet numbers it
    (the header is row 1); blank values are skipped. :class:`InvalidInput` without the
    column or without any value."""
    reader = csv.reader(io.StringIO(csv_text.removeprefix("\ufeff")))
    header = [name.strip() for name in next(reader, [])]
    if "asset_id" not in header:
        shown = ", ".join(repr(name) for name in header if name) or "none"
        raise InvalidInput(
            f"the asset CSV has no 'asset_id' column (row 1 names the columns: {shown}); "
            "give a header row with an asset_id column and one catalog _id or asset name "
            "per row"
        )
    column = header.index("asset_id")
    ids = [
        (number, row[column].strip())
        for number, row in enumerate(reader, start=2)
        if column < len(row) and row[column].strip()
    ]
    if not ids:
        raise InvalidInput(
            "the asset CSV's asset_id column is empty; give one catalog _id or asset name per row"
        )
    return ids


def _batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def assets_from_ids(
    catalog: Catalog,
    ids: Sequence[tuple[int, str]],
    viewer: Person | None,
    *,
    listed: bool = False,
) -> list[Asset]:
    """The assets named by ``(row, id)`` pairs of an asset CSV (with ``listed``: by
    ``(index, id)`` pairs of a list ``asset_ids``), each id a catalog ``_id`` or an asset
    name that ``viewer`` may see, in order (an asset named twice counts once).
    :class:`InvalidInput` names every row (or index) whose id is unknown."""
    wanted = list(dict.fromkeys(value for _row, value in ids))
    by_id: dict[str, Mapping[str, Any]] = {}
    by_name: dict[str, Mapping[str, Any]] = {}
    for batch in _batches(wanted, LOOKUP_BATCH):
        found = catalog.find(
            {"$or": [{"_id": {"$in": list(batch)}}, {"name": {"$in": list(batch)}}]},
            viewer=viewer,
        )
        for found_doc in found:
            by_id[found_doc["_id"]] = found_doc
            by_name[found_doc["name"]] = found_doc
    chosen: dict[str, Asset] = {}
    unknown: list[tuple[int, str]] = []
    for row, value in ids:
        doc = by_id.get(value) or by_name.get(value)
        if doc is None:
            unknown.append((row, value))
        elif doc["_id"] not in chosen:
            chosen[doc["_id"]] = _asset_of(doc)
    if unknown:
        raise _unknown_ids(unknown, listed)
    return list(chosen.values())


def _unknown_ids(unknown: Sequence[tuple[int, str]], listed: bool) -> InvalidInput:
    """The error naming each unknown ``(row or index, id)``."""
    problems: list[dict[str, Any]] = []
    for place, value in unknown:
        message = f"{value!r} is neither the _id nor the name of a catalog asset you may see"
        if listed:
            problems.append({"index": place, "field": f"asset_ids[{place}]", "message": message})
        else:
            problems.append({"row": place, "field": "asset_id", "message": message})
    where = [f"asset_ids[{p['index']}]" if listed else f"row {p['row']}" for p in problems]
    shown = "; ".join(
        f"{w}: {p['message']}" for w, p in zip(where, problems[:SHOWN_PROBLEMS], strict=False)
    )
    more = len(problems) - SHOWN_PROBLEMS
    unit = "ids" if listed else "rows"
    return InvalidInput(
        ("" if listed else "asset CSV: ")
        + shown
        + (f"; and {more} more {unit}" if more > 0 else ""),
        problems,
    )


def assets_from_urls(
    urls: Sequence[str], catalog: Catalog | None = None, viewer: Person | None = None
) -> list[Asset]:
    """The assets at store URLs, as given: named by the catalog document at that location
    (that ``viewer`` may see) if there is one, else by the URL's last part."""
    canonical = [normalise_url(f"locations[{i}]", url) for i, url in enumerate(urls)]
    known: dict[str, Mapping[str, Any]] = {}
    if catalog is not None:
        spellings = list(dict.fromkeys([*urls, *canonical]))
        for batch in _batches(spellings, LOOKUP_BATCH):
            for found in catalog.find({"location": {"$in": list(batch)}}, viewer=viewer):
                known.setdefault(normalise_url("location", found["location"]), found)
    assets = []
    for url in dict.fromkeys(canonical):
        doc = known.get(url)
        if doc is not None:
            assets.append(Asset(url, str(doc["name"]), str(doc["_id"])))
        else:
            assets.append(Asset(url, url.rstrip("/").rsplit("/", 1)[-1], ""))
    return assets


def check_assets(
    assets: Sequence[Asset],
    access: Access,
    catalog: Catalog | None = None,
    viewer: Person | None = None,
) -> list[Asset]:
    """The assets with their locations in canonical form, if the job's owner may read
    every one: within their grants and, with the ``catalog``, holding no data of another
    user (:func:`check_not_others`). :class:`~neuroferry.errors.Forbidden` names the first
    other asset."""
    checked = [
        Asset(access.check_read_url(f"asset {a.name!r}", a.location), a.name, a.record_id)
        for a in assets
    ]
    if catalog is not None:
        check_not_others([(f"asset {a.name!r}", a.location) for a in checked], catalog, viewer)
    return checked


def _parents(url: str) -> list[str]:
    """The folders or prefixes that hold canonical ``url``, nearest first (not the
    scheme's root)."""
    scheme, _, path = url.partition("://")
    parts = path.split("/")
    return [f"{scheme}://{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]


def _root(urls: Sequence[str]) -> str:
    """The deepest folder or prefix that holds (or is) every one of canonical ``urls``
    (all of one scheme and bucket)."""
    split = [u.split("/") for u in urls]
    common = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def check_not_others(
    located: Sequence[tuple[str, str]], catalog: Catalog, viewer: Person | None
) -> None:
    """:class:`~neuroferry.errors.Forbidden`, naming the label, if one of the canonical
    ``(label, url)`` is, lies inside or holds the location of a catalog document that
    ``viewer`` may not see (another user's asset or result, or one without an owner): a
    user reads only their own data, whatever store prefix or destination it lies in.
    Admins (and the service, ``viewer`` None) read anywhere their grants allow."""
    if viewer is None or viewer.is_admin or not located:
        return
    urls = list(dict.fromkeys(url for _label, url in located))
    around = {u: u for u in urls}
    for url in urls:
        for parent in _parents(url):
            around.setdefault(parent, url)
    groups: dict[str, list[str]] = {}
    for url in urls:
        scheme, _, path = url.partition("://")
        groups.setdefault(f"{scheme}://{path.split('/', 1)[0]}", []).append(url)
    under = [_root(group) for group in groups.values()]
    wanted = set(urls)
    for location in catalog.hidden_from(viewer, at=list(around), under=under):
        try:
            theirs = normalise_url("location", location)
        except InvalidInput:
            theirs = location.rstrip("/")  # not a store URL: compared as stored
        if theirs in around:
            url = around[theirs]
            how = "is" if theirs == url else "lies inside"
        else:
            holder = next((p for p in _parents(theirs) if p in wanted), None)
            if holder is None:
                continue
            url, how = holder, "holds"
        label = next(label for label, u in located if u == url)
        raise Forbidden(
            f"{label}: {url} {how} the data of another user (a catalog asset or result you "
            "may not see); your analyses read and write only your own data: choose a "
            "location that neither is, lies inside nor holds another user's"
        )


# -- files ------------------------------------------------------------------------------


def normalise_extension(file_extension: str | None) -> str | None:
    """``.nwb`` for ``.nwb``, ``nwb`` or ``.NWB``; None for None or blank."""
    if file_extension is None or not file_extension.strip():
        return None
    extension = file_extension.strip().lower()
    if any(c in extension for c in "/\\*?[]") or extension.strip(".") == "":
        raise InvalidInput(
            f"file_extension {file_extension!r} is not a file extension; give one like .nwb"
        )
    return extension if extension.startswith(".") else "." + extension


def _match(path: str, extension: str) -> str | None:
    """The outermost part of ``path`` (a file, or a folder such as ``x.zarr``) whose name
    ends with ``extension`` (ignoring case), else None."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.lower().endswith(extension):
            return "/".join(parts[: i + 1])
    return None


def list_files(
    asset: Asset,
    extension: str,
    settings: Settings | None = None,
    max_listed: int | None = None,
) -> list[str]:
    """The URLs of the files (or folders) in ``asset`` whose name ends with ``extension``,
    ignoring case, by path. The store is listed once, at most ``max_listed`` objects
    (default: the setting ``analysis_max_listed``): a location that holds more is refused
    (:class:`InvalidInput` naming it and the number)."""
    if max_listed is None:
        max_listed = (settings or get_settings()).analysis_max_listed
    found: set[str] = set()
    try:
        for listed, entry in enumerate(open_store(asset.location, settings=settings).list()):
            if listed == max_listed:
                raise InvalidInput(
                    f"asset {asset.name!r}: {asset.location} holds more than {max_listed} "
                    "objects, more than a dispatch lists in one location (setting "
                    "analysis_max_listed): select the assets or folders that hold the files"
                )
            if (m := _match(entry.path, extension)) is not None:
                found.add(m)
    except StoreError as exc:
        raise type(exc)(f"asset {asset.name!r}: {exc}") from exc
    return [f"{asset.location}/{path}" for path in sorted(found)]


# -- dispatch ---------------------------------------------------------------------------


def parameter_sets(
    parameters: AnalysisParameters,
    overrides: Mapping[str, Any] | None = None,
    parameter_model: type[BaseModel] | None = None,
) -> list[dict[str, Any] | None]:
    """The distributed parameter sets, one per task per input (``[None]`` without any).
    With ``parameter_model``, each set merged over the fixed parameters and ``overrides``
    must validate: :class:`InvalidInput` names the set, the dispatch models that would run
    it (set *j* of *M* is model *j* of every input's *M*) and each field, also in its
    ``problems`` (``parameter_set``, ``field``, ``message``)."""
    sets: list[dict[str, Any] | None] = list(parameters.distributed_parameters) or [None]
    if parameter_model is not None:
        for number, one in enumerate(sets, start=1):
            merged = merge_parameters(parameters.fixed_parameters, overrides, one)
            try:
                parameter_model.model_validate(merged)
            except ValidationError as exc:
                raise _invalid_set(number, len(sets), one is not None, exc) from exc
    return sets


def _invalid_set(number: int, total: int, distributed: bool, exc: ValidationError) -> InvalidInput:
    """The error of parameter set ``number`` of ``total`` (merged) that failed validation."""
    if distributed:
        which = (
            f"parameter set {number} (distributed_parameters[{number - 1}] over the fixed "
            f"parameters and overrides; dispatch model {number} of each input's {total}) is"
        )
    else:
        which = "the parameters (fixed and overrides merged; every dispatch model) are"
    problems = [
        {
            "parameter_set": number,
            "field": ".".join(str(part) for part in err.get("loc", ())) or None,
            "message": str(err.get("msg")),
        }
        for err in exc.errors()
    ]
    return InvalidInput(f"{which} not valid: " + "; ".join(validation_problems(exc)), problems)


Input = tuple[Asset, list[str] | None]
"""One input: an asset and the URLs of its files to analyse (None: the whole asset)."""


def _select(
    filter: Mapping[str, Any] | None,
    asset_csv: str | Path | None,
    asset_ids: Sequence[str] | None,
    urls: Sequence[str] | None,
    catalog: Catalog | None,
    viewer: Person | None,
) -> tuple[list[Asset], str | None]:
    """The assets given in exactly one way, and the query text the models carry."""
    sources = {"filter": filter, "asset_csv": asset_csv, "asset_ids": asset_ids, "urls": urls}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise InvalidInput(
            "give the data to analyse in exactly one way: a catalog filter, an asset CSV, "
            f"asset ids or store URLs (got {', '.join(given) or 'none'})"
        )
    if urls is not None:
        return assets_from_urls(urls, catalog, viewer), None
    if catalog is None:
        raise InvalidInput("a catalog filter, an asset CSV or asset ids need the catalog")
    if filter is not None:
        return assets_from_filter(catalog, filter, viewer), json.dumps(filter)
    if asset_ids is not None:
        if not asset_ids:
            raise InvalidInput("asset_ids is empty; give one catalog _id or asset name or more")
        return assets_from_ids(catalog, list(enumerate(asset_ids)), viewer, listed=True), None
    text = asset_csv.read_text(encoding="utf-8") if isinstance(asset_csv, Path) else asset_csv
    return assets_from_ids(catalog, read_asset_ids(str(text)), viewer), None


def _inputs(
    assets: list[Asset], extension: str | None, split_files: bool, settings: Settings | None
) -> tuple[list[Input], list[Asset]]:
    """The inputs, and the assets left out for want of a matching file."""
    if extension is None:
        return [(asset, None) for asset in assets], []
    listed = in_parallel(lambda a: list_files(a, extension, settings), assets)
    pairs = list(zip(assets, listed, strict=True))
    without = [asset for asset, files in pairs if not files]
    if split_files:
        return [(asset, [f]) for asset, files in pairs for f in files], without
    return [(asset, files) for asset, files in pairs if files], without


def dispatch(
    *,
    filter: Mapping[str, Any] | None = None,
    asset_csv: str | Path | None = None,
    asset_ids: Sequence[str] | None = None,
    urls: Sequence[str] | None = None,
    parameters: AnalysisParameters | None = None,
    overrides: Mapping[str, Any] | None = None,
    parameter_model: type[BaseModel] | None = None,
    file_extension: str | None = None,
    split_files: bool = True,
    catalog: Catalog | None = None,
    viewer: Person | None = None,
    access: Access,
    settings: Settings | None = None,
    max_models: int | None = None,
) -> Dispatched:
    """The dispatch models, in order, for the data given by one of ``filter`` (a catalog
    filter), ``asset_csv`` (CSV text, or a path to read), ``asset_ids`` (catalog ids
    or asset names, as an asset CSV's column gives them) or ``urls`` (store URLs), x the
    parameter sets of ``parameters``; with the counts a preview shows
    (:meth:`Dispatched.preview`). ``catalog`` documents are those ``viewer`` may see;
    every location must be readable under ``access`` and hold none of another user's
    data (:func:`check_assets`). ``parameter_model``: see
    :func:`parameter_sets`. More than ``max_models`` models are refused
    (:class:`InvalidInput` with the counts). The module's docstring gives the rules."""
    sets = parameter_sets(parameters or AnalysisParameters(), overrides, parameter_model)
    extension = normalise_extension(file_extension)
    assets, query = _select(filter, asset_csv, asset_ids, urls, catalog, viewer)
    assets = check_assets(assets, access, catalog, viewer)
    inputs, without = _inputs(assets, extension, split_files, settings)
    if max_models is not None and len(inputs) * len(sets) > max_models:
        raise InvalidInput(
            f"{len(inputs)} inputs x {len(sets)} parameter sets = {len(inputs) * len(sets)} "
            f"dispatch models, more than the {max_models} one dispatch may make (setting "
            "analysis_max_models): select fewer assets or parameter sets, or dispatch them "
            "in parts"
        )
    if extension is not None and not split_files:
        query = None  # as the original, which builds a new model here
    models = (
        DispatchModel(
            s3_location=[asset.location],
            asset_name=[asset.name],
            docdb_record_id=[asset.record_id],
            file_location=files,
            distributed_parameters=one,
            query=query,
        )
        for asset, files in inputs
        for one in sets
    )
    return Dispatched(models, assets, without, len(inputs), len(sets))


# -- an analysis job's spec --------------------------------------------------------------


def check_models(
    models: Sequence[DispatchModel],
    catalog: Catalog,
    viewer: Person | None,
    access: Access,
) -> list[DispatchModel]:
    """Prebuilt dispatch models, if the job's owner may read every location they name
    (as :func:`check_assets` checks an asset's) and every ``docdb_record_id`` names a
    catalog document the owner may see (or is ""), so that a record never claims another
    user's asset; :class:`~neuroferry.errors.Forbidden` or :class:`InvalidInput` names
    the model and field."""
    located = []
    for i, model in enumerate(models):
        for field_name in ("s3_location", "file_location"):
            for j, url in enumerate(getattr(model, field_name) or []):
                label = f"models[{i}].{field_name}[{j}]"
                located.append((label, access.check_read_url(label, url)))
    check_not_others(located, catalog, viewer)
    ids = {
        (f"models[{i}].docdb_record_id[{j}]", value)
        for i, model in enumerate(models)
        for j, value in enumerate(model.docdb_record_id)
        if value
    }
    wanted = list(dict.fromkeys(value for _label, value in sorted(ids)))
    seen: set[str] = set()
    for batch in _batches(wanted, LOOKUP_BATCH):
        docs = catalog.find({"_id": {"$in": list(batch)}}, projection={"_id": 1}, viewer=viewer)
        seen.update(str(doc["_id"]) for doc in docs)
    unknown = sorted(label for label, value in ids if value not in seen)
    if unknown:
        more = len(unknown) - SHOWN_PROBLEMS
        raise InvalidInput(
            "; ".join(
                f"{label}: not the _id of a catalog document you may see"
                for label in unknown[:SHOWN_PROBLEMS]
            )
            + (f"; and {more} more" if more > 0 else "")
            + ' (give the _id of one of your own assets, or "" for a location without one)',
            [{"field": label, "message": "unknown catalog _id"} for label in unknown],
        )
    return list(models)


def check_spec(
    spec: AnalysisSpec, *, catalog: Catalog, viewer: Person | None, access: Access
) -> None:
    """The checks of a spec's ``locations`` and prebuilt ``models`` that need the catalog
    (:func:`check_not_others`, :func:`check_models`), to refuse a job when it is
    submitted rather than when it dispatches (which checks them again)."""
    if spec.models:
        check_models(spec.models, catalog, viewer, access)
    located = [
        (f"locations[{i}]", access.check_read_url(f"locations[{i}]", url))
        for i, url in enumerate(spec.locations)
    ]
    check_not_others(located, catalog, viewer)


def dispatch_spec(
    spec: AnalysisSpec,
    analysis: Analysis,
    *,
    catalog: Catalog,
    viewer: Person | None,
    access: Access,
    settings: Settings,
) -> Dispatched:
    """The dispatch models of an ``analysis`` job's spec (or of a preview's request) of
    ``analysis`` for its owner ``viewer``, whose reads ``access`` allows: its prebuilt ``models``
    (:func:`check_models`), or those :func:`dispatch` makes from its query, asset ids or
    locations, with every parameter set checked against the analysis's model."""
    if spec.models:
        models = check_models(spec.models, catalog, viewer, access)
        return Dispatched(models, [], [], len(models), 1)
    return dispatch(
        filter=spec.query,
        asset_ids=spec.asset_ids or None,
        urls=spec.locations or None,
        parameters=AnalysisParameters(
            fixed_parameters=spec.fixed_parameters,
            distributed_parameters=spec.distributed_parameters,
        ),
        overrides=spec.parameters,
        parameter_model=analysis.parameters,
        file_extension=spec.file_extension,
        split_files=spec.split_files,
        catalog=catalog,
        viewer=viewer,
        access=access,
        settings=settings,
        max_models=settings.analysis_max_models,
    )
