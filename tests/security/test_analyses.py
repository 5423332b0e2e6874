"""Analysis jobs, previews and dispatches as a hostile ordinary user tries them over HTTP.

Bob may read and write the service's destination (the lake), where alice's upload and
her analysis results lie too. None of his requests may read, list, write into or claim
alice's data: not by naming it, nor by spelling it another way (percent-encoded, with
``..``), nor by naming the lake that holds it; the catalog filter takes no server-side
code; a listing is bounded; NaN is refused naming its field; and no document of his can
take the name of alice's next provenance record.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from _session import tree

from .conftest import Deployment, ingest_config, tiff_stack
from .test_assets import find, folder_of, small_session, submit

SERVICE_ENV = {"FERRY_ANALYSIS_MAX_LISTED": "8"}
SUBJECT = "750001"
ASSET = f"ecephys_{SUBJECT}_2025-04-01_14-30-15"
ANALYSIS = "/analyses/file-summary"


def analysis_job(d: Deployment, who: str, **body: Any) -> dict[str, Any]:
    """Submit an analysis job as ``who`` and wait for it to end."""
    resp = d.api("POST", f"{ANALYSIS}/jobs", who, json={"allow_dirty": True, **body})
    assert resp.status_code == 201, resp.text
    return d.wait(resp.json()["job_id"], who)


def task_errors(d: Deployment, who: str, job_id: int) -> dict[str, str]:
    tasks = d.api("GET", f"/jobs/{job_id}/tasks", who).json()
    return {t["name"]: t.get("error") or "" for t in tasks}


@pytest.fixture(scope="module")
def lab(hostile: Deployment) -> dict[str, Any]:
    """Alice's upload and her file-summary result of it; bob's own folder of data in the
    lake, registered nowhere."""
    session = small_session(hostile.shared / "analysed-session", "analysed")
    resp = submit(hostile, "alice", session, subject_id=SUBJECT)
    assert resp.status_code == 200, resp.text
    [created] = resp.json()["data"]["jobs"]
    upload = hostile.wait(created["id"], "alice")
    assert upload["state"] == "succeeded", upload
    asset = folder_of(upload["summary"]["destination"])
    job = analysis_job(hostile, "alice", asset_ids=[ASSET])
    assert job["state"] == "succeeded", task_errors(hostile, "alice", job["id"])
    [record] = find(hostile, "alice", {"kind": "analysis-result", "job_id": job["id"]})
    bob = asset.parent / "bob-data"
    bob.mkdir()
    for i in range(3):
        (bob / f"part{i}.bin").write_bytes(b"bob's own bytes %d" % i)
    return {
        "asset": asset,
        "lake": asset.parent,
        "record": record,
        "results": folder_of(record["location"]),
        "bob": bob,
        "alice_id": record["name"].rsplit(".", 1)[1],
    }


def spellings(url: str, lake: str) -> list[str]:
    """``url`` (under ``lake``) as given, percent-encoded and reached through ``..``."""
    rest = url.removeprefix(lake + "/")
    encoded = rest.replace("e", "%65", 1).replace("/", "%2F")
    return [url, f"{lake}/{encoded}", f"{lake}/bob-data/../{rest}", f"{lake}//./{rest}/"]


def test_results_never_go_into_another_users_asset_or_results(
    hostile: Deployment, lab: dict[str, Any]
) -> None:
    lake = lab["lake"].as_uri()
    before = {"asset": tree(lab["asset"]), "results": tree(lab["results"])}
    targets = [lab["asset"].as_uri(), f"{lab['asset'].as_uri()}/derived", lab["record"]["location"]]
    for target in targets:
        for results in spellings(target, lake):
            job = analysis_job(hostile, "bob", locations=[lab["bob"].as_uri()], results=results)
            assert job["state"] == "failed", (results, job)
            error = task_errors(hostile, "bob", job["id"])["dispatch"]
            assert error.startswith("results: ") and "another user" in error, (results, error)
            assert "nothing was computed" in error
    assert {"asset": tree(lab["asset"]), "results": tree(lab["results"])} == before
    assert find(hostile, "bob", {"kind": "analysis-result"}) == []
    # outside the destinations altogether: refused when submitted
    outside = hostile.api(
        "POST",
        f"{ANALYSIS}/jobs",
        "bob",
        json={"locations": [lab["bob"].as_uri()], "results": hostile.outside.as_uri()},
    )
    assert outside.status_code == 403 and "results" in outside.json()["detail"]
    # his own results folder in the same lake is his to write
    mine = analysis_job(
        hostile, "bob", locations=[lab["bob"].as_uri()], results=f"{lake}/bob-results"
    )
    assert mine["state"] == "succeeded", task_errors(hostile, "bob", mine["id"])
    [record] = find(hostile, "bob", {"kind": "analysis-result"})
    assert record["location"].startswith(f"{lake}/bob-results/file-summary/")


def test_another_users_data_is_neither_read_nor_listed(
    hostile: Deployment, lab: dict[str, Any]
) -> None:
    lake = lab["lake"].as_uri()
    theirs = [lab["asset"].as_uri(), lab["record"]["location"], f"{lab['asset'].as_uri()}/ecephys"]
    files = [p.name for p in lab["asset"].rglob("*") if p.is_file()]
    attempts = [url for target in theirs for url in spellings(target, lake)] + [lake, lake + "/"]
    for url in attempts:
        for what in ("preview", "dispatch"):
            body = {"locations": [url], "file_extension": ".dat"}
            resp = hostile.api("POST", f"{ANALYSIS}/{what}", "bob", json=body)
            assert resp.status_code == 403, (url, what, resp.text)
            assert "another user" in resp.json()["detail"], (url, resp.text)
            assert not any(name in resp.text for name in files), (url, resp.text)
            if url.rstrip("/") == lake:  # the lake's answer names nothing in it
                assert ASSET not in resp.text and "bob-data" not in resp.text, resp.text
        resp = hostile.api("POST", f"{ANALYSIS}/jobs", "bob", json={"locations": [url]})
        assert resp.status_code == 403, (url, resp.text)
        assert resp.json()["detail"].startswith("locations[0]: "), resp.text
    # a job submitted by its spec alone fails when it dispatches, and reads nothing
    spec = {"analysis": "file-summary", "locations": [lake], "allow_dirty": True}
    resp = hostile.api("POST", "/jobs/analysis", "bob", json=spec)
    assert resp.status_code == 201, resp.text
    job = hostile.wait(resp.json()["job_id"], "bob")
    assert job["state"] == "failed", job
    assert "another user" in task_errors(hostile, "bob", job["id"])["dispatch"]
    # nor through prebuilt dispatch models
    model = {"s3_location": [lab["asset"].as_uri()], "asset_name": ["x"], "docdb_record_id": [""]}
    resp = hostile.api("POST", f"{ANALYSIS}/jobs", "bob", json={"models": [model]})
    assert resp.status_code == 403, resp.text
    assert resp.json()["detail"].startswith("models[0].s3_location[0]: ")
    # her asset by name or id is not his to select
    for ids in ([ASSET], [lab["record"]["_id"]]):
        resp = hostile.api("POST", f"{ANALYSIS}/preview", "bob", json={"asset_ids": ids})
        assert resp.status_code == 422 and "asset_ids[0]" in resp.json()["detail"], resp.text
    # his own folder in the same lake he may preview
    own = hostile.api(
        "POST", f"{ANALYSIS}/dispatch", "bob", json={"locations": [lab["bob"].as_uri()]}
    )
    assert own.status_code == 200, own.text
    assert own.json()["dispatch_models"][0]["s3_location"] == [lab["bob"].as_uri()]


def test_a_listing_is_bounded(hostile: Deployment, lab: dict[str, Any]) -> None:
    many = lab["lake"] / "bob-many"
    many.mkdir()
    for i in range(9):  # one more than FERRY_ANALYSIS_MAX_LISTED
        (many / f"f{i}.bin").write_bytes(b"x")
    body = {"locations": [many.as_uri()], "file_extension": ".bin"}
    for what in ("preview", "dispatch"):
        resp = hostile.api("POST", f"{ANALYSIS}/{what}", "bob", json=body)
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert many.as_uri() in detail and "more than 8 objects" in detail, detail
        assert "analysis_max_listed" in detail
    job = analysis_job(hostile, "bob", **body)
    assert job["state"] == "failed"
    assert "more than 8 objects" in task_errors(hostile, "bob", job["id"])["dispatch"]
    (many / "f8.bin").unlink()
    resp = hostile.api("POST", f"{ANALYSIS}/preview", "bob", json=body)
    assert resp.status_code == 200 and resp.json()["inputs"] == 8, resp.text


def test_nan_and_infinities_are_refused_naming_the_field(
    hostile: Deployment, lab: dict[str, Any]
) -> None:
    model = {"s3_location": [lab["bob"].as_uri()], "asset_name": ["b"], "docdb_record_id": [""]}
    bodies = {
        "query.x[1]": ('{"query": {"x": [1, NaN]}}', ("preview", "dispatch", "jobs")),
        "fixed_parameters.scale": (
            json.dumps(
                {"locations": [lab["bob"].as_uri()], "fixed_parameters": {"scale": 1.5}}
            ).replace("1.5", "-Infinity"),
            ("preview", "jobs"),
        ),
        "models[0].extra.weight": (
            json.dumps({"models": [{**model, "extra": {"weight": 1}}]}).replace("1}", "NaN}"),
            ("jobs",),
        ),
        "query.y": ('{"query": {"y": 1e999}}', ("preview",)),
    }
    for field, (text, routes) in bodies.items():
        for route in routes:
            resp = hostile.api(
                "POST",
                f"{ANALYSIS}/{route}",
                "bob",
                content=text,
                headers={"Content-Type": "application/json"},
            )
            assert resp.status_code == 422, (field, route, resp.text)
            assert resp.json()["problems"][0]["field"] == field, resp.text
            assert field in resp.json()["detail"]
    generic = hostile.api(
        "POST",
        "/jobs/analysis",
        "bob",
        content='{"analysis": "file-summary", "query": {"a": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert generic.status_code == 422 and generic.json()["problems"][0]["field"] == "query.a"


def test_a_prebuilt_model_claims_only_the_owners_documents(
    hostile: Deployment, lab: dict[str, Any]
) -> None:
    [alices] = find(hostile, "admin", {"name": ASSET})
    model = {
        "s3_location": [lab["bob"].as_uri()],
        "asset_name": [ASSET],
        "docdb_record_id": [alices["_id"]],
    }
    for ids in ([alices["_id"]], ["no-such-document"], ["", alices["_id"]]):
        both = {**model, "docdb_record_id": ids, "s3_location": model["s3_location"] * len(ids)}
        both["asset_name"] = [ASSET] * len(ids)
        resp = hostile.api("POST", f"{ANALYSIS}/jobs", "bob", json={"models": [both]})
        assert resp.status_code == 422, resp.text
        where = f"models[0].docdb_record_id[{len(ids) - 1}]"
        assert resp.json()["detail"].startswith(where), resp.text
    # through the generic route the dispatch task refuses it, and nothing is recorded
    resp = hostile.api(
        "POST",
        "/jobs/analysis",
        "bob",
        json={"analysis": "file-summary", "models": [model], "allow_dirty": True},
    )
    assert resp.status_code == 201, resp.text
    job = hostile.wait(resp.json()["job_id"], "bob")
    assert job["state"] == "failed"
    assert "models[0].docdb_record_id[0]" in task_errors(hostile, "bob", job["id"])["dispatch"]
    records = find(hostile, "admin", {"kind": "analysis-result", "job_id": job["id"]})
    assert records == []


def test_query_operators_that_run_code_are_refused(hostile: Deployment) -> None:
    for query in (
        {"$where": "sleep(1000) || true"},
        {"$function": {"body": "return 1", "args": [], "lang": "js"}},
        {"$expr": {"$function": {"body": "return 1", "args": [], "lang": "js"}}},
        {"name": {"$regex": "(a+)+$", "$options": "x"}},
        {"$or": [{"$where": "1"}]},
        {"$accumulator": {}},
    ):
        for what in ("preview", "jobs"):
            resp = hostile.api("POST", f"{ANALYSIS}/{what}", "bob", json={"query": query})
            assert resp.status_code == 422, (query, resp.text)


def test_unsafe_locations_are_refused_naming_the_field(hostile: Deployment) -> None:
    home = hostile.home.as_uri()
    for url in (f"{home}/lake/x?y=1", f"{home}/lake/x#y", "etc/passwd", f"{home}/lake/x\x00"):
        resp = hostile.api("POST", f"{ANALYSIS}/preview", "bob", json={"locations": [url]})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json()["detail"].startswith("locations[0]: "), resp.text
    for url in (f"{home}/ferry.db", f"{home}/lake/%252e%252e/ferry.toml", "file:///etc"):
        resp = hostile.api("POST", f"{ANALYSIS}/preview", "bob", json={"locations": [url]})
        assert resp.status_code == 403, (url, resp.text)


def test_bad_file_extensions_are_refused(hostile: Deployment, lab: dict[str, Any]) -> None:
    for extension in ("../secret", "a/b", ".", "..", "*", ".nwb/../x", "%2E%2E%2F"):
        body = {"locations": [lab["bob"].as_uri()], "file_extension": extension}
        resp = hostile.api("POST", f"{ANALYSIS}/preview", "bob", json=body)
        if resp.status_code == 200:  # a plain suffix, matched literally: finds nothing
            assert resp.json()["inputs"] == 0 and "%" in extension, resp.text
        else:
            assert resp.status_code == 422 and "file_extension" in resp.json()["detail"]


def test_no_document_of_a_user_takes_the_name_of_another_users_record(
    hostile: Deployment, lab: dict[str, Any]
) -> None:
    """Runs last: alice's record is removed, as if her job had not written it yet."""
    name = lab["record"]["name"]
    deleted = hostile.api("DELETE", f"/catalog/{lab['record']['_id']}", "admin")
    assert deleted.status_code == 204, deleted.text
    stack = tiff_stack(hostile.own["bob"] / "squat-stack")
    for squat in (name, name.upper(), name.split(".")[0]):
        made = hostile.api("POST", "/ingest", "bob", json=ingest_config(squat, stack))
        assert made.status_code == 422, made.text
        assert "provenance record" in made.json()["detail"], made.text
        assert find(hostile, "admin", {"name": squat}) == []
    # alice's job writes her record under its name
    again = analysis_job(hostile, "alice", asset_ids=[ASSET])
    assert again["state"] == "succeeded", task_errors(hostile, "alice", again["id"])
    [mine] = find(hostile, "alice", {"name": name})
    assert mine["job_id"] == again["id"]
