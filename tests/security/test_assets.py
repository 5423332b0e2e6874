"""Assets have owners, and one unfinished job writes an asset at a time.

Issue 12, probes 5 and 9: a job naming another user's asset (``s3_prefix`` or the name
made of platform, subject and time) with ``force_cloud_sync`` overwrote that user's files
and catalog document; ``s3_prefix: "."`` named the whole store; every user read every
catalog document; and 8 clients submitting one asset at once got several jobs, which
shared one staging folder and failed with a raw FileNotFoundError.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from _session import tree, upload_spec

from .conftest import Deployment, ingest_config, tiff_stack

ALICE_SUBJECT = "710001"
ALICE_ASSET = f"ecephys_{ALICE_SUBJECT}_2025-04-01_14-30-15"


def small_session(root: Path, salt: str) -> Path:
    """A small session folder (the layout ``upload_spec`` expects) under ``root``."""
    files = {
        "ecephys/probe_A/continuous.dat": f"ecephys of {salt}\n".encode() * 64,
        "behavior/trials.csv": f"trial,choice\n1,{salt}\n".encode(),
        "behavior-videos/face.mp4": f"video of {salt}".encode(),
        "metadata/subject.json": b'{"subject_id": "%s"}' % salt.encode(),
        "derivatives/spikes/sorted.npy": salt.encode(),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def submit(d: Deployment, who: str, session: Path, **job: Any) -> httpx.Response:
    body = {"upload_jobs": [upload_spec(session, **job)]}
    return d.api("POST", "/submit_jobs", who, json=body)


def job_ids(d: Deployment, who: str, name: str) -> list[int]:
    listed = d.api("GET", "/jobs", who, params={"name": name, "limit": 100}).json()
    rows = listed["jobs"]
    return sorted(j["id"] for j in rows if j["name"] == name)


def folder_of(location: str) -> Path:
    parts = urlsplit(location)
    assert parts.scheme == "file", location
    return Path(unquote(parts.path))


def find(d: Deployment, who: str, filter: dict[str, Any]) -> list[dict[str, Any]]:
    resp = d.api("POST", "/catalog/find", who, json={"filter": filter, "limit": 1000})
    assert resp.status_code == 200, resp.text
    docs: list[dict[str, Any]] = resp.json()["documents"]
    return docs


@pytest.fixture(scope="module")
def alice_asset(hostile: Deployment) -> dict[str, Any]:
    """An asset alice uploaded from the shared folder: its folder in the store and its
    catalog document (as the admin reads it)."""
    session = small_session(hostile.shared / "alice-session", "alice")
    resp = submit(hostile, "alice", session, subject_id=ALICE_SUBJECT)
    assert resp.status_code == 200, resp.text
    [created] = resp.json()["data"]["jobs"]
    job = hostile.wait(created["id"], "alice")
    assert job["state"] == "succeeded", job
    [doc] = find(hostile, "admin", {"name": ALICE_ASSET})
    return {"folder": folder_of(job["summary"]["destination"]), "doc": doc}


def test_another_users_asset_is_not_overwritten(
    hostile: Deployment, alice_asset: dict[str, Any]
) -> None:
    folder: Path = alice_asset["folder"]
    files = tree(folder)
    assert files, folder
    session = small_session(hostile.shared / "bob-session", "bob")
    attempts = {
        "by s3_prefix": {"subject_id": "719999", "s3_prefix": ALICE_ASSET},
        "by the computed name": {"subject_id": ALICE_SUBJECT},
    }
    for how, job in attempts.items():
        resp = submit(hostile, "bob", session, force_cloud_sync=True, **job)
        assert resp.status_code in (403, 409), (how, resp.text)
        detail = resp.json()["detail"]
        assert "s3_prefix" in detail and "belongs to another user" in detail, (how, detail)
    assert job_ids(hostile, "bob", ALICE_ASSET) == []
    # nothing of alice's changed: her files and her catalog document
    assert tree(folder) == files
    assert find(hostile, "admin", {"name": ALICE_ASSET}) == [alice_asset["doc"]]
    # and bob may not replace her document through the catalog API either
    forged = {**alice_asset["doc"], "location": "file:///elsewhere"}
    assert hostile.api("PUT", "/catalog", "bob", json=[forged]).status_code == 403
    assert find(hostile, "admin", {"name": ALICE_ASSET}) == [alice_asset["doc"]]


def test_degenerate_s3_prefix_is_refused(hostile: Deployment) -> None:
    session = small_session(hostile.shared / "degenerate-session", "degenerate")
    values = (".", "", "..", "/", " ", "./", ".hidden", "a/..", "-", "_")
    for value in values:
        resp = submit(hostile, "bob", session, subject_id="718888", s3_prefix=value)
        assert resp.status_code == 422, (value, resp.text)
        assert "s3_prefix" in resp.json()["detail"], value
    listed = hostile.api("GET", "/jobs", "bob", params={"limit": 500}).json()["jobs"]
    names = {j["name"] for j in listed}
    assert not names & {*values, "ecephys_718888_2025-04-01_14-30-15"}, names


def test_users_see_only_their_own_catalog_documents(
    hostile: Deployment, alice_asset: dict[str, Any]
) -> None:
    doc_id = alice_asset["doc"]["_id"]
    mine = {"name": ALICE_ASSET}
    # alice and the admin see it
    for who in ("alice", "admin"):
        assert [d["_id"] for d in find(hostile, who, mine)] == [doc_id]
        assert hostile.api("GET", f"/catalog/{doc_id}", who).status_code == 200
    # bob does not: not by filter, not counted, not among distinct values, not by id
    assert ALICE_ASSET not in [d["name"] for d in find(hostile, "bob", {})]
    assert find(hostile, "bob", mine) == []
    assert find(hostile, "bob", {"$or": [mine, {"name": {"$exists": True}}]}) == []
    count = hostile.api("POST", "/catalog/count", "bob", json={"filter": mine})
    assert count.status_code == 200 and count.json() == {"count": 0}
    values = hostile.api("POST", "/catalog/distinct", "bob", json={"field": "name"})
    assert values.status_code == 200 and ALICE_ASSET not in values.json()["values"]
    subjects = hostile.api(
        "POST", "/catalog/distinct", "bob", json={"field": "data_description.subject_id"}
    )
    assert ALICE_SUBJECT not in subjects.json()["values"]
    by_id = hostile.api("GET", f"/catalog/{doc_id}", "bob")
    assert by_id.status_code == 404 and ALICE_ASSET not in by_id.text
    # a document without an owner (an admin's import) is the admins' alone
    put = hostile.api("PUT", "/catalog", "admin", json=[{"name": "imported-by-admin"}])
    assert put.status_code == 200, put.text
    assert find(hostile, "alice", {"name": "imported-by-admin"}) == []
    assert len(find(hostile, "admin", {"name": "imported-by-admin"})) == 1
    # the pages show bob nothing of alice's either
    page = httpx.get(
        f"{hostile.url}/catalog/{ALICE_ASSET}",
        headers={"Authorization": f"Bearer {hostile.tokens['bob']}"},
        timeout=60,
    )
    assert page.status_code == 404 and alice_asset["doc"]["location"] not in page.text


def test_one_job_per_asset_whatever_the_timing(hostile: Deployment) -> None:
    session = small_session(hostile.shared / "race-session", "race")
    subject = "720001"
    asset = f"ecephys_{subject}_2025-04-01_14-30-15"
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def client() -> None:
        start.wait()
        resp = submit(hostile, "bob", session, subject_id=subject)
        with lock:
            answers.append(resp)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [409] * 7, [r.text for r in answers]
    [accepted] = [r for r in answers if r.status_code == 200]
    [created] = accepted.json()["data"]["jobs"]
    for refused in (r for r in answers if r.status_code == 409):
        detail = refused.json()["detail"]
        assert f"job {created['id']}" in detail and asset in detail, detail
        assert "wait" in detail.lower() and "cancel" in detail, detail
    assert job_ids(hostile, "bob", asset) == [created["id"]]

    job = hostile.wait(created["id"], "bob")
    assert job["state"] == "succeeded", job
    tasks = hostile.api("GET", f"/jobs/{created['id']}/tasks", "bob").json()
    assert not any("FileNotFoundError" in (t.get("error") or "") for t in tasks)
    assert not any("FileNotFoundError" in r.text for r in answers)

    # once it ended, the asset may be written again (its owner overwrites it on purpose)
    again = submit(hostile, "bob", session, subject_id=subject, force_cloud_sync=True)
    assert again.status_code == 200, again.text
    [second] = again.json()["data"]["jobs"]
    assert hostile.wait(second["id"], "bob")["state"] == "succeeded"


def test_cancel_gives_the_asset_back_and_retry_takes_it_again(hostile: Deployment) -> None:
    session = small_session(hostile.shared / "cancel-session", "cancel")
    subject = "730001"
    # a job type whose command runs until cancelled, so that the job is still unfinished
    slow = {"command_script": "sh -c 'sleep 120'"}
    settings = {"modality_transformation_settings": {"ecephys": slow}}
    saved = hostile.api("PUT", "/job_types/slow-convert", "admin", json={"settings": settings})
    assert saved.status_code == 200, saved.text
    first = submit(hostile, "bob", session, subject_id=subject, job_type="slow-convert")
    assert first.status_code == 200, first.text
    [job] = first.json()["data"]["jobs"]
    busy = submit(hostile, "bob", session, subject_id=subject)
    assert busy.status_code == 409 and f"job {job['id']}" in busy.json()["detail"]
    cancelled = hostile.api("POST", f"/jobs/{job['id']}/cancel", "bob")
    assert cancelled.status_code == 200, cancelled.text
    assert hostile.wait(job["id"], "bob")["state"] == "cancelled"

    second = submit(hostile, "bob", session, subject_id=subject, force_cloud_sync=True)
    assert second.status_code == 200, second.text
    [other] = second.json()["data"]["jobs"]
    retried = hostile.api("POST", f"/jobs/{job['id']}/retry", "bob")
    assert retried.status_code == 409, retried.text
    assert f"job {other['id']}" in retried.json()["detail"]
    assert hostile.api("GET", f"/jobs/{job['id']}", "bob").json()["state"] == "cancelled"
    assert hostile.wait(other["id"], "bob")["state"] == "succeeded"


def _refused_for(resp: httpx.Response, field: str) -> None:
    assert resp.status_code == 403, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith(f"{field}: ") and "another user" in detail, detail


def test_a_job_writes_nothing_at_inside_or_around_another_users_asset(
    hostile: Deployment, alice_asset: dict[str, Any]
) -> None:
    """Issue 12: the owner check looked at the catalog name only, so that bob could write
    inside alice's upload, onto her volume, or take the folder that holds it."""
    folder: Path = alice_asset["folder"]
    lake = folder.parent.as_uri()
    files = tree(folder)
    stack = tiff_stack(hostile.shared / "location-stack")
    # alice's volume in a folder of its own
    made = hostile.api("POST", "/ingest", "alice", json=ingest_config("vlab/vol", stack))
    assert made.status_code == 201, made.text
    assert hostile.wait(made.json()["id"], "alice")["state"] == "succeeded"
    volume = folder.parent / "vlab" / "vol.ome.zarr"
    volume_files = tree(volume)
    assert volume_files

    inside = ingest_config(f"{ALICE_ASSET}/behavior", stack)  # a volume inside her upload
    _refused_for(hostile.api("POST", "/ingest", "bob", json=inside), "name")
    under = ingest_config("ecephys", stack, f"{lake}/{ALICE_ASSET}")  # a destination inside it
    _refused_for(hostile.api("POST", "/ingest", "bob", json=under), "name")
    onto = ingest_config("vol", stack, f"{lake}/vlab")  # exactly her volume, by another name
    _refused_for(hostile.api("POST", "/ingest", "bob", json=onto), "name")
    # an upload whose folder holds her volume
    session = small_session(hostile.shared / "around-session", "around")
    around = submit(hostile, "bob", session, subject_id="740001", s3_prefix="vlab")
    _refused_for(around, "s3_prefix")
    forced = submit(
        hostile, "bob", session, subject_id="740001", s3_prefix="vlab", force_cloud_sync=True
    )
    _refused_for(forced, "s3_prefix")

    listed = hostile.api("GET", "/jobs", "bob", params={"limit": 500}).json()["jobs"]
    assert not {j["name"] for j in listed} & {"vlab", "vol", "ecephys", inside["name"]}
    assert find(hostile, "bob", {"name": "vlab"}) == []
    assert tree(folder) == files and tree(volume) == volume_files
    # her own writes there are hers to make
    again = hostile.api("POST", "/ingest", "alice", json=ingest_config("vlab/vol2", stack))
    assert again.status_code == 201, again.text
    assert hostile.wait(again.json()["id"], "alice")["state"] == "succeeded"


