"""Dask TLS: every cluster the service makes or joins authenticates its peers by
certificate, so that only holders of the cluster's credentials can connect to its
scheduler (and so run code there, in the service's process, or on its workers).

* The embedded LocalCluster gets temporary certificates (made in memory at each start).
* A ``cluster = "slurm" | "pbs" | "lsf"`` cluster uses the ``dask_tls_*`` files if they are
  set, else temporary certificates that its batch jobs read from a folder only the
  service's user can read (under ``staging_dir``, which the compute nodes share).
* An external scheduler (``dask_scheduler``) is reached with the ``dask_tls_*`` files; a
  plain ``tcp://`` one is refused in production unless ``dask_allow_insecure`` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from neuroferry.config import Settings
from neuroferry.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

#: Address schemes whose traffic is encrypted and authenticated by certificate.
SECURE_SCHEMES = ("tls://", "wss://")
_FILES = ("dask_tls_ca_file", "dask_tls_cert_file", "dask_tls_key_file")


@dataclass(frozen=True)
class Credentials:
    """What a Dask worker (or client) needs to join a TLS cluster, as PEM text: the CA
    that signed the cluster's certificates, and a certificate and key it signed."""

    ca: str
    cert: str
    key: str


def is_secure(address: str) -> bool:
    """Whether a Dask address uses TLS (``tls://``, ``wss://``)."""
    return address.strip().lower().startswith(SECURE_SCHEMES)


def temporary_security() -> Security:
    """Fresh self-signed certificates for a cluster that lives as long as this process."""
    from distributed.security import Security

    try:
        security: Security = Security.temporary()
    except ImportError as exc:  # cryptography is a dependency; a broken install lacks it
        raise ConfigError("Dask TLS needs the cryptography package; reinstall neuroferry") from exc
    return security


def file_security(settings: Settings) -> Security | None:
    """Security from the ``dask_tls_*`` files (one certificate for every role), or None
    when none of them is set; :class:`ConfigError` naming the setting when only some are
    set or a file cannot be read."""
    given = {name: getattr(settings, name) for name in _FILES}
    if not any(given.values()):
        return None
    missing = [name for name, path in given.items() if path is None]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} must be set too: Dask TLS needs the CA, a certificate "
            "and its key (dask_tls_ca_file, dask_tls_cert_file, dask_tls_key_file)"
        )
    paths: dict[str, str] = {}
    for name, path in given.items():
        assert path is not None
        resolved = Path(path).expanduser()
        if not os.access(resolved, os.R_OK) or not resolved.is_file():
            raise ConfigError(f"{name}: {resolved} is not a readable file")
        paths[name] = str(resolved)
    from distributed.security import Security

    cert, key = paths["dask_tls_cert_file"], paths["dask_tls_key_file"]
    return Security(
        require_encryption=True,
        tls_ca_file=paths["dask_tls_ca_file"],
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )


def scheduler_security(settings: Settings) -> Security | None:
    """How the service connects to the external scheduler ``dask_scheduler``: with the
    ``dask_tls_*`` files over ``tls://``. A plain address is refused in production unless
    ``dask_allow_insecure`` is set (None then: no TLS)."""
    address = settings.dask_scheduler or ""
    security = file_security(settings)
    if is_secure(address):
        if security is None:
            raise ConfigError(
                f"dask_scheduler {address} uses TLS; set dask_tls_ca_file, "
                "dask_tls_cert_file and dask_tls_key_file to the CA, certificate and key "
                "the service connects with"
            )
        return security
    if security is not None:
        raise ConfigError(
            f"dask_scheduler {address} is not a tls:// address but dask_tls_* files are "
            f"set; write it as tls://{address.split('://', 1)[-1]}"
        )
    if settings.mode == "production" and not settings.dask_allow_insecure:
        raise ConfigError(
            f"dask_scheduler {address} is plain TCP: anyone who reaches it can run code on "
            "the workers and the scheduler. Start the scheduler with TLS (dask scheduler "
            "--tls-ca-file … --tls-cert … --tls-key …), use its tls:// address and set "
            "dask_tls_ca_file, dask_tls_cert_file and dask_tls_key_file; or set "
            "dask_allow_insecure = true on a network only trusted machines reach"
        )
    return None


def scheduler_credentials(settings: Settings) -> Credentials | None:
    """What a worker joins the external scheduler ``dask_scheduler`` with (the
    ``dask_tls_*`` files' PEM texts), or None for an allowed plain scheduler."""
    return credentials(scheduler_security(settings))


def credentials(security: Security | None) -> Credentials | None:
    """The PEM texts a worker joins with (the worker role's certificate and key, and the
    CA), or None without TLS."""
    if security is None:
        return None
    tls = security.get_tls_config_for_role("worker")
    ca, cert, key = tls.get("ca_file"), tls.get("cert"), tls.get("key")
    if not (ca and cert and key):
        return None
    return Credentials(_pem(ca), _pem(cert), _pem(key))


def _pem(value: str) -> str:
    """A Security field holds PEM text (temporary certificates) or a file's path."""
    if "-----BEGIN" in value:
        return value
    try:
        return Path(value).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the Dask TLS file {value}: {exc}") from exc


def private_folder(path: Path) -> Path:
    """``path``, made if missing, readable by this process's user only (0700)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot make {path} for the Dask TLS certificates of the batch jobs "
            f"(staging_dir must be writable and shared with the compute nodes): {exc}"
        ) from exc
    return path
