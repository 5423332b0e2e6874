"""The ``analysis`` job kind: run a registered analysis over catalog assets, asset ids,
store URLs or prebuilt dispatch models, once per input and parameter set, and record how
each result was made.

Tasks: ``dispatch`` (in the service: selects the data, builds one dispatch model per task,
validates every task's parameters and skips the results already recorded), ``run`` (on the
cluster, one instance per task: :mod:`._wrapper`) and ``record`` (in the service: writes
the provenance records of the results made, :mod:`._provenance`).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine

from neuroferry.catalog import parse_filter
from neuroferry.config import Settings
from neuroferry.engine import JobKind, PreparedJob, named_destination, task_maker
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.analysis._models import DispatchModel, check_finite, merge_parameters
from neuroferry.pipelines.analysis._registry import get_analysis, validate_parameters

KIND_NAME = "analysis"
EVENTS = Literal["begin", "end", "fail", "retry", "all"]


class AnalysisSettings(BaseModel):
    """The kind's own settings (``[kinds.analysis]``)."""

    model_config = ConfigDict(extra="forbid")

    results_store: str | None = None
    """Where results go when a job names no ``results``: a destination name or a store
    URL; default ``{store_url}/analysis``."""


class AnalysisSpec(BaseModel):
    """An analysis job: which analysis, over which data, with which parameters.

    The data is given in exactly one way: ``query`` (a catalog filter), ``asset_ids``
    (catalog ``_id``\\ s or asset names), ``locations`` (store URLs) or ``models`` (dispatch
    models, e.g. read from a dispatch folder). Each task's parameters are ``fixed_parameters``
    < ``parameters`` (overrides) < its distributed set; each of the ``distributed_parameters``
    makes one task per input."""

    model_config = ConfigDict(extra="forbid")

    analysis: str = Field(min_length=1)
    query: dict[str, Any] | None = None
    asset_ids: list[str] = Field(default_factory=list)
    locations: list[str] = Field(default_factory=list)
    models: list[DispatchModel] = Field(default_factory=list)
    file_extension: str | None = None
    """With it, each asset's matching files are the inputs (``.nwb``, ``.ome.zarr``)."""
    split_files: bool = True
    """One task per matching file (else one per asset, with all its matching files)."""
    fixed_parameters: dict[str, Any] = Field(default_factory=dict)
    distributed_parameters: list[dict[str, Any]] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the fixed parameters (a distributed set still wins)."""
    force: bool = False
    """Compute again the results already recorded (and replace their records)."""
    results: str | None = None
    """A destination name or store URL for the results (default: the kind's
    ``results_store``)."""
    allow_dirty: bool = False
    """Run an analysis whose source checkout has uncommitted changes (its records say so)."""
    user_email: str | None = None
    email_notification_types: list[EVENTS] | None = None

    @model_validator(mode="after")
    def _finite(self) -> Self:
        check_finite(self, ("query", "fixed_parameters", "distributed_parameters", "parameters"))
        return self


def results_store(spec: AnalysisSpec, settings: Settings) -> str:
    """The store URL results go to: the spec's ``results``, else the kind's setting, else
    ``{store_url}/analysis`` (a name is a destination's)."""
    given = spec.results or KIND.settings_of(settings).results_store
    if not given:
        return settings.store_url.rstrip("/") + "/analysis"
    if "://" in given or given.startswith("/"):
        return given.rstrip("/")
    return named_destination("results", given, settings, or_url=True)


def _inputs_given(spec: AnalysisSpec) -> list[str]:
    given = {
        "query": spec.query is not None,
        "asset_ids": bool(spec.asset_ids),
        "locations": bool(spec.locations),
        "models": bool(spec.models),
    }
    return [name for name, yes in given.items() if yes]


def _check_parameters(spec: AnalysisSpec, db: Engine) -> None:
    """The analysis exists (installed, or a command analysis in ``db``) and each parameter
    set the spec names, merged, validates: a quick check before the job exists (dispatch
    checks every task's again)."""
    analysis = get_analysis(spec.analysis, db)
    if spec.models:
        sets = [(f"models[{i}]", m.distributed_parameters) for i, m in enumerate(spec.models)]
    else:
        sets = [
            (f"distributed_parameters[{i}]", s) for i, s in enumerate(spec.distributed_parameters)
        ]
    for where, one in sets or [("parameters", None)]:
        try:
            validate_parameters(
                analysis, merge_parameters(spec.fixed_parameters, spec.parameters, one)
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}", exc.problems) from None


MAX_NAME = 200
"""The longest job name an analysis job gets from its query's ``name``."""


def prepare(spec: AnalysisSpec, settings: Settings) -> PreparedJob:
    given = _inputs_given(spec)
    if len(given) != 1:
        raise InvalidInput(
            "give the data to analyse in exactly one way: query, asset_ids, locations or "
            f"models (got {', '.join(given) or 'none'})",
            [
                {
                    "field": "query",
                    "message": "give exactly one of query, asset_ids, locations, models",
                }
            ],
        )
    if spec.models and spec.distributed_parameters:
        raise InvalidInput(
            "distributed_parameters: prebuilt models carry their own parameter sets; "
            "leave distributed_parameters out"
        )
    counts = {
        "models": len(spec.models),
        "distributed_parameters": len(spec.distributed_parameters),
    }
    for what, count in counts.items():
        if count > settings.analysis_max_models:
            raise InvalidInput(
                f"{what}: {count} given, more than the {settings.analysis_max_models} "
                "a job may run (analysis_max_models); split the work into several jobs"
            )
    if spec.query is not None:
        try:
            parse_filter(spec.query)
        except InvalidInput as exc:
            raise type(exc)(f"query: {exc}", exc.problems) from None
    results = results_store(spec, settings)
    reads = [(f"locations[{i}]", url) for i, url in enumerate(spec.locations)]
    for i, model in enumerate(spec.models):
        reads += [(f"models[{i}].s3_location", url) for url in model.s3_location]
        reads += [(f"models[{i}].file_location", url) for url in model.file_location or []]
    name = spec.analysis
    if spec.query is not None and isinstance(spec.query.get("name"), str):
        name = f"{spec.analysis} {spec.query['name']}"[:MAX_NAME]
    return PreparedJob(
        name=name,
        summary={"analysis": spec.analysis},
        reads=tuple(reads),
        writes=(("results", results),),
        destination=results,
        notify_email=spec.user_email,
        notify_events=tuple(spec.email_notification_types)
        if spec.email_notification_types is not None
        else None,
    )


task = task_maker("neuroferry.pipelines.analysis._tasks")

KIND: JobKind[AnalysisSpec] = JobKind(
    name=KIND_NAME,
    spec_model=AnalysisSpec,
    prepare=prepare,
    description="Run a registered analysis over data assets, once per input and parameter "
    "set, skipping results already made, and record each result's provenance.",
    tasks=(
        task("dispatch", placement="local"),
        task("run", "dispatch", map_over="dispatch.models", retries=1),
        task("record", "run", placement="local", trigger="all_done"),
    ),
    settings_model=AnalysisSettings,
    check=_check_parameters,
)
