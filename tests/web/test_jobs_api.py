"""The jobs API against a real `ferry serve`: submit_jobs, validate_json, validate_csv, the
jobs list with filters, sort and paging, tasks, logs, cancel, retry, and who sees what."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from _service import Service
from _session import make_session, upload_spec
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine


class Api:
    def __init__(self, service: Service, tokens: dict[str, str], root: Path) -> None:
        self.service = service
        self.tokens = tokens
        self.root = root

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.request(
            method, self.service.url + "/api/v2" + path, headers=headers, timeout=60, **kw
        )

    def wait(self, job_id: int, who: str = "admin", timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", f"/jobs/{job_id}", who).json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.2)


def _start(tmp: Path, *args: str) -> tuple[Service, dict[str, str]]:
    import os

    home = tmp / "home"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(FERRY_HOME=str(home), FERRY_ORCHESTRATOR_POLL="0.1", FERRY_DASK_WORKERS="1")
    # the sessions the tests make lie beside the home: every user may read them
    env["FERRY_SOURCE_ROOTS"] = json.dumps([str(tmp)])
    service = Service(home, env, *args)
    service.start()
    engine = make_engine(f"sqlite:///{home / 'ferry.db'}")
    tokens = {"admin": json.loads((home / "token.json").read_text())["token"]}
    for name in ("alice", "bob"):
        tokens[name] = create_token(engine, create_user(engine, name))
    engine.dispose()
    return service, tokens


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A service that runs jobs."""
    tmp = tmp_path_factory.mktemp("jobs-api")
    service, tokens = _start(tmp)
    try:
        yield Api(service, tokens, tmp)
    finally:
        service.stop()


