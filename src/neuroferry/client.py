"""Python client of the REST API; the CLI talks to the service through it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from neuroferry.config import Settings, get_settings
from neuroferry.errors import (
    ConfigError,
    Conflict,
    FerryError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)


def _check_direct(response: httpx.Response, action: str, path: str) -> None:
    """A store's refusal of a presigned request as a neuroferry error."""
    if response.status_code < 300:
        return
    if not response.is_closed:
        response.read()
    kind = _BY_STATUS.get(response.status_code, FerryError)
    raise kind(
        f"the store refused to {action} {path} (HTTP {response.status_code}): {response.text[:300]}"
    )


_BY_STATUS: dict[int, type[FerryError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
}


#: Seconds a dispatch (or its preview) may take: it lists every asset's store.
DISPATCH_TIMEOUT = 600


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


SERVICE_URL_FILE = "service.url"
"""The file in FERRY_HOME where a running ``ferry serve`` leaves its address."""


def write_service_url(home: Path, url: str) -> Path | None:
    """Leave ``url`` and this process's id in ``{home}/service.url`` for ferry commands to
    find while the service runs; the file, or None if it cannot be written."""
    path = home / SERVICE_URL_FILE
    try:
        path.write_text(f"{url}\n{os.getpid()}\n", encoding="utf-8")
    except OSError:
        return None
    return path


def _running_service(path: Path) -> str | None:
    """The address in a ``service.url`` file, if the process that wrote it still runs and
    the address is a plain http(s) URL."""
    try:
        url, pid = path.read_text(encoding="utf-8").split()
        os.kill(int(pid), 0)  # the service that wrote it died (kill -9): its port is free
        parsed = httpx.URL(url)
    except (OSError, ValueError, httpx.InvalidURL):
        return None
    plain = parsed.scheme in ("http", "https") and parsed.host and not parsed.userinfo
    return url if plain and not parsed.query and parsed.path in ("", "/") else None


def remove_service_url(path: Path | None, url: str) -> None:
    """Remove the file :func:`write_service_url` wrote, unless another service's since."""
    if path is None:
        return
    try:
        if path.read_text(encoding="utf-8").split()[:1] == [url]:
            path.unlink()
    except OSError:
        pass


def service_url(settings: Settings) -> str:
    """The service's address: ``FERRY_URL`` if set, else that of a ``ferry serve``
    running with the same FERRY_HOME, else the default."""
    if "url" in settings.model_fields_set:
        return settings.url
    return _running_service(settings.home / SERVICE_URL_FILE) or settings.url


class Client:
    """The REST API of one service (``FERRY_URL``) with one user's token."""

    def __init__(
        self, url: str | None = None, token: str | None = None, settings: Settings | None = None
    ) -> None:
        settings = settings or get_settings()
        self.url = (url or service_url(settings)).rstrip("/")
        self.token = find_token(token, settings)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"FERRY_URL: {self.url} is not a usable address: {exc}") from None

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"cannot reach the neuroferry service at {self.url} ({type(exc).__name__}): "
            "is `ferry serve` running there? Set FERRY_URL to point elsewhere"
        )

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            kind = _BY_STATUS.get(response.status_code, FerryError)
            problems = None
            if kind is InvalidInput:
                try:
                    problems = response.json().get("problems")
                except (ValueError, AttributeError):
                    problems = None
                raise InvalidInput(f"{_detail(response)} (HTTP {response.status_code})", problems)
            raise kind(f"{_detail(response)} (HTTP {response.status_code})")
        return response

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the API and return the response; errors come back as neuroferry errors
        with the service's message (422 problems in ``InvalidInput.problems``)."""
        try:
            response = self._http.request(method, f"/api/v2{path}", **kwargs)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        except httpx.InvalidURL as exc:
            raise ConfigError(f"FERRY_URL: {self.url} is not a usable address: {exc}") from None
        return self._check(response)

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """Call the API with a JSON body; the JSON answer."""
        response = self.send(method, path, json=body, **kwargs)
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

    def catalog_upsert(
        self, docs: Sequence[Mapping[str, Any]], owner: str | None = None
    ) -> dict[str, Any]:
        params = {"owner": owner} if owner else None
        result: dict[str, Any] = self.request("PUT", "/catalog", list(docs), params=params)
        return result

    def catalog_indexes(self) -> list[dict[str, Any]]:
        indexes: list[dict[str, Any]] = self.request("GET", "/catalog/indexes")["indexes"]
        return indexes

    def catalog_create_index(self, path: str) -> bool:
        return bool(self.request("PUT", f"/catalog/indexes/{quote(path, safe='')}")["created"])

    def catalog_drop_index(self, path: str) -> None:
        self.request("DELETE", f"/catalog/indexes/{quote(path, safe='')}")

    # -- jobs (submit, list, show, logs, cancel, retry) ------------------------------

    def submit_jobs(self, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Submit a ``SubmitJobRequestV2`` body; the new jobs (id, name, url)."""
        jobs: list[dict[str, Any]] = self.request("POST", "/submit_jobs", request)["data"]["jobs"]
        return jobs

    def validate_jobs(self, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Check a ``SubmitJobRequestV2`` body; the jobs as they would run."""
        jobs: list[dict[str, Any]] = self.request("POST", "/validate_json", request)["data"]["jobs"]
        return jobs

    def validate_sheet(self, path: Path) -> list[dict[str, Any]]:
        """Check a CSV or XLSX job spreadsheet; the jobs with their row numbers."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
        response = self.send("POST", "/validate_csv", files={"file": (path.name, data)})
        jobs: list[dict[str, Any]] = response.json()["data"]["jobs"]
        return jobs

    def job_upload_template(self) -> bytes:
        """The service's .xlsx job spreadsheet template, with its lists."""
        return self.send("GET", "/job_upload_template").content

    def jobs(self, **filters: Any) -> dict[str, Any]:
        """One page of jobs: ``state``, ``kind``, ``job_type`` (lists), ``owner``, ``name``,
        ``submitted_after``, ``submitted_before``, ``sort``, ``limit``, ``offset``."""
        params = {k: v for k, v in filters.items() if v not in (None, [], ())}
        page: dict[str, Any] = self.request("GET", "/jobs", params=params)
        return page

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.request("GET", f"/jobs/{job_id}")
        return job

    def job_tasks(self, job_id: int) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.request("GET", f"/jobs/{job_id}/tasks")
        return tasks

    def job_log(
        self, job_id: int, task: str, map_index: int = -1, attempt: int | None = None
    ) -> str:
        params: dict[str, Any] = {"map_index": map_index}
        if attempt is not None:
            params["attempt"] = attempt
        parts: list[bytes] = []
        offset = 0
        while True:  # the service sends a long log in parts
            response = self.send(
                "GET",
                f"/jobs/{job_id}/tasks/{quote(task)}/logs",
                params={**params, "offset": offset},
            )
            parts.append(response.content)
            offset = int(response.headers.get("X-Next-Offset", offset + len(response.content)))
            size = int(response.headers.get("X-Log-Size", offset))
            if not response.content or offset >= size:
                return b"".join(parts).decode(errors="replace")

    def follow_job_log(self, job_id: int, task: str, map_index: int = -1) -> Iterator[str]:
        """A task's log as it grows, until the task ends."""
        path = f"/api/v2/jobs/{job_id}/tasks/{quote(task)}/logs"
        params: dict[str, Any] = {"map_index": map_index, "follow": "true"}
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.request("POST", f"/jobs/{job_id}/cancel")
        return job

    def retry_job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.request("POST", f"/jobs/{job_id}/retry")
        return job

    # -- job types, projects, modalities and platforms ---------------------------------

    def analyses_list(self) -> dict[str, Any]:
        """The analyses installed on the service (``analyses``) and, for admins, those
        that cannot be loaded (``broken``)."""
        found: dict[str, Any] = self.request("GET", "/analyses")
        return found

    def analyses_get(self, name: str) -> dict[str, Any]:
        """One analysis: code identity and the JSON schemas of its parameters and outputs."""
        found: dict[str, Any] = self.request("GET", f"/analyses/{quote(name, safe='')}")
        return found

    def analyses_register(
        self, name: str, definition: Mapping[str, Any], comment: str | None = None
    ) -> dict[str, Any]:
        """Register command analysis ``name`` or save a new version of it (admins): the
        version saved (``settings``: the definition; ``changed`` false when it was the
        current version's)."""
        saved: dict[str, Any] = self.request(
            "PUT", f"/analyses/{quote(name, safe='')}", {**definition, "comment": comment}
        )
        return saved

    def analyses_history(self, name: str) -> list[dict[str, Any]]:
        """Every version of a command analysis, oldest first."""
        path = f"/analyses/{quote(name, safe='')}/history"
        versions: list[dict[str, Any]] = self.request("GET", path)["versions"]
        return versions

    def analyses_rollback(
        self, name: str, version: int, comment: str | None = None
    ) -> dict[str, Any]:
        """Make ``version`` of a command analysis current again, as a new version (admins)."""
        saved: dict[str, Any] = self.request(
            "POST",
            f"/analyses/{quote(name, safe='')}/rollback",
            {"version": version, "comment": comment},
        )
        return saved

    def analyses_delete(self, name: str, comment: str | None = None) -> dict[str, Any]:
        """Delete a command analysis (admins): a new version marked deleted."""
        params = {"comment": comment} if comment else {}
        deleted: dict[str, Any] = self.request(
            "DELETE", f"/analyses/{quote(name, safe='')}", params=params
        )
        return deleted

    def analyses_preview(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """What a dispatch of ``name`` would run (``body``: the data, as one of ``query``,
        ``asset_ids``, ``locations``, and the parameters): the counts N x M = K, the
        first dispatch models, the assets without a matching file."""
        found: dict[str, Any] = self.request(
            "POST",
            f"/analyses/{quote(name, safe='')}/preview",
            dict(body),
            timeout=DISPATCH_TIMEOUT,
        )
        return found

    def analyses_dispatch(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The preview of :meth:`analyses_preview` and every dispatch model
        (``dispatch_models``), in order."""
        found: dict[str, Any] = self.request(
            "POST",
            f"/analyses/{quote(name, safe='')}/dispatch",
            dict(body),
            timeout=DISPATCH_TIMEOUT,
        )
        return found

    def analyses_submit(self, name: str, body: Mapping[str, Any]) -> int:
        """Submit an ``analysis`` job of ``name`` (``body``: the data and parameters as for
        :meth:`analyses_preview`, and ``models``, ``force``, ``results``, ``user_email``);
        the job's id."""
        found = self.request(
            "POST", f"/analyses/{quote(name, safe='')}/jobs", dict(body), timeout=DISPATCH_TIMEOUT
        )
        return int(found["job_id"])

    def analyses_results(self, job_id: int) -> list[dict[str, Any]]:
        """A line per task of an analysis job: ``state`` (computed, skipped, failed, or
        the task's state), ``identity``, ``record_id``, ``location``, ``error``."""
        lines: list[dict[str, Any]] = self.request("GET", f"/analyses/jobs/{job_id}/results")
        return lines

    def submit_kind(self, kind: str, spec: Mapping[str, Any]) -> int:
        """Submit one job of an installed ``kind`` by its spec; the job's id."""
        found = self.request("POST", f"/jobs/{quote(kind, safe='')}", dict(spec))
        return int(found["job_id"])

    def dropboxes_list(self) -> list[dict[str, Any]]:
        """The drop-boxes (users: those of their groups, with only those groups)."""
        found: list[dict[str, Any]] = self.request("GET", "/dropboxes")["dropboxes"]
        return found

    def dropboxes_publish(self, name: str, analysis: str, store: str) -> dict[str, Any]:
        """Publish ``analysis`` as the drop-box ``name`` at the store URL ``store`` (admins)."""
        made: dict[str, Any] = self.request(
            "POST", "/dropboxes", {"name": name, "analysis": analysis, "store": store}
        )
        return made

    def dropboxes_add_group(
        self,
        dropbox: str,
        group: str,
        members: Sequence[str] = (),
        limits: Mapping[str, int | None] | None = None,
    ) -> dict[str, Any]:
        """Add the user group ``group`` with its ``members`` and ``limits``
        (``max_running``, ``max_minutes``, ``max_per_day``) to ``dropbox`` (admins); its
        four folders are made in the drop-box's store."""
        made: dict[str, Any] = self.request(
            "POST",
            f"/dropboxes/{quote(dropbox, safe='')}/groups",
            {"name": group, "members": list(members), **(limits or {})},
        )
        return made

    def dropboxes_set_limits(
        self, dropbox: str, group: str, limits: Mapping[str, int | None]
    ) -> dict[str, Any]:
        """Replace a group's limits (admins); a limit left out is none."""
        path = f"/dropboxes/{quote(dropbox, safe='')}/groups/{quote(group, safe='')}/limits"
        made: dict[str, Any] = self.request("PUT", path, dict(limits))
        return made

    def dropboxes_policy(self, dropbox: str, group: str) -> dict[str, Any]:
        """The S3 policy for keys scoped to ``group``'s folder of ``dropbox`` (admins)."""
        found: dict[str, Any] = self.request(
            "GET",
            f"/dropboxes/{quote(dropbox, safe='')}/groups/{quote(group, safe='')}/policy",
        )
        return found

    def _bypass_path(self, dropbox: str, group: str) -> str:
        return f"/dropboxes/{quote(dropbox, safe='')}/groups/{quote(group, safe='')}/bypass"

    def dropboxes_set_bypass(
        self, dropbox: str, group: str, bypass: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Register how ``group`` reaches other buckets for storage bypass (admins):
        ``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
        ``allow_service_buckets``; the answer never holds the secret."""
        made: dict[str, Any] = self.request("PUT", self._bypass_path(dropbox, group), dict(bypass))
        return made

    def dropboxes_remove_bypass(self, dropbox: str, group: str) -> None:
        """Turn storage bypass off for ``group`` (admins)."""
        self.send("DELETE", self._bypass_path(dropbox, group))

    def dropbox_files(
        self, dropbox: str, prefix: str = "", group: str | None = None
    ) -> dict[str, Any]:
        """Your group's files under ``prefix`` (``{"group", "files": [{"path", "size"}]}``)."""
        params = {"prefix": prefix} | ({"group": group} if group else {})
        found: dict[str, Any] = self.request(
            "GET", f"/dropboxes/{quote(dropbox, safe='')}/files", params=params
        )
        return found

    def _dropbox_file(self, dropbox: str, path: str) -> str:
        return f"/dropboxes/{quote(dropbox, safe='')}/files/{quote(path, safe='/')}"

    def dropbox_get(self, dropbox: str, path: str, group: str | None = None) -> bytes:
        """A file of your group's ``configs/`` or ``results/``."""
        params = {"group": group} if group else {}
        return self.send("GET", self._dropbox_file(dropbox, path), params=params).content

    def dropbox_put(self, dropbox: str, path: str, data: bytes, group: str | None = None) -> None:
        """Write a file to your group's ``inputs/``, ``configs/`` or ``submissions/``."""
        params = {"group": group} if group else {}
        self.send(
            "PUT",
            self._dropbox_file(dropbox, path),
            content=data,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        )

    def dropbox_delete(self, dropbox: str, path: str, group: str | None = None) -> None:
        params = {"group": group} if group else {}
        self.send("DELETE", self._dropbox_file(dropbox, path), params=params)

    def dropbox_presign(
        self,
        dropbox: str,
        path: str,
        method: str,
        group: str | None = None,
        expires_in: int | None = None,
    ) -> dict[str, Any]:
        """A presigned URL (``{"url", "expires"}``) to ``method`` (``GET`` or ``PUT``) a
        file of your group's folder directly at an object-store drop-box."""
        body: dict[str, Any] = {"path": path, "method": method}
        if group:
            body["group"] = group
        if expires_in is not None:
            body["expires_in"] = expires_in
        found: dict[str, Any] = self.request(
            "POST", f"/dropboxes/{quote(dropbox, safe='')}/presign", body
        )
        return found

    def dropbox_upload_direct(
        self, dropbox: str, path: str, file: Path, group: str | None = None
    ) -> None:
        """Upload ``file`` to your group's ``path`` straight to the store, through a
        presigned URL (one request: at most 5 GiB)."""
        url = self.dropbox_presign(dropbox, path, "PUT", group)["url"]
        size = file.stat().st_size
        with file.open("rb") as data:
            chunks = iter(lambda: data.read(1 << 20), b"")
            try:
                response = httpx.put(
                    url,
                    content=chunks,
                    headers={"Content-Length": str(size)},
                    timeout=httpx.Timeout(60.0, read=None, write=None),
                )
            except httpx.TransportError as exc:
                raise ServiceUnavailable(f"cannot reach the store to upload {path}: {exc}") from exc
        _check_direct(response, "upload", path)

    def dropbox_download_direct(
        self, dropbox: str, path: str, target: Path, group: str | None = None
    ) -> None:
        """Download your group's file ``path`` straight from the store to ``target``,
        through a presigned URL."""
        url = self.dropbox_presign(dropbox, path, "GET", group)["url"]
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(60.0, read=None)) as response:
                _check_direct(response, "download", path)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach the store to download {path}: {exc}") from exc

    def job_types_list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The current version of every job type (of ``kind``, if given)."""
        params = {"kind": kind} if kind else {}
        found: list[dict[str, Any]] = self.request("GET", "/job_types", params=params)["job_types"]
        return found

    def job_types_get(
        self, name: str, version: int | None = None, kind: str = "upload"
    ) -> dict[str, Any]:
        """A job type: its current version, or the given ``version``."""
        params: dict[str, Any] = {"kind": kind}
        if version is not None:
            params["version"] = version
        found: dict[str, Any] = self.request(
            "GET", f"/job_types/{quote(name, safe='')}", params=params
        )
        return found

    def job_types_put(
        self,
        name: str,
        settings: Mapping[str, Any],
        comment: str | None = None,
        kind: str = "upload",
    ) -> dict[str, Any]:
        """Save ``settings`` as the next version (admins); ``changed`` is false when they
        were the current version's."""
        saved: dict[str, Any] = self.request(
            "PUT",
            f"/job_types/{quote(name, safe='')}",
            {"settings": dict(settings), "comment": comment},
            params={"kind": kind},
        )
        return saved

    def job_types_delete(
        self, name: str, comment: str | None = None, kind: str = "upload"
    ) -> dict[str, Any]:
        """Delete a job type (admins): a new version marked deleted."""
        params = {"kind": kind} | ({"comment": comment} if comment else {})
        deleted: dict[str, Any] = self.request(
            "DELETE", f"/job_types/{quote(name, safe='')}", params=params
        )
        return deleted

    def job_types_history(self, name: str, kind: str = "upload") -> list[dict[str, Any]]:
        """Every version of a job type, oldest first."""
        path = f"/job_types/{quote(name, safe='')}/history"
        versions: list[dict[str, Any]] = self.request("GET", path, params={"kind": kind})[
            "versions"
        ]
        return versions

    def job_types_diff(
        self,
        name: str,
        from_version: int | None = None,
        to_version: int | None = None,
        kind: str = "upload",
    ) -> dict[str, Any]:
        """The changes between two versions (default: the newest and the one before)."""
        params: dict[str, Any] = {"kind": kind}
        if from_version is not None:
            params["from"] = from_version
        if to_version is not None:
            params["to"] = to_version
        diff: dict[str, Any] = self.request(
            "GET", f"/job_types/{quote(name, safe='')}/diff", params=params
        )
        return diff

    def job_types_rollback(
        self, name: str, version: int, comment: str | None = None, kind: str = "upload"
    ) -> dict[str, Any]:
        """Make ``version``'s settings current again, as a new version (admins)."""
        saved: dict[str, Any] = self.request(
            "POST",
            f"/job_types/{quote(name, safe='')}/rollback",
            {"version": version, "comment": comment},
            params={"kind": kind},
        )
        return saved

    def projects_list(self) -> list[dict[str, Any]]:
        """The project names uploads may give (none: any name)."""
        found: list[dict[str, Any]] = self.request("GET", "/projects")["projects"]
        return found

    def projects_add(self, name: str) -> dict[str, Any]:
        """Add a project name (admins)."""
        added: dict[str, Any] = self.request("POST", "/projects", {"name": name})
        return added

    def projects_set(self, name: str, facts: Mapping[str, Any]) -> dict[str, Any]:
        """Set a project's facts (``institution``, ``funding_source``, ``investigators``;
        admins); the ones not given are kept."""
        found: dict[str, Any] = self.request("PUT", f"/projects/{quote(name, safe='')}", facts)
        return found

    def projects_remove(self, name: str) -> None:
        """Remove a project name (admins)."""
        self.request("DELETE", f"/projects/{quote(name, safe='')}")

    def modalities_list(self) -> list[dict[str, Any]]:
        """The modalities uploads may name."""
        found: list[dict[str, Any]] = self.request("GET", "/modalities")["modalities"]
        return found

    def modalities_put(
        self, abbreviation: str, name: str, legacy_names: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Add or rename a modality (admins)."""
        body = {"name": name, "legacy_names": list(legacy_names)}
        term: dict[str, Any] = self.request(
            "PUT", f"/modalities/{quote(abbreviation, safe='')}", body
        )
        return term

    def modalities_delete(self, abbreviation: str) -> None:
        """Remove a modality (admins)."""
        self.request("DELETE", f"/modalities/{quote(abbreviation, safe='')}")

    def platforms_list(self) -> list[dict[str, Any]]:
        """The platforms uploads may name."""
        found: list[dict[str, Any]] = self.request("GET", "/platforms")["platforms"]
        return found

    def platforms_put(
        self, abbreviation: str, name: str, legacy_names: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Add or rename a platform (admins)."""
        body = {"name": name, "legacy_names": list(legacy_names)}
        term: dict[str, Any] = self.request(
            "PUT", f"/platforms/{quote(abbreviation, safe='')}", body
        )
        return term

    def platforms_delete(self, abbreviation: str) -> None:
        """Remove a platform (admins)."""
        self.request("DELETE", f"/platforms/{quote(abbreviation, safe='')}")

    # -- accounts (users and tokens) ----------------------------------------------------

    def users_list(self) -> list[dict[str, Any]]:
        """Every user (admins)."""
        found: list[dict[str, Any]] = self.request("GET", "/users")
        return found

    def users_add(
        self, name: str, email: str | None = None, role: str = "user", password: str | None = None
    ) -> dict[str, Any]:
        """Add a user (admins), with a password for the web pages if one is given."""
        body = {"name": name, "email": email, "role": role}
        if password is not None:
            body["password"] = password
        user: dict[str, Any] = self.request("POST", "/users", body)
        return user

    def users_passwd(self, name: str, password: str, current: str | None = None) -> None:
        """Set a password: your own (with your ``current`` one, if set) or (admins) anyone's."""
        body = {"password": password, "current_password": current}
        self.request("PUT", f"/users/{quote(name, safe='')}/password", body)

    def users_remove(self, name: str) -> None:
        """Remove a user and their tokens (admins)."""
        self.request("DELETE", f"/users/{quote(name, safe='')}")

    def users_me(self) -> dict[str, Any]:
        """The user behind this client's token."""
        me: dict[str, Any] = self.request("GET", "/users/me")
        return me

    def tokens_list(self, user: str | None = None) -> list[dict[str, Any]]:
        """Your tokens, or (admins) ``user``'s; never the secrets."""
        query = f"?user={quote(user, safe='')}" if user else ""
        found: list[dict[str, Any]] = self.request("GET", f"/tokens{query}")
        return found

    def tokens_create(
        self, label: str = "", expires_in_days: int | None = None, user: str | None = None
    ) -> dict[str, Any]:
        """A new token for yourself, or (admins) for ``user``; its ``token`` is shown once."""
        body = {"label": label, "expires_in_days": expires_in_days}
        path = f"/users/{quote(user, safe='')}/tokens" if user else "/tokens"
        made: dict[str, Any] = self.request("POST", path, body)
        return made

    def tokens_revoke(self, token_id: int) -> None:
        """Revoke a token: your own, or (admins) anyone's."""
        self.request("DELETE", f"/tokens/{int(token_id)}")

    # -- ingest (image stacks to OME-Zarr) ----------------------------------------------

    def ingest_create(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Submit an ingest config (or a Boss ingest client config); the new job's id,
        name, volume URL and status URL."""
        created: dict[str, Any] = self.request("POST", "/ingest", dict(config))
        return created

    def ingest_status(self, job_id: int) -> dict[str, Any]:
        """An ingest job's progress: shards and chunks per level, bytes, rates, errors."""
        found: dict[str, Any] = self.request("GET", f"/ingest/{int(job_id)}")
        return found

    def ingest_cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel an ingest job (or clean up a stopped one): the job and what was removed."""
        done: dict[str, Any] = self.request("POST", f"/ingest/{int(job_id)}/cancel")
        return done

    def cluster(self, job: int | None = None) -> dict[str, Any]:
        """The Dask scheduler that runs the service's tasks (address, workers, threads) and
        its TLS credentials (admins and worker accounts); with ``job``, that job's state."""
        params = {} if job is None else {"job": int(job)}
        found: dict[str, Any] = self.request("GET", "/cluster", params=params)
        return found

    def close(self) -> None:
        self._http.close()
