"""The dispatch model: one task's inputs and parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class DispatchModel(BaseModel):
    """One task's inputs and parameters, in the shape of the seed's ``AnalysisDispatchModel``
    (fields of other versions are kept)."""

    model_config = ConfigDict(extra="allow")

    s3_location: list[str]
    asset_name: list[str]
    docdb_record_id: list[str]
    file_location: list[str] | None = None
    distributed_parameters: dict[str, Any] | None = None
    group_metadata: dict[str, Any] | None = None
    query: str | None = None
    analysis_code: dict[str, Any] | None = None
