import re

import pytest
from sqlalchemy import select

from neuroferry.db import current_revision, head_revision, make_engine, meta, normalize_url, upgrade
from neuroferry.errors import ConfigError, DatabaseError


def test_upgrade_creates_the_schema_and_is_idempotent(database_url):
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    head = head_revision()
    assert head is not None and upgrade(engine) == head
    with engine.connect() as conn:
        rows = dict(conn.execute(select(meta.c.key, meta.c.value)).all())
    assert len(rows["instance_id"]) == 32
    assert upgrade(engine) == head  # a second run changes nothing
    with engine.connect() as conn:
        assert dict(conn.execute(select(meta.c.key, meta.c.value)).all()) == rows
    engine.dispose()


def test_postgresql_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unsupported_database_is_a_config_error_naming_what_is_supported():
    with pytest.raises(ConfigError, match=r"'mysql'.*supported: sqlite"):
        make_engine("mysql://root@localhost/x")


def test_malformed_database_url_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid"):
        make_engine("not a url")


def test_unreachable_database_is_a_database_error():
    engine = make_engine("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DatabaseError, match=re.escape("127.0.0.1:1")):
        upgrade(engine)


def test_migrations_build_exactly_the_declared_tables(database_url):
    """Every table, column, index and type in ``db/_tables.py`` comes from a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from neuroferry.db import metadata

    engine = make_engine(database_url)
    upgrade(engine)

    def include(obj, name, type_, reflected, compare_to):
        # indexes declared for PostgreSQL alone (``ddl_if``) do not exist elsewhere
        only_pg = type_ == "index" and obj.dialect_options["postgresql"]["using"]
        return not (only_pg and engine.dialect.name != "postgresql")

    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include}
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_a_new_sqlite_file_is_private(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'ferry.db'}")
        upgrade(engine)
        engine.dispose()
    finally:
        os.umask(old)
    for path in (tmp_path / "new").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_location_keys_of_existing_documents_are_filled_in(database_url):
    """Migration 0012 gives the documents already catalogued the canonical form of their
    location, and leaves the location itself as it was."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from neuroferry.db import documents

    engine = make_engine(database_url)
    assert upgrade(engine, "0011") == "0011"
    stored = {
        "plain": ("/data/alice/plain", "file:///data/alice/plain"),
        "localhost": ("file://localhost/data/alice/lh", "file:///data/alice/lh"),
        "double": ("s3://bucket/alice//dbl", "s3://bucket/alice/dbl"),
        "upper": ("S3://Bucket/alice/upper", "s3://bucket/alice/upper"),
        "percent": ("s3://bucket/alice/pct%20x", "s3://bucket/alice/pct x"),
        "canonical": ("s3://bucket/alice/ok", "s3://bucket/alice/ok"),
        "query": ("s3://bucket/q?x=1", None),
        "none": (None, None),
    }
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(documents),  # without location_key, which 0011 does not have
            [
                {
                    "id": f"doc-{name}",
                    "name": name,
                    "location": location,
                    "created": now,
                    "modified": now,
                    "body": {"name": name, "location": location},
                }
                for name, (location, _key) in stored.items()
            ],
        )
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        rows = conn.execute(
            select(documents.c.name, documents.c.location, documents.c.location_key)
        ).all()
    assert {name: (location, key) for name, location, key in rows} == stored
    engine.dispose()


def test_going_back_from_0012_keeps_the_documents_index_values(database_url):
    """The downgrade of 0012 drops the column in place: rebuilding the documents table on
    SQLite (foreign keys on) would delete every index value by cascade."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import func, insert

    from neuroferry.db import catalog_index_values, documents
    from neuroferry.db._migrate import _config

    engine = make_engine(database_url)
    assert upgrade(engine) == head_revision()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(documents),
            [{"id": "d1", "name": "d1", "created": now, "modified": now, "body": {"x": 1}}],
        )
        conn.execute(
            insert(catalog_index_values), [{"doc_id": "d1", "path": "x", "kind": "n", "num": 1}]
        )
    command.downgrade(_config(engine), "0011")
    assert current_revision(engine) == "0011"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(documents)).scalar() == 1
        kept = conn.execute(select(func.count()).select_from(catalog_index_values)).scalar()
    assert kept == 1
    engine.dispose()


def test_0016_types_the_values_of_the_declared_indexes_again(database_url):
    """Migration 0016 computes the index values again in their typed form (several
    values in upper case, objects and nulls too) and marks the declared indexes ready."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, text

    from neuroferry.db import catalog_index_values, documents

    engine = make_engine(database_url)
    assert upgrade(engine, "0015") == "0015"
    now = datetime.now(UTC)
    body = {"_id": "d1", "name": "d1", "x": [1, "a", {"y": None}], "z": None}
    with engine.begin() as conn:
        conn.execute(
            insert(documents),
            [{"id": "d1", "name": "d1", "created": now, "modified": now, "body": body}],
        )
        conn.execute(
            text("INSERT INTO catalog_indexes (path, created) VALUES ('x', :t)"), {"t": now}
        )
        conn.execute(
            text("INSERT INTO catalog_indexes (path, created) VALUES ('z', :t)"), {"t": now}
        )
        conn.execute(
            text(
                "INSERT INTO catalog_index_values (doc_id, path, kind, num) "
                "VALUES ('d1', 'x', 'n', 1)"
            )
        )
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                catalog_index_values.c.path,
                catalog_index_values.c.kind,
                catalog_index_values.c.num,
                catalog_index_values.c.text,
            )
        ).all()
        ready = conn.execute(text("SELECT ready FROM catalog_indexes")).scalars().all()
    assert sorted(rows, key=repr) == sorted(
        [
            ("x", "N", 1.0, None),
            ("x", "S", None, "a"),
            ("x", "O", None, None),
            ("z", "z", None, None),
        ],
        key=repr,
    )
    assert ready == [True, True]
    engine.dispose()
