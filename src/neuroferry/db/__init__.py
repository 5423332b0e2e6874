"""Persistence: the SQLAlchemy engine (SQLite or PostgreSQL), tables and migrations."""

from neuroferry.db._engine import make_engine, normalize_url, redact
from neuroferry.db._migrate import current_revision, head_revision, refresh_statistics, upgrade
from neuroferry.db._tables import (
    JSON_DOCUMENT,
    api_tokens,
    asset_locks,
    catalog_index_values,
    catalog_indexes,
    documents,
    job_types,
    jobs,
    meta,
    metadata,
    orchestrators,
    projects,
    sign_in_attempts,
    tasks,
    users,
    vocab_terms,
)

__all__ = [
    "JSON_DOCUMENT",
    "api_tokens",
    "asset_locks",
    "catalog_index_values",
    "catalog_indexes",
    "current_revision",
    "documents",
    "head_revision",
    "job_types",
    "jobs",
    "make_engine",
    "meta",
    "metadata",
    "normalize_url",
    "orchestrators",
    "projects",
    "redact",
    "refresh_statistics",
    "sign_in_attempts",
    "tasks",
    "upgrade",
    "users",
    "vocab_terms",
]
