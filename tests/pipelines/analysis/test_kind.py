"""The ``analysis`` job kind end to end, on a real orchestrator, Dask cluster and database:
dispatch (N inputs x M parameter sets), results already computed skipped, results
uploaded to their own folders, provenance records written last and once."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from _rig import Rig, running_rig
from neuroferry.auth import create_user
from neuroferry.engine import (
    NewJob,
    cancel_job,
    read_log,
    register_kind,
    retry_job,
    submit_jobs,
)
from neuroferry.errors import Forbidden, InvalidInput, NotFound
from neuroferry.grants import access_for
from neuroferry.pipelines.analysis import (
    KIND,
    RESULT_KIND,
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    analysis_results,
    register_analysis,
)
from neuroferry.pipelines.upload._tasks import analysis_spec
from neuroferry.stores import RESERVED_PREFIX as RESERVED
from neuroferry.stores import open_store

register_kind(KIND)


class CountParameters(BaseModel):
    scale: float = 1.0
    label: str = "x"


class CountOutputs(BaseModel):
    bytes: int
    files: int


def count_bytes(run: AnalysisRun) -> CountOutputs:
    """Counts the bytes of every input (a file, or all files of an asset)."""
    p = run.parameters
    assert isinstance(p, CountParameters)
    total = files = 0
    for url in run.inputs.file_location or []:
        run.check_cancelled()
        parent, _, name = url.rpartition("/")
        total += run.open_store(parent).head(name).size
        files += 1
    for url in [] if run.inputs.file_location else run.inputs.s3_location:
        run.check_cancelled()
        entries = list(run.open_store(url).list())
        total += sum(e.size for e in entries)
        files += len(entries)
    summary = {"bytes": total, "scaled": total * p.scale, "label": p.label}
    (run.results / "summary.json").write_text(json.dumps(summary))
    (run.results / "parts").mkdir()
    (run.results / "parts" / "label.txt").write_text(p.label)
    return CountOutputs(bytes=total, files=files)


def fails(run: AnalysisRun) -> None:
    (run.results / "half.txt").write_text("written before the failure")
    raise RuntimeError("the analysis broke on purpose")


BROKEN = {"bad": True}
"""Whether ``fails-on-bad`` fails on the label ``bad`` (a test mends it before a retry)."""


def fails_on_bad(run: AnalysisRun) -> CountOutputs:
    assert isinstance(run.parameters, CountParameters)
    if run.parameters.label == "bad" and BROKEN["bad"]:
        raise RuntimeError("the label is bad")
    return count_bytes(run)


GATE = threading.Event()
"""Opens ``gated``'s runs with the label ``slow`` (they wait, checking for a cancel)."""
GATED_RUNS: list[str] = []


def gated(run: AnalysisRun) -> CountOutputs:
    assert isinstance(run.parameters, CountParameters)
    GATED_RUNS.append(run.parameters.label)
    while run.parameters.label == "slow" and not GATE.wait(0.05):
        run.check_cancelled()
    return count_bytes(run)


COUNT = Analysis("count-bytes", count_bytes, CountParameters, CountOutputs, version="1.0")
FAILS = Analysis("always-fails", fails, CountParameters, version="1.0")
register_analysis(COUNT)
register_analysis(FAILS)
register_analysis(Analysis("fails-on-bad", fails_on_bad, CountParameters, CountOutputs))
register_analysis(Analysis("gated", gated, CountParameters, CountOutputs))


@pytest.fixture(autouse=True)
def git_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The git state of the test analyses' source (clean, outside a checkout, unless a test
    says otherwise), whatever the state of the checkout the tests run from."""
    state: dict[str, Any] = {"commit": None, "dirty": False}
    monkeypatch.setattr(
        "neuroferry.pipelines.analysis._identity._git_state",
        lambda path: (state["commit"], state["dirty"]),
    )
    return state


@pytest.fixture
def rig(database_url: str) -> Iterator[Rig]:
    with running_rig(database_url) as r:
        r.start()
        yield r


def assets(rig: Rig, root: Path, names: list[str], files: int = 2) -> list[str]:
    """Assets in the catalog, each a folder of ``files`` ``.bin`` files and a note."""
    urls = []
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(files):
            (folder / f"part{i}.bin").write_bytes(name.encode() * (i + 1))
        (folder / "notes.txt").write_text("not analysed")
        rig.catalog.upsert({"name": name, "location": folder.as_uri()})
        urls.append(folder.as_uri())
    return urls


def job(analysis: str = "count-bytes", **spec: Any) -> dict[str, Any]:
    return {"analysis": analysis, "allow_dirty": True, **spec}


def run_states(rig: Rig, job_id: int) -> list[str]:
    return [t["state"] for k, t in rig.tasks(job_id).items() if k.startswith("run[")]


def run_attempts(rig: Rig, job_id: int) -> dict[str, int]:
    """The attempts of a job's ``run`` tasks, by the label of their parameter set."""
    return {
        (t["params"]["model"]["distributed_parameters"] or {}).get("label", "x"): t["attempt"]
        for k, t in rig.tasks(job_id).items()
        if k.startswith("run[")
    }


