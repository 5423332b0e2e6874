"""/api/v2/dropboxes: drop-boxes (an analysis published at a store location) and their
user groups; admins publish them and add groups, users list those of their groups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from neuroferry.auth import User
from neuroferry.dropbox import (
    Dropbox,
    add_group,
    get_dropbox,
    group_policy,
    list_dropboxes,
    publish_dropbox,
)
from neuroferry.errors import NotFound
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services

router = APIRouter(prefix="/dropboxes", tags=["drop-boxes"])


class GroupOut(BaseModel):
    name: str
    members: list[str]


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


class NewGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        add_group(held.engine, held.settings, admin, body.name, name, body.members)
    )


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
