"""The analysis job kind: analyses run over catalogued data, one task per dispatch model
(inputs x parameter sets)."""

from neuroferry.pipelines.analysis._models import (
    AnalysisParameters,
    DispatchModel,
    merge_parameters,
)

__all__ = [
    "AnalysisParameters",
    "DispatchModel",
    "merge_parameters",
]
