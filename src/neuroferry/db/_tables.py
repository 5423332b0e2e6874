"""Tables. Every change here comes with an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Facts about this installation (its id, when the schema was created).
meta = Table(
    "ferry_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: A JSON document: JSONB on PostgreSQL, JSON text (queried with JSON1) on SQLite.
JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")

#: The catalog: one JSON document per asset or result; ``body`` is the whole document.
documents = Table(
    "catalog_documents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("location", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("modified", DateTime(timezone=True), nullable=False),
    Column("body", JSON_DOCUMENT, nullable=False),
    # who registered it: only they (or an admin) may overwrite it; NULL for documents
    # written by admins' tools or before owners were recorded
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    # the canonical form of ``location`` (``grants.normalise_url``), which ``location``
    # keeps as given: what finds the documents at, inside or around a store URL however
    # their location is spelled; NULL when there is no location or it is not a store URL
    Column("location_key", Text, nullable=True),
    Index(
        "ix_catalog_documents_location_key",
        "location_key",
        postgresql_ops={"location_key": "text_pattern_ops"},
    ),
)

#: Document paths that admins declared indexed.
catalog_indexes = Table(
    "catalog_indexes",
    metadata,
    Column("path", String(512), primary_key=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=True),
    # false while the values are being filled: writes keep it up, filters do not use it
    Column("ready", Boolean, nullable=False, server_default=true()),
)

#: The values of the documents at the declared index paths, one row per value (arrays
#: count element by element, as in a MongoDB multikey index), typed by ``kind`` (see
#: ``catalog/_indexes.py``): what makes equality, ranges, string prefixes, ``$exists``,
#: ``$elemMatch`` and sorts on those paths fast on both databases. Strings compare by code
#: point (``COLLATE "C"`` on PostgreSQL), as in MongoDB.
catalog_index_values = Table(
    "catalog_index_values",
    metadata,
    Column("path", String(512), nullable=False),
    Column(
        "doc_id",
        String(64),
        ForeignKey("catalog_documents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(1), nullable=False),
    Column("num", Float, nullable=True),
    Column("text", Text().with_variant(Text(collation="C"), "postgresql"), nullable=True),
    # doc_id last: the sets of ids are read from the indexes alone
    Index("ix_catalog_index_values_num", "path", "kind", "num", "doc_id"),
    Index("ix_catalog_index_values_text", "path", "kind", "text", "doc_id"),
    Index("ix_catalog_index_values_doc", "doc_id"),
)

#: People and scripts that use the service; ``role`` is ``admin`` or ``user``.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("email", String(320), nullable=True),
    Column("role", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    # ``scrypt$n$r$p$salt$hash`` (see ``auth.hash_password``); none: token sign-in only
    Column("password_hash", String(256), nullable=True),
)

#: API tokens: only the sha256 of each token is kept; the token is shown once.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("label", String(128), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=True),
    Column("revoked", DateTime(timezone=True), nullable=True),
)

#: Jobs of every kind: one unit of user work with its validated spec; its state is
#: derived from its tasks'.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("spec", JSON_DOCUMENT, nullable=False),
    Column("summary", JSON_DOCUMENT, nullable=False),
    Column("job_type", String(128), nullable=True),
    Column("job_type_version", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("cancel_requested", DateTime(timezone=True), nullable=True),
    # what the job's tasks may touch, when not their owner's grants (see grants.Access)
    Column("access", JSON_DOCUMENT, nullable=True),
    Index("ix_jobs_state_created", "state", "created"),
    Index("ix_jobs_created", "created"),
    Index("ix_jobs_owner_created", "owner_id", "created"),
    Index("ix_jobs_name", "name"),
    # "the asset name contains …" on PostgreSQL (pg_trgm); SQLite has no such index
    Index(
        "ix_jobs_name_trgm",
        "name",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql"),
)

#: Tasks: one row per step of a job, and one per instance of a mapped step
#: (``map_index`` >= 0; the step's own row has -1).
tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("item", String(256), nullable=True),
    Column("placement", String(8), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("retries_left", Integer, nullable=False),
    Column("params", JSON_DOCUMENT, nullable=False),
    Column("result", JSON_DOCUMENT, nullable=True),
    Column("saved_state", JSON_DOCUMENT, nullable=True),
    Column("error", Text, nullable=True),
    Column("not_before", DateTime(timezone=True), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("worker", String(256), nullable=True),
    Index("uq_tasks_instance", "job_id", "name", "map_index", unique=True),
    Index("ix_tasks_runnable", "state", "not_before"),
    Index("ix_tasks_claimed_by", "claimed_by"),
    # a job's top-level tasks (map_index -1), and whether a mapped task has unfinished
    # instances, without reading the other instances of a big mapped task
    Index("ix_tasks_job_level", "job_id", "map_index"),
    Index("ix_tasks_job_name_state", "job_id", "name", "state"),
    # the first waiting tasks of a state, without sorting every waiting task
    Index("ix_tasks_state_id", "state", "id"),
)

#: Running orchestrators and their heartbeats: a task claimed by one whose heartbeat is
#: older than the lease is queued again.
orchestrators = Table(
    "orchestrators",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("heartbeat", DateTime(timezone=True), nullable=False),
    Column("active", Integer, nullable=False),
)

#: Job types: named, versioned presets of task settings per job kind. Every change is a
#: new row (nothing is overwritten); the current version is the highest; a deletion is a
#: version with ``deleted`` set, so history keeps it and a later change revives it.
job_types = Table(
    "job_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("settings", JSON_DOCUMENT, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("comment", Text, nullable=True),
    Column("deleted", Boolean, nullable=False),
    Index("uq_job_types_version", "kind", "name", "version", unique=True),
)

#: Project names an upload may give; none listed means any name is allowed.
projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=True),
    #: institution, funding_source, investigators: written into the data descriptions
    Column("facts", JSON_DOCUMENT, nullable=True),
)

#: The modalities and platforms uploads may name (``list`` is ``modality`` or
#: ``platform``), seeded from the package's lists on first read.
vocab_terms = Table(
    "vocab_terms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("list", String(16), nullable=False),
    Column("abbreviation", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("legacy_names", JSON_DOCUMENT, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=True),
    Index("uq_vocab_terms_term", "list", "abbreviation", unique=True),
)

#: One unfinished job per asset: a row per (kind-neutral) asset key, inserted when a job
#: that writes the asset is submitted or retried and deleted when it ends. The primary key
#: makes two jobs for one asset impossible, whatever the timing of their requests.
asset_locks = Table(
    "asset_locks",
    metadata,
    Column("key", String(600), primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_asset_locks_job", "job_id"),
)

#: Failed sign-ins per (user name, address), shared by every service process: an attempt
#: must first move ``next_at`` forward, so parallel guesses wait their turn.
sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

#: Periodic watchers (see ``engine._watchers``): who runs one now (an orchestrator's id;
#: free again once that orchestrator's heartbeat row is gone) and when it is due next.
watcher_leases = Table(
    "watcher_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=True),
    Column("next_run", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("runs", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
)

#: Drop-boxes: an analysis published at a store location; ``name`` is what appears in
#: ``job__{name}_{timestamp}``; its jobs are owned by the admin who published it.
dropboxes = Table(
    "dropboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("analysis", String(128), nullable=False),
    Column("store_url", Text, nullable=False),
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

#: A drop-box's user groups: each has its folder ``{name}/`` in the drop-box's store.
dropbox_groups = Table(
    "dropbox_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dropbox_id", Integer, ForeignKey("dropboxes.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    # the group's limits (none: no limit): datasets running at once, minutes one dataset
    # may run, datasets submitted per 24 hours
    Column("max_running", Integer, nullable=True),
    Column("max_minutes", Integer, nullable=True),
    Column("max_per_day", Integer, nullable=True),
    Index("uq_dropbox_groups_name", "dropbox_id", "name", unique=True),
)

#: A group's storage bypass (``s3://`` data and ``resultpath`` in other buckets): the
#: endpoint the admin allows and the group's own key, its secret encrypted with the
#: service's credentials key; no key: unsigned (public) requests.
dropbox_bypass = Table(
    "dropbox_bypass",
    metadata,
    Column(
        "group_id",
        Integer,
        ForeignKey("dropbox_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("endpoint", Text, nullable=True),
    Column("region", String(64), nullable=True),
    Column("access_key_id", String(256), nullable=True),
    Column("secret", Text, nullable=True),
    Column("allow_service_buckets", Boolean, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

#: The users of each group.
dropbox_members = Table(
    "dropbox_members",
    metadata,
    Column(
        "group_id",
        Integer,
        ForeignKey("dropbox_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

#: Every submit file a drop-box's watcher has taken, by its key and content: one row per
#: (drop-box, key, sha256), so the same file is never run twice. ``state`` is
#: ``claimed`` (being submitted), ``waiting`` (for the group's running datasets),
#: ``running`` (its job runs), ``ended`` (``end.txt`` written), ``rejected`` (a bad
#: submission: its certificate says why) or ``duplicate``.
_LIVE_SUBMISSION = "state IN ('claimed', 'waiting', 'running', 'ended')"

dropbox_submissions = Table(
    "dropbox_submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dropbox_id", Integer, ForeignKey("dropboxes.id", ondelete="CASCADE"), nullable=False),
    Column("group_name", String(128), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("etag", String(256), nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("timestamp", String(256), nullable=True),
    Column("folder", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True),
    Column("datasets", JSON_DOCUMENT, nullable=False),
    # the analysis's parameters and the config's own keys, kept while a submission waits
    Column("parameters", JSON_DOCUMENT, nullable=True),
    Column("setup_log", JSON_DOCUMENT, nullable=False),
    Column("written", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("uq_dropbox_submissions_file", "dropbox_id", "key", "sha256", unique=True),
    Index("ix_dropbox_submissions_timestamp", "dropbox_id", "group_name", "timestamp"),
    Index("ix_dropbox_submissions_state", "state"),
    # a timestamp names a group's results folder: one submission that is not refused has it
    Index(
        "uq_dropbox_submissions_live_timestamp",
        "dropbox_id",
        "group_name",
        "timestamp",
        unique=True,
        postgresql_where=text(_LIVE_SUBMISSION),
        sqlite_where=text(_LIVE_SUBMISSION),
    ),
)
