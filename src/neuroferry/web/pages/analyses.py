"""/analyses: the installed analyses; one analysis's form (its parameters, made from the
parameter model's JSON schema, and the data to analyse), its preview (N inputs x M
parameter sets = K tasks) and submitting it as an ``analysis`` job; a provenance record.

The preview runs the same ``dispatch`` the API's preview runs, and submitting sends the
same job ``submit_jobs`` takes from the API.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from neuroferry.auth import User
from neuroferry.engine import NewJob, submit_jobs
from neuroferry.errors import Conflict, Forbidden, InvalidInput, NotFound
from neuroferry.pipelines.analysis import (
    KIND,
    PRECEDENCE,
    RESULT_KIND,
    Analysis,
    AnalysisSpec,
    Preview,
    analyses,
    code_identity,
    get_analysis,
    parameter_schema,
    validate_parameters,
)
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.api.analyses import DispatchRequest, dispatch_request
from neuroferry.web.pages._render import json_field, page_user, redirect, render

router = APIRouter()

#: The form's own fields (a parameter's field is ``param.{name}``).
QUERY, SETS, EXTENSION, SPLIT, FORCE, DIRTY = (
    "query",
    "distributed_parameters",
    "file_extension",
    "split_files",
    "force",
    "allow_dirty",
)
PARAM = "param."


@dataclass(frozen=True)
class Field:
    """One parameter of the form, from its JSON schema property: ``kind`` is the input
    (``string``, ``integer``, ``number``, ``boolean``, ``enum`` or ``json`` for the rest)."""

    name: str
    label: str
    kind: str
    required: bool
    default: Any
    help: str
    choices: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        return PARAM + self.name

    def shown(self, value: Any) -> str:
        """A value as the input shows it."""
        if value is None:
            return ""
        if self.kind == "json":
            return json.dumps(value)
        return str(value)

    def read(self, text: str | None) -> Any:
        """The typed value of what the form sent (None: leave the parameter out, so its
        default applies); InvalidInput naming the parameter."""
        if self.kind == "boolean":
            return text is not None
        text = (text or "").strip()
        if not text:
            if self.required:
                raise InvalidInput(f"{self.name}: required")
            return None
        if self.kind == "integer":
            try:
                return int(text)
            except ValueError:
                raise InvalidInput(f"{self.name}: not a whole number: {text!r}") from None
        if self.kind == "number":
            try:
                number = float(text)
            except ValueError:
                raise InvalidInput(f"{self.name}: not a number: {text!r}") from None
            if not math.isfinite(number):
                raise InvalidInput(f"{self.name}: not a finite number: {text!r}")
            return number
        if self.kind == "enum":
            for choice in self.choices:
                if str(choice) == text:
                    return choice
            raise InvalidInput(f"{self.name}: not one of {', '.join(map(str, self.choices))}")
        if self.kind == "json":
            return json_field(self.name, text)
        return text


def _resolve(schema: Mapping[str, Any], prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """A property's schema with a ``$ref`` followed and an optional (``anyOf`` with
    null) unwrapped."""
    if "$ref" in prop:
        target = prop["$ref"].rsplit("/", 1)[-1]
        prop = {
            **schema.get("$defs", {}).get(target, {}),
            **{k: v for k, v in prop.items() if k != "$ref"},
        }
    options = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
    if len(options) == 1:
        rest = {k: v for k, v in prop.items() if k != "anyOf"}
        return _resolve(schema, {**options[0], **rest})
    return prop


def form_fields(schema: Mapping[str, Any]) -> list[Field]:
    """A field per property of a parameter model's JSON schema, in its order."""
    required = set(schema.get("required", []))
    found = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _resolve(schema, raw)
        kind = prop.get("type")
        if "enum" in prop:
            kind = "enum"
        elif kind not in ("string", "integer", "number", "boolean"):
            kind = "json"
        found.append(
            Field(
                name=name,
                label=str(prop.get("title") or name),
                kind=str(kind),
                required=name in required,
                default=prop.get("default"),
                help=str(prop.get("description") or ""),
                choices=tuple(prop.get("enum", ())),
            )
        )
    return found


