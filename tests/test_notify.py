"""Job e-mails against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _smtp import SMTPServer, TLSFiles, make_tls_certificate, run_smtp_server
from conftest import free_port
from neuroferry.config import Settings, get_settings
from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.notify import NotifyError, is_email_address, notify_job, send_email

ASSET = "ecephys_700001_2025-04-01_14-30-15"


def settings_for(server: SMTPServer, **overrides: Any) -> Settings:
    return get_settings(smtp_host=server.host, smtp_port=server.port, **overrides)


def make_job(types: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"user_email": "ada@example.org"}
    if types is not None:
        spec["email_notification_types"] = types
    job: dict[str, Any] = {
        "id": 12,
        "name": ASSET,
        "kind": "upload",
        "state": "succeeded",
        "spec": spec,
        "summary": {"destination": f"s3://lake/{ASSET}", "asset": ASSET},
        "error": None,
    }
    job.update(changes)
    return job


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted_ca(tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> TLSFiles:
    """Make the test CA the one that TLS clients in this process trust."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    return tls_files


# -- content ---------------------------------------------------------------------------


def test_success_email_subject_body_and_headers(smtp_server: SMTPServer) -> None:
    settings = settings_for(smtp_server, url="https://ferry.example.org/", smtp_from="f@lab.org")
    job = make_job(["end"])

    assert notify_job(settings, job, "end") is True

    [message] = smtp_server.messages
    assert message["Subject"].strip() == f"[neuroferry] upload job 12 succeeded: {ASSET}"
    assert message["To"] == "ada@example.org"
    assert message["From"] == "f@lab.org"
    assert message["Date"] and message["Message-ID"].endswith("@lab.org>")
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "State:       succeeded" in body
    assert f"Asset:       {ASSET}" in body
    assert f"Destination: s3://lake/{ASSET}" in body
    assert "Details: https://ferry.example.org/jobs/12" in body
    assert "Error" not in body
    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "f@lab.org"
    assert envelope.rcpt_tos == ["ada@example.org"]


def test_failure_email_names_error_and_failed_tasks(smtp_server: SMTPServer) -> None:
    job = make_job(
        state="failed",
        error="task check_source failed: source folder /data/x does not exist",
        tasks=[
            {"name": "check_source", "state": "failed", "attempt": 3, "error": "no such\nfolder"},
            {"name": "upload[ecephys]", "state": "skipped", "attempt": 0, "error": None},
            {"name": "upload[behavior]", "state": "skipped", "attempt": 0, "error": None},
            {"name": "register_asset", "state": "up_for_retry", "attempt": 1, "error": "busy"},
        ],
    )

    assert notify_job(settings_for(smtp_server), job, "fail") is True

    [message] = smtp_server.messages
    assert message["Subject"].strip() == f"[neuroferry] upload job 12 failed: {ASSET}"
    body = message.get_content()
    assert "State:       failed" in body
    assert "source folder /data/x does not exist" in body
    assert "Tasks:       1 failed, 2 skipped, 1 up_for_retry" in body
    assert "  - check_source (attempt 3): no such\n" in body
    assert "Retrying tasks:\n  - register_asset (attempt 1): busy" in body
    assert "upload[ecephys]" not in body
    assert "/jobs/12" in body


@pytest.mark.parametrize(
    ("event", "state", "phrase"),
    [
        ("begin", "running", "started"),
        ("retry", "running", "is retrying"),
        ("end", "cancelled", "ended (cancelled)"),
    ],
)
def test_subject_per_event(smtp_server: SMTPServer, event: str, state: str, phrase: str) -> None:
    assert notify_job(settings_for(smtp_server), make_job(["all"], state=state), event)
    assert (
        smtp_server.messages[0]["Subject"].strip()
        == f"[neuroferry] upload job 12 {phrase}: {ASSET}"
    )


