"""Secrets and API tokens never reach a log: which values are secret, how they are
hidden, and every log record of a service process."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from neuroferry import redaction
from neuroferry.config import Settings
from neuroferry.redaction import (
    REDACTED,
    hide_userinfo,
    install_log_redaction,
    redact,
    secret_values,
    shown_url,
)

TOKEN = "nf_" + "Ab3-_x" * 7


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        s3_secret_access_key="s3-secret-value",
        smtp_password="smtp-pass-value",
        database_url="postgresql+psycopg://ferry:db%40pass%2Fword@db.example.org/ferry",
    )


def test_secret_values_of_the_settings_and_the_environment(tmp_path: Path) -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "AWS_SESSION_TOKEN": "aws-session-token-value",
        "GITLAB_PRIVATE_TOKEN": "gitlab-token-value",
        "BROKER_URL": "amqp://user:broker-pass@mq/",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",  # an identifier, not a secret
        "HOME": "/root",
        "SHORT_TOKEN": "abc",  # too short to hide without hiding ordinary text
    }
    found = secret_values(_settings(tmp_path), environ)
    assert found == {
        "s3-secret-value",
        "smtp-pass-value",
        "db@pass/word",
        "db%40pass%2Fword",
        "aws-secret-value",
        "aws-session-token-value",
        "gitlab-token-value",
        "broker-pass",
    }
    assert secret_values(None, {}) == frozenset()
    assert secret_values(Settings(home=tmp_path), {}) == frozenset()  # SQLite: no password
    # a kind's own secret-named settings, and API keys of the environment
    kinds = {"notebook": {"api_key": "kind-api-key", "hub_token": "kind-token", "url": "u-rl"}}
    assert secret_values(Settings(home=tmp_path, kinds=kinds), {"LAB_APIKEY": "lab-key"}) == {
        "kind-api-key",
        "kind-token",
        "lab-key",
    }


def test_redact_hides_every_secret_and_api_token() -> None:
    text = f"key=s3-secret-value url=x://u:s3-secret-value-2@h token={TOKEN}, again {TOKEN}\n"
    out = redact(text, {"s3-secret-value", "s3-secret-value-2"})
    assert out == f"key={REDACTED} url=x://u:{REDACTED}@h token={REDACTED}, again {REDACTED}\n"
    assert redact("nothing secret here; nf_short", {"absent"}) == "nothing secret here; nf_short"


@pytest.fixture
def fresh_factory(monkeypatch: pytest.MonkeyPatch):
    previous = logging.getLogRecordFactory()
    monkeypatch.setattr(redaction, "_installed", {"secrets": frozenset()})
    yield
    logging.setLogRecordFactory(previous)


def test_every_log_record_of_the_process_is_redacted(
    tmp_path: Path, fresh_factory: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    install_log_redaction(_settings(tmp_path))
    install_log_redaction(_settings(tmp_path))  # again: one factory, the newest secrets
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("neuroferry.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("store key %s, status %d", "s3-secret-value", 200)
        log.warning("db password db@pass/word and %(token)s", {"token": TOKEN})
        log.warning("from the environment: aws-secret-value")
        log.warning("an error: %s", RuntimeError("smtp-pass-value refused"))
        try:
            raise ValueError("s3-secret-value in a traceback")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    for secret in ("s3-secret-value", "db@pass/word", "aws-secret-value", "smtp-pass-value"):
        assert secret not in text
    assert TOKEN not in text
    lines = text.splitlines()
    assert lines[0] == f"store key {REDACTED}, status 200"
    assert lines[1] == f"db password {REDACTED} and {REDACTED}"
    assert lines[3] == f"an error: {REDACTED} refused"
    assert f"ValueError: {REDACTED} in a traceback" in text


SLASHED_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"'s3://AKIAIOSFODNN7EXAMPLE:{SLASHED_SECRET}@bucket-x/in/d.txt' holds",
            "'s3://[credentials]@bucket-x/in/d.txt' holds",
        ),
        (
            "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY@bucket-x/d",
            "s3://[credentials]@bucket-x/d",
        ),
        ("see https://KEY:sec/ret@host/x here", "see https://[credentials]@host/x here"),
        ("https://KEY:sec%2Fret%40host/x", "https://[credentials]@host/x"),
        ("https://KEY:sec%252Fret%2540host/x", "https://[credentials]@host/x"),
        ("s3://bucket/plain/key.txt", "s3://bucket/plain/key.txt"),
    ],
)
def test_a_urls_user_and_password_are_hidden_whatever_they_hold(text: str, shown: str) -> None:
    assert hide_userinfo(text) == shown


def test_a_url_holding_an_at_sign_is_never_shown() -> None:
    for url in (
        f"s3://AKIAIOSFODNN7EXAMPLE:{SLASHED_SECRET}@bucket-x/in/d.txt",
        "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY@bucket-x/d",
        "https://KEY:sec/ret@host/x",
        "s3://KEY:sec%252Fret%2540bucket-x/x",
    ):
        assert shown_url(url) is None
    assert shown_url("s3://bucket-x/in%20put/d.txt") == "s3://bucket-x/in put/d.txt"
    assert shown_url("s3://bucket-x/" + "k" * 300, limit=20) == "s3://bucket-x/kkkkkk..."
