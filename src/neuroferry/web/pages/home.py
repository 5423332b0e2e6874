"""/: the jobs list is the front page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from neuroferry.web.pages._render import redirect

router = APIRouter()


@router.get("/")
def home() -> Response:
    """Go to the jobs list."""
    return redirect("/jobs")
