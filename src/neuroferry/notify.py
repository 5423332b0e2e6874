"""Job e-mails: tell a job's owner that it began, ended, failed or is retrying a task.

Mail goes through the SMTP server of the ``smtp_*`` settings; without ``smtp_host`` no
e-mail is sent. TLS server certificates are verified against the system's CAs (a private
CA can be added with the usual ``SSL_CERT_FILE`` variable).
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Final

from neuroferry.config import Settings
from neuroferry.engine import DESTINATION_KEY, EMAIL_KEY, EVENTS_KEY
from neuroferry.errors import ConfigError, FerryError, InvalidInput

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_NOTIFICATION_TYPES",
    "EVENTS",
    "NotifyError",
    "is_email_address",
    "notify_job",
    "send_email",
]

EVENTS: Final = ("begin", "end", "fail", "retry")
"""The events a job e-mail is sent for; a job's ``email_notification_types`` may also
say ``all``."""

DEFAULT_NOTIFICATION_TYPES: Final = ("fail",)
"""The events a job without ``email_notification_types`` is notified of."""

_SUBJECT_PREFIX = "[neuroferry]"
_MAX_SUBJECT = 200
_MAX_ERROR = 4000
_MAX_TASK_ERROR = 200

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*", re.ASCII)


class NotifyError(FerryError, OSError):
    """The SMTP server could not be reached or refused to take a message."""

    status_code = 502


def is_email_address(text: str) -> bool:
    """Whether ``text`` is a plain ASCII ``name@domain`` address (no display name)."""
    return len(text) <= 254 and _ADDRESS.fullmatch(text) is not None


def send_email(settings: Settings, to: Sequence[str], subject: str, body: str) -> None:
    """Send one plain-text message to ``to`` through the configured SMTP server.

    The subject is put on one line. Raises ``ConfigError`` when no SMTP server is
    configured or ``smtp_from`` is not an address, ``InvalidInput`` for a bad recipient
    and ``NotifyError`` when the server cannot be reached or refuses the message.
    """
    if not settings.smtp_host:
        raise ConfigError("no SMTP server is configured: set FERRY_SMTP_HOST to send e-mail")
    recipients = _recipients(to)
    sender_name, sender = _sender(settings.smtp_from)

    message = EmailMessage()
    message["From"] = Address(sender_name, addr_spec=sender) if sender_name else sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = _one_line(subject, _MAX_SUBJECT)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps non-ASCII text intact through servers without 8BITMIME.
    message.set_content(body, cte=None if body.isascii() else "quoted-printable")

    server = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        refused = _deliver(settings, settings.smtp_host, message, sender, recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyError(
            f"SMTP server {server} rejected the login of {settings.smtp_user!r} "
            f"({_reply(exc)}); check FERRY_SMTP_USER and FERRY_SMTP_PASSWORD"
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise NotifyError(
            f"SMTP server {server} does not support what was asked of it ({exc}); "
            "check FERRY_SMTP_SECURITY (STARTTLS) and FERRY_SMTP_USER (AUTH)"
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        reasons = "; ".join(
            f"{address}: {_reply_text(code, text)}"
            for address, (code, text) in exc.recipients.items()
        )
        raise NotifyError(f"SMTP server {server} refused every recipient ({reasons})") from exc
    except smtplib.SMTPSenderRefused as exc:
        raise NotifyError(
            f"SMTP server {server} refused the sender {sender} ({_reply(exc)}); "
            "check FERRY_SMTP_FROM, FERRY_SMTP_SECURITY and FERRY_SMTP_USER"
        ) from exc
    except smtplib.SMTPException as exc:
        if isinstance(exc.__context__, TimeoutError):  # smtplib hides timeouts in replies
            raise _timed_out(settings, server) from exc
        reason = _reply(exc) or type(exc).__name__
        raise NotifyError(f"SMTP server {server} failed: {reason}") from exc
    except ssl.SSLError as exc:
        raise NotifyError(
            f"TLS with SMTP server {server} failed ({exc}); check FERRY_SMTP_SECURITY and "
            "FERRY_SMTP_PORT, and that the server's certificate is trusted (SSL_CERT_FILE)"
        ) from exc
    except TimeoutError as exc:
        raise _timed_out(settings, server) from exc
    except OSError as exc:
        raise NotifyError(
            f"cannot reach SMTP server {server} ({exc.strerror or exc}); "
            "check FERRY_SMTP_HOST and FERRY_SMTP_PORT"
        ) from exc
    if refused:
        log.warning(
            "SMTP server %s refused some recipients: %s",
            server,
            "; ".join(f"{a}: {_reply_text(c, t)}" for a, (c, t) in refused.items()),
        )


def notify_job(settings: Settings, job: Mapping[str, Any], event: str) -> bool:
    """E-mail the job's ``user_email`` about ``event`` if the job asked for it.

    Returns whether a message was sent: false when SMTP is not configured, the job has no
    address or did not ask for this event, and when sending failed (logged as a warning;
    a mail problem never fails a job). Raises ``InvalidInput`` for an unknown event.
    """
    if event not in EVENTS:
        raise InvalidInput(f"unknown e-mail event {event!r}; expected one of {', '.join(EVENTS)}")
    job_id = job.get("id")
    if not settings.smtp_host:
        log.debug("job %s: no e-mail for %r, FERRY_SMTP_HOST is not set", job_id, event)
        return False
    # the facts a kind gave (PreparedJob.notify_email/notify_events); jobs submitted
    # before the summary held them have them in their spec
    summary: Mapping[str, Any] = job.get("summary") or {}
    spec: Mapping[str, Any] = job.get("spec") or {}
    wanted = _notification_types(summary.get(EVENTS_KEY, spec.get(EVENTS_KEY)))
    if event not in wanted and "all" not in wanted:
        return False
    address = summary.get(EMAIL_KEY) or spec.get(EMAIL_KEY)
    if not address:
        return False
    address = str(address).strip()
    if not is_email_address(address):
        log.warning("job %s: no e-mail sent, %r is not an e-mail address", job_id, address)
        return False
    try:
        send_email(settings, [address], _job_subject(job, event), _job_body(settings, job, event))
    except FerryError as exc:
        log.warning("job %s: %s e-mail to %s not sent: %s", job_id, event, address, exc)
        return False
    log.info("job %s: %s e-mail sent to %s", job_id, event, address)
    return True


def _job_subject(job: Mapping[str, Any], event: str) -> str:
    kind = job.get("kind") or "job"
    return _one_line(
        f"{_SUBJECT_PREFIX} {kind} job {job.get('id')} {_outcome(job, event)}: {job.get('name')}",
        _MAX_SUBJECT,
    )


def _job_body(settings: Settings, job: Mapping[str, Any], event: str) -> str:
    summary: Mapping[str, Any] = job.get("summary") or {}
    kind = job.get("kind") or "job"
    lines = [f"{kind.capitalize()} job {job.get('id')} {_outcome(job, event)}.", ""]
    fields = [
        ("State", job.get("state")),
        ("Asset", summary.get("asset") or job.get("name")),
        ("Destination", summary.get(DESTINATION_KEY)),
    ]
    lines += [f"{label + ':':<13}{value}" for label, value in fields if value]
    error = job.get("error")
    if event == "fail" and error:
        lines += ["", "Error:", *_indent(_clip(str(error), _MAX_ERROR))]
    tasks: Sequence[Mapping[str, Any]] = job.get("tasks") or []
    if tasks:
        lines += ["", f"{'Tasks:':<13}{_task_counts(tasks)}"]
        for title, state in (("Failed tasks:", "failed"), ("Retrying tasks:", "up_for_retry")):
            chosen = [task for task in tasks if task.get("state") == state]
            if chosen:
                lines += ["", title, *(_task_line(task) for task in chosen)]
    lines += ["", f"Details: {settings.url.rstrip('/')}/jobs/{job.get('id')}", ""]
    return "\n".join(lines)


def _deliver(
    settings: Settings, host: str, message: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """Hand ``message`` to the SMTP server ``host``; return the recipients it refused."""
    port, timeout = settings.smtp_port, settings.smtp_timeout
    client: smtplib.SMTP
    if settings.smtp_security == "ssl":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls_context())
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    try:
        if settings.smtp_security == "starttls":
            client.starttls(context=_tls_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_user, password)
        refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
        # The message is accepted at this point; a failed goodbye changes nothing.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        return refused
    finally:
        client.close()


def _timed_out(settings: Settings, server: str) -> NotifyError:
    return NotifyError(
        f"SMTP server {server} did not answer within {settings.smtp_timeout:g} s; "
        "check FERRY_SMTP_HOST, FERRY_SMTP_PORT and FERRY_SMTP_TIMEOUT"
    )


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _recipients(to: Sequence[str] | str) -> list[str]:
    addresses = [to] if isinstance(to, str) else list(to)
    cleaned = list(dict.fromkeys(address.strip() for address in addresses))
    if not cleaned:
        raise InvalidInput("an e-mail needs at least one recipient")
    bad = [address for address in cleaned if not is_email_address(address)]
    if bad:
        raise InvalidInput(
            f"not e-mail addresses: {', '.join(repr(a) for a in bad)}; expected name@domain"
        )
    return cleaned


def _sender(setting: str) -> tuple[str, str]:
    name, address = parseaddr(setting)
    if not is_email_address(address):
        raise ConfigError(
            f"FERRY_SMTP_FROM {setting!r} is not an e-mail address; "
            "use name@domain or 'Name <name@domain>'"
        )
    return _one_line(name, 100), address


def _notification_types(value: Any) -> set[str]:
    if value is None:
        return set(DEFAULT_NOTIFICATION_TYPES)
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    return {str(item).strip().lower() for item in items}


def _outcome(job: Mapping[str, Any], event: str) -> str:
    state = job.get("state")
    if event == "begin":
        return "started"
    if event == "fail":
        return "failed"
    if event == "retry":
        return "is retrying"
    if state in (None, "succeeded"):
        return "succeeded"
    return f"ended ({state})"


def _task_counts(tasks: Iterable[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for task in tasks:
        state = str(task.get("state") or "unknown")
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def _task_line(task: Mapping[str, Any]) -> str:
    line = f"  - {task.get('name')}"
    if task.get("attempt"):
        line += f" (attempt {task['attempt']})"
    if task.get("error"):
        first = str(task["error"]).strip().splitlines()[:1]
        if first:
            line += f": {_clip(first[0], _MAX_TASK_ERROR)}"
    return line


def _one_line(text: str, limit: int) -> str:
    """``text`` without control or line-separator characters, whitespace collapsed."""
    cleaned = "".join(
        " " if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char for char in text
    )
    return _clip(" ".join(cleaned.split()), limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _indent(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]


def _reply(exc: smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_text(exc.smtp_code, exc.smtp_error)
    return str(exc)


def _reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{code} {' '.join(text.split())}"
