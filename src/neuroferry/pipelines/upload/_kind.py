"""The ``upload`` job kind: its task DAG and how a spec becomes the tasks' settings."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Any

from neuroferry.config import Settings
from neuroferry.engine import (
    AssetClaim,
    JobKind,
    PreparedJob,
    TaskDef,
    lock_key,
    named_destination,
    starts_own_container,
    task_maker,
)
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload._models import Task, UploadJobSpec, transformation_of
from neuroferry.pipelines.upload._paths import check_source_path, staging_root
from neuroferry.pipelines.upload._presets import check_preset, merge_preset

_task = task_maker("neuroferry.pipelines.upload._tasks")

TASKS: tuple[TaskDef, ...] = (
    _task("send_job_start_email", placement="local"),
    _task("check_asset_owner", "send_job_start_email", placement="local"),
    _task("check_s3_folder_exists", "check_asset_owner"),
    _task("check_source_folders_exist", "check_asset_owner"),
    _task("create_staging_folder", "check_s3_folder_exists", "check_source_folders_exist"),
    # local: it reads the project's record and the catalog (the metadata service)
    _task("gather_preliminary_metadata", "create_staging_folder", placement="local"),
    _task("check_metadata_files", "gather_preliminary_metadata"),
    _task("copy_derivatives_folder", "create_staging_folder"),
    _task("modality_transformation_settings", "create_staging_folder"),
    _task(
        "compress_data",
        "modality_transformation_settings",
        map_over="modality_transformation_settings",
    ),
    _task("gather_final_metadata", "check_metadata_files", "compress_data"),
    _task(
        "upload_data_to_s3",
        "gather_final_metadata",
        "copy_derivatives_folder",
        retries=2,
        retry_delay=60.0,
    ),
    _task("register_data_asset", "upload_data_to_s3", placement="local"),
    _task(
        "run_analyses",
        "register_data_asset",
        placement="local",
        map_over="register_data_asset.analyses",
    ),
    _task("remove_staging_folder", "register_data_asset"),
    _task("remove_source_folders", "register_data_asset"),
    _task(
        "send_job_end_email",
        "run_analyses",
        "remove_staging_folder",
        "remove_source_folders",
        placement="local",
    ),
)
"""The upload's tasks, each after the tasks it depends on."""

TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)

DEFAULT_TASK_SETTINGS: dict[str, Task] = {"remove_source_folders": Task(skip_task=True)}
"""Settings used for a task the request does not configure (otherwise ``Task()``)."""

GATHER_SETTINGS = frozenset({"metadata_dir", "data_description", "ignored"})
"""The ``gather_preliminary_metadata`` job settings neuroferry acts on; the others (the
original's metadata-service settings) are reported as ignored."""


def creation_time(acquired: datetime) -> datetime:
    """The data description's ``creation_time``: ``acq_datetime``, in the service's local
    time zone when it gives none."""
    return acquired if acquired.tzinfo is not None else acquired.astimezone()


CODE_OCEAN_SETTINGS = frozenset({"pipeline_monitor_settings", "capsule_id", "pipeline_id"})
"""Keys of the original service's Code Ocean pipeline settings, which neuroferry does not run."""


def destination_base(name: str | None, settings: Settings) -> str:
    """The store URL of the destination named ``name`` (``s3_bucket``; empty: ``default``)."""
    return named_destination("s3_bucket", name or "default", settings)


def _settings(task: Task | None, default: Task | None = None) -> dict[str, Any]:
    chosen = task or default or Task()
    return chosen.model_dump(mode="json")


