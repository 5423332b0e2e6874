"""Settings: ``FERRY_*`` environment variables over an optional ``ferry.toml``.

``FERRY_HOME`` moves the database, the default store and the config file at once. The
config file is ``$FERRY_HOME/ferry.toml`` unless ``FERRY_CONFIG`` names another one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from neuroferry.errors import ConfigError, validation_problems

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


class Grant(BaseModel):
    """What an admin allows one user beyond what every user may reach (``[grants.NAME]``
    in ``ferry.toml``): their own source folders, which upload jobs may also remove with
    ``remove_source_folders``, and store prefixes they may read."""

    model_config = ConfigDict(extra="forbid")

    source_roots: list[Path] = Field(default_factory=list)
    store_prefixes: list[str] = Field(default_factory=list)


class _KindVariables(PydanticBaseSettingsSource):
    """``FERRY_KINDS__NAME__FIELD`` variables, one setting of one kind each. Only kinds'
    own settings are read this way: grants, destinations and every other table come from
    ``ferry.toml`` (or their whole-value ``FERRY_*`` variable) alone."""

    PREFIX = "FERRY_KINDS__"

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        kinds: dict[str, dict[str, Any]] = {}
        for key, value in os.environ.items():
            if key.upper().startswith(self.PREFIX):
                name, sep, setting = key[len(self.PREFIX) :].partition("__")
                if sep and name and setting:
                    kinds.setdefault(name.lower(), {})[setting.lower()] = value
        return {"kinds": kinds} if kinds else {}


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

    session_hours: float = Field(12.0, gt=0, le=24 * 90)
    """Hours a web sign-in lasts; then the pages ask to sign in again."""

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
    dask_tls_ca_file: Path | None = None
    """PEM file of the CA that signed the Dask cluster's certificates (external scheduler
    or HPC cluster); the embedded cluster makes temporary certificates instead."""
    dask_tls_cert_file: Path | None = None
    """PEM certificate the service (and the workers ``ferry ingest join`` starts) present
    to the Dask scheduler; an HPC cluster's scheduler and workers use it too."""
    dask_tls_key_file: Path | None = None
    """PEM private key of ``dask_tls_cert_file``."""
    dask_allow_insecure: bool = False
    """Allow a plain ``tcp://`` ``dask_scheduler`` in production mode (anyone who reaches
    it can run code on the workers and the scheduler)."""
    dask_workers: int = Field(2, ge=1)
    dask_threads_per_worker: int = Field(2, ge=1)
    dask_processes: bool = True
    """Embedded cluster workers as processes (true) or threads in the service process."""
    cluster: Literal["slurm", "pbs", "lsf"] | None = None
    """Start Dask workers as batch jobs of this HPC scheduler (dask-jobqueue, adaptive)."""
    cluster_queue: str | None = None
    cluster_account: str | None = None
    cluster_cores: int = Field(4, ge=1)
    """Cores of one batch job (one Dask worker); also its ``cpus`` resource."""
    cluster_memory: str = "16GB"
    """Memory of one batch job; also its ``memory`` resource."""
    cluster_walltime: str = "04:00:00"
    cluster_max_jobs: int = Field(10, ge=1)
    """Most batch jobs adaptive scaling may start at once."""
    cluster_job_extra: list[str] = Field(default_factory=list)
    """Extra scheduler directives, e.g. ``["--gres=gpu:1"]``."""
    cluster_job_script_prologue: list[str] = Field(default_factory=list)
    """Shell lines run before the worker starts (``module load``, activating an env)."""

    # Jobs
    orchestrator_lease: float = Field(15.0, ge=1)
    """Seconds without a heartbeat after which an orchestrator counts as dead and the tasks
    it was running are queued again."""
    orchestrator_poll: float = Field(0.5, gt=0)
    """Seconds between the orchestrator's looks at the database for new work."""
    local_task_threads: int = Field(4, ge=1)
    """Tasks that run inside the orchestrator (database and catalog work) at once."""
    dropbox_poll: float = Field(5.0, gt=0)
    """Seconds between the drop-box watcher's looks for new submit files."""
    dropbox_refresh: float = Field(0.5, gt=0)
    """Seconds between updates of the running drop-box jobs' certificates, dataset status
    files and ``end.txt``."""
    dropbox_bypass_max_bytes: int = Field(100 << 30, ge=1)
    """Most bytes of data one storage-bypass submission may have copied into the
    drop-box (100 GiB by default); a submission naming more is refused before anything
    is copied, its certificate naming the total and this limit."""
    presign_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    """Seconds a presigned URL of a drop-box file lasts unless its request asks for less
    (at most 7 days, S3's own limit)."""
    credentials_key: SecretStr | None = None
    """The key (Fernet, URL-safe base64 of 32 bytes) that encrypts the store credentials
    admins register for drop-box groups; empty: ``{home}/credentials.key``, made on first
    use."""
    staging_dir: Path | None = None
    """Where upload jobs stage metadata and transformed data; ``{home}/staging`` if empty.
    Must be shared with the workers when they run on other machines."""
    source_roots: list[Path] = Field(default_factory=list)
    """Folders every user may read sources from (read only). Empty: users read nothing
    but their own grants; admins read any folder but the service's own files."""
    store_prefixes: list[str] = Field(default_factory=list)
    """Store URL prefixes every user may read (ingest and analysis sources), besides the
    destinations' own stores."""
    grants: dict[str, Grant] = Field(default_factory=dict)
    """Per user name: what that user may reach beyond ``source_roots``/``store_prefixes``."""
    destinations: dict[str, str] = Field(default_factory=dict)
    """Store URLs that jobs may name as their ``s3_bucket``; ``default`` is ``store_url``."""
    kinds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per job kind: that kind's own settings (``[kinds.NAME]`` in ``ferry.toml``,
    ``FERRY_KINDS__NAME__FIELD``), validated by the kind's ``settings_model``."""
    max_jobs_per_request: int = Field(50, ge=1, le=10_000)
    """Most upload jobs one ``submit_jobs`` request (or spreadsheet) may hold."""
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Largest job spreadsheet (``.csv``/``.xlsx``) one upload may send, in bytes."""
    sheet_max_expanded_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Most bytes an ``.xlsx`` job spreadsheet may expand to (its parts, uncompressed),
    checked before it is read."""

    # Bounded work per request
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request body the service reads, in bytes (larger ones get 413); uploads of
    job spreadsheets are bounded by ``max_upload_bytes`` as well."""
    statement_timeout: float = Field(30.0, ge=0)
    """Seconds one database statement of a request may run before it is stopped (a
    catalog filter, a job listing); 0 means no limit. Migrations run without one."""
    shutdown_timeout: float = Field(5.0, ge=0)
    """Seconds ``ferry serve`` waits for requests in progress when asked to stop; then it
    stops them (their database statements are interrupted)."""
    log_max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Most bytes of a task log one request returns (or one ``follow`` sends at once);
    ``offset`` pages through longer logs."""
    log_follow_seconds: float = Field(3600.0, gt=0)
    """Longest a ``follow`` of a task log streams; then it ends and may be followed again."""
    catalog_max_filter_bytes: int = Field(1_000_000, ge=1024)
    """Largest catalog filter, written as JSON, in bytes."""
    catalog_max_filter_nodes: int = Field(50_000, ge=100)
    """Most JSON values (objects, arrays, scalars) in one catalog filter."""
    catalog_max_filter_depth: int = Field(32, ge=4, le=64)
    """How deeply the objects and arrays of a catalog filter may nest."""
    catalog_max_in_values: int = Field(10_000, ge=1, le=100_000)
    """Most values in one ``$in``, ``$nin`` or ``$all`` list of a catalog filter."""
    catalog_max_filter_complexity: int = Field(512, ge=16, le=4096)
    """Most units of SQL one catalog filter may compile to (about one per path part and
    condition; a nested ``$elemMatch`` or ``$not`` counts its contents again)."""
    catalog_max_distinct: int = Field(10_000, ge=1)
    """Most values one catalog ``distinct`` returns (more: narrow the filter)."""

    container_runtime: Literal["apptainer", "singularity", "docker"] | None = None
    """Runtime for ``command`` tasks that name an ``image``; without one they are refused."""
    command_environment: list[str] = Field(default_factory=list)
    """Names of variables of the service's (or worker's) environment that ``command``
    tasks get besides PATH, LANG, LC_*, TZ (and HOME/TMPDIR, which point into the task's
    own scratch folder), e.g. ``["DOCKER_HOST"]``. Commands never get anything else."""
    ingest_memory_budget: int = Field(256 * 1024 * 1024, ge=1)
    """Bytes of full-resolution data one ingest work unit holds (at least one shard)."""
    ingest_max_shards: int = Field(1_000_000, ge=1)
    """Most shards (all levels, time points and channels) one ingest job may write; a
    larger extent is refused when the job is submitted."""
    ingest_reader_paths: bool | None = None
    """Whether an ingest config may name its reader by a ``package.module:Class`` path
    (which imports that module in the service and on the workers). Unset: allowed in
    development mode, refused in production, where readers come from entry points."""
    analysis_max_models: int = Field(100_000, ge=1)
    """Most dispatch models (inputs x parameter sets) one analysis preview or dispatch
    may make; more are refused, with the counts."""
    analysis_max_listed: int = Field(100_000, ge=1)
    """Most objects an analysis dispatch lists in one location to find the files matching
    a file extension; a location that holds more is refused, naming it and this number."""

    # E-mail
    smtp_host: str | None = None
    """SMTP server for job e-mails; without one, no e-mail is sent."""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "neuroferry@localhost"
    smtp_timeout: float = Field(10.0, gt=0)

    @field_validator("command_environment")
    @classmethod
    def _variable_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _VARIABLE_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name (letters, digits and "
                    "'_', not starting with a digit)"
                )
        return names

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'ferry.db'}"
        if not self.store_url:
            self.store_url = (self.home / "lake").as_uri()
        if not self.log_store_url:
            self.log_store_url = (self.home / "logs").as_uri()
        if self.staging_dir is None:
            self.staging_dir = self.home / "staging"
        self.destinations.setdefault("default", self.store_url)
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
        return (init_settings, env_settings, _KindVariables(settings_cls), toml)


def get_settings(**overrides: Any) -> Settings:
    """Read the settings now (never at import time); errors name the setting."""
    path = config_path()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(validation_problems(exc, "settings"))
        raise ConfigError(
            f"invalid configuration ({problems}); check FERRY_* variables and {path}"
        ) from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed ferry.toml
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
