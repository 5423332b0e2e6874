"""The analysis pipeline: registered analyses (Python functions with a parameter model),
their code identity and the identity of their results; dispatch (one task per input and
parameter set); the wrapper that runs one task, provenance records and the ``analysis``
job kind."""

from neuroferry.pipelines.analysis._dispatch import (
    Asset,
    Dispatched,
    Preview,
    assets_from_filter,
    assets_from_ids,
    assets_from_urls,
    check_assets,
    dispatch,
    list_files,
    normalise_extension,
    parameter_sets,
    read_asset_ids,
)
from neuroferry.pipelines.analysis._examples import (
    FILE_SUMMARY,
    VOLUME_STATS,
    FileSummaryOutputs,
    FileSummaryParameters,
    VolumeStatsOutputs,
    VolumeStatsParameters,
)
from neuroferry.pipelines.analysis._folders import (
    folder_of,
    read_dispatch_folder,
    write_dispatch_folder,
)
from neuroferry.pipelines.analysis._identity import (
    CodeIdentity,
    canonical_json,
    code_identity,
    result_identity,
)
from neuroferry.pipelines.analysis._kind import KIND, AnalysisSettings, AnalysisSpec
from neuroferry.pipelines.analysis._models import (
    PRECEDENCE,
    AnalysisParameters,
    DispatchModel,
    merge_parameters,
)
from neuroferry.pipelines.analysis._provenance import (
    RESULT_KIND,
    provenance_record,
    seed_record,
    seed_record_json,
)
from neuroferry.pipelines.analysis._registry import (
    ENTRY_POINT_GROUP,
    Analysis,
    AnalysisRun,
    analyses,
    broken_analyses,
    get_analysis,
    parameter_schema,
    register_analysis,
    validate_parameters,
)
from neuroferry.pipelines.analysis._tasks import analysis_results, recorded
from neuroferry.pipelines.analysis._wrapper import (
    PreparedTask,
    input_locations,
    prepare_task,
    results_location,
    run_locally,
    run_task,
    task_parameters,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FILE_SUMMARY",
    "KIND",
    "PRECEDENCE",
    "RESULT_KIND",
    "VOLUME_STATS",
    "Analysis",
    "AnalysisParameters",
    "AnalysisRun",
    "AnalysisSettings",
    "AnalysisSpec",
    "Asset",
    "CodeIdentity",
    "DispatchModel",
    "Dispatched",
    "FileSummaryOutputs",
    "FileSummaryParameters",
    "PreparedTask",
    "Preview",
    "VolumeStatsOutputs",
    "VolumeStatsParameters",
    "analyses",
    "analysis_results",
    "assets_from_filter",
    "assets_from_ids",
    "assets_from_urls",
    "broken_analyses",
    "canonical_json",
    "check_assets",
    "code_identity",
    "dispatch",
    "folder_of",
    "get_analysis",
    "input_locations",
    "list_files",
    "merge_parameters",
    "normalise_extension",
    "parameter_schema",
    "parameter_sets",
    "prepare_task",
    "provenance_record",
    "read_asset_ids",
    "read_dispatch_folder",
    "recorded",
    "register_analysis",
    "result_identity",
    "results_location",
    "run_locally",
    "run_task",
    "seed_record",
    "seed_record_json",
    "task_parameters",
    "validate_parameters",
    "write_dispatch_folder",
]
