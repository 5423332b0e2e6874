"""Python client of the REST API; the CLI talks to the service through it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from neuroferry.config import Settings, get_settings
from neuroferry.errors import (
    FerryError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)

_BY_STATUS: dict[int, type[FerryError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: InvalidInput,
    422: InvalidInput,
}


def _token_file(path: Path) -> str | None:
    try:
        token = json.loads(path.read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


def find_token(explicit: str | None = None, settings: Settings | None = None) -> str | None:
    """The API token: ``explicit`` (``--token``), then ``FERRY_TOKEN``, then ``token.json``
    in the working directory, then ``token.json`` in FERRY_HOME (the user's own)."""
    if explicit:
        return explicit
    if env := os.environ.get("FERRY_TOKEN"):
        return env
    home = (settings or get_settings()).home
    return _token_file(Path.cwd() / "token.json") or _token_file(home / "token.json")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):  # request validation: one line per field
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ())[1:]) or 'request'}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)


class Client:
    """The REST API of one service (``FERRY_URL``) with one user's token."""

    def __init__(
        self, url: str | None = None, token: str | None = None, settings: Settings | None = None
    ) -> None:
        settings = settings or get_settings()
        self.url = (url or settings.url).rstrip("/")
        self.token = find_token(token, settings)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API; errors come back as neuroferry errors with the service's message."""
        try:
            response = self._http.request(method, f"/api/v2{path}", json=body)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the neuroferry service at {self.url} ({type(exc).__name__}): "
                "is `ferry serve` running there? Set FERRY_URL to point elsewhere"
            ) from exc
        if response.status_code >= 400:
            kind = _BY_STATUS.get(response.status_code, FerryError)
            raise kind(f"{_detail(response)} (HTTP {response.status_code})")
        return response.json() if response.content else None

    # catalog ----------------------------------------------------------------------------

    def catalog_find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        sort: Sequence[tuple[str, int]] | Mapping[str, int] | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        body = {
            "filter": dict(filter or {}),
            "projection": projection,
            "sort": sort,
            "skip": skip,
            "limit": limit,
        }
        docs: list[dict[str, Any]] = self.request("POST", "/catalog/find", body)["documents"]
        return docs

    def catalog_count(self, filter: Mapping[str, Any] | None = None) -> int:
        return int(self.request("POST", "/catalog/count", {"filter": dict(filter or {})})["count"])

    def catalog_get(self, doc_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.request("GET", f"/catalog/{quote(doc_id, safe='')}")
        return doc

    def catalog_upsert(self, docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", "/catalog", list(docs))
        return result

    def catalog_indexes(self) -> list[dict[str, Any]]:
        indexes: list[dict[str, Any]] = self.request("GET", "/catalog/indexes")["indexes"]
        return indexes

    def catalog_create_index(self, path: str) -> bool:
        return bool(self.request("PUT", f"/catalog/indexes/{quote(path, safe='')}")["created"])

    def catalog_drop_index(self, path: str) -> None:
        self.request("DELETE", f"/catalog/indexes/{quote(path, safe='')}")

    # -- jobs (submit, list, show, logs, cancel, retry) ------------------------------

    # -- job types, projects, modalities and platforms ---------------------------------

    # -- accounts (users and tokens) ----------------------------------------------------

    def close(self) -> None:
        self._http.close()
