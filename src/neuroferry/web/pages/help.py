"""/help: the concepts, the states, and how to submit and follow jobs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from neuroferry.auth import User
from neuroferry.web.pages._render import optional_page_user, render

router = APIRouter()


@router.get("/help")
def help_page(request: Request, _me: User | None = Depends(optional_page_user)) -> Response:
    """The help page; anyone may read it, signed in or not."""
    return render(request, "help.html")
