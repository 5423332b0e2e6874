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
    "Modality",
    "Platform",
    "Task",
    "Term",
    "UploadJobSpec",
    "UploadTasks",
    "asset_name",
    "destination_base",
    "find_modality",
    "find_platform",
    "prepare",
    "transformation_of",
    "validate_upload_job",
]
