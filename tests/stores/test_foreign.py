"""Copies between stores in parts, stores reached with other credentials than the
service's, and presigned URLs, on each backend."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

import httpx
import pytest

from conftest import S3Server
from neuroferry.config import get_settings
from neuroferry.errors import InvalidInput, StoreError
from neuroferry.stores import (
    TooLarge,
    check_bucket,
    copy_object,
    open_s3_with,
    open_store,
    presign,
)
from neuroferry.stores._foreign import COPY_PART


def test_an_object_is_copied_in_parts_to_another_store(store_url: str) -> None:
    src = open_store(store_url, create=True)
    dest = open_store(f"memory://copy-{secrets.token_hex(6)}")
    data = os.urandom(COPY_PART + 4321)
    src.put("in/big.bin", data)
    src.put("in/empty", b"")
    assert copy_object(src, "in/big.bin", dest, "out/big.bin") == len(data)
    assert dest.get("out/big.bin") == data
    assert copy_object(src, "in/empty", dest, "out/empty") == 0
    assert dest.get("out/empty") == b""
    with pytest.raises(StoreError):
        copy_object(src, "in/none", dest, "out/none")
    # a cap: nothing is written for an object bigger than it
    with pytest.raises(TooLarge, match=f"in/big.bin has {len(data)} bytes, more than the 100"):
        copy_object(src, "in/big.bin", dest, "out/capped.bin", max_bytes=100)
    assert not [e for e in dest.list("out/capped")]
    assert copy_object(src, "in/big.bin", dest, "out/fits.bin", max_bytes=len(data)) == len(data)


def test_only_object_stores_have_presigned_urls(tmp_path) -> None:
    for store in (open_store(tmp_path.as_uri()), open_store("memory://no-signing")):
        with pytest.raises(InvalidInput, match="have no presigned URLs"):
            presign(store, "GET", "a", timedelta(minutes=1))


@pytest.mark.parametrize("name", ["ab", "A-bucket", "-x-", "a..b", "192.168.1.1", "a_b", "x" * 64])
def test_bad_bucket_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="is not a valid bucket name"):
        check_bucket(name)


@pytest.mark.s3
def test_a_store_reached_with_other_credentials_never_uses_the_services(
    s3_server: S3Server, s3_env: str
) -> None:
    bucket = s3_env.removeprefix("s3://")
    open_store(s3_env).put("k", b"service's")
    settings = get_settings()
    common = {"endpoint": s3_server.endpoint, "region": "us-east-1", "settings": settings}
    # with the server's own key, given explicitly, it reads
    keyed = open_s3_with(
        bucket, access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key, **common
    )
    assert keyed.get("k") == b"service's"
    # without a key: unsigned requests, which this server refuses, although the
    # service's key is in the environment
    unsigned = open_s3_with(bucket, access_key_id=None, secret_access_key=None, **common)
    with pytest.raises(StoreError):
        unsigned.get("k")
    wrong = open_s3_with(bucket, access_key_id="nobody", secret_access_key="x" * 20, **common)
    with pytest.raises(StoreError):
        wrong.get("k")
    url = presign(keyed, "GET", "k", timedelta(minutes=5))
    assert httpx.get(url).content == b"service's"
