"""/api/v2/projects, /api/v2/modalities and /api/v2/platforms: the names uploads may
give; admins change the lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from neuroferry.auth import User
from neuroferry.pipelines.upload import (
    PROJECT_FACTS,
    Project,
    VocabList,
    VocabTerm,
    add_project,
    check_project_facts,
    delete_project,
    delete_term,
    list_projects,
    list_terms,
    put_term,
    set_project_facts,
)
from neuroferry.services import Services
from neuroferry.web._deps import admin_user, current_user, services

router = APIRouter(tags=["lists"])


def _engine(held: Services = Depends(services)) -> Engine:
    return held.engine


# -- projects ---------------------------------------------------------------------------


class ProjectFacts(BaseModel):
    """What uploads write into the data descriptions of the project's assets (checked
    against aind-data-schema's organizations); null clears a fact."""

    model_config = ConfigDict(extra="forbid")

    institution: str | None = Field(
        None, description="an organization's name or abbreviation", examples=["AIND"]
    )
    funding_source: list[dict[str, Any]] | None = Field(
        None,
        description="[{funder, grant_number, fundee: [names]}], funder an organization",
        examples=[[{"funder": "AIND", "grant_number": None, "fundee": ["Jane Doe"]}]],
    )
    investigators: list[str] | None = Field(None, examples=[["Jane Doe"]])


class ProjectOut(BaseModel):
    name: str
    created: datetime
    created_by: str | None
    institution: str | None = None
    funding_source: list[dict[str, Any]] | None = None
    investigators: list[str] | None = None

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            name=project.name,
            created=project.created,
            created_by=project.created_by,
            **{k: project.facts.get(k) for k in PROJECT_FACTS},
        )


class ProjectList(BaseModel):
    projects: list[ProjectOut] = Field(description="none: any project name is allowed")


class NewProject(ProjectFacts):
    name: str = Field(min_length=1, max_length=256, examples=["Ephys Platform"])


@router.get("/projects", response_model=ProjectList, summary="Project names uploads may give")
def projects(engine: Engine = Depends(_engine), _user: User = Depends(current_user)) -> ProjectList:
    return ProjectList(projects=[ProjectOut.of(p) for p in list_projects(engine)])


@router.post(
    "/projects",
    response_model=ProjectOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a project name (admins)",
)
def new_project(
    body: NewProject, engine: Engine = Depends(_engine), admin: User = Depends(admin_user)
) -> ProjectOut:
    facts = body.model_dump(include=set(PROJECT_FACTS), exclude_none=True)
    if facts:
        check_project_facts(facts)  # refused before the project is added
    project = add_project(engine, body.name, admin.name)
    if facts:
        project = set_project_facts(engine, project.name, facts)
    return ProjectOut.of(project)


@router.put("/projects/{name}", response_model=ProjectOut, summary="Set a project's facts (admins)")
def put_project_facts(
    name: str,
    body: ProjectFacts,
    engine: Engine = Depends(_engine),
    _admin: User = Depends(admin_user),
) -> ProjectOut:
    """Set the facts given in the body (the others are kept; null clears one)."""
    return ProjectOut.of(
        set_project_facts(engine, name, body.model_dump(include=body.model_fields_set))
    )


@router.delete(
    "/projects/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a project name (admins)",
)
def remove_project(
    name: str, engine: Engine = Depends(_engine), _admin: User = Depends(admin_user)
) -> None:
    delete_project(engine, name)


# -- modalities and platforms -------------------------------------------------------------


class TermOut(BaseModel):
    abbreviation: str
    name: str
    legacy_names: list[str] = Field(description="older names that still match this term")
    created_by: str | None

    @classmethod
    def of(cls, term: VocabTerm) -> TermOut:
        return cls(**term.as_dict())


class ModalityList(BaseModel):
    modalities: list[TermOut]


class PlatformList(BaseModel):
    platforms: list[TermOut]


class NewTerm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256, examples=["Extracellular electrophysiology"])
    legacy_names: list[str] = Field(default_factory=list, max_length=100)


def _term_routes(list_name: VocabList, path: str, listing: type[BaseModel]) -> None:
    """The four routes of one list: read it, and (admins) put and delete a term."""
    plural = path.strip("/")

    def read(engine: Engine = Depends(_engine), _user: User = Depends(current_user)) -> BaseModel:
        return listing(**{plural: [TermOut.of(t) for t in list_terms(engine, list_name)]})

    def put(
        abbreviation: str,
        body: NewTerm,
        engine: Engine = Depends(_engine),
        admin: User = Depends(admin_user),
    ) -> TermOut:
        term = put_term(engine, list_name, abbreviation, body.name, admin.name, body.legacy_names)
        return TermOut.of(term)

    def remove(
        abbreviation: str, engine: Engine = Depends(_engine), _admin: User = Depends(admin_user)
    ) -> None:
        delete_term(engine, list_name, abbreviation)

    router.add_api_route(
        path,
        read,
        methods=["GET"],
        response_model=listing,
        summary=f"The {plural} uploads may name",
        name=f"list_{plural}",
    )
    router.add_api_route(
        f"{path}/{{abbreviation}}",
        put,
        methods=["PUT"],
        response_model=TermOut,
        summary=f"Add or rename a {list_name} (admins)",
        name=f"put_{list_name}",
    )
    router.add_api_route(
        f"{path}/{{abbreviation}}",
        remove,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Remove a {list_name} (admins)",
        name=f"delete_{list_name}",
    )


_term_routes("modality", "/modalities", ModalityList)
_term_routes("platform", "/platforms", PlatformList)