def _with_job_settings(settings: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {**settings, "job_settings": {**(settings.get("job_settings") or {}), **values}}


def _check_container(task: Task | None, settings: Settings, where: str) -> None:
    """Refuse, at submit time, a command transformation that runs in an image when this
    service has no container runtime to run it with."""
    if task is None or task.skip_task or transformation_of(task) != "command":
        return
    if not task.image or settings.container_runtime is not None:
        return
    try:
        words = shlex.split(task.command_script or "")
    except ValueError:  # the task says what is wrong with the script
        return
    if words and starts_own_container(words):
        return
    raise InvalidInput(
        f"{where}.image: the command runs in the image {task.image}, but this service has "
        "no container "
        "runtime configured (FERRY_CONTAINER_RUNTIME: apptainer, singularity or docker); "
        "ask an admin, or give a command_script that runs without an image",
        [{"field": f"{where}.image", "message": "no container runtime is configured here"}],
    )


def prepare(job: UploadJobSpec, settings: Settings) -> PreparedJob:
    """The job's name (the asset name), each task's settings and the job's summary.

    A task the request configures gets the request's settings, whole; other tasks get
    the defaults. The folders the job reads and the data description are then written
    into the settings of the tasks that use them.
    """
    asset = job.asset_name
    location = f"{destination_base(job.s3_bucket, settings)}/{asset}"

    sources = job.input_sources()
    metadata_dir = job.metadata_folder()
    derivatives_dir = job.derivatives_folder()
    reads = [(f"modality {abbreviation}: input_source", p) for abbreviation, p in sources.items()]
    if metadata_dir:
        reads.append(("metadata_dir", metadata_dir))
    if derivatives_dir:
        reads.append(("derivatives_dir", derivatives_dir))
    for label, path in reads:
        check_source_path(label, path)

    unmapped = [t.name for t in TASKS if t.map_over is None]
    task_settings: dict[str, dict[str, Any]] = {
        name: _settings(job.tasks.get(name), DEFAULT_TASK_SETTINGS.get(name)) for name in unmapped
    }
    # the owner check runs whatever the request says: it is not the request's to skip
    task_settings["check_asset_owner"] = Task().model_dump(mode="json")
    if job.force_cloud_sync:
        task_settings["check_s3_folder_exists"]["skip_task"] = True
    task_settings["check_source_folders_exist"] = _with_job_settings(
        task_settings["check_source_folders_exist"],
        modalities=sources,
        metadata_dir=metadata_dir,
        derivatives_dir=derivatives_dir,
    )
    given = (task_settings["gather_preliminary_metadata"].get("job_settings") or {}).keys()
    ignored = sorted(set(given) - GATHER_SETTINGS)
    task_settings["gather_preliminary_metadata"] = _with_job_settings(
        task_settings["gather_preliminary_metadata"],
        metadata_dir=metadata_dir,
        data_description={
            "name": asset,
            "subject_id": job.subject_id,
            "creation_time": creation_time(job.acq_datetime).isoformat(),
            "modalities": [m.abbreviation for m in job.modalities],
            "project_name": job.project_name,
        },
        ignored=ignored,
    )
    derivatives = _with_job_settings(
        task_settings["copy_derivatives_folder"], input_source=derivatives_dir
    )
    if derivatives_dir is None:
        derivatives["skip_task"] = True
    task_settings["copy_derivatives_folder"] = derivatives

    transformations: dict[str, Any] = {}
    for modality in job.modalities:
        abbreviation = modality.abbreviation
        task = job.tasks.modality_transformation_settings.get(abbreviation)
        _check_container(task, settings, f"tasks.modality_transformation_settings.{abbreviation}")
        transformations[abbreviation] = _with_job_settings(
            _settings(task),
            input_source=sources[abbreviation],
            transformation=transformation_of(task),
        )
    task_settings["modality_transformation_settings"] = _with_job_settings(
        task_settings["modality_transformation_settings"], **transformations
    )

    notes: list[str] = []
    if ignored:
        notes.append(
            f"tasks.gather_preliminary_metadata.job_settings: {', '.join(ignored)} "
            "ignored: neuroferry gathers subject and procedures from its catalog and the "
            "metadata_dir, and acts on no other metadata-service setting"
        )
    if asset != job.computed_asset_name:
        notes.append(
            f"s3_prefix {asset!r} is used as the asset's name instead of "
            f"{job.computed_asset_name!r} (made of platform, subject_id and acq_datetime)"
        )
    analyses: dict[str, Any] = {}
    for abbreviation, task in job.tasks.analysis_settings.items():
        item = _settings(task)
        code_ocean = sorted(CODE_OCEAN_SETTINGS & set(item.get("job_settings") or {}))
        if code_ocean and not item["skip_task"]:
            item["skip_task"] = True
            notes.append(
                f"tasks.analysis_settings.{abbreviation}: Code Ocean settings "
                f"({', '.join(code_ocean)}) are not run by neuroferry; give the settings "
                "of an analysis job instead"
            )
        analyses[abbreviation] = item
    task_settings["register_data_asset"] = _with_job_settings(
        task_settings["register_data_asset"], analyses=analyses
    )

    summary: dict[str, Any] = {
        "asset_name": asset,
        "destination_name": job.s3_bucket or "default",
        "staging_dir": str(staging_root(settings)),
        "project_name": job.project_name,
        "platform": job.platform.model_dump() if job.platform else None,
        "subject_id": job.subject_id,
        "modalities": list(sources),
        "job_type": job.job_type,
    }
    if notes:
        summary["notes"] = notes
    claim = AssetClaim(lock_key(location), "s3_prefix", catalog_name=asset, url=location)
    removes = []
    if not task_settings["remove_source_folders"].get("skip_task"):
        removes = [r for r in reads if r[0] != "metadata_dir"]
    return PreparedJob(
        name=asset,
        task_settings=task_settings,
        summary=summary,
        assets=(claim,),
        reads=tuple(reads),
        writes=(("s3_prefix", location),),
        removes=tuple(removes),
        destination=location,
        notify_email=job.user_email,
        notify_events=tuple(job.email_notification_types),
    )


KIND = JobKind(
    name="upload",
    spec_model=UploadJobSpec,
    tasks=TASKS,
    prepare=prepare,
    check_preset=check_preset,
    merge_preset=merge_preset,
    description=(
        "Upload a session's modality folders and metadata to a destination store, "
        "register the asset in the catalog and start the analyses it asks for."
    ),
)
"""The upload job kind (entry point ``neuroferry.job_kinds: upload``)."""
