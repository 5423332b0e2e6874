"""/api/v2/job_types: named, versioned presets of task settings; admins change them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.engine import (
    Change,
    JobType,
    delete_job_type,
    diff_job_type_versions,
    find_job_type,
    get_job_type,
    job_type_history,
    list_job_types,
    put_job_type,
    rollback_job_type,
)
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services

router = APIRouter(prefix="/job_types", tags=["job types"])

KIND = Query("upload", description="The job kind the job type belongs to.")
MAX_COMMENT = 1000


def _engine(held: Services = Depends(services)) -> Engine:
    return held.engine


class JobTypeOut(BaseModel):
    kind: str
    name: str
    version: int
    settings: dict[str, Any] = Field(description="task name to task settings")
    created: datetime
    created_by: str | None
    comment: str | None
    deleted: bool

    @classmethod
    def of(cls, job_type: JobType) -> JobTypeOut:
        return cls(**job_type.as_dict())


class JobTypeSaved(JobTypeOut):
    changed: bool = Field(description="false: the settings were those of the current version")

    @classmethod
    def of_save(cls, before: JobType | None, saved: JobType) -> JobTypeSaved:
        """What saving made of the job type that was current ``before`` (or None)."""
        changed = before is None or saved.version != before.version
        return cls(**saved.as_dict(), changed=changed)


class JobTypeList(BaseModel):
    job_types: list[JobTypeOut]


class JobTypeHistory(BaseModel):
    kind: str
    name: str
    versions: list[JobTypeOut] = Field(description="oldest first")


class ChangeOut(BaseModel):
    path: str = Field(description="dotted path into the settings")
    change: Literal["added", "removed", "changed"]
    old: Any
    new: Any

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(**change.as_dict())


class JobTypeDiff(BaseModel):
    """The changes from version ``from`` to version ``to`` (0: empty settings)."""

    kind: str
    name: str
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    changes: list[ChangeOut]


class NewVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(
        description="task name to task settings; per-modality tasks map modality to settings",
        examples=[{"check_s3_folder_exists": {"skip_task": True}}],
    )
    comment: str | None = Field(None, max_length=MAX_COMMENT)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the version whose settings become current again")
    comment: str | None = Field(None, max_length=MAX_COMMENT)


@router.get("", response_model=JobTypeList, summary="Current version of every job type")
def list_all(
    kind: str | None = Query(None, description="Only job types of this kind."),
    engine: Engine = Depends(_engine),
    _user: User = Depends(current_user),
) -> JobTypeList:
    return JobTypeList(job_types=[JobTypeOut.of(t) for t in list_job_types(engine, kind)])


@router.get("/{name}", response_model=JobTypeOut, summary="A job type (current or one version)")
def get(
    name: str,
    kind: str = KIND,
    version: int | None = Query(None, ge=1, description="Default: the current version."),
    engine: Engine = Depends(_engine),
    _user: User = Depends(current_user),
) -> JobTypeOut:
    return JobTypeOut.of(get_job_type(engine, kind, name, version))


@router.put("/{name}", response_model=JobTypeSaved, summary="Save a new version (admins)")
def put(
    name: str,
    body: NewVersion,
    kind: str = KIND,
    engine: Engine = Depends(_engine),
    admin: User = Depends(admin_user),
) -> JobTypeSaved:
    before = find_job_type(engine, kind, name)
    saved = put_job_type(engine, kind, name, body.settings, admin.name, body.comment)
    return JobTypeSaved.of_save(before, saved)


@router.delete("/{name}", response_model=JobTypeOut, summary="Delete a job type (admins)")
def remove(
    name: str,
    kind: str = KIND,
    comment: str | None = Query(None, max_length=MAX_COMMENT, description="Why."),
    engine: Engine = Depends(_engine),
    admin: User = Depends(admin_user),
) -> JobTypeOut:
    return JobTypeOut.of(delete_job_type(engine, kind, name, admin.name, comment))


@router.get("/{name}/history", response_model=JobTypeHistory, summary="Every version")
def history(
    name: str,
    kind: str = KIND,
    engine: Engine = Depends(_engine),
    _user: User = Depends(current_user),
) -> JobTypeHistory:
    versions = job_type_history(engine, kind, name)
    return JobTypeHistory(kind=kind, name=name, versions=[JobTypeOut.of(v) for v in versions])


@router.get("/{name}/diff", response_model=JobTypeDiff, summary="What changed between versions")
def diff(
    name: str,
    kind: str = KIND,
    from_version: int | None = Query(
        None, alias="from", ge=0, description="Default: the version before `to`; 0: nothing."
    ),
    to_version: int | None = Query(None, alias="to", ge=0, description="Default: the newest."),
    engine: Engine = Depends(_engine),
    _user: User = Depends(current_user),
) -> JobTypeDiff:
    old, new, changes = diff_job_type_versions(engine, kind, name, from_version, to_version)
    return JobTypeDiff.model_validate(
        {
            "kind": kind,
            "name": name,
            "from": old,
            "to": new,
            "changes": [ChangeOut.of(c) for c in changes],
        }
    )


@router.post(
    "/{name}/rollback",
    response_model=JobTypeSaved,
    summary="Make an old version's settings current again, as a new version (admins)",
)
def rollback(
    name: str,
    body: Rollback,
    kind: str = KIND,
    engine: Engine = Depends(_engine),
    admin: User = Depends(admin_user),
) -> JobTypeSaved:
    before = find_job_type(engine, kind, name)
    saved = rollback_job_type(engine, kind, name, body.version, admin.name, body.comment)
    return JobTypeSaved.of_save(before, saved)
