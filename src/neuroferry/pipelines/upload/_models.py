"""The upload job spec, compatible with the entries of the original service's
``SubmitJobRequestV2.upload_jobs``.

Every error names the field (as a dotted path) and what is allowed there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from neuroferry.auth import EMAIL
from neuroferry.errors import InvalidInput, validation_problems
from neuroferry.pipelines.upload._vocab import Term, find_modality, find_platform

NotificationType = Literal["begin", "end", "fail", "retry", "all"]
NOTIFICATION_TYPES: tuple[NotificationType, ...] = ("begin", "end", "fail", "retry", "all")

Transformation = Literal["copy", "ome-zarr", "command"]
TRANSFORMATIONS: tuple[Transformation, ...] = ("copy", "ome-zarr", "command")
"""How a modality's folder becomes what is uploaded (``job_settings.transformation``)."""

US_DATETIME = "%m/%d/%Y %I:%M:%S %p"
"""The spreadsheet date format the original service accepts: ``10/13/2020 1:10:10 PM``."""

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Task names a request may configure. The mapped tasks (compress_data, run_analyses) are
# configured per modality: through modality_transformation_settings and analysis_settings.
SETTABLE_TASKS: tuple[str, ...] = (
    "send_job_start_email",
    "check_s3_folder_exists",
    "check_source_folders_exist",
    "create_staging_folder",
    "gather_preliminary_metadata",
    "check_metadata_files",
    "copy_derivatives_folder",
    "modality_transformation_settings",
    "gather_final_metadata",
    "upload_data_to_s3",
    "register_data_asset",
    "analysis_settings",
    "remove_staging_folder",
    "remove_source_folders",
    "send_job_end_email",
)
_LEGACY_TASKS = {"codeocean_pipeline_settings": "analysis_settings"}
_PER_MODALITY_HINT = {
    "compress_data": "modality_transformation_settings",
    "run_analyses": "analysis_settings",
}


def _error(message: str) -> PydanticCustomError:
    # the message goes in as context so that braces in values are not format fields
    return PydanticCustomError("upload_spec", "{message}", {"message": message})


def _check_keys(data: Any, allowed: tuple[str, ...], what: str) -> None:
    if isinstance(data, Mapping):
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise _error(f"unknown field {unknown[0]!r} in {what}; allowed: {', '.join(allowed)}")


def _asset_name_ok(name: str) -> bool:
    """Whether ``name`` may name an asset: a plain folder name that is neither hidden nor
    ``.``/``..`` (it becomes a prefix in the store and a folder)."""
    return bool(_SAFE_NAME.fullmatch(name)) and name[0].isalnum() and ".." not in name


def _blank_to_none(value: Any) -> Any:
    """Spreadsheet cells arrive as strings; an empty one means "not given"."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _term(data: Mapping[str, Any], find: Callable[[str], Term], what: str) -> Term:
    """The term ``data`` names by its abbreviation (else its name), found by ``find``."""
    key = _blank_to_none(data.get("abbreviation")) or _blank_to_none(data.get("name"))
    if not isinstance(key, str):
        raise _error(f"{what} needs its abbreviation, e.g. 'ecephys'")
    try:
        return find(key)
    except ValueError as exc:
        raise _error(str(exc)) from None


class Task(BaseModel):
    """The settings of one task, as the original service's ``Task`` model has them."""

    model_config = ConfigDict(extra="forbid")

    skip_task: bool = False
    """Mark the task skipped instead of running it."""
    image: str | None = None
    """Container image that a ``command`` transformation runs in."""
    image_version: str | None = None
    image_resources: dict[str, Any] | None = None
    """Resources the task asks for (``cpus_per_task``, ``memory_per_node``, ``time_limit``)."""
    job_settings: dict[str, Any] | None = None
    """Settings of the task; passed to a command as ``%JOB_SETTINGS``."""
    command_script: str | None = None
    """The command a ``command`` transformation runs, with ``%`` placeholders."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        _check_keys(data, tuple(cls.model_fields), "a task's settings")
        return data


class Modality(BaseModel):
    """One modality of the session: a known abbreviation, and optionally its folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    abbreviation: str
    input_source: str | None = None
    """The folder holding this modality's data (or give it in the modality's
    ``modality_transformation_settings`` job settings)."""

    @model_validator(mode="before")
    @classmethod
    def _lookup(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"abbreviation": data}
        if not isinstance(data, Mapping):
            return data  # pydantic reports the wrong type
        _check_keys(data, ("name", "abbreviation", "input_source"), "a modality")
        term = _term(data, find_modality, "a modality")
        return {
            **data,
            "name": term.name,
            "abbreviation": term.abbreviation,
            "input_source": _blank_to_none(data.get("input_source")),
        }

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("input_source") is None:
            data.pop("input_source", None)
        return data


