"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

``smtp_server`` is the plain fixture; ``run_smtp_server`` starts variants with AUTH,
STARTTLS or implicit TLS; ``make_tls_certificate`` makes a CA and a certificate for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from conftest import free_port, unavailable


@dataclass(frozen=True)
class Received:
    """The envelope of one delivered message."""

    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    """The user who authenticated, if any."""


@dataclass
class SMTPServer:
    """A running SMTP server and the messages delivered to it, oldest first.

    Python's parser keeps the blank that starts a folded header: compare a ``Subject``
    with ``.strip()``.
    """

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Received] = field(default_factory=list)


class _Collector:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        # Parsed with plain newlines, as a mail client shows the message.
        message = email.message_from_bytes(
            content.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.server.envelopes.append(
            Received(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], login)
        )
        self.server.messages.append(message)
        return "250 OK"


def _authenticator(users: Mapping[str, str]) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if login in users and users[login] == auth_data.password.decode():
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return check


@contextlib.contextmanager
def run_smtp_server(
    *,
    users: Mapping[str, str] | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
) -> Iterator[SMTPServer]:
    """Run an SMTP server on 127.0.0.1 until the block ends.

    ``users`` (login → password) turns on AUTH, also without TLS; ``starttls`` offers and
    requires STARTTLS with that server context; ``implicit_tls`` speaks TLS from the start.
    """
    server = SMTPServer("127.0.0.1", free_port())
    options: dict[str, Any] = {}
    if users is not None:
        options.update(authenticator=_authenticator(users), auth_require_tls=False)
    if starttls is not None:
        options.update(tls_context=starttls, require_starttls=True)
    if implicit_tls is not None:
        options.update(ssl_context=implicit_tls)
    controller = Controller(
        _Collector(server), hostname=server.host, port=server.port, ready_timeout=10, **options
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1 for one test."""
    with run_smtp_server() as server:
        yield server


@dataclass(frozen=True)
class TLSFiles:
    """A CA certificate and a server certificate (for ``localhost`` and 127.0.0.1)."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server that presents the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls_certificate(folder: Path) -> TLSFiles:
    """Write a fresh CA and a server certificate signed by it under ``folder``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        unavailable("the TLS tests need the cryptography package")
        raise
    import ipaddress

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "neuroferry test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