def test_validating_names_another_users_asset_as_submitting_does(
    hostile: Deployment, alice_asset: dict[str, Any]
) -> None:
    stack = tiff_stack(hostile.shared / "validate-stack")
    made = hostile.api("POST", "/ingest", "alice", json=ingest_config("vcheck/vol", stack))
    assert made.status_code == 201, made.text
    assert hostile.wait(made.json()["id"], "alice")["state"] == "succeeded"
    session = small_session(hostile.shared / "validate-session", "validate")
    attempts = {
        "by name": {"subject_id": "719998", "s3_prefix": ALICE_ASSET},
        "by location": {"subject_id": "719997", "s3_prefix": "vcheck"},  # holds her volume
    }
    for how, job in attempts.items():
        body = {"upload_jobs": [upload_spec(session, force_cloud_sync=True, **job)]}
        submitted = hostile.api("POST", "/submit_jobs", "bob", json=body)
        assert submitted.status_code in (403, 422), (how, submitted.text)
        checked = hostile.api("POST", "/validate_json", "bob", json=body)
        assert checked.status_code in (403, 422), (how, checked.text)
        detail = checked.json()["detail"]
        assert "s3_prefix" in detail and "another user" in detail, (how, detail)
    # alice's own asset validates for her
    mine = {"upload_jobs": [upload_spec(session, subject_id=ALICE_SUBJECT, force_cloud_sync=True)]}
    assert hostile.api("POST", "/validate_json", "alice", json=mine).status_code == 200


