"""The wrapper run locally (a dry run writes nothing), provenance records, their shape in
the original wrapper's ``metadata.nd.json``, and the record task's idempotence."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from neuroferry.catalog import Catalog
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.analysis import (
    RESULT_KIND,
    Analysis,
    AnalysisRun,
    code_identity,
    prepare_task,
    provenance_record,
    run_locally,
    seed_record,
    seed_record_json,
)
from neuroferry.pipelines.analysis._tasks import record

from ._data import dispatch

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-analysis"


class Params(BaseModel):
    threshold: float = 0.5
    method: str = "mean"


class Outputs(BaseModel):
    n: int


def write_two(run: AnalysisRun) -> dict[str, Any]:
    (run.results / "table.csv").write_text("a,b\n1,2\n")
    (run.results / "deep" / "er").mkdir(parents=True)
    (run.results / "deep" / "er" / "x.bin").write_bytes(b"\x00" * 10)
    return {"n": 2}


TWO = Analysis("write-two", write_two, Params, Outputs, version="2.0")


def inputs(tmp_path: Path) -> Any:
    asset = tmp_path / "asset"
    (asset / "sub").mkdir(parents=True)
    (asset / "sub" / "f.nwb").write_bytes(b"nwb data")
    (asset / "volume.zarr").mkdir()
    (asset / "volume.zarr" / "zarr.json").write_text("{}")
    (asset / "volume.zarr" / "c0").write_bytes(b"12345")
    url = asset.as_uri()
    return dispatch(
        [url],
        [f"{url}/sub/f.nwb", f"{url}/volume.zarr"],
        distributed_parameters={"threshold": 2},
        query='{"name": "asset"}',
    )


def test_a_dry_run_says_what_would_be_uploaded_and_recorded(tmp_path: Path) -> None:
    model = inputs(tmp_path)
    done = run_locally(TWO, model, {"method": "max", "threshold": 1}, allow_dirty=True)
    assert done["location"] is None and done["outputs"] == {"n": 2}
    assert done["parameters"] == {"threshold": 2.0, "method": "max"}  # distributed wins
    assert done["files"] == [
        {"path": "deep/er/x.bin", "size": 10, "sha256": hashlib.sha256(b"\x00" * 10).hexdigest()},
        {"path": "table.csv", "size": 8, "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()},
    ]
    assert [(f["size"], f.get("files")) for f in done["input_files"]] == [
        (8, None),
        (7, 2),
    ]
    task = prepare_task(TWO, model, code_identity(TWO, True), {"method": "max"})
    assert done["identity"] == task.identity
    record_ = done["record"]
    assert record_["name"] == task.identity and record_["kind"] == RESULT_KIND
    assert record_["inputs"]["assets"] == [
        {"name": "asset", "location": model.s3_location[0], "record_id": "record-0"}
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asset"]  # nothing written

    # uploaded: to {results}/{analysis}/{identity}
    results = (tmp_path / "results").as_uri()
    uploaded = run_locally(TWO, model, {"method": "max"}, dry_run=False, results=results)
    folder = tmp_path / "results" / "write-two" / task.identity
    assert uploaded["location"] == folder.as_uri()
    assert (folder / "deep" / "er" / "x.bin").read_bytes() == b"\x00" * 10
    with pytest.raises(InvalidInput, match="results"):
        run_locally(TWO, model, dry_run=False)


def test_outputs_the_output_model_refuses_fail_the_run(tmp_path: Path) -> None:
    bad = Analysis("bad-outputs", lambda run: {"n": "many"}, Params, Outputs)
    with pytest.raises(InvalidInput, match="refuses: n"):
        run_locally(bad, inputs(tmp_path), allow_dirty=True)


def test_the_seed_shape_has_the_original_fields(tmp_path: Path) -> None:
    done = run_locally(TWO, inputs(tmp_path), allow_dirty=True)
    seed = seed_record(done["record"], ["someone@example.org"])
    process = seed["processing"]["data_processes"][0]
    assert seed["name"] == done["identity"]
    assert process["code"]["parameters"]["file_location"] == done["inputs"]["file_location"]
    assert process["code"]["input_data"] == [
        {"object_type": "Data asset", "name": "asset", "url": done["inputs"]["s3_location"][0]}
    ]
    assert process["output_parameters"] == {"n": 2}
    assert "Query used to retrieve data assets" in process["notes"]
    assert json.loads(seed_record_json(done["record"])) == seed_record(done["record"])

    original = FIXTURES / "record" / "metadata.nd.json"
    if not original.exists():
        pytest.skip("the original wrapper's sample record is not here")
    theirs = json.loads(original.read_text())
    assert list(seed) == list(theirs)
    assert list(seed["processing"]) == list(theirs["processing"])
    their_process = theirs["processing"]["data_processes"][0]
    assert list(process) == list(their_process)
    assert list(process["code"]) == list(their_process["code"])


def test_the_record_task_writes_each_record_once(catalog: Catalog, tmp_path: Path) -> None:
    done = run_locally(TWO, inputs(tmp_path), allow_dirty=True)
    result = {k: v for k, v in done.items() if k != "record"}
    ctx = SimpleNamespace(
        upstream={"run": {done["identity"]: result, "skipped-one": None}},
        spec={"analysis": "write-two"},
        catalog=catalog,
        db=catalog.engine,
        owner_id=None,
        job_id=7,
        log=logging.getLogger("test-record"),
    )
    assert record(ctx) == {"recorded": 1, "already_recorded": 0}  # type: ignore[arg-type]
    # run again (as after a crash): nothing new
    assert record(ctx) == {"recorded": 0, "already_recorded": 1}  # type: ignore[arg-type]
    [doc] = catalog.find({"kind": RESULT_KIND})
    assert doc == {"_id": doc["_id"], **provenance_record(result, 7)}


def test_every_run_starts_in_an_empty_private_results_folder(tmp_path: Path) -> None:
    from neuroferry.pipelines.analysis._wrapper import _scratch_folder

    with _scratch_folder(None) as first:
        assert list(first.iterdir()) == [first / "results"]
        assert list((first / "results").iterdir()) == []
        assert oct(first.stat().st_mode & 0o777) == "0o700"
    assert not first.exists()  # left empty: removed
    with _scratch_folder(None) as second:  # never the folder of an earlier run
        assert second != first and list((second / "results").iterdir()) == []
        (second / "results" / "out.txt").write_text("made")
        (second / "stray.txt").write_text("left beside the results")
    assert not second.exists()  # files left: removed whole
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file.txt").write_text("not the run's")
    with _scratch_folder(None) as third:
        (third / "results").rmdir()
        (third / "results").symlink_to(kept)  # a link is removed, not what it leads to
    assert not third.exists()
    assert (kept / "file.txt").read_text() == "not the run's"
