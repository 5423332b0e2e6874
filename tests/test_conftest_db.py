"""The shared fixtures hand out isolated homes and working, isolated databases."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from neuroferry.config import default_home


def _database_exists(admin_url: str, name: str) -> bool:
    conninfo = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        return row is not None


def test_database_url_connects_to_an_empty_database(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            if engine.dialect.name == "postgresql":
                name = conn.execute(sa.text("select current_database()")).scalar_one()
                assert name == make_url(database_url).database
                assert name.startswith("ferry_test_")
                query = "select count(*) from pg_tables where schemaname = 'public'"
            else:
                assert engine.dialect.name == "sqlite"
                query = "select count(*) from sqlite_master where type = 'table'"
            assert conn.execute(sa.text(query)).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_fresh_postgres_database_is_dropped_even_while_connected(
    pg_admin_url: str,
    fresh_postgres_database: Callable[[], contextlib.AbstractContextManager[str]],
) -> None:
    with fresh_postgres_database() as url:
        name = make_url(url).database
        assert name is not None and _database_exists(pg_admin_url, name)
        engine = sa.create_engine(url)
        conn = engine.connect()  # left open on purpose: the drop must force it closed
        conn.execute(sa.text("create table t (x int)"))
        conn.commit()
    try:
        assert not _database_exists(pg_admin_url, name)
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            conn.close()
        engine.dispose()


def test_ferry_home_is_isolated_and_aws_variables_are_cleared(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = default_home()
    assert home.is_relative_to(tmp_path_factory.getbasetemp().resolve())
    assert os.environ["FERRY_HOME"] == str(home)
    assert not [name for name in os.environ if name.startswith("AWS_")]
