"""The upload pipeline: a session's modality folders and metadata into a destination store,
registered in the catalog (job kind ``upload``)."""

from neuroferry.pipelines.upload._kind import (
    DEFAULT_TASK_SETTINGS,
    KIND,
    TASK_NAMES,
    TASKS,
    destination_base,
    prepare,
)
from neuroferry.pipelines.upload._models import (
    NOTIFICATION_TYPES,
    SETTABLE_TASKS,
    TRANSFORMATIONS,
    Modality,
    Platform,
    Task,
    UploadJobSpec,
    UploadTasks,
    asset_name,
    transformation_of,
    validate_upload_job,
)
from neuroferry.pipelines.upload._sheets import (
    SheetError,
    SheetJob,
    SheetLimits,
    SheetNote,
    SheetResult,
    column_key,
    parse_job_sheet,
)
from neuroferry.pipelines.upload._submit import (
    CheckedJob,
    check_upload_jobs,
    submit_upload_jobs,
)
from neuroferry.pipelines.upload._template import job_upload_template
from neuroferry.pipelines.upload._vocab import (
    MODALITIES,
    PLATFORMS,
    Term,
    find_modality,
    find_platform,
)

__all__ = [
    "DEFAULT_TASK_SETTINGS",
    "KIND",
    "MODALITIES",
    "NOTIFICATION_TYPES",
    "PLATFORMS",
    "SETTABLE_TASKS",
    "TASKS",
    "TASK_NAMES",
    "TRANSFORMATIONS",
    "CheckedJob",
    "Modality",
    "Platform",
    "SheetError",
    "SheetJob",
    "SheetLimits",
    "SheetNote",
    "SheetResult",
    "Task",
    "Term",
    "UploadJobSpec",
    "UploadTasks",
    "asset_name",
    "check_upload_jobs",
    "column_key",
    "destination_base",
    "find_modality",
    "find_platform",
    "job_upload_template",
    "parse_job_sheet",
    "prepare",
    "submit_upload_jobs",
    "transformation_of",
    "validate_upload_job",
]
