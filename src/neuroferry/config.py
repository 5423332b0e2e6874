"""Settings: ``FERRY_*`` environment variables over an optional ``ferry.toml``.

``FERRY_HOME`` moves the database, the default store and the config file at once. The
config file is ``$FERRY_HOME/ferry.toml`` unless ``FERRY_CONFIG`` names another one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from neuroferry.errors import ConfigError


def default_home() -> Path:
    """Where neuroferry keeps its database, default store and config file."""
    if home := os.environ.get("FERRY_HOME"):
        return Path(home).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().resolve() / "neuroferry"


def config_path() -> Path:
    """The ``ferry.toml`` that settings are read from (it need not exist)."""
    if path := os.environ.get("FERRY_CONFIG"):
        return Path(path).expanduser()
    return default_home() / "ferry.toml"


class Settings(BaseSettings):
    """Every setting of the service and the CLI, with its embedded default."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="forbid")

    home: Path = Field(default_factory=default_home)
    mode: Literal["development", "production"] = "development"
    url: str = "http://127.0.0.1:8000"
    """The service the CLI talks to."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite at ``{home}/ferry.db``."""
    store_url: str = ""
    """The default store; empty means ``file://{home}/lake``."""
    log_store_url: str = ""
    """Where task logs go; empty means ``file://{home}/logs``."""

    # Object stores (S3 and S3-compatible servers). The usual AWS_* variables apply too.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_allow_http: bool = False
    """Allow plain http to a non-loopback endpoint (loopback is always allowed)."""
    store_connect_timeout: float = Field(10.0, gt=0)
    store_retry_timeout: float = Field(60.0, ge=0)

    # Transfers
    sync_concurrency: int = Field(16, ge=1, le=512)
    sync_part_size: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)

    # Execution
    dask_scheduler: str | None = None
    """Address of an existing Dask scheduler; empty means an embedded LocalCluster."""
    dask_workers: int = Field(2, ge=1)
    dask_threads_per_worker: int = Field(2, ge=1)
    dask_processes: bool = True
    """Embedded cluster workers as processes (true) or threads in the service process."""

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'ferry.db'}"
        if not self.store_url:
            self.store_url = (self.home / "lake").as_uri()
        if not self.log_store_url:
            self.log_store_url = (self.home / "logs").as_uri()
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)


def get_settings(**overrides: Any) -> Settings:
    """Read the settings now (never at import time); errors name the setting."""
    path = config_path()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({problems}); check FERRY_* variables and {path}"
        ) from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed ferry.toml
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
