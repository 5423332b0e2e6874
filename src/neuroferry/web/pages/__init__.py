"""Server-rendered pages (Jinja2, plain JavaScript) over the same services as the API.

Each page module has a ``router``; ``router`` here holds them all. Pages render with
:func:`render`, take the signed-in user from :func:`page_user` (or
:func:`admin_page_user`), and are left out of the OpenAPI schema.
"""

from fastapi import APIRouter

from neuroferry.web.pages import (
    analyses,
    catalog,
    dropboxes,
    help,
    home,
    job,
    job_types,
    jobs,
    projects,
    sign_in,
    submit,
    tokens,
    users,
)
from neuroferry.web.pages._format import (
    elapsed,
    format_ago,
    format_bytes,
    format_duration,
    format_time,
    state_badge,
    state_class,
    time_tag,
)
from neuroferry.web.pages._render import (
    STATIC,
    Pager,
    admin_page_user,
    identify,
    local_path,
    optional_page_user,
    page_user,
    pager,
    redirect,
    render,
    sign_in_url,
    url_with,
)

router = APIRouter(include_in_schema=False)
router.include_router(home.router)
router.include_router(sign_in.router)
router.include_router(tokens.router)
router.include_router(users.router)
router.include_router(projects.router)
router.include_router(jobs.router)
router.include_router(job.router)
router.include_router(submit.router)
router.include_router(job_types.router)
router.include_router(catalog.router)
router.include_router(analyses.router)
router.include_router(dropboxes.router)
router.include_router(help.router)

__all__ = [
    "STATIC",
    "Pager",
    "admin_page_user",
    "elapsed",
    "format_ago",
    "format_bytes",
    "format_duration",
    "format_time",
    "identify",
    "local_path",
    "optional_page_user",
    "page_user",
    "pager",
    "redirect",
    "render",
    "router",
    "sign_in_url",
    "state_badge",
    "state_class",
    "time_tag",
    "url_with",
]
