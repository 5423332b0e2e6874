"""open_store(url): one obstore-backed store per URL, with credentials from settings."""

from __future__ import annotations

import ipaddress
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore, GCSStore, LocalStore, MemoryStore, S3Store

from neuroferry.config import Settings, get_settings
from neuroferry.errors import ConfigError, InvalidInput, StoreNotFound, first_line
from neuroferry.stores._obstore import ObstoreStore
from neuroferry.stores._store import Store

if TYPE_CHECKING:
    from obstore.store import ObjectStore

SCHEMES = ("file", "s3", "gs", "az", "memory")

_memory_stores: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_path(url: str) -> Path:
    if "://" not in url:
        return Path(url).expanduser().absolute()
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(
            f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path"
        )
    return Path(unquote(parts.path))


def _client_options(settings: Settings, allow_http: bool) -> Any:
    return {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=settings.store_connect_timeout),
    }


def _retry_config(settings: Settings) -> Any:
    return {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=settings.store_retry_timeout),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=5),
            "base": 2,
        },
    }


def _s3_store(bucket: str, prefix: str, settings: Settings) -> S3Store:
    env = os.environ
    endpoint = (
        settings.s3_endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    )
    config: Any = {}
    allow_http = False
    if endpoint:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ConfigError(f"S3 endpoint {endpoint!r} must be an http:// or https:// URL")
        if ep.scheme == "http":
            if not (_is_loopback(ep.hostname) or settings.s3_allow_http):
                raise ConfigError(
                    f"S3 endpoint {endpoint!r} uses plain http to a non-loopback host; "
                    "use https, or set FERRY_S3_ALLOW_HTTP=true if you accept that"
                )
            allow_http = True
        config["endpoint"] = endpoint.rstrip("/")
    # Over TLS the body need not be hashed a second time for the request signature (the
    # sync hashes it already); plain http keeps the signed payload, as AWS's own tools do.
    config["unsigned_payload"] = not allow_http
    region = settings.s3_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        config["region"] = region
    elif endpoint:
        config["region"] = "us-east-1"
    if settings.s3_access_key_id:
        config["access_key_id"] = settings.s3_access_key_id
    if settings.s3_secret_access_key:
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return S3Store(
        bucket,
        prefix=prefix or None,
        config=config,
        client_options=_client_options(settings, allow_http),
        retry_config=_retry_config(settings),
    )


def open_store(url: str, *, create: bool = False, settings: Settings | None = None) -> Store:
    """Open the store at ``url`` (``file://``, ``s3://``, ``gs://``, ``az://``, ``memory://``).

    A URL without a scheme is a local folder. ``create`` makes a missing local folder;
    otherwise a missing local folder raises :class:`StoreNotFound`.
    """
    settings = settings or get_settings()
    if "://" not in url or url.startswith("file://"):
        path = _local_path(url)
        if not path.exists() and not create:
            raise StoreNotFound(f"local folder {path} does not exist")
        if path.exists() and not path.is_dir():
            raise InvalidInput(f"{path} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        return ObstoreStore(path.as_uri(), LocalStore(path), local_root=path)

    parts = urlsplit(url)
    scheme, bucket, prefix = parts.scheme, parts.netloc, unquote(parts.path).strip("/")
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"store URL {url!r} has scheme {scheme!r}; "
            f"allowed: {', '.join(s + '://' for s in SCHEMES)}"
        )
    canonical = f"{scheme}://{bucket}/{prefix}".rstrip("/")
    if scheme == "memory":
        with _memory_lock:
            store = _memory_stores.setdefault(canonical, MemoryStore())
        return ObstoreStore(canonical, store)
    if not bucket:
        raise InvalidInput(f"store URL {url!r} names no bucket; write {scheme}://BUCKET/prefix")
    raw: ObjectStore
    try:
        if scheme == "s3":
            raw = _s3_store(bucket, prefix, settings)
        elif scheme == "gs":
            raw = GCSStore(bucket, prefix=prefix or None, retry_config=_retry_config(settings))
        else:
            raw = AzureStore(bucket, prefix=prefix or None, retry_config=_retry_config(settings))
    except ObstoreError as exc:  # e.g. a key id without its secret
        raise ConfigError(
            f"cannot open {canonical}: {first_line(exc)}; check its credentials"
        ) from exc
    return ObstoreStore(canonical, raw)
