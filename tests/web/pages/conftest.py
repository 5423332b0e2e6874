"""Browser tests of the pages: one real ``ferry serve`` and one headless chromium shared by
every test of the session.

* ``portal``: the service, with the users ``admin`` (an admin), ``alice`` and ``bob``
  (users), created with known passwords and API tokens before it started.
  ``portal.api(method, path, who="admin", **kw)`` calls the REST API with that user's
  token; ``portal.accounts[name]`` has ``password`` and ``token``.
* ``browser``: Playwright's chromium (Debian's ``/usr/bin/chromium``).
* ``page_as(name)``: a new page (tab) signed in as that user. The first call per user
  signs in through the form; later ones reuse that sign-in, so a test must not sign it
  out: one that signs out or revokes sessions signs in itself, on ``new_page()``, with
  ``sign_in(page, name)``.
* ``shot(page, name)``: with ``FERRY_SCREENSHOTS`` set, saves a full-page PNG
  ``{FERRY_SCREENSHOTS}/{name}.png``, so that
  ``FERRY_SCREENSHOTS=docs/screenshots pytest tests/web/pages`` refreshes the guide's
  images; otherwise does nothing.

A module that needs a service of its own (other settings) overrides ``portal``,
``sign_in`` and ``_signed_in`` with module-scoped fixtures made with :func:`start_portal`
and :func:`form_sign_in`.

Without playwright or chromium the tests skip, saying why; with ``CI=true`` they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _service import Service, running_service
from conftest import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A laptop screen.
VIEWPORT = {"width": 1280, "height": 800}
#: Milliseconds a page action or navigation may take before the test fails.
TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password: str
    token: str


@dataclass
class Portal:
    """A running ``ferry serve`` with known users."""

    url: str
    home: Path
    service: Service
    accounts: dict[str, Account]

    def api(self, method: str, path: str, who: str | None = "admin", **kw: Any) -> httpx.Response:
        """Call ``/api/v2{path}`` with ``who``'s API token (None: without one)."""
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.accounts[who].token}"
        return httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kw)


ACCOUNTS = {"admin": "admin", "alice": "user", "bob": "user"}


@contextlib.contextmanager
def start_portal(home: Path, base_temp: Path, **extra: str) -> Iterator[Portal]:
    """``ferry serve`` on ``home`` (with its orchestrator and one Dask worker) and the
    known users; ``extra``: more environment for the service."""
    from neuroferry.auth import create_token, create_user
    from neuroferry.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{home / 'ferry.db'}")
    upgrade(engine)
    accounts = {}
    for name, role in ACCOUNTS.items():
        password = f"{name}-secret-pw"
        user = create_user(engine, name, role, f"{name}@lab.example.org", password)
        accounts[name] = Account(name, role, password, create_token(engine, user, "tests"))
    engine.dispose()
    env = {
        "FERRY_ORCHESTRATOR_POLL": "0.1",
        "FERRY_DROPBOX_POLL": "0.2",
        "FERRY_DASK_WORKERS": "1",
        "FERRY_DASK_THREADS_PER_WORKER": "2",
        # the tests' sessions lie in their tmp_path folders: every user may read them
        "FERRY_SOURCE_ROOTS": json.dumps([str(base_temp)]),
        **extra,
    }
    with running_service(home, **env) as service:
        yield Portal(service.url, home, service, accounts)


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """``ferry serve`` (with its orchestrator and one Dask worker) for the whole session."""
    home = tmp_path_factory.mktemp("portal-home")
    with start_portal(home, tmp_path_factory.getbasetemp()) as started:
        yield started


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium, driven by Playwright's sync API."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any, portal: Portal) -> Iterator[Callable[..., Any]]:
    """``new_page(storage_state=None)``: a page in a new browser context (its own
    cookies) on the portal, with a laptop's viewport; closed after the test."""
    contexts: list[Any] = []

    def make(storage_state: Any = None) -> Any:
        context = browser.new_context(
            base_url=portal.url, viewport=VIEWPORT, storage_state=storage_state
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()  # closing twice is harmless


def form_sign_in(portal: Portal) -> Callable[..., Any]:
    """``sign_in(page, name, password=None)`` on ``portal``: sign in through the form
    (landing on the help page) and return the page."""

    def go(page: Any, name: str, password: str | None = None) -> Any:
        page.goto("/sign-in?next=/help")
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password", exact=True).fill(password or portal.accounts[name].password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url("**/help")
        return page

    return go


@pytest.fixture(scope="session")
def sign_in(portal: Portal) -> Callable[..., Any]:
    """``sign_in(page, name, password=None)``: sign in through the form (landing on the
    help page) and return the page."""
    return form_sign_in(portal)


@pytest.fixture(scope="session")
def _signed_in() -> dict[str, Any]:
    return {}


@pytest.fixture
def page_as(
    new_page: Callable[..., Any], sign_in: Callable[..., Any], _signed_in: dict[str, Any]
) -> Callable[[str], Any]:
    """``page_as(name)``: a new, blank page signed in as ``name`` (one sign-in per user
    and session: do not sign it out); ``page.goto("/tokens")`` and so on."""

    def make(name: str) -> Any:
        if name not in _signed_in:
            first = sign_in(new_page(), name)
            _signed_in[name] = first.context.storage_state()
            first.context.close()
        return new_page(_signed_in[name])

    return make


@pytest.fixture(scope="session")
def shot() -> Callable[[Any, str], Path | None]:
    """``shot(page, name)``: a full-page screenshot in ``$FERRY_SCREENSHOTS/{name}.png``
    when that variable is set; the path, or None."""
    folder = os.environ.get("FERRY_SCREENSHOTS")
    target = Path(folder).resolve() if folder else None

    def take(page: Any, name: str) -> Path | None:
        if target is None:
            return None
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
