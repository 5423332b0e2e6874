"""The analysis job kind: analyses run over catalogued data, one task per dispatch model
(inputs x parameter sets)."""

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
from neuroferry.pipelines.analysis._folders import (
    folder_of,
    read_dispatch_folder,
    write_dispatch_folder,
)
from neuroferry.pipelines.analysis._models import (
    AnalysisParameters,
    DispatchModel,
    merge_parameters,
)

__all__ = [
    "AnalysisParameters",
    "Asset",
    "DispatchModel",
    "Dispatched",
    "Preview",
    "assets_from_filter",
    "assets_from_ids",
    "assets_from_urls",
    "check_assets",
    "dispatch",
    "folder_of",
    "list_files",
    "merge_parameters",
    "normalise_extension",
    "parameter_sets",
    "read_asset_ids",
    "read_dispatch_folder",
    "write_dispatch_folder",
]
