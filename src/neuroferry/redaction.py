"""Keeping the service's secrets out of logs: the values of the configured secrets and
API tokens are replaced by ``[redacted]`` before a log line is written.

:func:`secret_values` collects what is secret (the S3 secret key, the SMTP password, the
password in the database URL, a kind's own ``*secret*``/``*token*``/``*password*``
settings, and ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
other ``*SECRET*``/``*TOKEN*``/``*PASSWORD*`` variables of the environment);
:func:`redact` hides them and every ``nf_…`` API token in a text. Task logs (including
the output of commands), task errors and, through :func:`install_log_redaction`, every
other log record of a ``ferry serve`` or ``ferry orchestrator`` process pass through it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from neuroferry.config import Settings

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4
"""Shorter values are not treated as secrets (they would hide ordinary text)."""

TOKEN_PATTERN = re.compile(r"nf_[A-Za-z0-9_-]{16,}")
"""What a neuroferry API token looks like (``nf_`` and its random part)."""

_SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_?KEY", re.IGNORECASE
)


def _url_password(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def secret_values(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The secret values a log must never show: the settings' secrets and the
    environment's secret-looking variables (``environ``: default ``os.environ``)."""
    found: list[str] = []
    if settings is not None:
        for secret in (
            settings.s3_secret_access_key,
            settings.smtp_password,
            settings.credentials_key,
        ):
            if secret is not None:
                found.append(secret.get_secret_value())
        found += _url_password(settings.database_url)
        for own in settings.kinds.values():  # a kind's own secret-named settings
            found += [str(v) for k, v in own.items() if _SECRET_NAME.search(k) and v]
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            found.append(value)
        elif name.endswith("_URL") or name.endswith("_URI"):
            found += _url_password(value)
    return frozenset(v for v in found if len(v) >= MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every value of ``secrets`` and every API token replaced by
    ``[redacted]``."""
    for value in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        if value in text:
            text = text.replace(value, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>]*@")
CREDENTIALS = "[credentials]"


def hide_userinfo(text: str) -> str:
    """``text`` with whatever stands in a URL between ``://`` and its last ``@`` (a user
    and password, whatever characters they hold, ``/`` included) replaced by
    ``[credentials]``; an encoded ``@`` (``%40``) counts too, the text then shown
    decoded."""
    shown = _USERINFO.sub(rf"\1{CREDENTIALS}@", text)
    once = unquote(shown)
    for decoded in (once, unquote(once)):  # encoded once, or twice
        if _USERINFO.search(decoded):
            shown = _USERINFO.sub(rf"\1{CREDENTIALS}@", decoded)
    return shown


def shown_url(value: str, limit: int = 200) -> str | None:
    """A URL as a message others may read repeats it: decoded, shortened to ``limit``
    characters; None when it holds ``@`` (raw, decoded once or twice), which may be a
    user and password however they are written: such a URL is never repeated."""
    text = value.strip()
    decoded = unquote(text)
    if "@" in text or "@" in decoded or "@" in unquote(decoded):
        return None
    shown = hide_userinfo(decoded)
    return shown if len(shown) <= limit else f"{shown[:limit]}..."


# -- every log record of the process -----------------------------------------------------

_installed: dict[str, Any] = {"secrets": frozenset()}
_install_lock = threading.Lock()


def _redact_arg(value: Any, secrets: frozenset[str]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value), secrets)


def _redact_record(record: logging.LogRecord, secrets: frozenset[str]) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg, secrets)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(a, secrets) for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: _redact_arg(v, secrets) for k, v in record.args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info), secrets)


def install_log_redaction(settings: Settings) -> None:
    """Redact secrets and API tokens from every log record this process makes from now
    on (whatever the logger or handler), using ``settings`` and the environment."""
    with _install_lock:
        _installed["secrets"] = secret_values(settings)
        if _installed.get("factory") is not None:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                _redact_record(record, _installed["secrets"])
            except Exception:  # a log call must never fail because of redaction
                record.msg, record.args = REDACTED, ()
            return record

        _installed["factory"] = factory
        logging.setLogRecordFactory(factory)