@dataclass
class Filled:
    """What the analysis form holds: the text of each field, and the problems by field
    (``""``: the whole form)."""

    values: dict[str, str]
    checked: dict[str, bool]
    errors: dict[str, str]

    def error(self, key: str) -> str:
        return self.errors.get(key, "")


def _blank(fields: list[Field]) -> Filled:
    values = {f.key: f.shown(f.default) for f in fields if f.kind != "boolean"}
    checked = {f.key: bool(f.default) for f in fields if f.kind == "boolean"}
    values |= {QUERY: "{}", SETS: "", EXTENSION: ""}
    checked |= {SPLIT: True, FORCE: False, DIRTY: False}
    return Filled(values, checked, {})


def _read(
    form: Mapping[str, Any], fields: list[Field], analysis: str
) -> tuple[Filled, AnalysisSpec | None]:
    """The form as typed, and the job it asks for (None with the problems by field)."""

    def text(key: str) -> str:
        value = form.get(key)
        return value if isinstance(value, str) else ""

    filled = Filled(
        values={k: text(k) for k in [f.key for f in fields if f.kind != "boolean"]}
        | {QUERY: text(QUERY), SETS: text(SETS), EXTENSION: text(EXTENSION)},
        checked={f.key: f.key in form for f in fields if f.kind == "boolean"}
        | {key: key in form for key in (SPLIT, FORCE, DIRTY)},
        errors={},
    )
    parameters: dict[str, Any] = {}
    for f in fields:
        try:
            value = f.read(form.get(f.key) if f.key in form else None)
        except InvalidInput as exc:
            filled.errors[f.key] = str(exc)
            continue
        if value is not None:
            parameters[f.name] = value
    query: Any = None
    try:
        query = json_field(QUERY, filled.values[QUERY] or "{}")
        if not isinstance(query, dict):
            raise InvalidInput(
                f'{QUERY}: give a JSON object, such as {{"subject.subject_id": "774659"}}'
            )
    except InvalidInput as exc:
        filled.errors[QUERY] = str(exc)
    sets: Any = []
    try:
        sets = json_field(SETS, filled.values[SETS]) if filled.values[SETS].strip() else []
        if not isinstance(sets, list) or not all(isinstance(s, dict) for s in sets):
            raise InvalidInput(f'{SETS}: give a JSON list of objects, such as [{{"bins": 8}}]')
    except InvalidInput as exc:
        filled.errors[SETS] = str(exc)
    if filled.errors:
        return filled, None
    spec = AnalysisSpec(
        analysis=analysis,
        query=query,
        parameters=parameters,
        distributed_parameters=sets,
        file_extension=filled.values[EXTENSION].strip() or None,
        split_files=filled.checked[SPLIT],
        force=filled.checked[FORCE],
        allow_dirty=filled.checked[DIRTY],
    )
    return filled, spec


def _blame(filled: Filled, fields: list[Field], exc: InvalidInput) -> None:
    """Put the problem of ``exc`` next to the field it names: the distributed parameter
    sets when it names one (``distributed_parameters[1]``), a field of the form its
    message starts with, else the parameters its problems name, else above the form."""
    message = str(exc)
    for key in (SETS, QUERY, EXTENSION):
        if message.startswith(key) or (key == SETS and f"{SETS}[" in message):
            filled.errors.setdefault(key, message)
            return
    names = {f.name for f in fields}
    placed = False
    for problem in exc.problems or []:
        name = str(problem.get("field") or "").split(".", 1)[0]
        if name in names:
            filled.errors.setdefault(PARAM + name, f"{name}: {problem.get('message')}")
            placed = True
    if not placed:
        filled.errors.setdefault("", message)


def _analysis(name: str, held: Services) -> Analysis:
    try:
        return get_analysis(name, held.engine)
    except InvalidInput as exc:
        raise NotFound(str(exc)) from exc


