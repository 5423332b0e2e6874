"""open_store: URLs, endpoints, credentials and what is refused."""

from __future__ import annotations

import pytest

from neuroferry.errors import ConfigError, InvalidInput, StoreNotFound
from neuroferry.stores import open_store


def test_plain_path_and_file_url_name_the_same_folder(tmp_path):
    (tmp_path / "lake").mkdir()
    assert open_store(str(tmp_path / "lake")).url == (tmp_path / "lake").as_uri()
    assert open_store((tmp_path / "lake").as_uri()).local_root == tmp_path / "lake"


def test_missing_folder_is_created_only_when_asked(tmp_path):
    with pytest.raises(StoreNotFound, match="does not exist"):
        open_store(str(tmp_path / "new"))
    assert open_store(str(tmp_path / "new"), create=True).local_root == tmp_path / "new"


def test_a_file_is_not_a_store(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InvalidInput, match="is a file, not a folder"):
        open_store(str(tmp_path / "f.txt"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "scheme 'ftp'; allowed: file://, s3://, gs://, az://, memory://"),
        ("s3:///prefix", "names no bucket; write s3://BUCKET/prefix"),
        ("file://otherhost/data", "names host 'otherhost'"),
    ],
)
def test_bad_urls_say_what_is_allowed(url, message):
    with pytest.raises(InvalidInput) as info:
        open_store(url)
    assert message in str(info.value)


def test_memory_stores_are_shared_by_url():
    a, b = open_store("memory://shared-x"), open_store("memory://shared-x")
    assert a.raw is b.raw and open_store("memory://other-x").raw is not a.raw


def test_s3_settings_come_from_the_aws_variables(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lab-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lab-secret")
    store = open_store("s3://lab-raw/ecephys/774659")
    assert store.url == "s3://lab-raw/ecephys/774659"
    config = store.raw.config  # type: ignore[attr-defined]
    assert config["endpoint"] == "http://127.0.0.1:9000"
    assert config["region"] == "us-east-1"  # a custom endpoint needs some region
    assert config["unsigned_payload"] == "false"  # plain http: the body stays signed
    assert store.raw.prefix == "ecephys/774659"  # type: ignore[attr-defined]


def test_ferry_settings_win_over_aws_variables(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("FERRY_S3_ENDPOINT_URL", "https://s3.lab.example.org")
    monkeypatch.setenv("FERRY_S3_REGION", "eu-west-1")
    config = open_store("s3://lab-raw").raw.config  # type: ignore[attr-defined]
    assert config["endpoint"] == "https://s3.lab.example.org"
    assert config["region"] == "eu-west-1"
    assert config["unsigned_payload"] == "true"  # TLS protects the body; no second hash


def test_plain_http_to_another_host_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3.lab.example.org")
    with pytest.raises(ConfigError, match="FERRY_S3_ALLOW_HTTP"):
        open_store("s3://lab-raw")
    monkeypatch.setenv("FERRY_S3_ALLOW_HTTP", "true")
    assert open_store("s3://lab-raw").url == "s3://lab-raw"


def test_endpoint_must_be_an_http_url(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    with pytest.raises(ConfigError, match="must be an http:// or https:// URL"):
        open_store("s3://lab-raw")


def test_key_id_without_its_secret_is_a_config_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lab-key")
    with pytest.raises(ConfigError, match=r"cannot open s3://lab-raw: .*check its credentials"):
        open_store("s3://lab-raw")


def test_gcs_and_azure_urls_open_rooted_at_their_prefix(monkeypatch):
    gcs = open_store("gs://lab-raw/ecephys")
    assert (type(gcs.raw).__name__, gcs.raw.prefix, gcs.url) == (  # type: ignore[attr-defined]
        "GCSStore",
        "ecephys",
        "gs://lab-raw/ecephys",
    )
    with pytest.raises(ConfigError, match=r"cannot open az://images/raw: .*Account"):
        open_store("az://images/raw")  # no account configured
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "labaccount")
    azure = open_store("az://images/raw")
    assert (type(azure.raw).__name__, azure.raw.prefix) == ("AzureStore", "raw")  # type: ignore[attr-defined]
