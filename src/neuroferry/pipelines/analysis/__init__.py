"""The analysis job kind: registered analyses (Python functions with a parameter model)
run over catalogued data, one task per dispatch model (inputs x parameter sets), with
their code identity and the identity of their results."""

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
from neuroferry.pipelines.analysis._models import (
    PRECEDENCE,
    AnalysisParameters,
    DispatchModel,
    merge_parameters,
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

__all__ = [
    "ENTRY_POINT_GROUP",
    "FILE_SUMMARY",
    "PRECEDENCE",
    "VOLUME_STATS",
    "Analysis",
    "AnalysisParameters",
    "AnalysisRun",
    "Asset",
    "CodeIdentity",
    "DispatchModel",
    "Dispatched",
    "FileSummaryOutputs",
    "FileSummaryParameters",
    "Preview",
    "VolumeStatsOutputs",
    "VolumeStatsParameters",
    "analyses",
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
    "list_files",
    "merge_parameters",
    "normalise_extension",
    "parameter_schema",
    "parameter_sets",
    "read_asset_ids",
    "read_dispatch_folder",
    "register_analysis",
    "result_identity",
    "validate_parameters",
    "write_dispatch_folder",
]
