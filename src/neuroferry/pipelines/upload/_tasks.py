"""The upload's task functions, one per task, each called with a
:class:`~neuroferry.engine.TaskContext` and returning a small JSON-able result.

Every function can run again after a crash: it overwrites what it wrote, skips what is
already done, and removes only what it made.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuroferry import __version__
from neuroferry.engine import (
    EMAIL_KEY,
    AssetClaim,
    Skipped,
    TaskContext,
    TaskFailed,
    command_words,
    image_reference,
    in_container,
    job_kinds,
    owner_of_job,
    recheck_asset_owner,
    starts_own_container,
)
from neuroferry.errors import (
    FerryError,
    Forbidden,
    InvalidInput,
    StoreError,
    StoreNotFound,
    UnsafePath,
)
from neuroferry.notify import notify_job
from neuroferry.pipelines.upload._metadata import (
    DATA_DESCRIPTION,
    PROCESSING,
    json_problem,
    metadata_files,
    write_file,
    write_json,
)
from neuroferry.pipelines.upload._paths import removable_folder, source_file, source_folder
from neuroferry.pipelines.upload._schema import MissingFacts, data_process
from neuroferry.pipelines.upload._schema import data_description as build_data_description
from neuroferry.pipelines.upload._schema import processing as build_processing
from neuroferry.pipelines.upload._terms import find_project
from neuroferry.pipelines.upload._transfer import Part, count, upload_parts
from neuroferry.stores import Store, fd_real_path, list_store, open_store, read_confined

ANALYSIS_KIND = "analysis"
RESERVED_FIELDS = frozenset({"image", "ingest", "type"})
"""Catalog fields the ingest job writes (a volume's facts, which the portal serves): an
upload's metadata files may not set them."""
SCRATCH = ".scratch"
"""The staging folder's sub-folder of the commands' HOME and TMPDIR folders (one per
modality; never uploaded)."""


# -- helpers ------------------------------------------------------------------------------


def _fact(ctx: TaskContext, key: str) -> str:
    value = ctx.summary.get(key)
    if not isinstance(value, str) or not value:
        raise TaskFailed(f"the job's summary has no {key!r}; submit the job again")
    return value


def _staging(ctx: TaskContext) -> Path:
    """The job's own staging folder, ``{staging_dir}/job-{id}``: never shared with
    another job (jobs submitted by earlier versions kept theirs in ``staging``)."""
    root = ctx.summary.get("staging_dir")
    if isinstance(root, str) and root:
        return Path(root) / staging_name(ctx.job_id)
    return Path(_fact(ctx, "staging"))


def staging_name(job_id: int) -> str:
    """The name of a job's staging folder."""
    return f"job-{job_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


MAX_METADATA_BYTES = 64 * 2**20
"""The most bytes one file of a ``metadata_dir`` may have (it is read into memory)."""


def _read_source(label: str, path: Path, root: Path) -> bytes:
    """The bytes of a metadata file read from the source folder ``root`` (its checked
    real path), checked once open: a file that resolves outside ``root`` is refused, never
    read, and one of more than :data:`MAX_METADATA_BYTES` is refused too."""
    try:
        return read_confined(path, root, MAX_METADATA_BYTES)
    except FerryError as exc:
        raise TaskFailed(f"{label}: {exc}") from exc
    except OSError as exc:
        raise TaskFailed(f"{label}: {path} cannot be read ({exc.strerror or exc})") from exc


def _walk(folder: Path) -> Iterator[Path]:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            yield Path(root, name)


def _notify(ctx: TaskContext, event: str, state: str, **facts: Any) -> dict[str, Any] | Skipped:
    if not ctx.config.smtp_host:
        reason = "no SMTP server is configured (FERRY_SMTP_HOST): no e-mail can be sent"
        ctx.log.info("the %s e-mail: %s", event, reason)
        return Skipped(reason, {"sent": False})
    job = {
        "id": ctx.job_id,
        "name": ctx.name,
        "kind": ctx.kind,
        "state": state,
        "spec": ctx.spec,
        "summary": {**ctx.summary, **facts},
        "error": None,
    }
    try:
        sent = bool(notify_job(ctx.config, job, event))
    except (FerryError, OSError) as exc:  # an e-mail that cannot be sent never fails the job
        ctx.log.warning("the %s e-mail could not be sent: %s", event, exc)
        return {"sent": False, "error": str(exc)}
    if sent:
        ctx.log.info("sent the %s e-mail to %s", event, ctx.summary.get(EMAIL_KEY))
    else:
        ctx.log.info("no %s e-mail: not asked for, or no SMTP server configured", event)
    return {"sent": sent}


def _modality_settings(ctx: TaskContext) -> dict[str, dict[str, Any]]:
    """Each modality's settings, as ``modality_transformation_settings`` returned them."""
    found = ctx.upstream.get("modality_transformation_settings") or {}
    return {str(k): v for k, v in found.items() if isinstance(v, dict)}


def _position(order: list[str], name: str) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def _input_source(settings: dict[str, Any]) -> str | None:
    value = (settings.get("job_settings") or {}).get("input_source")
    return value if isinstance(value, str) and value else None


# -- the tasks, in the order they run -------------------------------------------------------


def send_job_start_email(ctx: TaskContext) -> dict[str, Any] | Skipped:
    """E-mail the job's owner that the job started, if they asked for ``begin`` e-mails."""
    return _notify(ctx, "begin", "running")


def check_asset_owner(ctx: TaskContext) -> dict[str, Any]:
    """Fail before anything is written if the asset now belongs to another user (its
    catalog document was registered by them since the job was submitted)."""
    name = _fact(ctx, "asset_name")
    recheck_asset_owner(ctx, AssetClaim(_fact(ctx, "destination"), "s3_prefix", catalog_name=name))
    return {"asset_name": name}


def check_s3_folder_exists(ctx: TaskContext) -> dict[str, Any]:
    """Fail if the destination already holds objects under the asset's name, unless the
    job has ``force_cloud_sync``."""
    location = _fact(ctx, "destination")
    if ctx.spec.get("force_cloud_sync"):
        ctx.log.info("force_cloud_sync: not checking %s", location)
        return {"location": location, "checked": False}
    try:
        store = open_store(location, settings=ctx.config)
    except StoreNotFound:  # a local folder not made yet: nothing is there
        return {"location": location, "checked": True, "empty": True}
    listing = asyncio.run(list_store(store, local=False))
    found = sorted(listing.entries) + sorted(listing.problems)
    if found:
        raise TaskFailed(
            f"the destination {location} already holds {count(len(found), 'object')} "
            f"(for example {found[0]}): an asset of this name was uploaded before. "
            "To upload anyway, set force_cloud_sync: true (or "
            "tasks.check_s3_folder_exists.skip_task: true); objects of the same name are "
            "then overwritten and none are deleted"
        )
    ctx.log.info("%s holds no objects", location)
    return {"location": location, "checked": True, "empty": True}


def check_source_folders_exist(ctx: TaskContext) -> dict[str, Any]:
    """Fail, naming each one, if a modality's folder, the metadata folder or the
    derivatives folder is missing, not a folder, unreadable or outside the allowed
    source folders."""
    settings = ctx.job_settings
    folders = [
        (f"modality {abbreviation}: input_source", str(path))
        for abbreviation, path in (settings.get("modalities") or {}).items()
    ]
    for key in ("metadata_dir", "derivatives_dir"):
        if settings.get(key):
            folders.append((key, str(settings[key])))
    problems: list[str] = []
    checked: dict[str, str] = {}
    for label, path in folders:
        try:
            checked[label] = str(source_folder(label, path, ctx.grants))
        except TaskFailed as exc:
            problems.append(str(exc))
    if problems:
        raise TaskFailed("; ".join(problems))
    for label, path in checked.items():
        ctx.log.info("%s: %s", label, path)
    return {"folders": checked}


def create_staging_folder(ctx: TaskContext) -> dict[str, Any]:
    """Make the job's staging folder (``{staging_dir}/job-{id}``)."""
    staging = _staging(ctx)
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TaskFailed(
            f"cannot make the staging folder {staging}: {exc.strerror or exc}; "
            "check FERRY_STAGING_DIR"
        ) from exc
    return {"staging": str(staging)}


CATALOG_METADATA = ("subject", "procedures")
"""The documents gathered from the catalog (the metadata service) for the job's
``subject_id`` when the metadata folder has none."""


def _from_catalog(ctx: TaskContext, key: str, subject_id: str) -> dict[str, Any] | None:
    """The ``key`` document (``subject``, ``procedures``) the catalog holds for
    ``subject_id``, from the newest acquisition (``data_description.creation_time``) among
    the assets the job's owner may see."""
    found = ctx.catalog.find(
        {f"{key}.subject_id": subject_id, "data_description.creation_time": {"$exists": True}},
        projection={key: 1, "name": 1},
        sort=[("data_description.creation_time", -1)],
        limit=1,
        viewer=owner_of_job(ctx.db, ctx.owner_id),
    )
    for doc in found:
        value = doc.get(key)
        if isinstance(value, dict) and value:
            return {"document": value, "asset": doc.get("name")}
    return None


def gather_preliminary_metadata(ctx: TaskContext) -> dict[str, Any]:
    """Copy every ``*.json`` of the metadata folder (``data_description.json``,
    ``subject.json``, ``procedures.json`` …) to the staging folder byte for byte; take
    ``subject.json`` and ``procedures.json`` the folder lacks from the catalog (the newest
    asset of the same subject the job's owner may see); write ``data_description.json``
    (aind-data-schema's model) from the job and its project's record unless the folder
    has one. Facts missing for it are returned for ``check_metadata_files`` to report."""
    staging = _staging(ctx)
    settings = ctx.job_settings
    description = dict(settings.get("data_description") or {})
    if not description:
        raise TaskFailed("the task's settings have no data_description; submit the job again")
    ignored = list(settings.get("ignored") or [])
    if ignored:
        ctx.log.warning(
            "job_settings %s ignored: neuroferry gathers subject and procedures from its "
            "catalog and the metadata_dir only",
            ", ".join(ignored),
        )
    metadata_dir = settings.get("metadata_dir")
    copied: list[str] = []
    if metadata_dir:
        folder = source_folder("metadata_dir", str(metadata_dir), ctx.grants)
        for path in metadata_files(folder):
            source_file("metadata_dir", path, ctx.grants)  # a symlink out is refused
            data = _read_source("metadata_dir", path, folder)  # checked again, once open
            write_file(staging / path.name, data)
            copied.append(path.name)
    from_catalog: dict[str, str | None] = {}
    subject_id = str(description.get("subject_id") or "")
    for key in CATALOG_METADATA:
        file = f"{key}.json"
        if file in copied:
            continue
        found = _from_catalog(ctx, key, subject_id) if subject_id else None
        if found is None:
            ctx.log.warning("no %s: not in the metadata folder, nor in the catalog", file)
            continue
        write_json(staging / file, found["document"])
        from_catalog[file] = found["asset"]
        ctx.log.info("%s: from the catalog (asset %s)", file, found["asset"])
    missing: list[str] = []
    written: list[str] = []
    if DATA_DESCRIPTION in copied:
        ctx.log.info("%s: the metadata folder's, as it is", DATA_DESCRIPTION)
    else:
        project_name = str(description.get("project_name") or "")
        project = find_project(ctx.db, project_name) if project_name else None
        try:
            data = build_data_description(
                name=str(description["name"]),
                subject_id=subject_id,
                creation_time=datetime.fromisoformat(str(description["creation_time"])),
                modalities=[_abbreviation(m) for m in description.get("modalities") or []],
                project_name=project_name,
                facts=project.facts if project is not None else {},
                project_known=project is not None,
            )
        except MissingFacts as exc:
            missing = exc.lines or [str(exc)]
            (staging / DATA_DESCRIPTION).unlink(missing_ok=True)  # from an earlier attempt
            ctx.log.warning("%s cannot be written: %s", DATA_DESCRIPTION, "; ".join(missing))
        else:
            write_file(staging / DATA_DESCRIPTION, data)
            written.append(DATA_DESCRIPTION)
    ctx.log.info(
        "copied %s; wrote %s", ", ".join(copied) or "nothing", ", ".join(written) or "nothing"
    )
    return {
        "staging": str(staging),
        "metadata_dir": metadata_dir,
        "copied": copied,
        "from_catalog": from_catalog,
        "written": [*written, *from_catalog],
        "missing": missing,
        "ignored": ignored,
        "files": sorted({*copied, *written, *from_catalog}),
    }


def _abbreviation(value: Any) -> str:
    return str(value.get("abbreviation")) if isinstance(value, dict) else str(value)


def check_metadata_files(ctx: TaskContext) -> dict[str, Any]:
    """Fail, before anything moves, if ``data_description.json`` could not be written
    (naming each missing fact and where to give it), or if a ``*.json`` in the staging
    folder is not a JSON object (naming the file, line and column)."""
    staging = _staging(ctx)
    gathered = ctx.upstream.get("gather_preliminary_metadata") or {}
    missing = list(gathered.get("missing") or [])
    if missing:
        raise TaskFailed(f"{DATA_DESCRIPTION} cannot be written: " + "; ".join(missing))
    if not (staging / DATA_DESCRIPTION).is_file():
        raise TaskFailed(
            f"{staging / DATA_DESCRIPTION} is missing; gather_preliminary_metadata writes "
            "it (was that task skipped?)"
        )
    metadata_dir = gathered.get("metadata_dir")
    from_metadata_dir = set(gathered.get("copied") or ())
    problems: list[str] = []
    files: list[str] = []
    for path in metadata_files(staging):
        problem = json_problem(path)
        if problem is None:
            files.append(path.name)
        elif metadata_dir and path.name in from_metadata_dir:
            problems.append(problem.replace(str(path), str(Path(metadata_dir, path.name)), 1))
        else:
            problems.append(problem)
    if problems:
        raise TaskFailed("metadata files are not valid: " + "; ".join(problems))
    ctx.log.info("metadata files: %s", ", ".join(files))
    return {"files": files}


def copy_derivatives_folder(ctx: TaskContext) -> dict[str, Any] | None:
    """Check the derivatives folder and note its size; ``upload_data_to_s3`` uploads it
    from where it is to the asset's ``derivatives/`` (it is not copied to staging)."""
    path = ctx.job_settings.get("input_source")
    if not path:
        ctx.log.info("no derivatives folder")
        return None
    folder = source_folder("derivatives_dir", str(path), ctx.grants)
    sizes = [p.stat().st_size for p in _walk(folder)]
    ctx.log.info("%s: %d files, %d bytes", folder, len(sizes), sum(sizes))
    return {"input_source": str(folder), "files": len(sizes), "bytes": sum(sizes)}


def modality_transformation_settings(ctx: TaskContext) -> dict[str, Any]:
    """Each modality's transformation settings by abbreviation: the items of
    ``compress_data``."""
    settings = ctx.job_settings
    for abbreviation, item in settings.items():
        if not isinstance(item, dict) or not _input_source(item):
            raise TaskFailed(f"the settings of modality {abbreviation} name no input_source")
        ctx.log.info(
            "%s: %s from %s",
            abbreviation,
            (item.get("job_settings") or {}).get("transformation", "copy"),
            _input_source(item),
        )
    return settings


def compress_data(ctx: TaskContext) -> dict[str, Any]:
    """Transform one modality's folder. ``copy`` leaves it as it is (the upload reads it
    from where it is); ``ome-zarr`` does the same for now; ``command`` runs the
    ``command_script`` writing to the staging folder and returns its processing record."""
    modality = ctx.item or "modality"
    settings = ctx.job_settings
    source = _input_source(ctx.params)
    if source is None:
        raise TaskFailed(f"the settings of modality {modality} name no input_source")
    folder = source_folder(f"modality {modality}: input_source", source, ctx.grants)
    transformation = settings.get("transformation", "copy")
    result: dict[str, Any] = {
        "modality": modality,
        "transformation": transformation,
        "output_location": str(folder),
        "processing": None,
    }
    if transformation == "copy":
        ctx.log.info("%s: uploaded from %s as it is", modality, folder)
        return result
    if transformation == "ome-zarr":
        ctx.log.info(
            "%s: OME-Zarr conversion is not done by upload jobs yet; %s is uploaded as it is "
            "(an ingest job converts image stacks to OME-Zarr)",
            modality,
            folder,
        )
        return result
    if transformation != "command":
        raise TaskFailed(
            f"modality {modality}: unknown transformation {transformation!r}; "
            "allowed: copy, ome-zarr, command"
        )
    return {**result, **_run_command(ctx, modality, folder)}


def _run_command(ctx: TaskContext, modality: str, source: Path) -> dict[str, Any]:
    where = f"tasks.modality_transformation_settings.{modality}"
    script = ctx.params.get("command_script")
    if not script:
        raise TaskFailed(f"{where}: the command transformation needs a command_script")
    output = _staging(ctx) / modality
    scratch = _staging(ctx) / SCRATCH / modality  # the command's HOME and TMPDIR
    for folder in (output, scratch):
        if folder.exists():  # what a crashed attempt left: start again from nothing
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    image = ctx.params.get("image")
    version = ctx.params.get("image_version")
    job_settings = ctx.job_settings
    values = {
        "INPUT_SOURCE": str(source),
        "OUTPUT_LOCATION": str(output),
        "JOB_SETTINGS": json.dumps(job_settings, separators=(",", ":")),
        "IMAGE": image or "",
        "IMAGE_VERSION": version or "",
        "S3_LOCATION": _fact(ctx, "destination"),
    }
    words = command_words(str(script), values, where)
    if image and not starts_own_container(words):
        runtime = ctx.config.container_runtime
        if runtime is None:
            raise TaskFailed(
                f"{where} runs in the image {image}, but no container runtime is configured: "
                "set FERRY_CONTAINER_RUNTIME to apptainer, singularity or docker"
            )
        words = in_container(
            runtime,
            image_reference(runtime, str(image), version),
            words,
            read_only=[str(source)],
            writable=[str(output)],
            workdir=str(output),
        )
    started = _now()
    try:
        ctx.run(words, cwd=output, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ended = _now()
    if not any(True for _ in _walk(output)):
        raise TaskFailed(
            f"{where}: the command wrote nothing to %OUTPUT_LOCATION ({output}); "
            "it must write the modality's data there"
        )
    return {
        "output_location": str(output),
        "processing": {
            "name": job_settings.get("process_name") or "Compression",
            "notes": f"modality {modality}",
            "code_url": image or words[0],
            "code_version": version,
            "parameters": job_settings,
            "start_date_time": started,
            "end_date_time": ended,
            "input_location": str(source),
            "output_location": str(output),
        },
    }


def gather_final_metadata(ctx: TaskContext) -> dict[str, Any]:
    """Write ``processing.json`` (aind-data-schema's model) to the staging folder: one
    data process per modality's transformation (code, version, parameters, start and
    end). A ``processing.json`` of the metadata folder is uploaded as it is instead; the
    transformations are then recorded in the catalog only."""
    staging = _staging(ctx)
    results = ctx.upstream.get("compress_data") or {}
    order = list(_modality_settings(ctx))
    experimenter = str(ctx.spec.get("user_email") or "neuroferry")
    processes = [
        data_process(r["processing"], experimenter)
        for _, r in sorted(results.items(), key=lambda kv: _position(order, kv[0]))
        if isinstance(r, dict) and isinstance(r.get("processing"), dict)
    ]
    gathered = ctx.upstream.get("gather_preliminary_metadata") or {}
    if PROCESSING in (gathered.get("copied") or ()):
        ctx.log.info(
            "%s: the metadata folder's, as it is; %d transformations are recorded in the "
            "catalog (upload_job.data_processes)",
            PROCESSING,
            len(processes),
        )
        return {"file": None, "data_processes": processes}
    write_file(staging / PROCESSING, build_processing(processes))
    ctx.log.info("wrote %s with %d data processes", PROCESSING, len(processes))
    return {"file": str(staging / PROCESSING), "data_processes": processes}


def upload_data_to_s3(ctx: TaskContext) -> dict[str, Any]:
    """Upload each modality's output to ``{dest}/{asset}/{modality}/``, the derivatives to
    ``{dest}/{asset}/derivatives/`` and, last, the staging folder's metadata files to
    ``{dest}/{asset}/``. Only what is missing or differs is sent, so a retry resumes."""
    location = _fact(ctx, "destination")
    outputs = ctx.upstream.get("compress_data") or {}
    parts: list[Part] = []
    for modality, settings in _modality_settings(ctx).items():
        result = outputs.get(modality)
        if isinstance(result, dict) and result.get("output_location"):
            source = str(result["output_location"])
        else:  # its transformation was skipped: the folder goes up as it is
            source = str(_input_source(settings))
            ctx.log.info("%s: no transformation ran; uploading %s as it is", modality, source)
        if result is None or result.get("transformation") != "command":
            source = str(source_folder(f"modality {modality}: input_source", source, ctx.grants))
        else:  # the command's output, in the job's own staging folder
            source = os.path.realpath(source)
        parts.append(Part(modality, source, f"{location}/{modality}"))
    derivatives = ctx.upstream.get("copy_derivatives_folder")
    if isinstance(derivatives, dict) and derivatives.get("input_source"):
        folder = source_folder("derivatives_dir", str(derivatives["input_source"]), ctx.grants)
        parts.append(Part("derivatives", str(folder), f"{location}/derivatives"))
    parts.append(
        Part(
            "metadata",
            os.path.realpath(_staging(ctx)),
            location,
            include=("*.json",),
            exclude=("*/*",),
        )
    )
    return upload_parts(ctx, location, parts)


def _read_metadata(store: Store, location: str, name: str) -> dict[str, Any] | None:
    try:
        data = store.get(name)
    except StoreNotFound:
        return None
    except StoreError as exc:
        raise TaskFailed(str(exc)) from exc
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise TaskFailed(f"{location}/{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TaskFailed(f"{location}/{name} holds a JSON {type(value).__name__}, not an object")
    return value


def register_data_asset(ctx: TaskContext) -> dict[str, Any]:
    """Record the asset in the catalog: a document named by the asset with its location
    and the metadata files read back from the destination (``data_description``,
    ``subject``, ``procedures``, ``processing`` …). Returns the analyses the job asks for."""
    name = _fact(ctx, "asset_name")
    location = _fact(ctx, "destination")
    missing = TaskFailed(
        f"{location}/{DATA_DESCRIPTION} was not found: the upload did not finish; "
        "run upload_data_to_s3 again"
    )
    try:
        store = open_store(location, settings=ctx.config)
    except StoreNotFound as exc:
        raise missing from exc
    except FerryError as exc:
        raise TaskFailed(f"cannot open the uploaded asset at {location}: {exc}") from exc
    checked = ctx.upstream.get("check_metadata_files") or {}
    files = list(checked.get("files") or [DATA_DESCRIPTION, "subject.json", "procedures.json"])
    if PROCESSING not in files:
        files.append(PROCESSING)
    document: dict[str, Any] = {"name": name, "location": location}
    reserved = sorted(f for f in files if f.removesuffix(".json") in RESERVED_FIELDS)
    if reserved:
        raise TaskFailed(
            f"{location}: the metadata file(s) {', '.join(reserved)} name catalog fields "
            f"that only the ingest job writes ({', '.join(sorted(RESERVED_FIELDS))}); "
            "rename them and upload again"
        )
    for file in files:
        key = file.removesuffix(".json")
        if not key or "." in key or key.startswith("$") or key in document:
            ctx.log.warning("%s is not registered: its name cannot be a document field", file)
            continue
        value = _read_metadata(store, location, file)
        if value is not None:
            document[key] = value
    if "data_description" not in document:
        raise missing
    # what neuroferry adds goes here, never into the uploaded files
    final = ctx.upstream.get("gather_final_metadata") or {}
    upload_job: dict[str, Any] = {
        "id": ctx.job_id,
        "job_type": ctx.spec.get("job_type"),
        "platform": ctx.summary.get("platform"),
        "project_name": ctx.summary.get("project_name"),
        "neuroferry_version": __version__,
    }
    if final.get("file") is None and final.get("data_processes"):
        upload_job["data_processes"] = final["data_processes"]
    document["upload_job"] = upload_job
    try:
        doc_id, inserted = ctx.catalog.upsert(
            document, owner_of_job(ctx.catalog.engine, ctx.owner_id)
        )
    except (InvalidInput, Forbidden) as exc:
        raise TaskFailed(f"the catalog refused the document of {name}: {exc}") from exc
    ctx.log.info("%s %s in the catalog (%s)", "registered" if inserted else "updated", name, doc_id)
    analyses = ctx.job_settings.get("analyses") or {}
    return {"name": name, "location": location, "id": doc_id, "analyses": analyses}


def analysis_spec(asset: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The spec of the analysis job started for an asset: the item's ``job_settings``,
    selecting the asset by name unless they select data themselves (``query``)."""
    spec = dict(settings.get("job_settings") or {})
    spec.setdefault("query", {"name": asset})
    return spec


def run_analyses(ctx: TaskContext) -> dict[str, Any]:
    """Start the analysis job one modality asks for (the item's ``job_settings`` are the
    analysis job's spec)."""
    modality = ctx.item or "asset"
    if ANALYSIS_KIND not in job_kinds():
        raise TaskFailed(
            f"the analysis for {modality} cannot start: no {ANALYSIS_KIND!r} job kind is "
            "installed (entry point group neuroferry.job_kinds); install it, or set "
            f"tasks.analysis_settings.{modality}.skip_task: true"
        )
    registered = ctx.upstream.get("register_data_asset") or {}
    asset = str(registered.get("name") or _fact(ctx, "asset_name"))
    spec = analysis_spec(asset, ctx.params)
    try:
        job_id = ctx.submit_job(ANALYSIS_KIND, spec)
    except (InvalidInput, Forbidden) as exc:
        raise TaskFailed(
            f"the analysis job for {modality} was refused: {exc}; "
            f"fix tasks.analysis_settings.{modality}.job_settings"
        ) from exc
    ctx.log.info("started analysis job %s for %s", job_id, modality)
    return {"modality": modality, "job_id": job_id}


def remove_staging_folder(ctx: TaskContext) -> dict[str, Any]:
    """Remove the job's staging folder."""
    staging = _staging(ctx)
    if staging.name not in (staging_name(ctx.job_id), _fact(ctx, "asset_name")):
        raise TaskFailed(f"refusing to remove {staging}: it is not this job's staging folder")
    existed = staging.exists()
    if existed:
        shutil.rmtree(staging)
        ctx.log.info("removed %s", staging)
    return {"staging": str(staging), "removed": existed}


def _file_totals(folder: Path) -> tuple[int, int]:
    sizes = [p.stat().st_size for p in _walk(folder)]
    return len(sizes), sum(sizes)


def _remove_checked(real: Path) -> None:
    """Remove the folder whose checked real path is ``real``, by descriptor: its parent is
    opened and must still be ``real.parent`` once open, and the folder is removed from that
    descriptor without following a symlink (one swapped in since the check is refused)."""
    parent = os.open(real.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if fd_real_path(parent, real.parent) != real.parent:
            raise UnsafePath(f"{real.parent} changed since it was checked: refused")
        shutil.rmtree(real.name, dir_fd=parent)
    finally:
        os.close(parent)


def remove_source_folders(ctx: TaskContext) -> dict[str, Any]:
    """Remove each modality folder and the derivatives folder whose upload succeeded. A
    folder uploaded as it is must still hold what was uploaded (as many files and bytes),
    or it is kept and the task fails."""
    upload = ctx.upstream.get("upload_data_to_s3")
    if not isinstance(upload, dict):
        ctx.log.info("the upload did not run: nothing is removed")
        return {"removed": []}
    parts: dict[str, Any] = upload.get("parts") or {}
    outputs = ctx.upstream.get("compress_data") or {}
    folders: dict[str, str] = {}
    for modality, settings in _modality_settings(ctx).items():
        if source := _input_source(settings):
            folders[modality] = source
    derivatives = ctx.upstream.get("copy_derivatives_folder")
    if isinstance(derivatives, dict) and derivatives.get("input_source"):
        folders["derivatives"] = str(derivatives["input_source"])

    removed: list[str] = []
    problems: list[str] = []
    for name, path in folders.items():
        part = parts.get(name)
        folder = Path(path)
        if not isinstance(part, dict) or not part.get("ok"):
            problems.append(f"{name}: {path} was not uploaded; kept")
            continue
        if not folder.exists():
            removed.append(path)  # removed by an earlier attempt
            continue
        try:
            real = removable_folder(name, path, ctx.grants)
        except TaskFailed as exc:
            problems.append(f"{exc}; kept")
            continue
        output = outputs.get(name) if name != "derivatives" else None
        uploaded_as_is = not (
            isinstance(output, dict) and output.get("transformation") == "command"
        )
        if uploaded_as_is:
            expected = (
                int(part["files_copied"]) + int(part["files_skipped"]),
                int(part["bytes_copied"]) + int(part["bytes_skipped"]),
            )
            found = _file_totals(real)
            if found != expected:
                problems.append(
                    f"{name}: {path} holds {count(found[0], 'file')} ({found[1]} bytes) "
                    f"but {count(expected[0], 'file')} ({expected[1]} bytes) were uploaded; "
                    "it changed since, so it is kept"
                )
                continue
        try:
            _remove_checked(real)
        except (FerryError, OSError) as exc:
            problems.append(f"{name}: {path} was not removed: {exc}; kept")
            continue
        ctx.log.info("removed %s", path)
        removed.append(path)
    if problems:
        raise TaskFailed("; ".join(problems))
    return {"removed": removed}


def send_job_end_email(ctx: TaskContext) -> dict[str, Any] | Skipped:
    """E-mail the job's owner that the job ended, if they asked for ``end`` e-mails."""
    upload = ctx.upstream.get("upload_data_to_s3") or {}
    return _notify(
        ctx,
        "end",
        "succeeded",
        files_copied=upload.get("files_copied", 0),
        bytes_copied=upload.get("bytes_copied", 0),
    )
