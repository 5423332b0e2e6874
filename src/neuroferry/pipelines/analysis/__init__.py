"""The analysis pipeline: registered analyses (Python functions with a parameter model),
their code identity and the identity of their results."""

from neuroferry.pipelines.analysis._examples import (
    FILE_SUMMARY,
    VOLUME_STATS,
    FileSummaryOutputs,
    FileSummaryParameters,
    VolumeStatsOutputs,
    VolumeStatsParameters,
)
from neuroferry.pipelines.analysis._identity import (
    CodeIdentity,
    canonical_json,
    code_identity,
    result_identity,
)
from neuroferry.pipelines.analysis._models import DispatchModel
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
    "VOLUME_STATS",
    "Analysis",
    "AnalysisRun",
    "CodeIdentity",
    "DispatchModel",
    "FileSummaryOutputs",
    "FileSummaryParameters",
    "VolumeStatsOutputs",
    "VolumeStatsParameters",
    "analyses",
    "broken_analyses",
    "canonical_json",
    "code_identity",
    "get_analysis",
    "parameter_schema",
    "register_analysis",
    "result_identity",
    "validate_parameters",
]
