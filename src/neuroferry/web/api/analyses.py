"""/api/v2/analyses: the analyses installed on the service, with their parameter schemas;
a preview of what a dispatch would run, and its dispatch models; analysis jobs submitted
and their results, task by task."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from neuroferry.auth import User
from neuroferry.engine import NewJob, submit_jobs
from neuroferry.errors import InvalidInput, NotFound, validation_problems
from neuroferry.grants import Access, access_for
from neuroferry.pipelines.analysis import (
    KIND,
    PRECEDENCE,
    Analysis,
    AnalysisSpec,
    Dispatched,
    DispatchModel,
    analyses,
    analysis_results,
    broken_analyses,
    check_spec,
    code_identity,
    dispatch_spec,
    get_analysis,
    parameter_schema,
)
from neuroferry.services import Services
from neuroferry.web._deps import current_user, services
from neuroferry.web._limits import until_disconnected

router = APIRouter(prefix="/analyses", tags=["analyses"])

#: The dispatch models a preview shows.
PREVIEW_MODELS = 5


class CodeOut(BaseModel):
    name: str
    version: str | None
    source: str | None = Field(description="the distribution that provides the analysis")
    commit: str | None = Field(description="the git commit of its source, when it has one")
    dirty: bool = Field(description="its git checkout has uncommitted changes")
    image: str | None
    digest: str | None
    command: str | None = Field(None, description="a command analysis's command script")


class AnalysisOut(BaseModel):
    name: str
    description: str
    code: CodeOut
    parameters: dict[str, Any] = Field(description="the JSON schema of its parameters")
    outputs: dict[str, Any] | None = Field(description="the JSON schema of its small outputs")

    @classmethod
    def of(cls, analysis: Analysis) -> AnalysisOut:
        code = code_identity(analysis, allow_dirty=True)
        return cls(
            name=analysis.name,
            description=analysis.description,
            code=CodeOut(**code.as_dict()),
            parameters=parameter_schema(analysis),
            outputs=analysis.outputs.model_json_schema() if analysis.outputs else None,
        )


class AnalysesOut(BaseModel):
    analyses: list[AnalysisOut]
    broken: dict[str, str] = Field(
        default_factory=dict,
        description="installed analyses that cannot be loaded, with the reason (admins only)",
    )


@router.get("", response_model=AnalysesOut, summary="List the analyses")
def list_analyses(
    held: Services = Depends(services), me: User = Depends(current_user)
) -> AnalysesOut:
    """Every analysis installed on the service or registered by an admin as a command,
    with its code identity and the JSON schemas of its parameters and outputs."""
    return AnalysesOut(
        analyses=[AnalysisOut.of(a) for a in analyses(held.engine).values()],
        broken=broken_analyses() if me.is_admin else {},
    )


def _analysis(name: str, held: Services) -> Analysis:
    """The analysis ``name``; 404 naming the known ones for another name."""
    try:
        return get_analysis(name, held.engine)
    except InvalidInput as exc:
        raise NotFound(str(exc)) from exc


@router.get("/{name}", response_model=AnalysisOut, summary="One analysis")
def show_analysis(
    name: str, held: Services = Depends(services), me: User = Depends(current_user)
) -> AnalysisOut:
    """One analysis, as the list gives it; 404 naming the known ones for another name."""
    return AnalysisOut.of(_analysis(name, held))


class DispatchRequest(BaseModel):
    """The data to analyse (exactly one of ``query``, ``asset_ids``, ``locations``) and
    the parameters: N inputs x M distributed parameter sets give N x M dispatch models."""

    model_config = ConfigDict(extra="forbid")

    query: dict[str, Any] | None = Field(
        None,
        description="a catalog filter (MongoDB-style) selecting your assets",
        examples=[{"subject.subject_id": "774659", "data_description.data_level": "derived"}],
    )
    asset_ids: list[str] | None = Field(
        None, description="catalog _ids or asset names (an asset CSV's asset_id column)"
    )
    locations: list[str] | None = Field(None, description="store URLs of the data")
    fixed_parameters: dict[str, Any] = Field(
        default_factory=dict, description="parameters of every task"
    )
    distributed_parameters: list[dict[str, Any]] = Field(
        default_factory=list,
        description="parameter sets: each makes one task per input (none: one task per input)",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the fixed parameters (distributed sets override these)",
    )
    file_extension: str | None = Field(
        None,
        description="analyse the files (or folders) of each asset whose name ends with it, "
        "ignoring case; none: whole assets",
        examples=[".nwb"],
    )
    split_files: bool = Field(
        True, description="one input per matching file (else one per asset, with its files)"
    )

    def spec(self, name: str) -> AnalysisSpec:
        """The ``analysis`` job's spec (of a preview: the job it previews)."""
        try:
            return AnalysisSpec.model_validate(
                {"analysis": name, **self.model_dump(exclude_none=True)}
            )
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise InvalidInput("; ".join(problems)) from exc

    def check_inputs(self) -> None:
        """:class:`InvalidInput` unless exactly one way to give the data is used."""
        given = [
            name for name in ("query", "asset_ids", "locations") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise InvalidInput(
                "give the data to analyse in exactly one way: query (a catalog filter), "
                f"asset_ids or locations (got {', '.join(given) or 'none'})"
            )


class PreviewOut(BaseModel):
    analysis: str
    assets: int = Field(description="assets selected")
    inputs: int = Field(description="N: files (split_files) or assets, after listing")
    parameter_sets: int = Field(description="M: distributed parameter sets (at least 1)")
    models: int = Field(description="K = N x M: dispatch models, one task each")
    first: list[DispatchModel] = Field(description="the first dispatch models, in order")
    without_files: list[str] = Field(
        description="assets left out because no file matched file_extension"
    )
    already_computed: int | None = Field(
        description="tasks whose result exists already (not checked yet: null)"
    )
    precedence: str = Field(description="how the parameters of a task are merged")

    @classmethod
    def of(cls, name: str, dispatched: Dispatched) -> PreviewOut:
        preview = dispatched.preview(PREVIEW_MODELS)
        return cls(
            analysis=name,
            assets=preview.assets,
            inputs=preview.inputs,
            parameter_sets=preview.parameter_sets,
            models=preview.models,
            first=preview.first,
            without_files=preview.without_files,
            already_computed=preview.already_computed,
            precedence=PRECEDENCE,
        )


class DispatchOut(PreviewOut):
    dispatch_models: list[DispatchModel] = Field(description="every dispatch model, in order")


def _access(held: Services, me: User) -> Access:
    return access_for(held.settings, me.name, me.role)


def dispatch_request(
    analysis: Analysis, body: DispatchRequest, held: Services, me: User
) -> Dispatched:
    """The dispatch models of ``body`` for ``me``: their own documents, locations within
    their grants, every parameter set valid for the analysis."""
    body.check_inputs()
    return dispatch_spec(
        body.spec(analysis.name),
        analysis,
        catalog=held.catalog,
        viewer=me,
        access=_access(held, me),
        settings=held.settings,
    )


async def _dispatch(
    name: str, body: DispatchRequest, request: Request, held: Services, me: User
) -> Dispatched:
    analysis = _analysis(name, held)
    return await until_disconnected(
        request, held.catalog.engine, lambda: dispatch_request(analysis, body, held, me)
    )


@router.post("/{name}/preview", response_model=PreviewOut, summary="Preview a dispatch")
async def preview_dispatch(
    name: str,
    body: DispatchRequest,
    request: Request,
    held: Services = Depends(services),
    me: User = Depends(current_user),
) -> PreviewOut:
    """What a dispatch would run: N inputs x M parameter sets = K dispatch models, the
    first few, and the assets left out for want of a matching file. Users select only
    their own catalog documents and locations within their grants (403 naming the
    asset); every merged parameter set must be valid for the analysis (422 naming the
    set, its dispatch models and the field)."""
    return PreviewOut.of(name, await _dispatch(name, body, request, held, me))


@router.post("/{name}/dispatch", response_model=DispatchOut, summary="Every dispatch model")
async def dispatch_models(
    name: str,
    body: DispatchRequest,
    request: Request,
    held: Services = Depends(services),
    me: User = Depends(current_user),
) -> DispatchOut:
    """The preview and every dispatch model, in order (at most ``analysis_max_models``:
    more are a 422 with the counts), as ``ferry analysis dispatch`` writes them to a
    dispatch folder."""
    dispatched = await _dispatch(name, body, request, held, me)
    preview = PreviewOut.of(name, dispatched)
    return DispatchOut(**dict(preview), dispatch_models=list(dispatched))


class SubmitRequest(DispatchRequest):
    """An analysis job: the data (exactly one of ``query``, ``asset_ids``, ``locations``,
    ``models``) and the parameters, as for a preview, and what to do with the results."""

    models: list[DispatchModel] | None = Field(
        None, description="dispatch models, as a dispatch folder holds them (one task each)"
    )
    force: bool = Field(False, description="compute again the results already recorded")
    results: str | None = Field(
        None,
        description="a destination name or store URL for the results (default: the "
        "analysis kind's results_store)",
    )
    allow_dirty: bool = Field(
        False, description="run code from a git checkout with uncommitted changes"
    )
    user_email: str | None = Field(None, description="where to send the job's notifications")


class SubmittedOut(BaseModel):
    job_id: int


class ResultOut(BaseModel):
    task: str = Field(description="the run task, named by its result identity")
    state: str = Field(
        description="computed, skipped (computed before), failed, or the task's state"
    )
    identity: str | None
    record_id: str | None = Field(description="the provenance record's catalog _id")
    location: str | None = Field(description="where the result's files are")
    error: str | None


@router.post(
    "/{name}/jobs", status_code=201, response_model=SubmittedOut, summary="Run an analysis"
)
def submit_analysis(
    name: str,
    body: SubmitRequest,
    held: Services = Depends(services),
    me: User = Depends(current_user),
) -> SubmittedOut:
    """Submit an ``analysis`` job owned by you: one task per input and parameter set,
    results already recorded for you skipped unless ``force``. 404 for an unknown
    analysis; 422 naming the field of a bad body, parameter set or model; 403 for a
    location outside your grants or at, inside or around another user's data."""
    _analysis(name, held)
    spec = body.spec(name)
    check_spec(spec, catalog=held.catalog, viewer=me, access=_access(held, me))  # not at dispatch
    [job_id] = submit_jobs(
        held.engine, [NewJob(KIND.name, spec)], owner_id=me.id, settings=held.settings
    )
    held.wake()
    return SubmittedOut(job_id=job_id)


@router.get(
    "/jobs/{job_id}/results", response_model=list[ResultOut], summary="An analysis job's results"
)
def job_results(
    job_id: int, held: Services = Depends(services), me: User = Depends(current_user)
) -> list[ResultOut]:
    """A line per task of an analysis job: its state, result identity, provenance record
    and results location. Users see only their own jobs (404 for another's)."""
    return [ResultOut.model_validate(r) for r in analysis_results(held.engine, job_id, me)]
