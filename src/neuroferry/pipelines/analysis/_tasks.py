"""The tasks of the ``analysis`` job kind (see :mod:`._kind`).

``dispatch`` returns ``{"models": {identity: item settings}}``: one ``run`` instance per
result identity, its settings the dispatch model, the merged parameters and where the
results go; a result already recorded is skipped (``skip_task``), unless the job forces
it, with the existing record in its settings. ``run`` returns the wrapper's result;
``record`` writes a provenance record for each result made that has none yet, so a rerun
(after a crash, say) writes no second record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from neuroferry.catalog import Catalog, Owner
from neuroferry.engine import TaskContext, TaskFailed, get_job, job_tasks, owner_of_job
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.pipelines.analysis._commands import analysis_of, pin_command
from neuroferry.pipelines.analysis._dispatch import (
    LOOKUP_BATCH,
    _batches,
    check_not_others,
    dispatch_spec,
)
from neuroferry.pipelines.analysis._identity import code_identity, known_code_identity
from neuroferry.pipelines.analysis._kind import AnalysisSpec, results_store
from neuroferry.pipelines.analysis._models import DispatchModel
from neuroferry.pipelines.analysis._provenance import (
    RESULT_KIND,
    provenance_record,
    record_name,
)
from neuroferry.pipelines.analysis._registry import Analysis
from neuroferry.pipelines.analysis._wrapper import (
    PreparedTask,
    prepare_task,
    results_location,
    run_task,
)
from neuroferry.stores import open_store

RECORD_BATCH = 500
"""Provenance records written per transaction."""
SHOWN_PROBLEMS = 10
"""Invalid parameter sets named in one error (the others are counted)."""


def recorded(
    catalog: Catalog,
    identities: Sequence[str],
    owner: Owner | None,
    *,
    include_dirty: bool = False,
) -> dict[str, dict[str, Any]]:
    """The provenance records of those identities that the job owner ``owner`` has made:
    ``{identity: {"id", "location"}}`` (in batches of :data:`LOOKUP_BATCH`), looked up by
    their names (:func:`record_name`) among the documents ``owner`` may see, so a user never
    learns of nor reuses another user's result. A record of code with uncommitted changes
    counts only with ``include_dirty``: it never makes a task skipped."""
    owner_id = owner.id if owner is not None else None
    names = {record_name(i, owner_id): i for i in dict.fromkeys(identities)}
    found: dict[str, dict[str, Any]] = {}
    for batch in _batches(list(names), LOOKUP_BATCH):
        docs = catalog.find(
            {"name": {"$in": list(batch)}, "kind": RESULT_KIND},
            projection={"name": 1, "location": 1, "code": 1},
            viewer=owner,
        )
        for doc in docs:
            if (doc.get("code") or {}).get("dirty") and not include_dirty:
                continue
            found[names[doc["name"]]] = {"id": doc["_id"], "location": doc.get("location")}
    return found


def _describe(number: int, model: DispatchModel) -> str:
    where = ", ".join(model.file_location or model.asset_name)
    sets = f", parameter set {model.distributed_parameters}" if model.distributed_parameters else ""
    return f"task {number} ({where}{sets})"


def _prepare_all(
    analysis: Analysis, spec: AnalysisSpec, models: Sequence[DispatchModel]
) -> list[PreparedTask]:
    """Every task's validated parameters and identity; :class:`TaskFailed` naming each
    task (up to :data:`SHOWN_PROBLEMS`) whose parameters do not validate."""
    code = code_identity(analysis, spec.allow_dirty)
    prepared, problems = [], []
    for number, model in enumerate(models, start=1):
        try:
            prepared.append(
                prepare_task(analysis, model, code, spec.fixed_parameters, spec.parameters)
            )
        except InvalidInput as exc:
            problems.append(f"{_describe(number, model)}: {exc}")
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        raise TaskFailed(
            f"{len(problems)} of {len(models)} tasks have invalid parameters, so none runs: "
            + "; ".join(problems[:SHOWN_PROBLEMS])
            + (f"; and {more} more" if more > 0 else "")
        )
    return prepared


def dispatch(ctx: TaskContext) -> dict[str, Any]:
    spec = AnalysisSpec.model_validate(ctx.spec)
    results = ctx.grants.check_write_url("results", results_store(spec, ctx.config))
    command = pin_command(spec.analysis, ctx.db, ctx.config)  # the run tasks get it pinned
    owner = owner_of_job(ctx.db, ctx.owner_id)
    analysis = analysis_of(spec.analysis, command, ctx.config)
    models = dispatch_spec(
        spec, analysis, catalog=ctx.catalog, viewer=owner, access=ctx.grants, settings=ctx.config
    )
    prepared = _prepare_all(analysis, spec, models)
    unique = {task.identity: task for task in prepared}  # the same input and parameters twice
    locations = {i: results_location(results, spec.analysis, i, ctx.owner_id) for i in unique}
    try:
        check_not_others([("results", url) for url in locations.values()], ctx.catalog, owner)
    except Forbidden as exc:
        raise TaskFailed(f"{exc}; nothing was computed") from exc
    existing = recorded(ctx.catalog, list(unique), owner)
    items: dict[str, dict[str, Any]] = {}
    for identity, task in unique.items():
        item: dict[str, Any] = {
            "model": task.model.model_dump(mode="json"),
            "results": results,
            "location": locations[identity],
        }
        if identity in existing:
            item["existing"] = existing[identity]
            item["skip_task"] = not spec.force
        items[identity] = item
    skipped = sum(1 for item in items.values() if item.get("skip_task"))
    ctx.log.info(
        "%d tasks (%d inputs x parameter sets, %d the same as another); %d already computed%s",
        len(items),
        len(prepared),
        len(prepared) - len(unique),
        len(existing),
        "" if skipped or not existing else ", computed again (force)",
    )
    return {
        "analysis": spec.analysis,
        "results": results,
        "tasks": len(items),
        "already_computed": len(existing),
        "models": items,
        **({"command": command} if command is not None else {}),
    }


def run(ctx: TaskContext) -> dict[str, Any]:
    spec = AnalysisSpec.model_validate(ctx.spec)
    pinned = (ctx.upstream.get("dispatch") or {}).get("command")
    analysis = analysis_of(spec.analysis, pinned, ctx.config)
    model = DispatchModel.model_validate(ctx.params["model"])
    for fresh in (False, True):  # the identity this worker knew may be stale: look again
        code = known_code_identity(analysis, spec.allow_dirty, fresh=fresh)
        task = prepare_task(analysis, model, code, spec.fixed_parameters, spec.parameters)
        if task.identity == ctx.item:
            break
    else:
        raise TaskFailed(
            f"the result identity on this worker ({task.identity}) is not the one dispatched "
            f"({ctx.item}): the worker runs other code of analysis {analysis.name!r} than the "
            "service; install the same version on both"
        )
    ctx.grants.check_write_url("results", ctx.params["location"])

    def open_input(url: str) -> Any:
        return open_store(ctx.grants.check_read_url("input", url), settings=ctx.config)

    ctx.log.info("running %s on %s", analysis.name, ", ".join(task.locations))
    return run_task(
        analysis,
        task,
        results=ctx.params["results"],
        location=ctx.params["location"],
        open_input=open_input,
        log=ctx.log,
        check_cancelled=ctx.check_cancelled,
        settings=ctx.config,
    )


def record(ctx: TaskContext) -> dict[str, Any]:
    made = {k: v for k, v in (ctx.upstream.get("run") or {}).items() if v}
    owner = owner_of_job(ctx.db, ctx.owner_id)
    existing = {} if ctx.spec.get("force") else recorded(ctx.catalog, list(made), owner)
    docs = [
        provenance_record(result, ctx.job_id, ctx.owner_id)
        for identity, result in sorted(made.items())
        if identity not in existing
    ]
    for batch in _batches(docs, RECORD_BATCH):
        ctx.catalog.upsert_many(batch, owner, records=True)
    ctx.log.info("%d provenance records written, %d already there", len(docs), len(existing))
    return {"recorded": len(docs), "already_recorded": len(existing)}


COMPUTED, SKIPPED, FAILED = "computed", "skipped", "failed"


def analysis_results(engine: Engine, job_id: int, viewer: Any = None) -> list[dict[str, Any]]:
    """Per ``run`` task of an analysis job (which ``viewer`` may see): its state
    (``computed``, ``skipped``: computed before, ``failed``, or the task's state while it
    has none of those), result identity, provenance record id and results location."""
    job = get_job(engine, job_id, viewer)
    rows = [
        r for r in job_tasks(engine, job_id, viewer) if r["name"] == "run" and r["map_index"] >= 0
    ]
    found = recorded(
        Catalog(engine),
        [r["item"] for r in rows],
        owner_of_job(engine, job["owner_id"]),
        include_dirty=True,
    )
    listed = []
    for row in rows:
        params: Mapping[str, Any] = row.get("params") or {}
        state = {"succeeded": COMPUTED, "skipped": SKIPPED, "failed": FAILED}.get(
            row["state"], row["state"]
        )
        record_of = found.get(row["item"]) or params.get("existing") or {}
        location = record_of.get("location") or (
            params.get("location") if state == COMPUTED else None
        )
        listed.append(
            {
                "task": f"run[{row['item']}]",
                "state": state,
                "identity": row["item"],
                "record_id": record_of.get("id"),
                "location": location,
                "error": row.get("error"),
            }
        )
    return listed
