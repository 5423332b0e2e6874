"""Stores reached with credentials other than the service's (a drop-box group's own, or
none at all), object copies between stores, and presigned URLs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore, GCSStore, S3Store

from neuroferry.config import Settings
from neuroferry.errors import ConfigError, InvalidInput, first_line
from neuroferry.stores._keys import check_key
from neuroferry.stores._obstore import ObstoreStore, backed
from neuroferry.stores._open import _client_options, _is_loopback, _retry_config
from neuroferry.stores._store import Store

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
SIGNABLE = ("GET", "PUT")
COPY_PART = 8 << 20
"""Bytes of an object held at once while it is copied."""


def check_bucket(bucket: str) -> str:
    """``bucket`` if it is a valid S3 bucket name (3 to 63 lower-case letters, digits,
    ``.`` and ``-``, not like an IP address); :class:`InvalidInput` naming the rule."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_LIKE.fullmatch(bucket):
        raise InvalidInput(
            f"{bucket!r} is not a valid bucket name: 3 to 63 lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit"
        )
    return bucket


def check_endpoint(endpoint: str, settings: Settings) -> tuple[str, bool]:
    """``endpoint`` without a trailing ``/`` and whether it is plain http;
    :class:`InvalidInput` for one that is not an http(s) URL of a host alone."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or parts.path.strip("/")
    ):
        raise InvalidInput(
            f"endpoint: {endpoint!r} must be an http:// or https:// URL of a host (and port) "
            "alone, without credentials, path or query"
        )
    plain = parts.scheme == "http"
    if plain and not (_is_loopback(parts.hostname) or settings.s3_allow_http):
        raise InvalidInput(
            f"endpoint: {endpoint!r} uses plain http to a non-loopback host; use https "
            "(or set FERRY_S3_ALLOW_HTTP=true if you accept that)"
        )
    return endpoint.rstrip("/"), plain


def open_s3_with(
    bucket: str,
    prefix: str = "",
    *,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    settings: Settings,
) -> Store:
    """The S3 bucket ``bucket`` (under ``prefix``) reached with the given credentials,
    never the service's: without a key, with unsigned (public) requests."""
    check_bucket(bucket)
    if prefix:
        check_key(prefix)
    config: Any = {"region": region or "us-east-1"}
    allow_http = False
    if endpoint:
        config["endpoint"], allow_http = check_endpoint(endpoint, settings)
    config["unsigned_payload"] = not allow_http
    if access_key_id and secret_access_key:
        config["access_key_id"] = access_key_id
        config["secret_access_key"] = secret_access_key
    else:
        config["skip_signature"] = True
    url = f"s3://{bucket}/{prefix}".rstrip("/")
    try:
        raw = S3Store(
            bucket,
            prefix=prefix or None,
            config=config,
            client_options=_client_options(settings, allow_http),
            retry_config=_retry_config(settings),
        )
    except ObstoreError as exc:
        raise ConfigError(f"cannot open {url}: {first_line(exc)}") from exc
    return ObstoreStore(url, raw)


class TooLarge(InvalidInput):
    """An object bigger than a copy may be."""


def copy_object(
    src: Store, key: str, dest: Store, dest_key: str, *, max_bytes: int | None = None
) -> int:
    """Copy one object from ``src`` to ``dest``, streamed (in parts when large); its
    size. :class:`TooLarge`, nothing written, for one of more than ``max_bytes``."""
    source, target = backed(src), backed(dest)
    size = source.head(key).size
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"{key} has {size} bytes, more than the {max_bytes} a copy may have")
    with target._translated("write", dest_key), obstore.open_writer(target.raw, dest_key) as out:
        for start in range(0, size, COPY_PART):
            out.write(source.get_range(key, start, min(size, start + COPY_PART)))
    return size


def presign(store: Store, method: str, key: str, expires: timedelta) -> str:
    """A URL that lets whoever holds it ``method`` (GET or PUT) the object ``key`` of
    ``store`` until ``expires`` from now, without credentials. :class:`InvalidInput` for a
    store that has no such URLs (a local folder, memory)."""
    if method not in SIGNABLE:
        raise InvalidInput(f"method: {method!r}; allowed: {', '.join(SIGNABLE)}")
    check_key(key)
    target = backed(store)
    if not isinstance(target.raw, S3Store | GCSStore | AzureStore):
        raise InvalidInput(
            f"{target.scheme}:// stores have no presigned URLs; only object stores "
            "(s3://, gs://, az://) do"
        )
    with target._translated("sign a URL for", key):
        return obstore.sign(target.raw, method, key, expires)  # type: ignore[call-overload, no-any-return]