def _page(
    request: Request,
    analysis: Analysis,
    filled: Filled,
    status: int = 200,
    preview: Preview | None = None,
) -> Response:
    return render(
        request,
        "analysis.html",
        status,
        analysis=analysis,
        code=code_identity(analysis, allow_dirty=True),
        fields=form_fields(parameter_schema(analysis)),
        form=filled,
        preview=preview,
        precedence=PRECEDENCE,
    )


@router.get("/analyses")
def analyses_page(
    request: Request, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """Every analysis with its description and code identity."""
    listed = [(a, code_identity(a, allow_dirty=True)) for a in analyses(held.engine).values()]
    return render(request, "analyses.html", listed=listed)


@router.get("/analyses/{name}")
def analysis_page(
    request: Request, name: str, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """One analysis's form, its parameters' defaults filled in."""
    analysis = _analysis(name, held)
    return _page(request, analysis, _blank(form_fields(parameter_schema(analysis))))


async def _filled(
    request: Request, name: str, held: Services
) -> tuple[Analysis, list[Field], Filled, AnalysisSpec | None]:
    analysis = _analysis(name, held)
    fields = form_fields(parameter_schema(analysis))
    form = await request.form()
    filled, spec = _read(form, fields, analysis.name)
    if spec is not None:
        try:  # the parameters without a distributed set: their problems by field
            validate_parameters(analysis, spec.parameters)
        except InvalidInput as exc:
            _blame(filled, fields, exc)
            spec = None
    return analysis, fields, filled, spec


@router.post("/analyses/{name}/preview")
async def analysis_preview(
    request: Request, name: str, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """The form again, with what it would run: N inputs x M parameter sets = K tasks."""
    analysis, fields, filled, spec = await _filled(request, name, held)
    if spec is None:
        return _page(request, analysis, filled, 422)
    body = DispatchRequest(
        query=spec.query,
        asset_ids=None,
        locations=None,
        distributed_parameters=spec.distributed_parameters,
        parameters=spec.parameters,
        file_extension=spec.file_extension,
        split_files=spec.split_files,
    )
    try:
        dispatched = await asyncio.to_thread(dispatch_request, analysis, body, held, me)
    except (InvalidInput, Forbidden) as exc:
        _blame(filled, fields, InvalidInput(str(exc), getattr(exc, "problems", None)))
        return _page(request, analysis, filled, exc.status_code)
    return _page(request, analysis, filled, preview=dispatched.preview(0))


@router.post("/analyses/{name}")
async def analysis_submit(
    request: Request, name: str, held: Services = Depends(services), me: User = Depends(page_user)
) -> Response:
    """Submit the form as an ``analysis`` job and go to its page."""
    analysis, fields, filled, spec = await _filled(request, name, held)
    if spec is None:
        return _page(request, analysis, filled, 422)
    try:
        (job_id,) = await asyncio.to_thread(
            submit_jobs,
            held.engine,
            [NewJob(KIND.name, spec)],
            owner_id=me.id,
            settings=held.settings,
        )
    except (InvalidInput, Conflict, Forbidden) as exc:
        _blame(filled, fields, InvalidInput(str(exc), getattr(exc, "problems", None)))
        return _page(request, analysis, filled, exc.status_code)
    held.wake()
    return redirect(f"/jobs/{job_id}")


@router.get("/analyses/records/{doc_id}")
def record_page(
    request: Request,
    doc_id: str,
    held: Services = Depends(services),
    me: User = Depends(page_user),
) -> Response:
    """One provenance record: inputs, parameters, code, output files and its job."""
    record = held.catalog.get(doc_id, viewer=me)
    if record.get("kind") != RESULT_KIND:
        raise NotFound(f"catalog document {doc_id!r} is not an analysis result's record")
    return render(
        request,
        "analysis_record.html",
        record=record,
        parameters=json.dumps(record.get("parameters") or {}, indent=2, ensure_ascii=False),
        outputs=json.dumps(record.get("outputs") or {}, indent=2, ensure_ascii=False),
    )
