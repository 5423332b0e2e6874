"""``register_data_asset`` and ``run_analyses``: the catalog document of the asset, and the
analysis jobs a job asks for."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from neuroferry.catalog import Catalog
from neuroferry.config import Settings
from neuroferry.engine import JobKind, PreparedJob, TaskDef, TaskFailed, _kinds
from neuroferry.errors import InvalidInput

from .helpers import PROCEDURES, SUBJECT, Harness, Session

MakeHarness = Callable[..., Harness]
ASSET = "ecephys_123456_2024-06-19_10-00-00"


@pytest.fixture
def catalog(project_catalog: Catalog) -> Catalog:
    return project_catalog


class AnalysisSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: dict[str, Any]
    analysis: str
    parameters: dict[str, Any] = {}


def _prepare_analysis(spec: BaseModel, settings: Settings) -> PreparedJob:
    return PreparedJob(name="analysis")


ANALYSIS = JobKind(
    "analysis",
    AnalysisSpec,
    (TaskDef("run", "neuroferry.pipelines.upload._tasks:run_analyses"),),
    _prepare_analysis,
)


@pytest.fixture
def analysis_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``analysis`` kind installed for one test."""
    monkeypatch.setitem(_kinds._registered, "analysis", ANALYSIS)


class Submitted:
    """The jobs a task submitted, validated by their kind as the engine validates them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, spec: dict[str, Any]) -> int:
        try:
            _kinds.get_kind(kind).spec_model.model_validate(spec)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        self.jobs.append((kind, spec))
        return 100 + len(self.jobs)


def with_analyses(session: Session, analyses: dict[str, Any]) -> dict[str, Any]:
    spec = session.spec()
    spec["tasks"]["analysis_settings"] = analyses
    return spec


def test_the_catalog_document_is_read_back_from_the_destination(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("upload_data_to_s3")
    result = job.run("register_data_asset")
    assert result["name"] == ASSET and result["location"] == job.destination
    document = catalog.get(result["id"])
    assert set(document) - {"_id"} == {
        "name",
        "location",
        "data_description",
        "subject",
        "procedures",
        "session",
        "processing",
        "upload_job",  # what neuroferry adds: never in the uploaded files
    }
    assert document["subject"] == SUBJECT and document["procedures"] == PROCEDURES
    assert document["data_description"]["name"] == ASSET

    # registered again (a rerun): the same document, replaced
    again = job.run("register_data_asset")
    assert again["id"] == result["id"]
    assert catalog.count({"name": ASSET}) == 1


def test_an_asset_another_user_registered_meanwhile_is_not_written(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    alice, bob = (create_user(catalog.engine, name).id for name in ("alice", "bob"))
    job = harness(session.spec())
    job.catalog, job.owner_id = catalog, bob
    job.run_until("upload_data_to_s3")
    assert job.results["check_asset_owner"] == {"asset_name": ASSET}  # nobody's yet
    # alice registers the name after bob's job was submitted: his job stops before writing
    catalog.upsert({"name": ASSET, "location": "s3://alices"}, Owner(alice))
    with pytest.raises(TaskFailed, match=r"belongs to another user.*nothing was written"):
        job.call("check_asset_owner")
    # and were it to reach registration, her document would not be replaced
    with pytest.raises(TaskFailed, match=r"the catalog refused .* belongs to another user"):
        job.call("register_data_asset")
    assert catalog.find({"name": ASSET})[0]["location"] == "s3://alices"
    # alice's own job (and an admin's) may go on
    job.owner_id = alice
    assert job.call("check_asset_owner") == {"asset_name": ASSET}


def test_registration_records_the_jobs_owner(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    alice, bob = (create_user(catalog.engine, name).id for name in ("alice", "bob"))
    job = harness(session.spec())
    job.catalog, job.owner_id = catalog, alice
    job.run_until("upload_data_to_s3")
    doc_id = job.run("register_data_asset")["id"]
    assert catalog.get(doc_id, viewer=Owner(alice))["name"] == ASSET
    assert catalog.count({}, viewer=Owner(bob)) == 0


def test_registration_needs_the_uploaded_metadata(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("gather_final_metadata")  # nothing uploaded yet
    with pytest.raises(TaskFailed) as info:
        job.call("register_data_asset")
    assert str(info.value) == (
        f"{job.destination}/data_description.json was not found: the upload did not finish; "
        "run upload_data_to_s3 again"
    )
    # the folder exists, but the metadata is not there
    (Path(job.destination.removeprefix("file://")) / "ecephys").mkdir(parents=True)
    with pytest.raises(TaskFailed, match="was not found: the upload did not finish"):
        job.call("register_data_asset")


def test_a_metadata_file_whose_name_cannot_be_a_field_is_left_out(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    (session.folder("metadata") / "rig.v2.json").write_text(json.dumps({"rig_id": "7"}))
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("upload_data_to_s3")
    document = catalog.get(job.run("register_data_asset")["id"])
    assert "session" in document and not any(k.startswith("rig") for k in document)


@pytest.mark.parametrize("field", ["image", "ingest", "type"])
def test_a_metadata_file_naming_a_field_of_the_ingest_job_is_refused(
    session: Session, harness: MakeHarness, catalog: Catalog, field: str
) -> None:
    # an image.json would make the upload look like an OME-Zarr volume the portal serves
    image = {"format": "ome-zarr", "levels": [{"path": "0", "shape": [1, 1, 1, 16, 16]}]}
    (session.folder("metadata") / f"{field}.json").write_text(json.dumps(image))
    job = harness(session.spec())
    job.catalog = catalog
    job.run_until("upload_data_to_s3")
    with pytest.raises(TaskFailed) as info:
        job.call("register_data_asset")
    assert f"{field}.json name catalog fields that only the ingest job writes" in str(info.value)
    assert "image, ingest, type" in str(info.value)
    assert catalog.count({"name": ASSET}) == 0


def test_analyses_are_started_for_the_registered_asset(
    session: Session, harness: MakeHarness, catalog: Catalog, analysis_kind: None
) -> None:
    analyses = {
        "ECEPHYS": {"job_settings": {"analysis": "unit-quality", "parameters": {"cutoff": 0.5}}},
        "behavior": {"job_settings": {"analysis": "licks"}, "skip_task": True},
    }
    job = harness(with_analyses(session, analyses))
    job.catalog = catalog
    job.submit_job = submitted = Submitted()
    results = job.run_until("run_analyses")
    assert set(results["register_data_asset"]["analyses"]) == {"ecephys", "behavior"}
    assert results["run_analyses"] == {
        "ecephys": {"modality": "ecephys", "job_id": 101},
        "behavior": None,  # skipped
    }
    assert submitted.jobs == [
        (
            "analysis",
            {"analysis": "unit-quality", "parameters": {"cutoff": 0.5}, "query": {"name": ASSET}},
        )
    ]


def test_an_analysis_that_selects_its_own_data(
    session: Session, harness: MakeHarness, catalog: Catalog, analysis_kind: None
) -> None:
    query = {"subject.subject_id": "123456"}
    job = harness(
        with_analyses(session, {"ecephys": {"job_settings": {"analysis": "a", "query": query}}})
    )
    job.catalog = catalog
    job.submit_job = submitted = Submitted()
    job.run_until("run_analyses")
    assert submitted.jobs[0][1]["query"] == query


def test_without_the_analysis_kind_the_task_says_what_to_install(
    session: Session, harness: MakeHarness, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = _kinds.job_kinds()
    without = {name: kind for name, kind in installed.items() if name != "analysis"}
    monkeypatch.setattr("neuroferry.pipelines.upload._tasks.job_kinds", lambda: without)
    job = harness(with_analyses(session, {"ecephys": {"job_settings": {"analysis": "a"}}}))
    job.catalog = catalog
    job.submit_job = Submitted()
    job.run_until("register_data_asset")
    with pytest.raises(TaskFailed) as info:
        job.run("run_analyses")
    message = str(info.value)
    assert "the analysis for ecephys cannot start: no 'analysis' job kind is installed" in message
    assert "tasks.analysis_settings.ecephys.skip_task: true" in message


def test_an_analysis_spec_its_kind_refuses(
    session: Session, harness: MakeHarness, catalog: Catalog, analysis_kind: None
) -> None:
    job = harness(with_analyses(session, {"ecephys": {"job_settings": {"colour": "red"}}}))
    job.catalog = catalog
    job.submit_job = Submitted()
    job.run_until("register_data_asset")
    with pytest.raises(TaskFailed) as info:
        job.run("run_analyses")
    message = str(info.value)
    assert message.startswith("the analysis job for ecephys was refused: ")
    assert "fix tasks.analysis_settings.ecephys.job_settings" in message


def test_code_ocean_pipelines_are_skipped(
    session: Session, harness: MakeHarness, catalog: Catalog
) -> None:
    code_ocean = {"pipeline_monitor_settings": {"run_params": {"pipeline_id": "123-456"}}}
    spec = session.spec()
    spec["tasks"]["codeocean_pipeline_settings"] = {"ecephys": {"job_settings": code_ocean}}
    job = harness(spec)
    job.catalog = catalog
    results = job.run_until("run_analyses")
    assert results["run_analyses"] == {"ecephys": None}
    assert "Code Ocean" in job.summary["notes"][0]