def test_header_injection_in_asset_name_is_neutralised(smtp_server: SMTPServer) -> None:
    name = "evil\r\nBcc: victim@example.org\r\nX-Injected: yes\n\nbody"
    job = make_job(name=name, summary={})

    assert notify_job(settings_for(smtp_server), job, "fail") is True

    [message] = smtp_server.messages
    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == ["ada@example.org"]
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert message["Subject"].strip() == (
        "[neuroferry] upload job 12 failed: evil Bcc: victim@example.org X-Injected: yes body"
    )


def test_injection_in_recipient_is_refused(smtp_server: SMTPServer) -> None:
    job = make_job(["all"])
    job["spec"]["user_email"] = "ada@example.org\r\nBcc: victim@example.org"

    assert notify_job(settings_for(smtp_server), job, "end") is False
    with pytest.raises(InvalidInput, match="not e-mail addresses"):
        send_email(settings_for(smtp_server), ["a@b.org", "x@y.org\nBcc: z@w.org"], "s", "b")
    assert smtp_server.messages == []


def test_send_email_to_several_recipients(smtp_server: SMTPServer) -> None:
    send_email(
        settings_for(smtp_server, smtp_from="Neuroferry <ferry@lab.org>"),
        ["a@lab.org", "b@lab.org", "a@lab.org"],
        "Test\r\nmessage",
        "héllo\n",
    )
    [message] = smtp_server.messages
    assert message["To"] == "a@lab.org, b@lab.org"
    assert message["From"] == "Neuroferry <ferry@lab.org>"
    assert message["Subject"].strip() == "Test message"
    assert message.get_content() == "héllo\n"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert smtp_server.envelopes[0].rcpt_tos == ["a@lab.org", "b@lab.org"]


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("ada@example.org", True),
        ("first.last+tag@sub.example.org", True),
        ("root@localhost", True),
        ("ada", False),
        ("ada@", False),
        ("@example.org", False),
        ("ada@example..org", False),
        ("ada@-example.org", False),
        ("a b@example.org", False),
        ("ada@example.org\n", False),
        ("Ada <ada@example.org>", False),
        ("ada@example.org,eve@example.org", False),
    ],
)
def test_is_email_address(address: str, valid: bool) -> None:
    assert is_email_address(address) is valid


# -- who gets what ---------------------------------------------------------------------


def test_event_filtering(smtp_server: SMTPServer) -> None:
    settings = settings_for(smtp_server)
    job = make_job(["end", "fail"])

    assert notify_job(settings, job, "begin") is False
    assert notify_job(settings, job, "retry") is False
    assert smtp_server.messages == []
    assert notify_job(settings, job, "fail") is True
    assert notify_job(settings, job, "end") is True
    assert len(smtp_server.messages) == 2


def test_all_sends_every_event(smtp_server: SMTPServer) -> None:
    settings = settings_for(smtp_server)
    for event in ("begin", "retry", "fail", "end"):
        assert notify_job(settings, make_job(["all"]), event) is True
    assert len(smtp_server.messages) == 4


def test_default_types_are_fail_only(smtp_server: SMTPServer) -> None:
    settings = settings_for(smtp_server)
    assert notify_job(settings, make_job(), "end") is False
    assert notify_job(settings, make_job(), "begin") is False
    assert notify_job(settings, make_job(), "fail") is True
    assert len(smtp_server.messages) == 1


def test_a_kinds_address_and_events_come_from_the_summary(smtp_server: SMTPServer) -> None:
    """Any kind's jobs are e-mailed: PreparedJob.notify_email/notify_events are kept in
    the summary; the spec is read only for jobs submitted before."""
    summary = {"destination": "s3://lake/v", "user_email": "bo@example.org"}
    job = make_job(spec={}, kind="ingest", summary=summary)
    assert notify_job(settings_for(smtp_server), job, "end") is False  # failures only
    summary["email_notification_types"] = ["end"]
    assert notify_job(settings_for(smtp_server), job, "end") is True
    [message] = smtp_server.messages
    assert message["To"] == "bo@example.org"


def test_no_address_no_email(smtp_server: SMTPServer) -> None:
    job = make_job(["all"])
    job["spec"]["user_email"] = None
    assert notify_job(settings_for(smtp_server), job, "fail") is False
    assert notify_job(settings_for(smtp_server), make_job(spec={}), "fail") is False
    assert smtp_server.messages == []


