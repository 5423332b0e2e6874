"""The database watch: a SQLite file removed, replaced or read-only is noticed; nothing
makes an empty file in place of a removed one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from neuroferry.db import DatabaseWatch, make_engine, sqlite_file, upgrade


def _database(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def test_sqlite_file_of_plain_and_uri_urls() -> None:
    assert sqlite_file("sqlite:////srv/ferry.db") == Path("/srv/ferry.db")
    assert sqlite_file("sqlite:///file:/srv/a%20b.db?mode=ro&uri=true") == Path("/srv/a b.db")
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql://u@h/db") is None


def test_a_removed_file_is_lost_for_good_and_not_made_again(tmp_path: Path) -> None:
    path = tmp_path / "ferry.db"
    engine = _database(path)
    watch = DatabaseWatch(engine)
    assert watch.path == path and watch.problem() is None and watch.check_writes() is None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert "removed or replaced" in (watch.problem() or "")
    engine.dispose()  # whatever the pool held: a new connection must not make a new file
    with pytest.raises(OperationalError, match="is gone"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert not path.exists()
    _database(path).dispose()  # even once a file is back, the watch stays lost
    assert watch.lost and "restart" in (watch.check_writes() or "")
    engine.dispose()


def test_a_replaced_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "ferry.db"
    engine = _database(path)
    watch = DatabaseWatch(engine)
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    os.replace(copy, path)
    assert "removed or replaced" in (watch.problem() or "")
    engine.dispose()


def test_a_read_only_file_fails_the_write_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ferry.db"
    _database(path).dispose()
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    watch = DatabaseWatch(engine)
    assert watch.problem() is None  # the same file...
    assert "cannot be written" in (watch.check_writes() or "")  # ...but not writable
    assert not (tmp_path / "file:").exists()
    engine.dispose()


def test_postgresql_has_no_file_to_watch_but_is_written(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    watch = DatabaseWatch(engine)
    if engine.dialect.name == "postgresql":
        assert watch.path is None
    assert watch.problem() is None and watch.check_writes() is None
    engine.dispose()
