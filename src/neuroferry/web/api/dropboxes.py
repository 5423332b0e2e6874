"""/api/v2/dropboxes: drop-boxes (an analysis published at a store location) and their
user groups; admins publish them and add groups, users list those of their groups."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from neuroferry.auth import User
from neuroferry.dropbox import (
    Bypass,
    Dropbox,
    GroupFiles,
    Limits,
    add_group,
    delete_group_file,
    get_dropbox,
    group_files,
    group_policy,
    list_dropboxes,
    list_group_files,
    presign_group_file,
    publish_dropbox,
    read_group_file,
    remove_group_bypass,
    set_group_bypass,
    set_group_limits,
    write_group_file,
)
from neuroferry.errors import NotFound
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services

router = APIRouter(prefix="/dropboxes", tags=["drop-boxes"])


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_running: int | None = Field(None, ge=1, le=10**9, description="datasets at once")
    max_minutes: int | None = Field(None, ge=1, le=10**9, description="minutes per dataset")
    max_per_day: int | None = Field(None, ge=1, le=10**9, description="datasets per 24 h")

    def limits(self) -> Limits:
        return Limits(self.max_running, self.max_minutes, self.max_per_day)


class GroupOut(BaseModel):
    name: str
    members: list[str]
    limits: dict[str, int | None] = Field(description="none: no limit")
    bypass: str | None = Field(
        None, description="storage bypass: endpoint, and the group's key or unsigned; none: off"
    )


class DropboxOut(BaseModel):
    name: str = Field(description="what job folders are named by: job__{name}_{timestamp}")
    analysis: str
    store: str = Field(description="the store URL of the drop-box's folders")
    published_by: str | None
    created: datetime
    groups: list[GroupOut] = Field(description="admins: every group; users: their own")

    @classmethod
    def of(cls, box: Dropbox) -> DropboxOut:
        return cls.model_validate(box.as_dict())


class DropboxList(BaseModel):
    dropboxes: list[DropboxOut]


class NewDropbox(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=128)
    analysis: str = Field(max_length=128)
    store: str = Field(max_length=2048, description="a store URL or an absolute folder")


class NewGroup(LimitsIn):
    name: str = Field(max_length=128)
    members: list[str] = Field(default_factory=list, max_length=1000)


@router.get("", response_model=DropboxList, summary="Drop-boxes (users: of their groups)")
def list_all(held: Services = Depends(services), user: User = Depends(current_user)) -> DropboxList:
    return DropboxList(dropboxes=[DropboxOut.of(b) for b in list_dropboxes(held.engine, user)])


@router.get("/{name}", response_model=DropboxOut, summary="One drop-box")
def get(
    name: str, held: Services = Depends(services), user: User = Depends(current_user)
) -> DropboxOut:
    mine = {b.name: b for b in list_dropboxes(held.engine, user)}
    if name not in mine:  # users learn nothing of drop-boxes they are not in
        raise NotFound(f"no drop-box is named {name!r} for you; `ferry dropbox list`")
    return DropboxOut.of(mine[name])


@router.post("", response_model=DropboxOut, status_code=201, summary="Publish an analysis (admins)")
def publish(
    body: NewDropbox, held: Services = Depends(services), admin: User = Depends(admin_user)
) -> DropboxOut:
    box = publish_dropbox(held.engine, held.settings, admin, body.name, body.analysis, body.store)
    return DropboxOut.of(box)


@router.post(
    "/{name}/groups",
    response_model=DropboxOut,
    status_code=201,
    summary="Add a user group and make its folders (admins)",
)
def add(
    name: str,
    body: NewGroup,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> DropboxOut:
    get_dropbox(held.engine, name)
    return DropboxOut.of(
        add_group(held.engine, held.settings, admin, body.name, name, body.members, body.limits())
    )


@router.put(
    "/{name}/groups/{group}/limits",
    response_model=DropboxOut,
    summary="Replace a group's limits (admins)",
)
def limits(
    name: str,
    group: str,
    body: LimitsIn,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> DropboxOut:
    return DropboxOut.of(set_group_limits(held.engine, admin, name, group, body.limits()))


@router.get(
    "/{name}/groups/{group}/policy",
    summary="The S3 policy for keys scoped to one group's folder (admins)",
)
def policy(
    name: str,
    group: str,
    held: Services = Depends(services),
    _admin: User = Depends(admin_user),
) -> dict[str, Any]:
    return group_policy(get_dropbox(held.engine, name), group)


class BypassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None, max_length=2048, description="the S3 endpoint of the group's buckets; none: AWS"
    )
    region: str | None = Field(None, max_length=64, description="default us-east-1")
    access_key_id: str | None = Field(
        None, max_length=256, description="the group's own key; none: unsigned requests"
    )
    secret_access_key: SecretStr | None = Field(
        None, description="stored encrypted; never shown again"
    )
    allow_service_buckets: bool = Field(
        False, description="let the group's URLs name this service's own buckets"
    )


class BypassOut(BaseModel):
    endpoint: str | None
    region: str | None
    access_key_id: str | None
    signed: bool = Field(description="whether requests are signed with the group's key")
    allow_service_buckets: bool


@router.put(
    "/{name}/groups/{group}/bypass",
    response_model=BypassOut,
    summary="Register how a group's storage bypass reaches other buckets (admins)",
)
def set_bypass(
    name: str,
    group: str,
    body: BypassIn,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> BypassOut:
    secret = body.secret_access_key.get_secret_value() if body.secret_access_key else None
    given = Bypass(
        body.endpoint, body.region, body.access_key_id, secret, body.allow_service_buckets
    )
    made = set_group_bypass(held.engine, held.settings, admin, name, group, given)
    return BypassOut.model_validate(made.as_dict())


@router.delete(
    "/{name}/groups/{group}/bypass",
    status_code=204,
    summary="Turn a group's storage bypass off (admins)",
    response_class=Response,
)
def remove_bypass(
    name: str,
    group: str,
    held: Services = Depends(services),
    admin: User = Depends(admin_user),
) -> Response:
    remove_group_bypass(held.engine, admin, name, group)
    return Response(status_code=204)


def member_files(
    name: str,
    group: str | None = Query(
        None, max_length=128, description="Your group (default: your only one)."
    ),
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> GroupFiles:
    """The folder of the caller's group in drop-box ``name`` (the files routes' access)."""
    return group_files(held.engine, held.settings, user, name, group)


class FileOut(BaseModel):
    path: str = Field(description="relative to the group's folder, e.g. results/job__…")
    size: int


class FileList(BaseModel):
    group: str
    files: list[FileOut]


@router.get("/{name}/files", response_model=FileList, summary="List your group's files")
def list_files(
    prefix: str = Query("", max_length=1024, description="e.g. results/ or inputs/"),
    files: GroupFiles = Depends(member_files),
) -> FileList:
    listed = [FileOut.model_validate(f) for f in list_group_files(files, prefix)]
    return FileList(group=files.group, files=listed)


@router.get(
    "/{name}/files/{path:path}",
    summary="Download a file of your group's configs/ or results/",
    response_class=Response,
)
def download(path: str, files: GroupFiles = Depends(member_files)) -> Response:
    return Response(read_group_file(files, path), media_type="application/octet-stream")


@router.put(
    "/{name}/files/{path:path}",
    status_code=204,
    summary="Upload a file to your group's inputs/, configs/ or submissions/",
    response_class=Response,
)
async def upload(
    request: Request, path: str, files: GroupFiles = Depends(member_files)
) -> Response:
    data = await request.body()
    await asyncio.to_thread(write_group_file, files, path, data)
    return Response(status_code=204)


@router.delete(
    "/{name}/files/{path:path}",
    status_code=204,
    summary="Delete a file of your group's folder",
    response_class=Response,
)
def delete(path: str, files: GroupFiles = Depends(member_files)) -> Response:
    delete_group_file(files, path)
    return Response(status_code=204)


class PresignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=4096, description="relative to your group's folder")
    method: Literal["GET", "PUT"] = Field(
        description="PUT: inputs/, configs/, submissions/; GET: configs/, results/"
    )
    group: str | None = Field(None, max_length=128, description="default: your only group")
    expires_in: int | None = Field(
        None, ge=1, description="seconds (default and most: the service's presign_seconds)"
    )


class PresignOut(BaseModel):
    url: str = Field(description="use it with plain HTTP, without credentials")
    expires: datetime


@router.post(
    "/{name}/presign",
    response_model=PresignOut,
    summary="A presigned URL to upload or download a file of your group's folder directly",
)
def presign(
    name: str,
    body: PresignIn,
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> PresignOut:
    files = group_files(held.engine, held.settings, user, name, body.group)
    url, expires = presign_group_file(files, body.path, body.method, body.expires_in, held.settings)
    return PresignOut(url=url, expires=expires)