class Platform(BaseModel):
    """The platform the data was acquired on (part of the asset name)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    abbreviation: str

    @model_validator(mode="before")
    @classmethod
    def _lookup(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"abbreviation": data}
        if not isinstance(data, Mapping):
            return data
        _check_keys(data, ("name", "abbreviation"), "the platform")
        term = _term(data, find_platform, "the platform")
        return {"name": term.name, "abbreviation": term.abbreviation}


class UploadTasks(BaseModel):
    """Settings of the upload's tasks by task name; a request's settings for a task
    replace the defaults for that task. ``modality_transformation_settings`` and
    ``analysis_settings`` (formerly ``codeocean_pipeline_settings``) hold one task's
    settings per modality."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    send_job_start_email: Task | None = None
    check_s3_folder_exists: Task | None = None
    check_source_folders_exist: Task | None = None
    create_staging_folder: Task | None = None
    gather_preliminary_metadata: Task | None = None
    check_metadata_files: Task | None = None
    copy_derivatives_folder: Task | None = None
    modality_transformation_settings: dict[str, Task] = Field(default_factory=dict)
    gather_final_metadata: Task | None = None
    upload_data_to_s3: Task | None = None
    register_data_asset: Task | None = None
    analysis_settings: dict[str, Task] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("analysis_settings", "codeocean_pipeline_settings"),
    )
    remove_staging_folder: Task | None = None
    remove_source_folders: Task | None = None
    send_job_end_email: Task | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_tasks(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        for key in data:
            if key in SETTABLE_TASKS or key in _LEGACY_TASKS:
                continue
            if key in _PER_MODALITY_HINT:
                raise _error(
                    f"{key!r} runs once per modality: configure it in "
                    f"tasks.{_PER_MODALITY_HINT[key]}, keyed by modality"
                )
            raise _error(f"unknown task {key!r}; allowed: {', '.join(SETTABLE_TASKS)}")
        if "analysis_settings" in data and "codeocean_pipeline_settings" in data:
            raise _error(
                "give analysis_settings or its former name codeocean_pipeline_settings, not both"
            )
        return data

    @field_validator("modality_transformation_settings", "analysis_settings", mode="before")
    @classmethod
    def _modality_keys(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, settings in value.items():
            try:
                abbreviation = find_modality(str(key)).abbreviation
            except ValueError as exc:
                raise _error(str(exc)) from None
            if abbreviation in out:
                raise _error(f"modality {abbreviation!r} is configured twice")
            out[abbreviation] = settings
        return out

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v not in (None, {})}

    def get(self, name: str) -> Task | None:
        """The request's settings for the (unmapped) task ``name``, if it gave any."""
        value = getattr(self, name, None)
        return value if isinstance(value, Task) else None


def _parse_datetime(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    try:
        result: datetime = handler(value)
        return result
    except ValidationError:
        if isinstance(value, str):
            try:
                return datetime.strptime(value.strip(), US_DATETIME)
            except ValueError:
                pass
        raise _error(
            f"{value!r} is not a date and time; use ISO 8601 (2024-05-27T16:07:59) "
            "or M/D/YYYY h:mm:ss AM/PM (5/27/2024 4:07:59 PM)"
        ) from None


def _failures_only() -> list[NotificationType]:
    return ["fail"]


def asset_name(platform: str | None, subject_id: str, acquired: datetime) -> str:
    """The name of a raw asset: ``{platform_}{subject_id}_{YYYY-MM-DD_HH-MM-SS}``."""
    stamp = acquired.strftime("%Y-%m-%d_%H-%M-%S")
    return f"{platform}_{subject_id}_{stamp}" if platform else f"{subject_id}_{stamp}"


def transformation_of(task: Task | None) -> str:
    """A modality's transformation: ``job_settings.transformation``, else ``command``
    when the task has a ``command_script``, else ``copy``."""
    if task is None:
        return "copy"
    chosen = (task.job_settings or {}).get("transformation")
    if chosen is None:
        return "command" if task.command_script else "copy"
    return str(chosen)


class UploadJobSpec(BaseModel):
    """One upload job: a session's modality folders, their metadata and where they go."""

    model_config = ConfigDict(extra="forbid")

    job_type: str = "default"
    """The preset of task settings this job starts from."""
    user_email: str | None = None
    """Where job e-mails go."""
    email_notification_types: list[NotificationType] = Field(default_factory=_failures_only)
    """Which job events are e-mailed: begin, end, fail, retry, or all."""
    s3_bucket: str | None = None
    """The destination's name (one of the service's ``destinations``); empty means
    ``default``."""
    project_name: str
    platform: Platform | None = None
    modalities: list[Modality] = Field(min_length=1)
    subject_id: str
    acq_datetime: datetime
    tasks: UploadTasks = Field(default_factory=UploadTasks)
    s3_prefix: str | None = None
    """The asset's name; computed from platform, subject and time when not given."""
    metadata_dir: str | None = None
    """A folder of metadata files (``subject.json``, ``procedures.json`` …) to include."""
    derivatives_dir: str | None = None
    """A folder uploaded as the asset's ``derivatives/``."""
    force_cloud_sync: bool = False
    """Upload even if the destination already holds objects under the asset's name
    (overwrites, never deletes)."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        _check_keys(data, tuple(cls.model_fields), "an upload job")
        return data

    @field_validator(
        "user_email", "s3_bucket", "metadata_dir", "derivatives_dir", "platform", mode="before"
    )
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("s3_prefix", mode="before")
    @classmethod
    def _s3_prefix(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise _error(
                "an empty name is not an asset name; leave s3_prefix out to use the name "
                "made of platform, subject_id and acq_datetime"
            )
        return _blank_to_none(value)

    @field_validator("job_type", mode="before")
    @classmethod
    def _job_type(cls, value: Any) -> Any:
        return _blank_to_none(value) or "default"

    @field_validator("project_name")
    @classmethod
    def _project_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise _error("the project name may not be empty")
        return value

    @field_validator("user_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.fullmatch(value):
            raise _error(f"{value!r} is not an e-mail address")
        return value

    @field_validator("email_notification_types", mode="before")
    @classmethod
    def _notifications(cls, value: Any) -> Any:
        if value is None:
            return ["fail"]
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        if not isinstance(value, list | tuple | set | frozenset):
            return value
        chosen: set[str] = set()
        for item in value:
            kind = str(item).strip().lower()
            if kind not in NOTIFICATION_TYPES:
                raise _error(
                    f"{item!r} is not a notification type; allowed: {', '.join(NOTIFICATION_TYPES)}"
                )
            chosen.add(kind)
        return [t for t in NOTIFICATION_TYPES if t in chosen]

    @field_validator("subject_id", mode="before")
    @classmethod
    def _subject_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not _SAFE_NAME.fullmatch(value) or ".." in value:
            raise _error(
                f"{value!r} is not allowed: use 1 to 128 letters, digits, '-', '_' or '.' "
                "(no '..'), since it becomes part of the asset's name in the store"
            )
        return value

    @field_validator("acq_datetime", mode="wrap")
    @classmethod
    def _acq_datetime(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
        return _parse_datetime(value, handler)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        abbreviations = [m.abbreviation for m in self.modalities]
        for i, abbreviation in enumerate(abbreviations):
            if abbreviation in abbreviations[:i]:
                raise _error(
                    f"modalities.{i}: {abbreviation!r} is listed twice; each modality may "
                    "appear once (put its folders under one input_source)"
                )
        for field in ("modality_transformation_settings", "analysis_settings"):
            for key in getattr(self.tasks, field):
                if key not in abbreviations:
                    raise _error(
                        f"tasks.{field}.{key}: {key!r} is not one of this job's modalities "
                        f"({', '.join(abbreviations)})"
                    )
        for i, modality in enumerate(self.modalities):
            self._check_modality(i, modality)
        self._same_folder(
            "metadata_dir", self.metadata_dir, "gather_preliminary_metadata", "metadata_dir"
        )
        self._same_folder(
            "derivatives_dir", self.derivatives_dir, "copy_derivatives_folder", "input_source"
        )
        computed = self.computed_asset_name
        if self.s3_prefix is None:
            self.s3_prefix = computed
        elif self.s3_prefix != computed and not _asset_name_ok(self.s3_prefix):
            raise _error(
                f"s3_prefix: {self.s3_prefix!r} is neither the asset name {computed!r} nor a "
                "name of 1 to 128 letters, digits, '-', '_' or '.' that starts with a letter "
                "or digit (no '/', no '..'); leave it out to use the asset name"
            )
        return self

    def _check_modality(self, i: int, modality: Modality) -> None:
        abbreviation = modality.abbreviation
        where = f"tasks.modality_transformation_settings.{abbreviation}"
        task = self.tasks.modality_transformation_settings.get(abbreviation)
        settings = (task.job_settings or {}) if task else {}
        from_task = _blank_to_none(settings.get("input_source"))
        if from_task is not None and not isinstance(from_task, str):
            raise _error(f"{where}.job_settings.input_source must be a folder path")
        if modality.input_source and from_task and modality.input_source != from_task:
            raise _error(
                f"modalities.{i} ({abbreviation}): input_source {modality.input_source!r} "
                f"differs from {where}.job_settings.input_source {from_task!r}; give one"
            )
        if not (modality.input_source or from_task):
            raise _error(
                f"modalities.{i} ({abbreviation}): no input_source; give the folder as "
                f"modalities.{i}.input_source or {where}.job_settings.input_source"
            )
        transformation = transformation_of(task)
        if transformation not in TRANSFORMATIONS:
            raise _error(
                f"{where}.job_settings.transformation: {transformation!r} is not a "
                f"transformation; allowed: {', '.join(TRANSFORMATIONS)}"
            )
        if transformation == "command" and not (task and task.command_script):
            raise _error(
                f"{where}: the command transformation needs a command_script, and commands "
                "come from job types defined by admins: choose a job type (job_type) that "
                f"defines one for {abbreviation}"
            )

    def _same_folder(self, field: str, value: str | None, task_name: str, key: str) -> None:
        task = self.tasks.get(task_name)
        other = _blank_to_none((task.job_settings or {}).get(key)) if task else None
        if value and other and value != other:
            raise _error(
                f"{field} {value!r} differs from tasks.{task_name}.job_settings.{key} "
                f"{other!r}; give one"
            )

    # -- what the job works with ------------------------------------------------------

    @property
    def computed_asset_name(self) -> str:
        """The name made of platform, subject and acquisition time."""
        return asset_name(
            self.platform.abbreviation if self.platform else None,
            self.subject_id,
            self.acq_datetime,
        )

    @property
    def asset_name(self) -> str:
        """The asset's name: ``s3_prefix`` if given, else :attr:`computed_asset_name`."""
        return self.s3_prefix or self.computed_asset_name

    def input_sources(self) -> dict[str, str]:
        """Each modality's folder, by abbreviation."""
        sources: dict[str, str] = {}
        for modality in self.modalities:
            task = self.tasks.modality_transformation_settings.get(modality.abbreviation)
            from_task = (task.job_settings or {}).get("input_source") if task else None
            sources[modality.abbreviation] = str(modality.input_source or from_task)
        return sources

    def metadata_folder(self) -> str | None:
        """The folder of metadata files, from ``metadata_dir`` or the task's settings."""
        task = self.tasks.get("gather_preliminary_metadata")
        return self.metadata_dir or _folder_setting(task, "metadata_dir")

    def derivatives_folder(self) -> str | None:
        """The derivatives folder, from ``derivatives_dir`` or the task's settings."""
        task = self.tasks.get("copy_derivatives_folder")
        return self.derivatives_dir or _folder_setting(task, "input_source")


def _folder_setting(task: Task | None, key: str) -> str | None:
    value = _blank_to_none((task.job_settings or {}).get(key)) if task else None
    return value if isinstance(value, str) else None


def validate_upload_job(data: Any) -> UploadJobSpec:
    """A validated upload job; :class:`~neuroferry.errors.InvalidInput` names each field
    that is wrong and what it allows."""
    try:
        return UploadJobSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(validation_problems(exc))
        raise InvalidInput(f"invalid upload job: {problems}") from exc
