"""An upload whose job settings ask for analyses, end to end through the engine: the upload
registers the new asset and starts an ``analysis`` job over it, which computes and records
its result; analysis settings the analysis kind refuses fail the upload's ``run_analyses``
task, naming the setting to fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from _rig import running_rig
from _session import ASSET, make_session, tree, upload_spec
from neuroferry.engine import list_jobs
from neuroferry.pipelines.analysis import RESULT_KIND


def with_analyses(session: Path, analyses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The upload of ``session`` asking for an analysis per modality (their job settings)."""
    settings = {m: {"job_settings": s} for m, s in analyses.items()}
    return upload_spec(session, tasks={"analysis_settings": settings}, **extra)


# the checkout the tests run from may hold uncommitted changes of the installed analyses
SUMMARY = {"analysis": "file-summary", "parameters": {"label": "x"}, "allow_dirty": True}


def test_an_upload_with_analysis_settings_records_an_analysis_of_the_new_asset(
    tmp_path: Path,
) -> None:
    session = make_session(tmp_path / "session")
    with running_rig(f"sqlite:///{tmp_path / 'ferry.db'}") as rig:
        rig.start()
        upload = rig.submit("upload", with_analyses(session, {"ecephys": SUMMARY}))
        assert rig.wait(upload, timeout=120)["state"] == "succeeded", rig.states(upload)
        [asset] = rig.catalog.find({"name": ASSET})
        started = rig.tasks(upload)["run_analyses[ecephys]"]
        assert started["state"] == "succeeded"
        analysis_job = started["result"]["job_id"]
        assert started["result"] == {"modality": "ecephys", "job_id": analysis_job}

        job = rig.wait(analysis_job, timeout=120)
        assert job["state"] == "succeeded", rig.states(analysis_job)
        assert job["kind"] == "analysis" and job["name"] == f"file-summary {ASSET}"
        assert job["spec"]["query"] == {"name": ASSET}
        [record] = rig.catalog.find({"kind": RESULT_KIND})
        assert record["job_id"] == analysis_job and record["analysis"] == "file-summary"
        assert record["inputs"]["assets"] == [
            {"name": ASSET, "location": asset["location"], "record_id": asset["_id"]}
        ]
        assert record["inputs"]["locations"] == [asset["location"]]
        assert record["parameters"]["label"] == "x"
        results = f"{rig.settings.store_url}/analysis/file-summary/{record['identity']}"
        assert record["location"] == results
        folder = Path(results.removeprefix("file://"))
        assert [f["path"] for f in record["files"]] == ["summary.json"]
        written = (folder / "summary.json").read_bytes()
        assert record["files"][0]["sha256"] == hashlib.sha256(written).hexdigest()
        summary = json.loads(written)
        assert summary["label"] == "x"
        # every uploaded file of the asset was read: its checksum is the source's
        by_path = {f["path"]: f["sha256"] for f in summary["files"]}
        for rel, sha in tree(session / "ecephys").items():
            assert by_path[f"ecephys/{rel}"] == sha
        assert record["outputs"]["files"] == summary["totals"]["files"] == len(by_path)


def test_analysis_settings_the_analysis_kind_refuses_fail_run_analyses_naming_them(
    tmp_path: Path,
) -> None:
    session = make_session(tmp_path / "session")
    with running_rig(f"sqlite:///{tmp_path / 'ferry.db'}") as rig:
        rig.start()
        outside = (Path(rig.settings.home) / "mine").as_uri()  # the service's own files
        analyses = {
            "ecephys": {**SUMMARY, "parameters": {"bins": 0}},
            "behavior": {**SUMMARY, "results": outside},
            "behavior-videos": {"analysis": "no-such-analysis"},
        }
        upload = rig.submit("upload", with_analyses(session, analyses))
        job = rig.wait(upload, timeout=120)
        assert job["state"] == "failed", rig.states(upload)
        assert "run_analyses" in job["error"]
        tasks = rig.tasks(upload)
        assert tasks["register_data_asset"]["state"] == "succeeded"  # the asset is there
        assert rig.catalog.count({"name": ASSET}) == 1
        errors = {m: tasks[f"run_analyses[{m}]"]["error"] for m in analyses}
        for modality, error in errors.items():
            assert error.startswith(f"the analysis job for {modality} was refused: "), error
            assert error.endswith(f"fix tasks.analysis_settings.{modality}.job_settings"), error
        assert "bins" in errors["ecephys"] and "greater than or equal to 1" in errors["ecephys"]
        assert "results" in errors["behavior"]
        assert "unknown analysis 'no-such-analysis'" in errors["behavior-videos"]
        assert rig.catalog.count({"kind": RESULT_KIND}) == 0
        assert [j["kind"] for j in list_jobs(rig.engine)[0]] == ["upload"]  # none started
