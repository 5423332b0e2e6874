"""/api/v2/analyses: the analyses installed on the service, with their parameter schemas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from neuroferry.auth import User
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.pipelines.analysis import (
    Analysis,
    analyses,
    broken_analyses,
    code_identity,
    get_analysis,
    parameter_schema,
)
from neuroferry.web._deps import current_user

router = APIRouter(prefix="/analyses", tags=["analyses"])


class CodeOut(BaseModel):
    name: str
    version: str | None
    source: str | None = Field(description="the distribution that provides the analysis")
    commit: str | None = Field(description="the git commit of its source, when it has one")
    dirty: bool = Field(description="its git checkout has uncommitted changes")
    image: str | None
    digest: str | None


class AnalysisOut(BaseModel):
    name: str
    description: str
    code: CodeOut
    parameters: dict[str, Any] = Field(description="the JSON schema of its parameters")
    outputs: dict[str, Any] | None = Field(description="the JSON schema of its small outputs")

    @classmethod
    def of(cls, analysis: Analysis) -> AnalysisOut:
        code = code_identity(analysis, allow_dirty=True)
        return cls(
            name=analysis.name,
            description=analysis.description,
            code=CodeOut(**code.as_dict()),
            parameters=parameter_schema(analysis),
            outputs=analysis.outputs.model_json_schema() if analysis.outputs else None,
        )


class AnalysesOut(BaseModel):
    analyses: list[AnalysisOut]
    broken: dict[str, str] = Field(
        default_factory=dict,
        description="installed analyses that cannot be loaded, with the reason (admins only)",
    )


@router.get("", response_model=AnalysesOut, summary="List the analyses")
def list_analyses(me: User = Depends(current_user)) -> AnalysesOut:
    """Every analysis installed on the service, with its code identity and the JSON
    schemas of its parameters and outputs."""
    return AnalysesOut(
        analyses=[AnalysisOut.of(a) for a in analyses().values()],
        broken=broken_analyses() if me.is_admin else {},
    )


@router.get("/{name}", response_model=AnalysisOut, summary="One analysis")
def show_analysis(name: str, me: User = Depends(current_user)) -> AnalysisOut:
    """One analysis, as the list gives it; 404 naming the known ones for another name."""
    try:
        analysis = get_analysis(name)
    except InvalidInput as exc:
        raise NotFound(str(exc)) from exc
    return AnalysisOut.of(analysis)