@pytest.fixture(scope="module")
def queue_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A web-only service: jobs stay queued, so their state is known."""
    tmp = tmp_path_factory.mktemp("jobs-api-queued")
    service, tokens = _start(tmp, "--no-orchestrator")
    try:
        yield Api(service, tokens, tmp)
    finally:
        service.stop()


def request_for(session: Path, **job: Any) -> dict[str, Any]:
    return {
        "user_email": "scientist@example.org",
        "email_notification_types": ["fail"],
        "upload_jobs": [upload_spec(session, **job)],
    }


def test_submit_runs_the_job_and_its_tasks_and_logs_can_be_read(api: Api) -> None:
    session = make_session(api.root / "s1")
    resp = api.call("POST", "/submit_jobs", "alice", json=request_for(session))
    assert resp.status_code == 200, resp.text
    [job] = resp.json()["data"]["jobs"]
    assert job["name"] == "ecephys_700001_2025-04-01_14-30-15"
    assert job["url"].endswith(f"/api/v2/jobs/{job['id']}")

    # follow the upload's log while the job runs: the stream ends when the task does
    with httpx.stream(
        "GET",
        api.service.url + f"/api/v2/jobs/{job['id']}/tasks/upload_data_to_s3/logs",
        params={"follow": "true"},
        headers={"Authorization": f"Bearer {api.tokens['alice']}"},
        timeout=120,
    ) as stream:
        followed = "".join(stream.iter_text())
    assert "upload_data_to_s3 of upload job" in followed and "finished in" in followed

    done = api.wait(job["id"], "alice")
    assert done["state"] == "succeeded", api.call("GET", f"/jobs/{job['id']}/tasks").json()
    assert done["owner"] == "alice" and done["kind"] == "upload"
    assert done["spec"]["subject_id"] == "700001"
    tasks = api.call("GET", f"/jobs/{job['id']}/tasks", "alice").json()
    names = [t["name"] for t in tasks]
    assert names[0] == "send_job_start_email" and names[-1] == "send_job_end_email"
    assert [t["item"] for t in tasks if t["name"] == "compress_data" and t["map_index"] >= 0] == [
        "ecephys",
        "behavior",
        "behavior-videos",
    ]
    log = api.call(
        "GET", f"/jobs/{job['id']}/tasks/compress_data/logs", "alice", params={"map_index": 0}
    )
    assert log.status_code == 200 and "compress_data [ecephys]" in log.text
    tail = api.call(
        "GET",
        f"/jobs/{job['id']}/tasks/compress_data/logs",
        "alice",
        params={"map_index": 0, "offset": 10},
    )
    assert tail.text == log.text.encode()[10:].decode()
    assert log.headers["X-Log-Size"] == tail.headers["X-Log-Size"] == str(len(log.content))
    assert tail.headers["X-Next-Offset"] == str(len(log.content))

    # others: bob sees nothing of alice's, the admin sees everything
    assert api.call("GET", f"/jobs/{job['id']}", "bob").status_code == 404
    assert api.call("GET", f"/jobs/{job['id']}/tasks", "bob").status_code == 404
    assert api.call("GET", f"/jobs/{job['id']}/tasks/compress_data/logs", "bob").status_code == 404
    assert api.call("POST", f"/jobs/{job['id']}/cancel", "bob").status_code == 404
    assert api.call("POST", f"/jobs/{job['id']}/retry", "bob").status_code == 404
    assert api.call("GET", "/jobs", "bob").json()["total"] == 0
    assert api.call("GET", f"/jobs/{job['id']}", "admin").status_code == 200
    # a finished job cannot be cancelled; a succeeded one not retried
    assert api.call("POST", f"/jobs/{job['id']}/cancel", "alice").status_code == 422
    assert api.call("POST", f"/jobs/{job['id']}/retry", "alice").status_code == 422


def test_cancel_and_retry_through_the_api(queue_only: Api) -> None:
    session = make_session(queue_only.root / "s-cancel")
    resp = queue_only.call("POST", "/submit_jobs", "alice", json=request_for(session))
    job_id = resp.json()["data"]["jobs"][0]["id"]
    cancelled = queue_only.call("POST", f"/jobs/{job_id}/cancel", "alice")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    retried = queue_only.call("POST", f"/jobs/{job_id}/retry", "alice")
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    assert queue_only.call("POST", f"/jobs/{job_id}/cancel", "admin").json()["state"] == (
        "cancelled"
    )


def test_bad_requests_name_the_job_and_field(queue_only: Api) -> None:
    session = make_session(queue_only.root / "s-bad")
    body = request_for(session, subject_id="700002")
    bad = copy.deepcopy(body["upload_jobs"][0])
    bad["subject_id"] = "../etc"
    worse = copy.deepcopy(body["upload_jobs"][0])
    worse["acq_datetime"] = "yesterday"
    worse["modalities"][0]["abbreviation"] = "telepathy"
    resp = queue_only.call(
        "POST", "/submit_jobs", "alice", json={"upload_jobs": [body["upload_jobs"][0], bad, worse]}
    )
    assert resp.status_code == 422, resp.text
    problems = resp.json()["problems"]
    by_job = {(p["job"], p["field"]) for p in problems}
    assert (2, "subject_id") in by_job
    assert (3, "acq_datetime") in by_job
    assert any(p["job"] == 3 and "telepathy" in p["message"] for p in problems)
    assert "job 2: subject_id" in resp.json()["detail"]
    # nothing was created: the first, valid job neither
    assert queue_only.call("GET", "/jobs", "alice", params={"name": "700002"}).json()["total"] == 0

    twice = {"upload_jobs": [body["upload_jobs"][0], body["upload_jobs"][0]]}
    resp = queue_only.call("POST", "/submit_jobs", "alice", json=twice)
    assert resp.status_code == 422
    assert "job 2: subject_id: the same asset" in resp.json()["detail"]

    many = {"upload_jobs": [body["upload_jobs"][0]] * 51}
    resp = queue_only.call("POST", "/submit_jobs", "alice", json=many)
    assert resp.status_code == 422 and "at most 50" in resp.json()["detail"]

    assert queue_only.call("POST", "/submit_jobs", "", json=body).status_code == 401
    assert queue_only.call("POST", "/submit_jobs", "alice", json={"upload": 1}).status_code == 422


def test_an_asset_already_queued_is_refused(queue_only: Api) -> None:
    session = make_session(queue_only.root / "s-dup")
    body = request_for(session, subject_id="700777")
    assert queue_only.call("POST", "/validate_json", "alice", json=body).status_code == 200
    assert queue_only.call("POST", "/submit_jobs", "alice", json=body).status_code == 200
    again = queue_only.call("POST", "/submit_jobs", "bob", json=body)
    # the database's asset lock refuses it, naming the job that holds the asset
    assert again.status_code == 409
    assert "is writing the same asset" in again.json()["detail"]
    checked = queue_only.call("POST", "/validate_json", "alice", json=body)
    assert checked.status_code == 422
    assert "already being uploaded by a queued or running job" in checked.json()["detail"]


def test_validate_json_returns_the_jobs_as_they_would_run(queue_only: Api) -> None:
    session = make_session(queue_only.root / "s-val")
    resp = queue_only.call(
        "POST", "/validate_json", "alice", json=request_for(session, subject_id="700888")
    )
    assert resp.status_code == 200, resp.text
    [job] = resp.json()["data"]["jobs"]
    assert job["name"] == "ecephys_700888_2025-04-01_14-30-15"
    assert job["job"]["user_email"] == "scientist@example.org"  # from the request
    assert queue_only.call("GET", "/jobs", "alice", params={"name": "700888"}).json()["total"] == 0


def test_validate_csv(queue_only: Api) -> None:
    session = make_session(queue_only.root / "s-csv")
    csv = (
        "job_type,project_name,platform,subject_id,acq_datetime,modality0,"
        "modality0.input_source,modality1,modality1.source,metadata_dir\n"
        f"default,Ephys Platform,ecephys,700999,10/13/2020 1:10:10 PM,ECEPHYS,"
        f"{session / 'ecephys'},behavior,{session / 'behavior'},{session / 'metadata'}\n"
        ",,,,,,,,,\n"
    )
    resp = queue_only.call(
        "POST", "/validate_csv", "alice", files={"file": ("jobs.csv", csv.encode(), "text/csv")}
    )
    assert resp.status_code == 200, resp.text
    [job] = resp.json()["data"]["jobs"]
    assert job["row"] == 2 and job["name"] == "ecephys_700999_2020-10-13_13-10-10"

    bad = csv.replace("10/13/2020 1:10:10 PM", "13/13/2020")
    resp = queue_only.call(
        "POST", "/validate_csv", "alice", files={"file": ("jobs.csv", bad.encode(), "text/csv")}
    )
    assert resp.status_code == 422
    [problem] = resp.json()["problems"]
    assert problem["row"] == 2 and "acq" in (problem["field"] or "")
    resp = queue_only.call(
        "POST", "/validate_csv", "alice", files={"file": ("jobs.txt", b"x", "text/plain")}
    )
    assert resp.status_code == 422 and "jobs.txt" in resp.json()["detail"]


def test_the_jobs_list_filters_sorts_and_pages(queue_only: Api) -> None:
    ids = []
    for i in range(5):
        session = make_session(queue_only.root / f"s-list{i}")
        body = request_for(session, subject_id=f"71000{i}")
        who = "alice" if i < 3 else "bob"
        ids.append(
            queue_only.call("POST", "/submit_jobs", who, json=body).json()["data"]["jobs"][0]["id"]
        )
    mine = queue_only.call("GET", "/jobs", "alice", params={"name": "7100"}).json()
    assert mine["total"] == 3 and {j["owner"] for j in mine["jobs"]} == {"alice"}
    everyone = queue_only.call("GET", "/jobs", "admin", params={"name": "7100", "limit": 2})
    page = everyone.json()
    assert page["total"] == 5 and [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    second = queue_only.call(
        "GET", "/jobs", "admin", params={"name": "7100", "limit": 2, "offset": 2}
    ).json()
    assert [j["id"] for j in second["jobs"]] == ids[::-1][2:4]
    ascending = queue_only.call("GET", "/jobs", "admin", params={"name": "7100", "sort": "name"})
    names = [j["name"] for j in ascending.json()["jobs"]]
    assert names == sorted(names)
    by_owner = queue_only.call(
        "GET", "/jobs", "admin", params={"name": "7100", "owner": "bob"}
    ).json()
    assert by_owner["total"] == 2
    queued = queue_only.call(
        "GET", "/jobs", "admin", params={"name": "7100", "state": ["queued", "running"]}
    ).json()
    assert queued["total"] == 5
    future = queue_only.call(
        "GET", "/jobs", "admin", params={"submitted_after": "2999-01-01T00:00:00Z"}
    ).json()
    assert future["total"] == 0
    long_ago = queue_only.call(
        "GET",
        "/jobs",
        "admin",
        params={"name": "7100", "submitted_after": "2000-01-01T00:00:00Z"},
    ).json()
    assert long_ago["total"] == 5  # any range, not only the last 14 days

    bad_sort = queue_only.call("GET", "/jobs", "admin", params={"sort": "spec"})
    assert bad_sort.status_code == 422 and "sort" in bad_sort.json()["detail"]
    bad_state = queue_only.call("GET", "/jobs", "admin", params={"state": "asleep"})
    assert bad_state.status_code == 422 and "asleep" in bad_state.json()["detail"]
    assert queue_only.call("GET", "/jobs", "").status_code == 401


def test_the_service_lists_decide_modalities_and_projects(tmp_path: Path) -> None:
    """Admins add a modality and restrict project names; submissions follow at once."""
    service, tokens = _start(tmp_path, "--no-orchestrator")
    api = Api(service, tokens, tmp_path)
    try:
        session = make_session(tmp_path / "s")
        (session / "neuropixels-opto").mkdir()
        (session / "neuropixels-opto" / "x.bin").write_bytes(b"x")
        body = request_for(session, subject_id="720000")
        body["upload_jobs"][0]["modalities"].append(
            {"abbreviation": "NEUROPIXELS_OPTO", "input_source": str(session / "neuropixels-opto")}
        )
        refused = api.call("POST", "/validate_json", "alice", json=body)
        assert refused.status_code == 422 and "NEUROPIXELS_OPTO" in refused.json()["detail"]
        added = api.call(
            "PUT",
            "/modalities/npx-opto",
            "admin",
            json={"name": "Neuropixels optotagging", "legacy_names": ["NEUROPIXELS_OPTO"]},
        )
        assert added.status_code in (200, 201), added.text
        assert api.call("PUT", "/modalities/x", "alice", json={"name": "X"}).status_code == 403
        accepted = api.call("POST", "/validate_json", "alice", json=body)
        assert accepted.status_code == 200, accepted.text
        modalities = [
            m["abbreviation"] for m in accepted.json()["data"]["jobs"][0]["job"]["modalities"]
        ]
        assert "npx-opto" in modalities

        assert api.call("POST", "/projects", "admin", json={"name": "Other"}).status_code == 201
        wrong = api.call("POST", "/validate_json", "alice", json=body)
        assert wrong.status_code == 422
        assert wrong.json()["problems"][0]["field"] == "project_name"
        assert "Other" in wrong.json()["detail"]
    finally:
        service.stop()


def test_a_dropbox_job_shows_to_its_groups_members_read_only(queue_only: Api) -> None:
    """A drop-box's job (owned by the admin who published it) shows to the members of
    the group that submitted it: its state, tasks and logs, but only admins cancel or
    retry it; a user outside the group sees nothing of it."""
    from sqlalchemy import insert, select

    from neuroferry.db import dropbox_submissions, dropboxes

    session = make_session(queue_only.root / "s-dropbox")
    resp = queue_only.call("POST", "/submit_jobs", "admin", json=request_for(session))
    job_id = resp.json()["data"]["jobs"][0]["id"]
    before = queue_only.call("GET", "/jobs", "alice").json()["total"]
    assert queue_only.call("GET", f"/jobs/{job_id}", "alice").status_code == 404

    store = queue_only.root / "members-box"
    store.mkdir()
    made = queue_only.call(
        "POST",
        "/dropboxes",
        "admin",
        json={"name": "members-box", "analysis": "file-summary", "store": str(store)},
    )
    assert made.status_code == 201, made.text
    added = queue_only.call(
        "POST",
        "/dropboxes/members-box/groups",
        "admin",
        json={"name": "lab1", "members": ["alice"]},
    )
    assert added.status_code == 201, added.text
    engine = make_engine(f"sqlite:///{queue_only.service.home / 'ferry.db'}")
    with engine.begin() as conn:
        box_id = conn.execute(select(dropboxes.c.id).where(dropboxes.c.name == "members-box"))
        now = datetime.now(UTC)
        conn.execute(
            insert(dropbox_submissions).values(
                dropbox_id=box_id.scalar_one(),
                group_name="lab1",
                key="lab1/submissions/submit.json",
                sha256="0" * 64,
                state="running",
                job_id=job_id,
                datasets=[],
                setup_log=[],
                created=now,
                updated=now,
            )
        )
    engine.dispose()

    # alice, in the group: the job is listed and counted, its detail, tasks and logs read
    listed = queue_only.call("GET", "/jobs", "alice").json()
    assert listed["total"] == before + 1 and job_id in [j["id"] for j in listed["jobs"]]
    detail = queue_only.call("GET", f"/jobs/{job_id}", "alice")
    assert detail.status_code == 200 and detail.json()["owner"] == "admin"
    assert "access" not in detail.json()
    tasks = queue_only.call("GET", f"/jobs/{job_id}/tasks", "alice")
    assert tasks.status_code == 200 and tasks.json()[0]["name"] == "send_job_start_email"
    logs = queue_only.call("GET", f"/jobs/{job_id}/tasks/send_job_start_email/logs", "alice")
    assert logs.status_code == 200
    # … but does not cancel or retry it
    for action in ("cancel", "retry"):
        refused = queue_only.call("POST", f"/jobs/{job_id}/{action}", "alice")
        assert refused.status_code == 403, refused.text
        assert f"only they or an admin may {action} it" in refused.json()["detail"]
    assert queue_only.call("GET", f"/jobs/{job_id}", "alice").json()["state"] == "queued"

    # bob, in no group: nothing
    assert job_id not in [j["id"] for j in queue_only.call("GET", "/jobs", "bob").json()["jobs"]]
    for path in ("", "/tasks", "/tasks/send_job_start_email/logs"):
        assert queue_only.call("GET", f"/jobs/{job_id}{path}", "bob").status_code == 404
    for action in ("cancel", "retry"):
        assert queue_only.call("POST", f"/jobs/{job_id}/{action}", "bob").status_code == 404

    # the admin cancels it
    cancelled = queue_only.call("POST", f"/jobs/{job_id}/cancel", "admin")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
