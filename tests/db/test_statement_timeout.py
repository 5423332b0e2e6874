"""The statement timeout: a statement that runs too long is stopped, on SQLite and
PostgreSQL, with a QueryTimeout that says so; migrations and other statements are not."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from neuroferry.db import interrupt_statements, lift_statement_timeout, make_engine, upgrade
from neuroferry.errors import QueryTimeout

COUNT_TO_A_BILLION = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


def test_a_statement_past_the_timeout_is_stopped_with_a_clear_error(database_url: str) -> None:
    engine = make_engine(database_url, statement_timeout=0.5)
    try:
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(QueryTimeout) as caught:
            conn.execute(COUNT_TO_A_BILLION).scalar_one()
        assert time.monotonic() - started < 20
        message = str(caught.value)
        assert message.startswith("the query took longer than 0.5 s (setting statement_timeout)")
        assert "narrow the filter" in message
        assert caught.value.__cause__ is not None  # translated at the boundary, from the driver
        assert QueryTimeout.status_code == 503
        # the connection (and the pool) go on working
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
            conn.execute(text("SELECT 1")).scalar_one()
            time.sleep(0.7)  # a deadline passed between statements stops nothing
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()


def test_lifted_for_one_connection_and_absent_by_default(database_url: str) -> None:
    engine = make_engine(database_url, statement_timeout=0.2)
    short = text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT count(*) FROM c"
    )
    try:
        with engine.begin() as conn:
            lift_statement_timeout(conn)
            assert conn.execute(short).scalar_one() == 3_000_000
        upgrade(engine)  # migrations lift it themselves
    finally:
        engine.dispose()
    unlimited = make_engine(database_url)
    try:
        with unlimited.connect() as conn:
            assert conn.execute(short).scalar_one() == 3_000_000
    finally:
        unlimited.dispose()


def test_stopping_interrupts_running_statements(database_url: str) -> None:
    engine = make_engine(database_url, statement_timeout=60)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(COUNT_TO_A_BILLION).scalar_one()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    started = time.monotonic()
    interrupt_statements(engine)
    worker.join(30)
    try:
        assert not worker.is_alive()
        assert time.monotonic() - started < 20
        assert len(errors) == 1 and isinstance(errors[0], QueryTimeout), errors
        assert "the service is stopping" in str(errors[0])
    finally:
        engine.dispose()
