from pathlib import Path

import pytest

from neuroferry.config import get_settings
from neuroferry.errors import ConfigError


def test_defaults_live_under_ferry_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    s = get_settings()
    assert s.home == (tmp_path / "home").resolve()
    assert s.database_url == f"sqlite:///{s.home / 'ferry.db'}"
    assert s.store_url == (s.home / "lake").as_uri()
    assert s.url == "http://127.0.0.1:8000"
    assert (s.host, s.port, s.mode) == ("127.0.0.1", 8000, "development")


def test_toml_in_ferry_home_is_read_and_env_wins(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "ferry.toml").write_text(
        'port = 9001\nstore_url = "s3://lab/raw"\nsync_concurrency = 4\n'
    )
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.setenv("FERRY_SYNC_CONCURRENCY", "32")
    s = get_settings()
    assert s.port == 9001
    assert s.store_url == "s3://lab/raw"
    assert s.sync_concurrency == 32


def test_ferry_config_names_another_file(tmp_path, monkeypatch):
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('url = "http://ferry.lab:8000"\n')
    monkeypatch.setenv("FERRY_CONFIG", str(cfg))
    assert get_settings().url == "http://ferry.lab:8000"


def test_invalid_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("FERRY_PORT", "eighty")
    with pytest.raises(ConfigError, match="port"):
        get_settings()


def test_unknown_key_in_toml_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path))
    (tmp_path / "ferry.toml").write_text("prot = 80\n")
    with pytest.raises(ConfigError, match="prot"):
        get_settings()


def test_malformed_toml_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path))
    (tmp_path / "ferry.toml").write_text("port = \n")
    with pytest.raises(ConfigError, match=r"ferry\.toml"):
        get_settings()


def test_secret_is_not_shown_in_repr(monkeypatch):
    monkeypatch.setenv("FERRY_S3_SECRET_ACCESS_KEY", "very-secret-value")
    s = get_settings()
    assert "very-secret-value" not in repr(s)
    assert s.s3_secret_access_key is not None
    assert s.s3_secret_access_key.get_secret_value() == "very-secret-value"


def test_settings_are_read_when_asked_not_at_import(monkeypatch, tmp_path):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "a"))
    first = get_settings()
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "b"))
    assert get_settings().home != first.home
    assert Path(get_settings().home).name == "b"


def test_only_kinds_settings_are_read_from_nested_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_HOME", str(tmp_path))
    monkeypatch.setenv("FERRY_KINDS__GREETER__TIMES", "2")
    monkeypatch.setenv("FERRY_GRANTS__Alice__SOURCE_ROOTS", '["/"]')
    monkeypatch.setenv("FERRY_DESTINATIONS__LAB", "s3://elsewhere")
    monkeypatch.setenv("FERRY_COMMAND_ENVIRONMENT__0", "X")
    s = get_settings()
    assert s.kinds == {"greeter": {"times": "2"}}  # the kind's model converts the value
    assert s.grants == {}  # grants come from ferry.toml alone
    assert set(s.destinations) == {"default"}
    assert s.command_environment == []


def test_kinds_from_the_config_file_and_variables_merge(tmp_path, monkeypatch):
    (tmp_path / "ferry.toml").write_text("[kinds.greeter]\ntimes = 1\nword = 'hi'\n")
    monkeypatch.setenv("FERRY_HOME", str(tmp_path))
    monkeypatch.setenv("FERRY_KINDS__GREETER__TIMES", "3")
    assert get_settings().kinds == {"greeter": {"times": "3", "word": "hi"}}