def records(rig: Rig) -> list[dict[str, Any]]:
    return rig.catalog.find({"kind": RESULT_KIND}, sort=[("name", 1)])


def finished(rig: Rig, job_id: int, state: str = "succeeded") -> dict[str, Any]:
    job_row = rig.wait(job_id, timeout=120)
    assert job_row["state"] == state, rig.states(job_id)
    return job_row


SETS = [{"scale": 1.0}, {"scale": 2.0}, {"scale": 3.0, "label": "y"}]


def test_n_assets_by_m_parameter_sets_run_once_each_and_are_recorded(
    rig: Rig, tmp_path: Path
) -> None:
    assets(rig, tmp_path / "data", ["asset-a", "asset-b"])
    spec = job(query={"name": {"$in": ["asset-a", "asset-b"]}}, distributed_parameters=SETS)
    job_id = rig.submit("analysis", spec)
    finished(rig, job_id)
    assert run_states(rig, job_id) == ["succeeded"] * 6

    docs = records(rig)
    assert len(docs) == 6
    lake = Path(rig.settings.store_url.removeprefix("file://")) / "analysis" / "count-bytes"
    for doc in docs:
        assert doc["location"] == f"{rig.settings.store_url}/analysis/count-bytes/{doc['name']}"
        assert doc["job_id"] == job_id and doc["identity"] == doc["name"]
        assert doc["code"]["name"] == "count-bytes" and doc["code"]["version"] == "1.0"
        [asset] = doc["inputs"]["assets"]
        assert asset["name"] in ("asset-a", "asset-b") and asset["record_id"]
        assert doc["outputs"]["files"] == 3 and doc["outputs"]["bytes"] > 0
        folder = lake / doc["name"]
        written = sorted(
            key
            for p in folder.rglob("*")
            if p.is_file() and not (key := p.relative_to(folder).as_posix()).startswith(RESERVED)
        )
        assert written == ["parts/label.txt", "summary.json"]
        assert [f["path"] for f in doc["files"]] == written
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["scaled"] == summary["bytes"] * doc["parameters"]["scale"]
        assert doc["python"] and doc["host"] and doc["started"] <= doc["finished"]
        assert doc["resources"]["user_seconds"] >= 0
    assert {d["parameters"]["scale"] for d in docs} == {1.0, 2.0, 3.0}
    assert rig.tasks(job_id)["record"]["result"] == {"recorded": 6, "already_recorded": 0}
    listed = analysis_results(rig.engine, job_id)
    assert [r["state"] for r in listed] == ["computed"] * 6
    assert {r["record_id"] for r in listed} == {d["_id"] for d in docs}

    # the same job again computes nothing: every result is recorded already
    again = rig.submit("analysis", spec)
    finished(rig, again)
    assert run_states(rig, again) == ["skipped"] * 6
    assert rig.tasks(again)["dispatch"]["result"]["already_computed"] == 6
    assert len(records(rig)) == 6
    listed = analysis_results(rig.engine, again)
    assert [r["state"] for r in listed] == ["skipped"] * 6
    assert {r["location"] for r in listed} == {d["location"] for d in docs}

    # one parameter set changed: only its two tasks run
    changed = job(
        query={"name": {"$in": ["asset-a", "asset-b"]}},
        distributed_parameters=[*SETS[:2], {"scale": 4.0, "label": "y"}],
    )
    third = rig.submit("analysis", changed)
    finished(rig, third)
    assert sorted(run_states(rig, third)) == ["skipped"] * 4 + ["succeeded"] * 2
    assert len(records(rig)) == 8

    # forced: computed again, the records replaced (not added)
    forced = rig.submit("analysis", {**spec, "force": True})
    finished(rig, forced)
    assert run_states(rig, forced) == ["succeeded"] * 6
    assert len(records(rig)) == 8


