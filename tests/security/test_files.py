"""Files and stores are granted, not assumed: an ordinary user's jobs read only the shared
source roots and their own grant, remove only folders inside their own grant, write only
to the service's destinations, and never reach the service's own files."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from _session import make_session

from .conftest import Deployment, ingest_config, tiff_stack


def _spec(session: Path, *, metadata: bool = True, **extra: Any) -> dict[str, Any]:
    """An upload of ``session``'s ecephys folder under a fresh asset name."""
    spec: dict[str, Any] = {
        "job_type": "default",
        "user_email": "scientist@lab.example.org",
        "email_notification_types": ["fail"],
        "s3_bucket": "default",
        "project_name": "Ephys Platform",
        "platform": "ecephys",
        "subject_id": str(secrets.randbelow(900_000) + 100_000),
        "acq_datetime": "2025-04-01T14:30:15",
        "modalities": [{"abbreviation": "ecephys", "input_source": str(session / "ecephys")}],
        **extra,
    }
    if metadata:
        spec.setdefault("metadata_dir", str(session / "metadata"))
    return spec


def _submit(d: Deployment, who: str, spec: dict[str, Any]) -> Any:
    return d.api("POST", "/submit_jobs", who, json={"upload_jobs": [spec]})


def _refused(response: Any, field: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert field in response.json()["detail"], response.text


def _jobs_of(d: Deployment, who: str) -> int:
    return int(d.api("GET", "/jobs", who, params={"limit": 1}).json()["total"])


# -- reading folders ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["metadata_dir", "input_source"])
@pytest.mark.parametrize("target", ["home", "etc", "bob", "outside", "encoded"])
def test_a_user_reads_no_folder_outside_their_grants(
    hostile: Deployment, field: str, target: str
) -> None:
    folders = {
        "home": hostile.home,
        "etc": Path("/etc"),
        "bob": hostile.own["bob"],
        "outside": hostile.outside,
        # inside the shared root by its spelling, outside once decoded
        "encoded": Path(f"{hostile.shared}/%2e%2e/outside"),
    }
    session = make_session(hostile.shared / f"s-{secrets.token_hex(4)}")
    spec = _spec(session)
    if field == "metadata_dir":
        spec["metadata_dir"] = str(folders[target])
    else:
        spec["modalities"][0]["input_source"] = str(folders[target])
    before = _jobs_of(hostile, "alice")
    _refused(_submit(hostile, "alice", spec), field)
    assert _jobs_of(hostile, "alice") == before


def test_admins_never_read_the_services_own_files(hostile: Deployment) -> None:
    session = make_session(hostile.shared / f"s-{secrets.token_hex(4)}")
    for folder in (hostile.home, hostile.home / "lake", hostile.home.parent):
        response = _submit(hostile, "admin", _spec(session, metadata_dir=str(folder)))
        _refused(response, "metadata_dir")
        assert "the service's own" in response.json()["detail"]


def test_a_user_uploads_from_their_own_folder_and_no_one_else_may(hostile: Deployment) -> None:
    session = make_session(hostile.own["alice"] / f"s-{secrets.token_hex(4)}")
    _refused(_submit(hostile, "bob", _spec(session)), "input_source")
    response = _submit(hostile, "alice", _spec(session))
    assert response.status_code == 200, response.text
    [job] = response.json()["data"]["jobs"]
    assert hostile.wait(job["id"], "alice")["state"] == "succeeded"


def test_a_symlink_out_of_a_granted_folder_is_not_uploaded(hostile: Deployment) -> None:
    secret = hostile.outside / f"secret-{secrets.token_hex(4)}.json"
    secret.write_text(json.dumps({"secret": secrets.token_hex(16)}))
    session = make_session(hostile.shared / f"s-{secrets.token_hex(4)}")
    (session / "metadata" / "subject.json").unlink()
    (session / "metadata" / "subject.json").symlink_to(secret)
    (session / "metadata" / "processing.json").symlink_to(hostile.home / "ferry.toml")
    response = _submit(hostile, "alice", _spec(session))
    assert response.status_code == 200, response.text
    [job] = response.json()["data"]["jobs"]
    done = hostile.wait(job["id"], "alice")
    assert done["state"] == "failed"
    assert "metadata_dir" in done["error"] and "(which is " in done["error"]
    lake = hostile.home / "lake" / job["name"]
    uploaded = [p.read_bytes() for p in lake.rglob("*") if p.is_file()] if lake.exists() else []
    leaked = (secret.read_bytes(), (hostile.home / "ferry.toml").read_bytes())
    assert not any(part in data for data in uploaded for part in leaked)
    staged = hostile.home / "staging" / job["name"]
    assert not (staged / "subject.json").exists()


def _first_attempt(d: Deployment, job_id: int, task: str, limit: float = 120) -> Any:
    """The task once its first attempt ended (uploads are tried again after a minute)."""
    deadline = time.monotonic() + limit
    while True:
        tasks = d.api("GET", f"/jobs/{job_id}/tasks", "alice").json()
        found = next(t for t in tasks if t["name"] == task)
        if found["error"] or found["state"] in ("succeeded", "failed", "cancelled", "skipped"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.3)


def test_a_symlinked_file_in_a_modality_folder_is_not_uploaded(hostile: Deployment) -> None:
    secret = hostile.outside / f"secret-{secrets.token_hex(4)}.dat"
    secret.write_bytes(secrets.token_bytes(64))
    session = make_session(hostile.own["alice"] / f"s-{secrets.token_hex(4)}")
    (session / "ecephys" / "leak.dat").symlink_to(secret)
    (session / "ecephys" / "home").symlink_to(hostile.home)
    response = _submit(hostile, "alice", _spec(session))
    assert response.status_code == 200, response.text
    [job] = response.json()["data"]["jobs"]
    upload = _first_attempt(hostile, job["id"], "upload_data_to_s3")
    assert upload["state"] in ("up_for_retry", "failed"), upload
    assert "leak.dat" in upload["error"] and "outside the source folder" in upload["error"]
    hostile.api("POST", f"/jobs/{job['id']}/cancel", "alice")  # no need to try again
    lake = hostile.home / "lake" / job["name"]
    uploaded = [p for p in lake.rglob("*") if p.is_file()] if lake.exists() else []
    assert not any(secret.read_bytes() in p.read_bytes() for p in uploaded)
    assert not any(p.name in ("ferry.db", "ferry.toml") for p in uploaded)


def test_a_folder_swapped_for_a_symlink_during_the_upload_is_not_read(
    hostile: Deployment,
) -> None:
    """``mv behavior behavior.real; ln -s <bob's folder> behavior`` while the job uploads
    ``ecephys`` (large, uploaded first): the behavior folder was checked when the task
    started, but each folder and file is checked again once open, so bob's are refused."""
    secret = secrets.token_bytes(64)
    bob = hostile.own["bob"] / f"s-{secrets.token_hex(4)}"
    bob.mkdir()
    (bob / "trials.csv").write_bytes(secret)  # the names the behavior folder holds
    (bob / "empty.txt").write_bytes(secret)
    session = make_session(hostile.own["alice"] / f"s-{secrets.token_hex(4)}")
    (session / "ecephys" / "large.bin").write_bytes(os.urandom(192 * 1024 * 1024))
    spec = _spec(session, metadata=False)
    spec["modalities"].append(
        {"abbreviation": "behavior", "input_source": str(session / "behavior")}
    )
    response = _submit(hostile, "alice", spec)
    assert response.status_code == 200, response.text
    [job] = response.json()["data"]["jobs"]
    lake = hostile.home / "lake" / job["name"]
    deadline = time.monotonic() + 120
    while not any((lake / "ecephys").glob("large.bin#*")):  # ecephys is being written
        assert time.monotonic() < deadline, "the upload of ecephys never started"
        time.sleep(0.005)
    (session / "behavior").rename(session / "behavior.real")
    (session / "behavior").symlink_to(bob, target_is_directory=True)
    # swapped while ecephys is still being written: behavior is not listed yet
    assert not (lake / "ecephys" / "large.bin").exists()
    assert not (lake / "behavior").exists()
    upload = _first_attempt(hostile, job["id"], "upload_data_to_s3")
    assert upload["state"] in ("up_for_retry", "failed"), upload
    assert f"{session / 'behavior'} resolves to {bob}" in upload["error"], upload["error"]
    assert "outside the source folder" in upload["error"]
    hostile.api("POST", f"/jobs/{job['id']}/cancel", "alice")  # no need to try again
    assert not (lake / "behavior").exists() or not any((lake / "behavior").iterdir())
    small = [p for p in lake.rglob("*") if p.is_file() and p.stat().st_size < 1024 * 1024]
    assert not any(secret in p.read_bytes() for p in small)


# -- removing folders ----------------------------------------------------------------------


def _remove_spec(folder: Path) -> dict[str, Any]:
    spec = _spec(folder.parent, metadata=False)
    spec["modalities"][0]["input_source"] = str(folder)
    spec["tasks"] = {"remove_source_folders": {"skip_task": False}}
    return spec


@pytest.mark.parametrize("where", ["shared", "shared root", "bob", "alice root"])
def test_a_user_removes_no_folder_but_their_own(hostile: Deployment, where: str) -> None:
    session = {
        "shared": hostile.shared / f"s-{secrets.token_hex(4)}",
        "bob": hostile.own["bob"] / f"s-{secrets.token_hex(4)}",
    }
    if where in session:
        folder = make_session(session[where]) / "ecephys"
    else:
        folder = hostile.shared if where == "shared root" else hostile.own["alice"]
        (folder / "kept.txt").write_text("kept")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    response = _submit(hostile, "alice", _remove_spec(folder))
    _refused(response, "input_source")
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == files


def test_a_user_removes_their_own_uploaded_folder(hostile: Deployment) -> None:
    folder = make_session(hostile.own["alice"] / f"s-{secrets.token_hex(4)}") / "ecephys"
    response = _submit(hostile, "alice", _remove_spec(folder))
    assert response.status_code == 200, response.text
    [job] = response.json()["data"]["jobs"]
    assert hostile.wait(job["id"], "alice")["state"] == "succeeded"
    assert not folder.exists() and folder.parent.exists()


# -- stores --------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "admin"])
def test_an_encoded_destination_does_not_escape_the_store(hostile: Deployment, who: str) -> None:
    tag = secrets.token_hex(4)
    source = tiff_stack(hostile.shared / f"stack-{tag}")
    lake = hostile.home / "lake"
    escapes = {
        "alice": (
            f"{lake.as_uri()}/%2e%2e/%2e%2e/escaped-{tag}",
            lake.parent.parent / f"escaped-{tag}",
        ),
        # an admin may write outside the destinations, but never into the service's home
        "admin": (f"{lake.as_uri()}/%2E%2E/x-{tag}", hostile.home / f"x-{tag}"),
    }
    destination, target = escapes[who]
    response = hostile.api(
        "POST", "/ingest", who, json=ingest_config(f"lab/v{tag}", source, destination)
    )
    _refused(response, "destination")
    assert not target.exists()


def test_a_user_reads_no_bucket_they_were_not_given(hostile: Deployment) -> None:
    for url in ("s3://other-bucket/volume.zarr", "S3://Other-Bucket//a/./../volume.zarr"):
        source = {"plugin": "zarr", "params": {"path": url}}
        response = hostile.api("POST", "/ingest", "alice", json=ingest_config("lab/other", source))
        _refused(response, "source.params.path")
