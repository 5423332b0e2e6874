"""POST /api/v2/analyses/{name}/preview and /dispatch over HTTP: a user's own catalog
documents and granted locations x parameter sets -> dispatch models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from neuroferry.auth import User, create_token, create_user
from neuroferry.config import get_settings
from neuroferry.pipelines.analysis import PRECEDENCE, Analysis, register_analysis
from neuroferry.services import Services
from neuroferry.web import create_app

A = "behavior_774659_2025-06-07_14-31-15_processed_2025-06-08_03-49-49"
B = "behavior_774659_2025-06-09_10-02-44_processed_2025-06-10_01-12-03"
C = "ecephys_774659_2025-06-10_09-00-00"  # no .nwb file
D = "behavior_774659_2025-06-11_08-00-00_processed_2025-06-12_00-00-00"  # bob's

FILES: dict[str, dict[str, bytes]] = {
    A: {f"nwb/{A}_block-1.nwb": b"block 1", f"nwb/{A}_block-2.nwb": b"block 2"},
    B: {f"nwb/{B}.nwb": b"only block", "metadata.json": b"{}"},
    C: {"ecephys/continuous.dat": b"\0" * 16},
    D: {f"nwb/{D}.nwb": b"bob's"},
}
SUBJECT = {"subject.subject_id": "774659"}


class Quality(BaseModel):
    analysis_name: str
    isi_violations_cutoff: float = Field(0.05, ge=0, le=1)
    method: str = "isolation_distance"


def _noop(run: Any) -> None:
    return None


register_analysis(Analysis("quality-test", _noop, Quality, description="Unit quality."))

BODY: dict[str, Any] = {
    "query": SUBJECT,
    "fixed_parameters": {"analysis_name": "Unit Quality Filtering"},
    "distributed_parameters": [{"method": "isolation_distance"}, {"method": "amplitude_cutoff"}],
    "file_extension": ".nwb",
}


@dataclass
class Lab:
    """Alice's assets A, B, C in her lake, bob's D in his; each granted their own lake."""

    api: TestClient
    held: Services
    users: dict[str, User]
    tokens: dict[str, str]
    lakes: dict[str, Path]
    ids: dict[str, str]

    def url(self, name: str) -> str:
        return (self.lakes["bob" if name == D else "alice"] / name).as_uri()

    def post(self, what: str, body: dict[str, Any], who: str = "alice") -> Any:
        return self.api.post(
            f"/api/v2/analyses/quality-test/{what}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )


@pytest.fixture
def lab(
    database_url: str, tmp_path: Path, make_tree: Callable[[Path, dict[str, bytes]], Path]
) -> Iterator[Lab]:
    lakes = {name: tmp_path / f"{name}-lake" for name in ("alice", "bob")}
    settings = get_settings(
        database_url=database_url,
        store_url=(tmp_path / "store").as_uri(),
        grants={name: {"store_prefixes": [lake.as_uri()]} for name, lake in lakes.items()},
        analysis_max_models=10,
    )
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as api:
        users = {name: create_user(held.engine, name, "user") for name in ("alice", "bob")}
        tokens = {name: create_token(held.engine, user) for name, user in users.items()}
        lab = Lab(api, held, users, tokens, lakes, {})
        for name, files in FILES.items():
            make_tree(Path(lab.url(name).removeprefix("file://")), files)
        for who, names in (("alice", [A, B, C]), ("bob", [D])):
            docs = [
                {"name": n, "location": lab.url(n), "subject": {"subject_id": "774659"}}
                for n in names
            ]
            _report, ids = held.catalog.upsert_many(docs, owner=users[who])
            lab.ids.update(zip(names, ids, strict=True))
        yield lab


def test_a_preview_counts_inputs_times_parameter_sets(lab: Lab) -> None:
    found = lab.post("preview", BODY)
    assert found.status_code == 200, found.text
    preview = found.json()
    assert preview["analysis"] == "quality-test"
    # A has 2 files, B 1, C none (left out): 3 inputs x 2 sets
    counts = [preview[k] for k in ("assets", "inputs", "parameter_sets", "models")]
    assert counts == [3, 3, 2, 6]
    assert preview["without_files"] == [C]
    assert preview["already_computed"] is None
    assert preview["precedence"] == PRECEDENCE
    assert preview["precedence"].startswith(
        "fixed_parameters < parameters (overrides) < distributed_parameters"
    )
    first = preview["first"]
    assert len(first) == 5
    assert [(m["asset_name"], m["distributed_parameters"]["method"]) for m in first[:3]] == [
        ([A], "isolation_distance"),
        ([A], "amplitude_cutoff"),
        ([A], "isolation_distance"),
    ]
    assert first[0]["s3_location"] == [lab.url(A)]
    assert first[0]["docdb_record_id"] == [lab.ids[A]]
    assert first[0]["file_location"] == [f"{lab.url(A)}/nwb/{A}_block-1.nwb"]
    assert "dispatch_models" not in preview


def test_dispatch_answers_every_model(lab: Lab) -> None:
    found = lab.post("dispatch", {**BODY, "split_files": False, "parameters": {"x": 1}})
    assert found.status_code == 200, found.text
    models = found.json()["dispatch_models"]
    assert found.json()["models"] == len(models) == 4
    assert [(m["asset_name"][0], len(m["file_location"])) for m in models[::2]] == [(A, 2), (B, 1)]
    assert found.json()["first"] == models[:4]


def test_asset_ids_by_id_or_name_in_order(lab: Lab) -> None:
    body = {"asset_ids": [B, lab.ids[A], B], "fixed_parameters": {"analysis_name": "q"}}
    models = lab.post("dispatch", body).json()["dispatch_models"]
    assert [(m["asset_name"], m["file_location"], m["query"]) for m in models] == [
        ([B], None, None),
        ([A], None, None),
    ]


def test_a_user_sees_only_their_own_documents(lab: Lab) -> None:
    bobs = lab.post("preview", {**BODY, "query": SUBJECT}, who="bob").json()
    assert [m["asset_name"] for m in bobs["first"]] == [[D], [D]]
    # alice names bob's asset: unknown to her
    refused = lab.post(
        "preview", {"asset_ids": [A, D], "fixed_parameters": BODY["fixed_parameters"]}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"asset_ids[1]: '{D}' is neither the _id nor the name of a catalog asset you may see"
    )
    assert refused.json()["problems"] == [
        {
            "index": 1,
            "field": "asset_ids[1]",
            "message": f"'{D}' is neither the _id nor the name of a catalog asset you may see",
        }
    ]


def test_a_location_outside_the_users_grants_is_403_naming_the_asset(lab: Lab) -> None:
    body = {"locations": [lab.url(A), lab.url(D)], "fixed_parameters": {"analysis_name": "q"}}
    refused = lab.post("preview", body)
    assert refused.status_code == 403
    assert f"asset '{D}'" in refused.json()["detail"]
    assert "'alice'" in refused.json()["detail"]
    # alice's own document, named by its location
    mine = lab.post("dispatch", {**body, "locations": [lab.url(A)]}).json()
    assert mine["dispatch_models"][0]["docdb_record_id"] == [lab.ids[A]]


def test_an_invalid_parameter_set_is_422_naming_the_set_and_field(lab: Lab) -> None:
    broken = {
        **BODY,
        "distributed_parameters": [{"method": "a"}, {"isi_violations_cutoff": 2}],
    }
    refused = lab.post("preview", broken)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail.startswith(
        "parameter set 2 (distributed_parameters[1] over the fixed parameters and "
        "overrides; dispatch model 2 of each input's 2) is not valid: isi_violations_cutoff:"
    )
    assert [(p["parameter_set"], p["field"]) for p in refused.json()["problems"]] == [
        (2, "isi_violations_cutoff")
    ]
    # a required field the fixed parameters lack
    missing = lab.post("preview", {"query": SUBJECT})
    assert missing.status_code == 422
    assert missing.json()["detail"] == (
        "the parameters (fixed and overrides merged; every dispatch model) are not valid: "
        "analysis_name: Field required"
    )
    assert missing.json()["problems"][0]["field"] == "analysis_name"
    # an override of a fixed parameter is checked too
    overridden = lab.post("preview", {**BODY, "parameters": {"isi_violations_cutoff": "high"}})
    assert overridden.status_code == 422
    assert "parameter set 1" in overridden.json()["detail"]


def test_more_models_than_the_setting_allows_are_refused(lab: Lab) -> None:
    sets = [{"method": f"m{i}"} for i in range(4)]
    refused = lab.post("dispatch", {**BODY, "distributed_parameters": sets})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith(
        "3 inputs x 4 parameter sets = 12 dispatch models, more than the 10 one dispatch "
        "may make (setting analysis_max_models)"
    )


def test_bad_requests(lab: Lab) -> None:
    missing = lab.api.post(
        "/api/v2/analyses/no-such/preview",
        json=BODY,
        headers={"Authorization": f"Bearer {lab.tokens['alice']}"},
    )
    assert missing.status_code == 404 and "unknown analysis 'no-such'" in missing.json()["detail"]
    both = lab.post("preview", {**BODY, "locations": [lab.url(A)]})
    assert both.status_code == 422 and "exactly one way" in both.json()["detail"]
    assert "(got query, locations)" in both.json()["detail"]
    neither = lab.post("preview", {"fixed_parameters": {"analysis_name": "q"}})
    assert neither.status_code == 422 and "(got none)" in neither.json()["detail"]
    typo = lab.post("preview", {**BODY, "split_file": False})
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["body", "split_file"]
    bad_extension = lab.post("preview", {**BODY, "file_extension": "*.nwb"})
    assert bad_extension.status_code == 422 and "file_extension" in bad_extension.json()["detail"]
    assert lab.api.post("/api/v2/analyses/quality-test/preview", json=BODY).status_code == 401


# -- submitting analysis jobs -------------------------------------------------------------


def _get(lab: Lab, path: str, who: str = "alice") -> Any:
    return lab.api.get(path, headers={"Authorization": f"Bearer {lab.tokens[who]}"})


def test_submit_makes_an_analysis_job_owned_by_the_user(lab: Lab) -> None:
    results = lab.held.settings.store_url + "/mine"
    answer = lab.post("jobs", {**BODY, "force": True, "results": results})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    job = _get(lab, f"/api/v2/jobs/{job_id}").json()
    assert (job["kind"], job["owner"], job["state"]) == ("analysis", "alice", "queued")
    assert job["spec"]["analysis"] == "quality-test" and job["spec"]["force"] is True
    assert job["spec"]["query"] == SUBJECT
    results = _get(lab, f"/api/v2/analyses/jobs/{job_id}/results")
    assert results.status_code == 200 and results.json() == []  # not dispatched yet
    other = _get(lab, f"/api/v2/analyses/jobs/{job_id}/results", who="bob")
    assert other.status_code == 404


def test_submit_runs_dispatch_models(lab: Lab) -> None:
    models = lab.post("dispatch", BODY).json()["dispatch_models"]
    body = {"fixed_parameters": BODY["fixed_parameters"], "models": models}
    answer = lab.post("jobs", body)
    assert answer.status_code == 201, answer.text
    spec = _get(lab, f"/api/v2/jobs/{answer.json()['job_id']}").json()["spec"]
    assert len(spec["models"]) == 3 * 2


def test_a_bad_submission_is_refused_naming_the_field(lab: Lab) -> None:
    typo = lab.post("jobs", {**BODY, "forced": True})
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["body", "forced"]
    wrong = lab.post("jobs", {**BODY, "force": "maybe"})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "force"]
    both = lab.post("jobs", {**BODY, "locations": [lab.url(A)]})
    assert both.status_code == 422 and "(got query, locations)" in both.json()["detail"]
    invalid = lab.post("jobs", {**BODY, "parameters": {"isi_violations_cutoff": 7}})
    assert invalid.status_code == 422 and "isi_violations_cutoff" in invalid.json()["detail"]
    elsewhere = lab.post(
        "jobs", {"locations": [lab.url(D)], **{"fixed_parameters": {"analysis_name": "q"}}}
    )
    assert elsewhere.status_code == 403
    missing = lab.api.post(
        "/api/v2/analyses/no-such/jobs",
        json=BODY,
        headers={"Authorization": f"Bearer {lab.tokens['alice']}"},
    )
    assert missing.status_code == 404


def test_a_job_of_any_installed_kind_is_submitted_by_its_spec(lab: Lab) -> None:
    headers = {"Authorization": f"Bearer {lab.tokens['alice']}"}
    spec = {
        "analysis": "quality-test",
        "locations": [lab.url(A)],
        **{"fixed_parameters": {"analysis_name": "q"}},
    }
    answer = lab.api.post("/api/v2/jobs/analysis", json=spec, headers=headers)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["url"].endswith(f"/api/v2/jobs/{job_id}")
    job = _get(lab, f"/api/v2/jobs/{job_id}").json()
    assert (job["kind"], job["owner"]) == ("analysis", "alice")

    bad = lab.api.post("/api/v2/jobs/analysis", json={**spec, "forse": 1}, headers=headers)
    assert bad.status_code == 422 and "forse" in bad.json()["detail"]
    unknown = lab.api.post("/api/v2/jobs/no-such-kind", json=spec, headers=headers)
    assert (
        unknown.status_code == 422 and "unknown job kind 'no-such-kind'" in unknown.json()["detail"]
    )
    upload = lab.api.post("/api/v2/jobs/upload", json={}, headers=headers)
    assert upload.status_code == 422 and "/api/v2/submit_jobs" in upload.json()["detail"]
    assert lab.api.post("/api/v2/jobs/analysis", json=spec).status_code == 401
