"""``upload_data_to_s3``: resumable, to a folder and to a real S3 server; files that cannot
be sent; and a cancelled job stopping an upload that is under way."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import obstore
import pytest

from conftest import use_s3_endpoint
from neuroferry.catalog import Catalog
from neuroferry.db import make_engine, upgrade
from neuroferry.engine import Cancelled, TaskFailed, cancel_key
from neuroferry.stores import open_store

from .helpers import SUBJECT, Harness, Session, record_project, tree

MakeHarness = Callable[..., Harness]
ASSET = "ecephys_123456_2024-06-19_10-00-00"


def test_a_second_upload_sends_nothing(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    first = job.run_until("upload_data_to_s3")["upload_data_to_s3"]
    assert first["files_copied"] == 11 and first["files_skipped"] == 0
    again = job.run("upload_data_to_s3")  # a retry, or the orchestrator re-queueing it
    assert again["files_copied"] == 0 and again["bytes_copied"] == 0
    assert again["files_skipped"] == 11
    assert again["bytes_skipped"] == first["bytes_copied"]


def test_a_changed_file_is_sent_again(session: Session, harness: MakeHarness) -> None:
    job = harness(session.spec())
    job.run_until("upload_data_to_s3")
    (session.folder("behavior") / "trials.csv").write_bytes(b"trial,outcome\n1,miss\n2,hit\n")
    again = job.run("upload_data_to_s3")
    assert again["parts"]["behavior"]["files_copied"] == 1
    assert again["files_copied"] == 1
    uploaded = tree(Path(open_store(job.destination).local_root or ""))
    assert uploaded["behavior/trials.csv"] == b"trial,outcome\n1,miss\n2,hit\n"


def test_files_that_cannot_be_sent_are_named_and_the_rest_is_sent(
    session: Session, harness: MakeHarness, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.dat"
    outside.write_bytes(b"not part of the session")
    (session.folder("ecephys") / "link.dat").symlink_to(outside)
    job = harness(session.spec())
    job.run_until("gather_final_metadata")
    with pytest.raises(TaskFailed) as info:
        job.run("upload_data_to_s3")
    message = str(info.value)
    assert message.startswith(f"1 file could not be uploaded to {job.destination}: ")
    assert "ecephys/link.dat: symlink to" in message and "outside the source folder" in message
    assert "a retry sends only what is missing" in message
    uploaded = tree(Path(open_store(job.destination).local_root or ""))
    assert uploaded["ecephys/settings.xml"] == session.files["ecephys"]["settings.xml"]
    assert "ecephys/link.dat" not in uploaded
    assert "data_description.json" in uploaded  # later parts still went up


def test_the_metadata_goes_up_last_and_only_from_the_top_of_staging(
    session: Session, harness: MakeHarness
) -> None:
    job = harness(session.spec())
    job.run_until("gather_final_metadata")
    (job.staging / "scratch").mkdir()
    (job.staging / "scratch" / "tmp.json").write_text("{}")
    (job.staging / "notes.txt").write_text("staging only")
    result = job.run("upload_data_to_s3")
    assert list(result["parts"])[-1] == "metadata"
    assert result["parts"]["metadata"]["destination"] == job.destination
    uploaded = tree(Path(open_store(job.destination).local_root or ""))
    assert not any(k.startswith("scratch/") for k in uploaded)
    assert "notes.txt" not in uploaded


# -- a real S3 server ----------------------------------------------------------------------


@pytest.mark.s3
def test_the_upload_to_s3_and_its_registration(
    session: Session, harness: MakeHarness, s3_env: str, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ferry.db'}")
    upgrade(engine)
    record_project(engine)
    job = harness(session.spec(), destinations={"default": f"{s3_env}/lake"})
    job.catalog = Catalog(engine)
    assert job.destination == f"{s3_env}/lake/{ASSET}"
    results = job.run_until("register_data_asset")

    store = open_store(job.destination)
    keys = {m["path"] for chunk in obstore.list(store.raw) for m in chunk}
    for name in ("ecephys", "behavior", "behavior-videos", "derivatives"):
        for rel, data in session.files[name].items():
            assert bytes(obstore.get(store.raw, f"{name}/{rel}").bytes()) == data
    assert {"data_description.json", "subject.json", "procedures.json"} <= keys
    document = job.catalog.find({"name": ASSET})[0]
    assert document["location"] == job.destination and document["subject"] == SUBJECT
    assert results["upload_data_to_s3"]["files_copied"] == 11

    # the destination now holds the asset: a second job for it is refused
    with pytest.raises(TaskFailed, match="already holds"):
        job.call("check_s3_folder_exists")
    again = job.run("upload_data_to_s3")
    assert again["files_copied"] == 0 and again["files_skipped"] == 11
    engine.dispose()


# -- cancellation --------------------------------------------------------------------------


class _StallingBucket(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint with an empty bucket that accepts the sync's manifest but holds every
    other upload until the test ends, calling ``on_stall`` when one arrives."""

    on_stall: ClassVar[Callable[[], None]]
    release: ClassVar[threading.Event]
    puts: ClassVar[list[str]]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        if not key:
            self._answer(
                200,
                (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<Name>{bucket}</Name><Prefix></Prefix><KeyCount>0</KeyCount>"
                    "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
                    "</ListBucketResult>"
                ).encode(),
            )
        else:
            self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>")

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = unquote(urlsplit(self.path).path)
        self.puts.append(key)
        if "/.ferry/" not in key:
            type(self).on_stall()
            self.release.wait(60)
        self._answer(200, b"", etag='"0123"')

    def _answer(self, status: int, body: bytes, etag: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stalling_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"on_stall": lambda: None, "puts": []}
    release = threading.Event()
    handler = type(
        "Handler",
        (_StallingBucket,),
        {
            "on_stall": staticmethod(lambda: state["on_stall"]()),
            "release": release,
            "puts": state["puts"],
        },
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", retry_timeout=2)
    try:
        yield state
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_cancelling_the_job_stops_an_upload_under_way(
    session: Session, harness: MakeHarness, stalling_bucket: dict[str, Any]
) -> None:
    job = harness(session.spec(), destinations={"default": "s3://stalling/lake"})
    job.run_until("gather_final_metadata")
    log_store = open_store(job.log_store_url)
    # the job is cancelled while the first object is on its way
    stalling_bucket["on_stall"] = lambda: obstore.put(
        log_store.raw, cancel_key(job.job_id), b"cancelled"
    )
    with pytest.raises(Cancelled) as info:
        job.call("upload_data_to_s3")
    result = info.value.result
    assert result["destination"] == job.destination
    assert result["parts"] == {} and result["bytes_copied"] == 0
    assert result["interrupted"]["part"] == "ecephys"
    assert any(
        key.startswith("/stalling/lake/" + ASSET + "/ecephys/") for key in stalling_bucket["puts"]
    )