def test_split_files_make_a_task_per_file(rig: Rig, tmp_path: Path) -> None:
    urls = assets(rig, tmp_path / "data", ["asset-a", "asset-b"], files=3)
    job_id = rig.submit("analysis", job(locations=urls, file_extension=".bin"))
    finished(rig, job_id)
    assert run_states(rig, job_id) == ["succeeded"] * 6
    docs = records(rig)
    assert sorted(d["inputs"]["locations"][0].rpartition("/")[2] for d in docs) == sorted(
        ["part0.bin", "part1.bin", "part2.bin"] * 2
    )
    for doc in docs:
        [file] = doc["inputs"]["files"]
        assert file["location"] == doc["inputs"]["locations"][0] and file["size"] > 0

    # without split_files: one task per asset, with all its files
    whole = rig.submit("analysis", job(locations=urls, file_extension="bin", split_files=False))
    finished(rig, whole)
    assert run_states(rig, whole) == ["succeeded"] * 2
    assert {len(d["inputs"]["files"]) for d in records(rig)} == {1, 3}


def test_a_failing_analysis_fails_its_task_and_leaves_no_results(rig: Rig, tmp_path: Path) -> None:
    assets(rig, tmp_path / "data", ["asset-a"])
    job_id = rig.submit("analysis", job("always-fails", query={"name": "asset-a"}))
    job_row = finished(rig, job_id, "failed")
    assert "the analysis broke on purpose" in job_row["error"]
    log = read_log(rig.engine, rig.log_store, job_id, "run", 0)
    assert "Traceback" in log and "RuntimeError: the analysis broke on purpose" in log
    assert records(rig) == []
    assert not (Path(rig.settings.store_url.removeprefix("file://")) / "analysis").exists()
    assert [r["state"] for r in analysis_results(rig.engine, job_id)] == ["failed"]
    assert analysis_results(rig.engine, job_id)[0]["location"] is None


def test_results_of_the_tasks_that_succeeded_are_recorded_and_a_retry_records_the_rest(
    rig: Rig, tmp_path: Path
) -> None:
    assets(rig, tmp_path / "data", ["asset-a"])
    sets = [{"label": "good"}, {"label": "bad"}]
    job_id = rig.submit(
        "analysis", job("fails-on-bad", query={"name": "asset-a"}, distributed_parameters=sets)
    )
    finished(rig, job_id, "failed")
    assert sorted(r["state"] for r in analysis_results(rig.engine, job_id)) == [
        "computed",
        "failed",
    ]
    [good] = records(rig)
    assert good["parameters"]["label"] == "good"

    BROKEN["bad"] = False
    try:
        retry_job(rig.engine, rig.log_store, job_id)
        rig.wake()
        finished(rig, job_id)
    finally:
        BROKEN["bad"] = True
    labels = sorted(doc["parameters"]["label"] for doc in records(rig))
    assert labels == ["bad", "good"]  # the record step ran again, and wrote one more
    assert run_attempts(rig, job_id) == {"good": 1, "bad": 3}  # two tries, then the retry
    assert good in records(rig)  # the recorded result was neither run nor written again
    assert rig.tasks(job_id)["record"]["result"] == {"recorded": 1, "already_recorded": 1}


@pytest.fixture
def gate() -> Iterator[None]:
    """``gated``'s slow runs wait until the test opens the gate (or ends)."""
    GATE.clear()
    GATED_RUNS.clear()
    yield
    GATE.set()


