"""Drop-boxes end to end, on a local folder and on the real S3 server: a submit file in a
group's ``submissions/`` becomes one analysis job with a task per dataset, and the
certificate, the dataset status files, the results and ``end.txt`` appear beside it; bad
submissions get a certificate naming the problem and run nothing; a file is never run
twice; a group cannot name another group's data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _box import (
    BOX,
    JOB,
    Box,
    clean_git_state,  # noqa: F401  (autouse)
    wait_for,
)

from _rig import running_rig
from neuroferry.auth import create_user
from neuroferry.dropbox import (
    END_MARKER,
    add_group,
    certificate_key,
    end_key,
    publish_dropbox,
    status_key,
)
from neuroferry.stores import open_store


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Box]:
    if request.param == "file":
        (tmp_path / "caiman-ncap-web").mkdir()
        url = (tmp_path / "caiman-ncap-web").as_uri()
    else:
        url = request.getfixturevalue("s3_env")  # a whole bucket, as the original has
    with running_rig("sqlite:///" + str(tmp_path / "ferry.db"), dropbox_poll=0.1) as rig:
        admin = create_user(rig.engine, "admin", "admin")
        for name in ("alice", "bob"):
            create_user(rig.engine, name)
        publish_dropbox(rig.engine, rig.settings, admin, BOX, "count-lines", url)
        add_group(rig.engine, rig.settings, admin, "user1", BOX, ["alice"])
        add_group(rig.engine, rig.settings, admin, "user2", BOX, ["bob"])
        store = open_store(url)
        rig.start()
        yield Box(rig, store, url)


def test_a_group_gets_its_four_folders(box: Box) -> None:
    listed = {e.path for e in box.store.list("user1/")}
    if box.store.local_root is None:
        assert listed == {
            f"user1/{f}/.keep" for f in ("inputs", "configs", "submissions", "results")
        }
        listed = {p.removesuffix("/.keep") for p in listed}
    else:
        listed = {
            p.relative_to(box.store.local_root).as_posix()
            for p in (box.store.local_root / "user1").iterdir()
        }
    assert listed == {"user1/inputs", "user1/configs", "user1/submissions", "user1/results"}


def test_three_datasets_make_three_tasks_certificate_status_results_and_end(box: Box) -> None:
    for i in (1, 2, 3):
        box.put(f"user1/inputs/data{i}.txt", "line\n" * i)
    box.put("user1/configs/config.yaml", "__duration__: 120\n__dataset_size__: 50\nscale: 2\n")
    names = [f"user1/inputs/data{i}.txt" for i in (1, 2, 3)]
    box.submit(
        "user1/submissions/submit.json",
        {"dataname": names, "configname": "user1/configs/config.yaml", "timestamp": 1709647330},
    )
    wait_for(lambda: box.exists(end_key(JOB)), "end.txt")
    assert box.store.get(end_key(JOB)) == END_MARKER

    [job] = box.analysis_jobs()
    assert box.rig.wait(job["id"])["state"] == "succeeded"
    runs = {k: t for k, t in box.rig.tasks(job["id"]).items() if k.startswith("run[")}
    assert len(runs) == 3 and {t["state"] for t in runs.values()} == {"succeeded"}
    # the drop-box's own keys left out, the parameters as the analysis validated them
    assert job["spec"]["fixed_parameters"] == {"scale": 2.0, "label": ""}

    cert = box.text(certificate_key(JOB))
    lines = [line for line in cert.splitlines() if line.startswith("DATANAME:")]
    assert [line.split(" | ")[0] for line in lines] == [f"DATANAME: {n}" for n in names]
    assert all("| STATUS: SUCCESS |" in line and "(finished)" in line for line in lines)
    assert "parameter __duration__ given: 120" in cert
    assert "STEP 3/3 (Submission): DONE" in cert and "JOB ID: 1709647330\t [+" in cert

    for i in (1, 2, 3):
        status = json.loads(box.text(status_key(JOB, f"data{i}.txt")))
        assert status["input"] == f"user1/inputs/data{i}.txt"
        assert status["status"] == "SUCCESS" and status["reason"] == 0
        assert any(f"counting data{i}.txt" in line for line in status["std"].values())
        results = status["results"]
        assert results.startswith(f"{JOB}/process_results/count-lines/")
        assert json.loads(box.text(f"{results}/lines.json")) == {
            "label": "",
            f"data{i}.txt": 2.0 * i,
        }

    # the same file again (a new upload, the same bytes) is not run twice
    box.submit(
        "user1/submissions/submit.json",
        {"dataname": names, "configname": "user1/configs/config.yaml", "timestamp": 1709647330},
    )
    box.settle()
    assert len(box.analysis_jobs()) == 1


def test_a_failed_dataset_still_ends_with_its_final_state(box: Box) -> None:
    box.put("user1/inputs/good.txt", "a\nb\n")
    box.put("user1/inputs/bad.txt", "fail\n")
    box.put("user1/configs/c.json", "{}")
    box.submit(
        "user1/submissions/two_submit.json",
        {
            "dataname": ["user1/inputs/good.txt", "user1/inputs/bad.txt"],
            "configname": "user1/configs/c.json",
            "timestamp": "t1",
        },
    )
    folder = f"user1/results/job__{BOX}_t1"
    wait_for(lambda: box.exists(end_key(folder)), "end.txt")
    good = json.loads(box.text(status_key(folder, "good.txt")))
    bad = json.loads(box.text(status_key(folder, "bad.txt")))
    assert good["status"] == "SUCCESS"
    assert bad["status"] == "FAILED" and bad["reason"] == 1 and "asks to fail" in bad["error"]
    cert = box.text(certificate_key(folder))
    assert "DATANAME: user1/inputs/bad.txt | STATUS: FAILED" in cert


def refused(box: Box, folder: str) -> str:
    """The certificate of a refused submission, once it is there with its end.txt."""
    wait_for(lambda: box.exists(end_key(folder)), f"end.txt of {folder}")
    assert not box.exists(f"{folder}/logs/DATASET_NAME:data1.txt_STATUS.txt")
    return box.text(certificate_key(folder))


def test_bad_submissions_get_a_certificate_naming_the_problem_and_run_nothing(
    box: Box,
) -> None:
    box.put("user1/inputs/data1.txt", "x\n")
    box.put("user2/inputs/secret.txt", "x\n")
    box.put("user1/configs/config.yaml", "scale: 1\n")
    box.put("user1/configs/wrong.yaml", "scale: lots\nspeed: 3\n")
    box.put("user1/configs/duration.yaml", "__duration__: soon\n")
    config = "user1/configs/config.yaml"
    cases = {
        "json": '{"dataname": "user1/inputs/data1.txt", "configname": "x" "timestamp": "1"}',
        "no_data": {"configname": config, "timestamp": "2"},
        "other_group": {
            "dataname": ["user1/inputs/data1.txt", "user2/inputs/secret.txt"],
            "configname": config,
            "timestamp": "3",
        },
        "climbs": {
            "dataname": "user1/../user2/inputs/secret.txt",
            "configname": config,
            "timestamp": "4",
        },
        "missing": {"dataname": "user1/inputs/nope.txt", "configname": config, "timestamp": "5"},
        "params": {
            "dataname": "user1/inputs/data1.txt",
            "configname": "user1/configs/wrong.yaml",
            "timestamp": "6",
        },
        "duration": {
            "dataname": "user1/inputs/data1.txt",
            "configname": "user1/configs/duration.yaml",
            "timestamp": "7",
        },
        "no_config": {
            "dataname": "user1/inputs/data1.txt",
            "configname": "user1/configs/x.json",
            "timestamp": "8",
        },
        "bypass": {"dataname": "s3://elsewhere/data.bin", "configname": config, "timestamp": "9"},
    }
    for name, fields in cases.items():
        box.submit(f"user1/submissions/{name}_submit.json", fields)
    certs = {
        "json": refused(box, f"user1/results/job__{BOX}_json_submit"),
        **{
            name: refused(box, f"user1/results/job__{BOX}_{fields['timestamp']}")
            for name, fields in cases.items()
            if isinstance(fields, dict)
        },
    }
    assert "not valid JSON: Expecting ',' delimiter at line 1" in certs["json"]
    assert "does not contain field 'dataname'" in certs["no_data"]
    assert (
        "dataname[1]': user2/inputs/secret.txt is not inside your group's folder user1/"
        in (certs["other_group"])
    )
    assert "segment '..'" in certs["climbs"]
    assert "cannot be found: ['user1/inputs/nope.txt']" in certs["missing"]
    assert "scale: Input should be a valid number" in certs["params"]
    assert "speed: Extra inputs are not permitted" in certs["params"]
    assert "__duration__ parameter is not valid" in certs["duration"]
    assert "configuration file that cannot be found: user1/configs/x.json" in certs["no_config"]
    assert "this submission mixes URLs and paths in your group's folder" in certs["bypass"]
    for cert in certs.values():
        assert "What to do: " in cert and "Nothing was run." in cert
    assert box.analysis_jobs() == []
    assert {s["state"] for s in box.submissions()} == {"rejected"}


def test_a_timestamp_used_before_leaves_the_earlier_job_alone(box: Box) -> None:
    box.put("user1/inputs/data1.txt", "x\n")
    box.put("user1/configs/c.yaml", "label: first\n")
    fields = {
        "dataname": "user1/inputs/data1.txt",
        "configname": "user1/configs/c.yaml",
        "timestamp": "same",
    }
    box.submit("user1/submissions/submit.json", fields)
    folder = f"user1/results/job__{BOX}_same"
    wait_for(lambda: box.exists(end_key(folder)), "end.txt")
    before = box.text(certificate_key(folder))
    box.submit(
        "user1/submissions/again_submit.json", {**fields, "dataname": ["user1/inputs/data1.txt"]}
    )
    notes = wait_for(
        lambda: [e.path for e in box.store.list(f"{folder}/logs/") if "rejected_again" in e.path],
        "the note",
    )
    assert "which submit file user1/submissions/submit.json" in box.text(notes[0])
    assert box.text(certificate_key(folder)) == before
    assert len(box.analysis_jobs()) == 1


FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "neurocaas"


def fixture_text(name: str) -> str:
    path = FIXTURES / "submit" / name
    if not path.is_file():
        pytest.skip(f"the original's sample submit files are not available ({path})")
    return path.read_text()


def test_the_originals_submit_files_get_their_outcomes(box: Box) -> None:
    """The original's own submit files, good and bad. Unlike the original, every bad one
    gets a certificate (the original wrote none for some) and .yml configs are read."""
    for name in ("data1.h5", "data2.h5"):
        box.put(f"user1/inputs/{name}", "one\ntwo\n")
    box.put("user1/configs/config.yaml", "scale: 1\n")
    box.put("user1/configs/config.yml", "scale: 3\n")
    names = [
        "list_submit.json",
        "err_config_yml_extension_submit.json",
        "err_no_timestamp_submit.json",
        "err_no_dataname_submit.json",
        "err_data_not_found_submit.json",
        "err_bypass_bucket_mismatch_submit.json",
        "err_invalid_json_submit.json",
    ]
    for name in names:
        box.put(f"user1/submissions/{name}", fixture_text(name))

    def job(timestamp: str) -> str:
        return f"user1/results/job__{BOX}_{timestamp}"

    expected = {
        job("err_no_timestamp_submit"): "does not contain field 'timestamp'",
        job("1709647400"): "does not contain field 'dataname'",
        job("1709647500"): "cannot be found: ['user1/inputs/data_missing.h5']",
        job("1709647600"): "data and config must be from same bucket",
        job("err_invalid_json_submit"): "is not valid JSON",
    }
    for folder, problem in expected.items():
        wait_for(lambda f=folder: box.exists(end_key(f)), f"end.txt of {folder}")
        assert problem in box.text(certificate_key(folder)), folder
    for timestamp, datasets in (("1709647330", 2), ("1709647800", 1)):
        wait_for(lambda t=timestamp: box.exists(end_key(job(t))), f"end.txt of {timestamp}")
        cert = box.text(certificate_key(job(timestamp)))
        assert cert.count("| STATUS: SUCCESS |") == datasets, cert
    assert len(box.analysis_jobs()) == 2


def test_a_running_datasets_status_file_shows_its_cpu_memory_and_time(box: Box) -> None:
    from neuroferry.engine import cancel_job

    box.put("user1/inputs/slow.txt", "sleep\n")
    box.put("user1/configs/c.json", "{}")
    box.submit(
        "user1/submissions/submit.json",
        {"dataname": "user1/inputs/slow.txt", "configname": "user1/configs/c.json", "timestamp": 7},
    )
    folder = f"user1/results/job__{BOX}_7"

    def live() -> dict[str, Any] | None:
        if not box.exists(status_key(folder, "slow.txt")):
            return None
        status = json.loads(box.text(status_key(folder, "slow.txt")))
        return status if status["memory_usage"] != "N/A" else None

    status = wait_for(live, "the running dataset's use")
    assert status["status"] == "IN PROGRESS" and status["job_finish"] == "N/A"
    assert re.fullmatch(r"\d+ MB", status["memory_usage"]), status
    assert re.fullmatch(r"\d+\.\d %", status["cpu_usage"]), status
    assert re.fullmatch(r"\d+:\d\d:\d\d", status["elapsed"]), status
    assert list(status)[:10] == [  # the original's keys, in its order
        "instance",
        "command",
        "input",
        "status",
        "reason",
        "memory_usage",
        "cpu_usage",
        "job_start",
        "job_finish",
        "std",
    ]
    line = wait_for(
        lambda: next(
            (
                x
                for x in box.text(certificate_key(folder)).splitlines()
                if x.startswith("DATANAME: user1/inputs/slow.txt") and "CPU_USAGE: " in x
            ),
            None,
        ),
        "the certificate's CPU_USAGE",
    )
    assert re.search(r"\| CPU_USAGE: \d+\.\d %", line), line

    [job] = box.analysis_jobs()
    cancel_job(box.rig.engine, box.rig.log_store, job["id"])
    wait_for(lambda: box.exists(end_key(folder)), "end.txt")
    final = json.loads(box.text(status_key(folder, "slow.txt")))
    assert final["status"] == "FAILED" and final["job_finish"] != "N/A"
    assert final["memory_usage"].endswith(" MB") and final["elapsed"] != "N/A"