def test_an_ingest_of_too_many_shards_is_refused(hostile: Deployment) -> None:
    """Issue 12: a CATMAID stack whose missing tiles read as zeros, of 10^6 x 10^6 x 10^5
    voxels, was accepted with 1.49e9 shards, and checking it ran for minutes."""
    root = hostile.shared / "catmaid-empty"
    root.mkdir()
    source = {
        "plugin": "catmaid",
        "params": {"root_dir": str(root), "tile_size": {"x": 512, "y": 512}, "missing": "zero"},
    }
    body = {
        **ingest_config("huge", source),
        "extent": {"x": [0, 10**6], "y": [0, 10**6], "z": [0, 10**5]},
    }
    body.pop("chunk"), body.pop("shard"), body.pop("levels")
    resp = hostile.api("POST", "/ingest", "bob", json=body)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("extent: ") and "at most 1000000" in detail, detail
    beyond = {**body, "extent": {"x": [0, 2**40], "y": [0, 16], "z": [0, 2]}}
    resp = hostile.api("POST", "/ingest", "bob", json=beyond)
    assert resp.status_code == 422 and "extent.x" in resp.text, resp.text
    listed = hostile.api("GET", "/jobs", "bob", params={"limit": 500}).json()["jobs"]
    assert "huge" not in {j["name"] for j in listed}