def test_a_cancel_stops_the_tasks_left_and_a_retry_runs_only_those(
    rig: Rig, tmp_path: Path, gate: None
) -> None:
    assets(rig, tmp_path / "data", ["asset-a"])
    earlier = rig.submit("analysis", job("gated", query={"name": "asset-a"}))
    finished(rig, earlier)
    [kept] = records(rig)

    sets = [{}, {"label": "quick"}, {"label": "slow"}]  # {}: the earlier job's result
    job_id = rig.submit(
        "analysis", job("gated", query={"name": "asset-a"}, distributed_parameters=sets)
    )
    deadline = time.monotonic() + 60
    while not ("slow" in GATED_RUNS and "succeeded" in run_states(rig, job_id)):
        assert time.monotonic() < deadline, rig.states(job_id)
        time.sleep(0.02)
    cancel_job(rig.engine, rig.log_store, job_id)
    finished(rig, job_id, "cancelled")
    by_state = {line["state"]: line for line in analysis_results(rig.engine, job_id)}
    assert set(by_state) == {"skipped", "computed", "cancelled"}
    assert by_state["skipped"]["record_id"] == kept["_id"]
    assert rig.tasks(job_id)["record"]["state"] == "cancelled"
    assert records(rig) == [kept]  # the record made before stays, as it was
    # the cancelled run uploaded nothing; the one that finished has its files, unrecorded
    [slow] = [t for k, t in rig.tasks(job_id).items() if k.startswith("run[") and t["error"]]
    assert slow["state"] == "cancelled"
    assert not Path(slow["params"]["location"].removeprefix("file://")).exists()
    quick = Path(by_state["computed"]["location"].removeprefix("file://"))
    assert (quick / "summary.json").is_file() and by_state["computed"]["record_id"] is None

    GATE.set()
    retry_job(rig.engine, rig.log_store, job_id)
    rig.wake()
    finished(rig, job_id)
    assert sorted(GATED_RUNS) == ["quick", "slow", "slow", "x"]  # only the cancelled ran again
    assert run_attempts(rig, job_id) == {"x": 0, "quick": 1, "slow": 2}
    assert rig.tasks(job_id)["record"]["result"] == {"recorded": 2, "already_recorded": 0}
    docs = records(rig)
    assert sorted(d["parameters"]["label"] for d in docs) == ["quick", "slow", "x"]
    assert next(d for d in docs if d["_id"] == kept["_id"]) == kept
    assert {line["state"] for line in analysis_results(rig.engine, job_id)} == {
        "skipped",
        "computed",
    }


def test_invalid_parameters_are_refused_before_any_task_runs(rig: Rig, tmp_path: Path) -> None:
    assets(rig, tmp_path / "data", ["asset-a"])
    bad = job(query={"name": "asset-a"}, distributed_parameters=[{}, {"scale": "big"}])
    with pytest.raises(InvalidInput, match=r"distributed_parameters\[1\]: .*scale"):
        rig.submit("analysis", bad)
    with pytest.raises(InvalidInput, match="unknown analysis 'nope'"):
        rig.submit("analysis", job("nope", query={"name": "asset-a"}))
    with pytest.raises(InvalidInput, match="exactly one way"):
        rig.submit("analysis", job(query={"name": "a"}, locations=[tmp_path.as_uri()]))


@pytest.mark.s3
def test_inputs_read_from_and_results_written_to_s3(
    tmp_path: Path, s3_server: Any, s3_env: str
) -> None:
    data = open_store(f"{s3_env}/data/asset-s", create=True)
    data.put("x.bin", b"12345")
    data.put("deep/y.bin", b"678")
    with running_rig(f"sqlite:///{tmp_path / 'ferry.db'}") as rig:
        rig.start()
        rig.catalog.upsert({"name": "asset-s", "location": f"{s3_env}/data/asset-s"})
        spec = job(
            query={"name": "asset-s"},
            file_extension=".bin",
            split_files=False,
            results=f"{s3_env}/results",
        )
        job_id = rig.submit("analysis", spec)
        finished(rig, job_id)
        [doc] = records(rig)
        assert doc["location"] == f"{s3_env}/results/count-bytes/{doc['name']}"
        assert doc["outputs"] == {"bytes": 8, "files": 2}
        read = {f["location"]: f for f in doc["inputs"]["files"]}
        for key in ("x.bin", "deep/y.bin"):
            file = read[f"{s3_env}/data/asset-s/{key}"]
            assert file["size"] == data.head(key).size and file["etag"] == data.head(key).etag

        results = open_store(doc["location"])
        stored = {e.path: results.get(e.path) for e in results.list() if e.path[0] != "."}
        assert sorted(stored) == [f["path"] for f in doc["files"]]
        assert sorted(stored) == ["parts/label.txt", "summary.json"]
        for file in doc["files"]:
            assert file["sha256"] == hashlib.sha256(stored[file["path"]]).hexdigest()
            assert file["size"] == len(stored[file["path"]])
        assert json.loads(stored["summary.json"])["bytes"] == 8
        # and the S3 server holds them where the record says
        bucket = s3_env.removeprefix("s3://")
        folder = s3_server.root / bucket / "results" / "count-bytes" / doc["name"]
        assert (folder / "parts" / "label.txt").read_bytes() == stored["parts/label.txt"]
        [line] = analysis_results(rig.engine, job_id)
        assert (line["state"], line["location"]) == ("computed", doc["location"])


