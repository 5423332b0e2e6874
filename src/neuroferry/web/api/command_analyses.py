"""/api/v2/analyses/{name}: command analyses, registered, versioned, rolled back and
deleted by admins (kept as job types are; see ``job_types``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from neuroferry.auth import User
from neuroferry.engine import (
    delete_job_type,
    find_job_type,
    job_type_history,
    put_job_type,
    rollback_job_type,
)
from neuroferry.pipelines.analysis import COMMAND_ANALYSES, CommandDefinition
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services
from neuroferry.web.api.job_types import (
    MAX_COMMENT,
    JobTypeHistory,
    JobTypeOut,
    JobTypeSaved,
    Rollback,
)

router = APIRouter(prefix="/analyses", tags=["analyses"])


class NewCommandAnalysis(CommandDefinition):
    comment: str | None = Field(None, max_length=MAX_COMMENT, description="why (kept)")


@router.put(
    "/{name}",
    response_model=JobTypeSaved,
    summary="Register a command analysis, or save a new version of one (admins)",
)
def put(
    name: str,
    body: NewCommandAnalysis,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> JobTypeSaved:
    """Save the definition (its ``settings`` in the answer) as the next version; the same
    definition as the current version's changes nothing (``changed: false``)."""
    before = find_job_type(held.engine, COMMAND_ANALYSES, name)
    definition = body.model_dump(mode="json", exclude={"comment"}, exclude_none=True)
    saved = put_job_type(held.engine, COMMAND_ANALYSES, name, definition, admin.name, body.comment)
    return JobTypeSaved.of_save(before, saved)


@router.delete("/{name}", response_model=JobTypeOut, summary="Delete a command analysis (admins)")
def remove(
    name: str,
    comment: str | None = Query(None, max_length=MAX_COMMENT, description="Why."),
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> JobTypeOut:
    """A new version marked deleted; its history stays, and a rollback revives it."""
    return JobTypeOut.of(delete_job_type(held.engine, COMMAND_ANALYSES, name, admin.name, comment))


@router.get(
    "/{name}/history", response_model=JobTypeHistory, summary="Every version of a command analysis"
)
def history(
    name: str, held: Services = Depends(services), _user: User = Depends(current_user)
) -> JobTypeHistory:
    versions = job_type_history(held.engine, COMMAND_ANALYSES, name)
    return JobTypeHistory(
        kind=COMMAND_ANALYSES, name=name, versions=[JobTypeOut.of(v) for v in versions]
    )


@router.post(
    "/{name}/rollback",
    response_model=JobTypeSaved,
    summary="Make an old version of a command analysis current again, as a new version (admins)",
)
def rollback(
    name: str,
    body: Rollback,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> JobTypeSaved:
    before = find_job_type(held.engine, COMMAND_ANALYSES, name)
    saved = rollback_job_type(
        held.engine, COMMAND_ANALYSES, name, body.version, admin.name, body.comment
    )
    return JobTypeSaved.of_save(before, saved)
