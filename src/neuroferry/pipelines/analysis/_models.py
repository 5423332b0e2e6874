"""The dispatch model (one analysis task's inputs and parameter set) and the parameters file.

Both keep the shapes of the original dispatcher's files: a dispatch model read from a file
it wrote and written back with ``model_dump_json(indent=4)`` gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


def non_finite(value: Any, path: str) -> str | None:
    """The path (``query.x[1]``) of the first NaN or infinity in a JSON-like value, which
    JSON cannot hold (it would be stored as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Mapping):
        items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for inner, item in items:
        if (found := non_finite(item, inner)) is not None:
            return found
    return None


def check_finite(model: BaseModel, fields: tuple[str, ...] | None = None) -> None:
    """ValueError naming the first field of ``model`` (all, extras included, by default)
    that holds a NaN or an infinity."""
    values = model.model_dump()
    for name in fields if fields is not None else tuple(values):
        if (found := non_finite(values[name], name)) is not None:
            raise ValueError(
                f"{found}: NaN and infinities are not JSON numbers; give a finite number"
            )


class DispatchModel(BaseModel):
    """One task's inputs: the assets (store URL, name and catalog ``_id`` of each, in three
    parallel lists), the files within them (None: the whole assets), and one set of
    distributed parameters (None: only the fixed ones).

    The fields and their order are those of the original dispatcher's
    ``AnalysisDispatchModel``; fields of other versions are kept as given and written
    after these."""

    model_config = ConfigDict(extra="allow")

    s3_location: list[str]
    """The store URL of each asset."""
    asset_name: list[str]
    """The name of each asset."""
    docdb_record_id: list[str]
    """The catalog ``_id`` of each asset ("" for a store URL that no document names)."""
    file_location: list[str] | None = None
    """The URLs of the files to analyse (within the assets); None: the whole assets."""
    distributed_parameters: dict[str, Any] | None = None
    """This task's own parameter set, merged over the fixed parameters when it runs."""
    group_metadata: dict[str, Any] | None = None
    """For grouped assets, the metadata fields the group shares."""
    query: str | None = None
    """The catalog filter that selected the assets, as JSON text."""
    analysis_code: dict[str, Any] | None = None
    """The code (and merged parameters) the original dispatcher expected to run."""

    @model_validator(mode="after")
    def _finite(self) -> Self:
        check_finite(self)
        return self


class AnalysisParameters(BaseModel):
    """The parameters file (``analysis_parameters.json``): ``fixed_parameters`` apply to
    every task; each set of ``distributed_parameters`` makes one task per input (N inputs
    x M sets; no sets: one task per input)."""

    model_config = ConfigDict(extra="forbid")

    fixed_parameters: dict[str, Any] = Field(default_factory=dict)
    distributed_parameters: list[dict[str, Any]] = Field(default_factory=list)


#: The precedence of the parameters, as the front doors state it.
PRECEDENCE = (
    "fixed_parameters < parameters (overrides) < distributed_parameters: each task runs "
    "the fixed parameters, overridden by the request's parameters, overridden by its own "
    "distributed set (a later value wins)"
)


def merge_parameters(
    fixed: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    distributed: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parameters one task runs with: ``fixed`` < ``overrides`` < ``distributed``
    (a later value wins).

    Keys keep the order the original wrapper gives them: the fixed parameters' keys first,
    in their order (a key keeps its place when a later source changes its value), then the
    keys only the overrides have, then those only the distributed set has. Unlike the
    original, an override of a key the fixed parameters lack is kept (appended), and a
    None override is a value, not "not given"."""
    return {**(fixed or {}), **(overrides or {}), **(distributed or {})}