def test_the_upload_pipelines_analysis_spec_runs(rig: Rig, tmp_path: Path) -> None:
    assets(rig, tmp_path / "data", ["ecephys_1"])
    settings = {"job_settings": {"analysis": "count-bytes", "allow_dirty": True}}
    spec = analysis_spec("ecephys_1", settings)
    assert AnalysisSpec.model_validate(spec).query == {"name": "ecephys_1"}
    job_id = rig.submit("analysis", spec)
    finished(rig, job_id)
    [doc] = records(rig)
    assert doc["inputs"]["assets"][0]["name"] == "ecephys_1"
    assert doc["inputs"]["query"] == json.dumps({"name": "ecephys_1"})


def test_a_user_may_analyse_only_what_they_may_read(rig: Rig, tmp_path: Path) -> None:
    urls = assets(rig, tmp_path / "data", ["asset-a"])
    alice = access_for(rig.settings, "alice", "user")
    new = NewJob("analysis", job(locations=urls))
    with pytest.raises(Forbidden, match=r"locations\[0\]"):
        submit_jobs(rig.engine, [new], owner_id=None, settings=rig.settings, access=alice)
    readable = [f"{rig.settings.store_url}/asset-a"]
    elsewhere = NewJob("analysis", job(locations=readable, results=(tmp_path / "out").as_uri()))
    with pytest.raises(Forbidden, match="results"):
        submit_jobs(rig.engine, [elsewhere], owner_id=None, settings=rig.settings, access=alice)


def test_a_result_of_code_with_uncommitted_changes_is_never_reused(
    rig: Rig, tmp_path: Path, git_state: dict[str, Any]
) -> None:
    git_state.update(commit="c" * 40, dirty=True)
    spec = job(locations=assets(rig, tmp_path / "data", ["asset-a"]))
    first = rig.submit("analysis", spec)
    finished(rig, first)
    again = rig.submit("analysis", spec)
    finished(rig, again)
    assert run_states(rig, again) == ["succeeded"]
    [doc] = records(rig)  # replaced, not added
    assert doc["code"]["dirty"] is True and doc["job_id"] == again
    [line] = analysis_results(rig.engine, again)
    assert (line["state"], line["record_id"]) == ("computed", doc["_id"])


def test_two_users_computing_the_same_result_each_get_their_own_record(rig: Rig) -> None:
    shared = Path(rig.settings.store_url.removeprefix("file://")) / "shared"
    shared.mkdir(parents=True)
    (shared / "part0.bin").write_bytes(b"the same data for both")
    alice = create_user(rig.engine, "alice")
    bob = create_user(rig.engine, "bob")
    spec = job(locations=[f"{rig.settings.store_url}/shared"])

    first = rig.submit("analysis", spec, owner_id=alice.id)
    finished(rig, first)
    second = rig.submit("analysis", spec, owner_id=bob.id)
    finished(rig, second)
    assert run_states(rig, first) == run_states(rig, second) == ["succeeded"]
    [mine] = rig.catalog.find({"kind": RESULT_KIND}, viewer=alice)
    [theirs] = rig.catalog.find({"kind": RESULT_KIND}, viewer=bob)
    assert mine["identity"] == theirs["identity"] and mine["_id"] != theirs["_id"]
    assert mine["name"] == f"{mine['identity']}.{alice.id}" and mine["job_id"] == first
    assert theirs["name"] == f"{theirs['identity']}.{bob.id}" and theirs["job_id"] == second
    # and their own results folders: bob's run does not replace alice's files
    assert mine["location"].endswith(f"/{mine['name']}") and mine["location"] != theirs["location"]
    assert Path(mine["location"].removeprefix("file://"), "summary.json").is_file()
    [line] = analysis_results(rig.engine, second, bob)
    assert (line["state"], line["record_id"]) == ("computed", theirs["_id"])
    with pytest.raises(NotFound):
        analysis_results(rig.engine, second, alice)

    # each user's own result is reused for them, and its record not written again
    again = rig.submit("analysis", spec, owner_id=alice.id)
    finished(rig, again)
    assert run_states(rig, again) == ["skipped"]
    [line] = analysis_results(rig.engine, again, alice)
    assert (line["state"], line["record_id"]) == ("skipped", mine["_id"])
    assert len(records(rig)) == 2