def test_no_smtp_host_no_email() -> None:
    settings = get_settings()
    assert settings.smtp_host is None
    assert notify_job(settings, make_job(["all"]), "fail") is False
    with pytest.raises(ConfigError, match="FERRY_SMTP_HOST"):
        send_email(settings, ["ada@example.org"], "subject", "body")


def test_unknown_event_is_a_caller_error(smtp_server: SMTPServer) -> None:
    with pytest.raises(InvalidInput, match="unknown e-mail event 'done'"):
        notify_job(settings_for(smtp_server), make_job(["all"]), "done")


# -- authentication and TLS -----------------------------------------------------------


def test_login(caplog: pytest.LogCaptureFixture) -> None:
    with run_smtp_server(users={"ferry": "s3cret"}) as server:
        good = settings_for(server, smtp_user="ferry", smtp_password="s3cret")
        assert notify_job(good, make_job(), "fail") is True
        assert server.envelopes[0].login == "ferry"

        bad = settings_for(server, smtp_user="ferry", smtp_password="wrong")
        with caplog.at_level(logging.WARNING, logger="neuroferry.notify"):
            assert notify_job(bad, make_job(), "fail") is False
        assert len(server.messages) == 1
    [record] = [r for r in caplog.records if r.name == "neuroferry.notify"]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert f"{server.host}:{server.port}" in text
    assert "rejected the login of 'ferry'" in text and "535" in text
    assert "wrong" not in text


def test_starttls_with_login(trusted_ca: TLSFiles) -> None:
    with run_smtp_server(users={"ferry": "pw"}, starttls=trusted_ca.server_context()) as server:
        plain = settings_for(server)
        with pytest.raises(NotifyError, match="530"):
            send_email(plain, ["ada@example.org"], "s", "b")

        settings = settings_for(
            server, smtp_security="starttls", smtp_user="ferry", smtp_password="pw"
        )
        assert notify_job(settings, make_job(), "fail") is True
        assert server.envelopes[0].login == "ferry"


def test_implicit_tls(trusted_ca: TLSFiles) -> None:
    with run_smtp_server(implicit_tls=trusted_ca.server_context()) as server:
        assert notify_job(settings_for(server, smtp_security="ssl"), make_job(), "fail") is True
        assert len(server.messages) == 1


def test_untrusted_certificate_is_refused(
    tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-ca.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with run_smtp_server(implicit_tls=tls_files.server_context()) as server:
        settings = settings_for(server, smtp_security="ssl")
        with pytest.raises(NotifyError, match="certificate"):
            send_email(settings, ["ada@example.org"], "s", "b")
        assert server.messages == []


# -- servers that do not work ---------------------------------------------------------


def test_unreachable_server_returns_false_quickly(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = get_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="neuroferry.notify"):
        assert notify_job(settings, make_job(), "fail") is False
    assert time.monotonic() - start < 2
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in caplog.text
    with pytest.raises(NotifyError, match="FERRY_SMTP_PORT") as info:
        send_email(settings, ["ada@example.org"], "s", "b")
    assert isinstance(info.value, OSError)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield int(sock.getsockname()[1])


def test_silent_server_times_out(silent_server: int, caplog: pytest.LogCaptureFixture) -> None:
    settings = get_settings(smtp_host="127.0.0.1", smtp_port=silent_server, smtp_timeout=0.3)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="neuroferry.notify"):
        assert notify_job(settings, make_job(), "fail") is False
    assert time.monotonic() - start < 3
    assert "did not answer within 0.3 s" in caplog.text


def test_bad_sender_setting_is_a_config_error(smtp_server: SMTPServer) -> None:
    settings = settings_for(smtp_server, smtp_from="bad sender")
    with pytest.raises(ConfigError, match="FERRY_SMTP_FROM"):
        send_email(settings, ["ada@example.org"], "s", "b")
    assert notify_job(settings, make_job(), "fail") is False
    assert smtp_server.messages == []
