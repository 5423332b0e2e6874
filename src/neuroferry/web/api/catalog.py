"""/api/v2/catalog: find, count and distinct over JSON documents; admins write.

Users read only the documents they own (the assets their jobs registered); admins read
every document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, status
from pydantic import BaseModel, Field

from neuroferry.auth import User, get_user
from neuroferry.catalog import Catalog, Owner
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services
from neuroferry.web._limits import until_disconnected

router = APIRouter(prefix="/catalog", tags=["catalog"])
MAX_LIMIT = 10_000


class FindRequest(BaseModel):
    filter: dict[str, Any] = Field(
        default_factory=dict, examples=[{"subject.subject_id": "774659"}]
    )
    projection: dict[str, Any] | None = None
    sort: list[tuple[str, int]] | dict[str, int] | None = None
    skip: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


class FindResponse(BaseModel):
    documents: list[dict[str, Any]]
    skip: int
    limit: int


class CountRequest(BaseModel):
    filter: dict[str, Any] = Field(default_factory=dict)


class DistinctRequest(BaseModel):
    field: str
    filter: dict[str, Any] = Field(default_factory=dict)


class WriteResponse(BaseModel):
    inserted: int
    updated: int
    ids: list[str]


def _catalog(held: Services = Depends(services)) -> Catalog:
    return held.catalog


@router.post("/find", response_model=FindResponse, summary="Documents matching a filter")
async def find(
    req: FindRequest,
    request: Request,
    catalog: Catalog = Depends(_catalog),
    user: User = Depends(current_user),
) -> FindResponse:
    docs = await until_disconnected(
        request,
        catalog.engine,
        lambda: catalog.find(
            req.filter, req.projection, req.sort, req.skip, req.limit, viewer=user
        ),
    )
    return FindResponse(documents=docs, skip=req.skip, limit=req.limit)


@router.post("/count", summary="How many documents match a filter")
async def count(
    req: CountRequest,
    request: Request,
    catalog: Catalog = Depends(_catalog),
    user: User = Depends(current_user),
) -> dict[str, int]:
    found = await until_disconnected(
        request, catalog.engine, lambda: catalog.count(req.filter, viewer=user)
    )
    return {"count": found}


@router.post("/distinct", summary="Distinct values of a field among matching documents")
async def distinct(
    req: DistinctRequest,
    request: Request,
    catalog: Catalog = Depends(_catalog),
    user: User = Depends(current_user),
) -> dict[str, list[Any]]:
    values = await until_disconnected(
        request, catalog.engine, lambda: catalog.distinct(req.field, req.filter, viewer=user)
    )
    return {"values": values}


@router.get("/indexes", summary="The declared index paths")
def list_indexes(
    catalog: Catalog = Depends(_catalog), _user: User = Depends(current_user)
) -> dict[str, list[dict[str, Any]]]:
    return {"indexes": catalog.indexes()}


@router.put("/indexes/{path}", summary="Declare an index on a dotted path (admins)")
def create_index(
    path: str, catalog: Catalog = Depends(_catalog), admin: User = Depends(admin_user)
) -> dict[str, Any]:
    return {"path": path, "created": catalog.create_index(path, admin.name)}


@router.delete(
    "/indexes/{path}", status_code=status.HTTP_204_NO_CONTENT, summary="Drop an index (admins)"
)
def drop_index(
    path: str, catalog: Catalog = Depends(_catalog), _admin: User = Depends(admin_user)
) -> None:
    catalog.drop_index(path)


@router.get("/{doc_id}", summary="One document by _id")
def get(
    doc_id: str, catalog: Catalog = Depends(_catalog), user: User = Depends(current_user)
) -> dict[str, Any]:
    return catalog.get(doc_id, viewer=user)


@router.put(
    "",
    response_model=WriteResponse,
    summary="Insert documents, or replace those with the same name (admins)",
)
def upsert(
    docs: list[dict[str, Any]] = Body(..., max_length=MAX_LIMIT),
    owner: str | None = Query(
        None,
        description="The user whose documents new ones become (and replaced ones without "
        "an owner); without it they have no owner, and only admins see them",
    ),
    catalog: Catalog = Depends(_catalog),
    held: Services = Depends(services),
    _admin: User = Depends(admin_user),
) -> WriteResponse:
    # written with an admin's powers (anyone's document may be replaced) on behalf of owner
    on_behalf = None if owner is None else Owner(get_user(held.engine, owner).id, is_admin=True)
    report, ids = catalog.upsert_many(docs, on_behalf)
    return WriteResponse(inserted=report.inserted, updated=report.updated, ids=ids)


@router.delete("/{doc_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete (admins)")
def remove(
    doc_id: str, catalog: Catalog = Depends(_catalog), _admin: User = Depends(admin_user)
) -> None:
    catalog.delete(doc_id)
