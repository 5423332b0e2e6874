"""/projects (admins): every project with the facts uploads write into its assets' data
descriptions (institution, funding sources, investigators); set them, or add a project.

The facts are checked by :func:`check_project_facts`, as the API checks them, and a wrong
one is shown at its field."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from neuroferry.auth import User
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload import (
    PROJECT_FACTS,
    Project,
    add_project,
    check_project_facts,
    list_projects,
    set_project_facts,
)
from neuroferry.services import Services
from neuroferry.web._deps import services
from neuroferry.web.pages._render import admin_page_user, redirect, render

router = APIRouter()

#: Separates a funding source's funder, grant number and fundees on its line.
SEP = "|"
_FIELD = re.compile(r"^(name|institution|funding_source|investigators)\b")


def funding_text(sources: Any) -> str:
    """Funding sources as the form shows them: one per line,
    ``funder | grant number | fundee, fundee``."""
    lines = []
    for source in sources or []:
        parts = [str(source.get("funder") or ""), str(source.get("grant_number") or "")]
        parts.append(", ".join(source.get("fundee") or []))
        while len(parts) > 1 and not parts[-1]:
            parts.pop()
        lines.append(f" {SEP} ".join(parts))
    return "\n".join(lines)


def parse_funding(text: str) -> list[dict[str, Any]] | None:
    """The funding form field read back: one source a line (empty lines are skipped);
    None when there is none. A line with too many parts is refused, naming the line."""
    sources: list[dict[str, Any]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        parts = [p.strip() for p in line.split(SEP)]
        if len(parts) > 3:
            raise InvalidInput(
                f"funding_source[{len(sources)}]: {line!r} has {len(parts)} parts; give "
                f"'funder {SEP} grant number {SEP} fundee, fundee' (the last two optional)"
            )
        source: dict[str, Any] = {"funder": parts[0]}
        if len(parts) > 1 and parts[1]:
            source["grant_number"] = parts[1]
        if len(parts) > 2 and parts[2]:
            source["fundee"] = [n.strip() for n in parts[2].split(",") if n.strip()]
        sources.append(source)
    return sources or None


def parse_people(text: str) -> list[str] | None:
    """One name a line (empty lines are skipped); None when there is none."""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names or None


def _form_of(project: Project | None) -> dict[str, str]:
    facts = project.facts if project else {}
    return {
        "name": project.name if project else "",
        "institution": facts.get("institution") or "",
        "funding_source": funding_text(facts.get("funding_source")),
        "investigators": "\n".join(facts.get("investigators") or []),
    }


def _field_of(message: str) -> str:
    """The form field an error names (its message starts with the field's path)."""
    found = _FIELD.match(message)
    return found.group(1) if found else "form"


def _facts(institution: str, funding_source: str, investigators: str) -> dict[str, Any]:
    """The facts the form gives, checked; every fact is given (an empty one clears it)."""
    facts: dict[str, Any] = {
        "institution": institution.strip() or None,
        "funding_source": parse_funding(funding_source),
        "investigators": parse_people(investigators),
    }
    check_project_facts({k: v for k, v in facts.items() if v is not None})
    return facts


def _page(
    request: Request,
    held: Services,
    status: int = 200,
    *,
    editing: str | None = None,
    form: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    """The page; ``editing`` names the project whose form ``form`` refills with ``error``
    at its field (``""``: the form that adds a project)."""
    projects = list_projects(held.engine)
    forms = {p.name: _form_of(p) for p in projects}
    forms[""] = _form_of(None)
    errors: dict[str, dict[str, str]] = {}
    general = None
    if editing is not None and editing not in forms:
        general = error  # a project that is not (or no longer) listed
    elif editing is not None and form is not None:
        forms[editing] = form
        if error:
            errors[editing] = {_field_of(error): error}
    return render(
        request,
        "projects.html",
        status,
        projects=projects,
        forms=forms,
        errors=errors,
        general_error=general,
        facts=PROJECT_FACTS,
        sep=SEP,
        added=request.query_params.get("added"),
        saved=request.query_params.get("saved"),
    )


@router.get("/projects")
def projects_page(
    request: Request, held: Services = Depends(services), _admin: User = Depends(admin_page_user)
) -> Response:
    """Every project with its facts, a form per project to set them, and one to add."""
    return _page(request, held)


@router.post("/projects")
def projects_add(
    request: Request,
    name: str = Form(""),
    institution: str = Form(""),
    funding_source: str = Form(""),
    investigators: str = Form(""),
    held: Services = Depends(services),
    admin: User = Depends(admin_page_user),
) -> Response:
    """Add a project with the facts given (checked before the project is added)."""
    form = {
        "name": name,
        "institution": institution,
        "funding_source": funding_source,
        "investigators": investigators,
    }
    try:
        facts = _facts(institution, funding_source, investigators)
        project = add_project(held.engine, name, admin.name)
        if any(v is not None for v in facts.values()):
            set_project_facts(held.engine, project.name, facts)
    except InvalidInput as exc:
        return _page(request, held, 422, editing="", form=form, error=str(exc))
    return redirect(f"/projects?added={quote(project.name, safe='')}")


@router.post("/projects/facts")
def projects_set_facts(
    request: Request,
    name: str = Form(""),
    institution: str = Form(""),
    funding_source: str = Form(""),
    investigators: str = Form(""),
    held: Services = Depends(services),
    _admin: User = Depends(admin_page_user),
) -> Response:
    """Set the facts of project ``name`` (the form gives all three; empty clears one);
    an unknown project is a 404 naming the known ones."""
    form = {
        "name": name,
        "institution": institution,
        "funding_source": funding_source,
        "investigators": investigators,
    }
    try:
        set_project_facts(held.engine, name, _facts(institution, funding_source, investigators))
    except InvalidInput as exc:
        return _page(request, held, 422, editing=name, form=form, error=str(exc))
    return redirect(f"/projects?saved={quote(name, safe='')}")
