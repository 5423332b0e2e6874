"""Compilation of catalog filters and sorts to SQL, for SQLite (JSON1) and PostgreSQL (JSONB).

The strategy and everything both dialects share is in ``_sql_common.py``; each dialect's
references to JSON values are in its own module, ``_sql_sqlite.py`` and
``_sql_postgres.py``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from neuroferry.catalog._filter import MatchAll, Node, check_path, is_index
from neuroferry.catalog._sql_common import _node, _path_rows, _Ref
from neuroferry.catalog._sql_postgres import _PgRef
from neuroferry.catalog._sql_sqlite import (
    _check_sqlite_parses,
    _PathRef,
    regex_guard,
    register_sqlite_functions,
)
from neuroferry.errors import ConfigError

__all__ = [
    "filter_clause",
    "path_value",
    "path_values",
    "regex_guard",
    "register_sqlite_functions",
    "sort_clauses",
    "sort_key_values",
]


def filter_clause(node: Node, body: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
    """The SQL condition that selects the rows whose JSON ``body`` matches the filter.

    :class:`QueryError` if the filter nests too deeply for SQLite's parser (which takes
    about ten sub-queries inside one another)."""
    clause = _node(node, _root(body, dialect), at_root=True)
    if dialect == "sqlite" and not isinstance(node, MatchAll):
        _check_sqlite_parses(clause)
    return clause


def sort_clauses(
    sort: list[tuple[str, int]], body: ColumnElement[Any], dialect: str
) -> list[ColumnElement[Any]]:
    """ORDER BY expressions for validated sort keys (see ``parse_sort`` for the order);
    append a unique column (the id) to make the order total."""
    root = _root(body, dialect)
    clauses: list[ColumnElement[Any]] = []
    for path, direction in sort:
        for key in root.at_path(_split(path)).sort_keys():
            clauses.append(key.asc() if direction == 1 else key.desc())
    return clauses


def sort_key_values(path: str, body: ColumnElement[Any], dialect: str) -> list[ColumnElement[Any]]:
    """The sort key of one path, as the values ``sort_clauses`` orders by: its type's
    rank (2 numbers, 3 strings, see ``parse_sort``), then the number (SQLite: or the
    string), then on PostgreSQL the string."""
    return list(_root(body, dialect).at_path(_split(path)).sort_keys())


def path_values(
    path: str, body: ColumnElement[Any], dialect: str
) -> tuple[list[tuple[Any, ColumnElement[bool]]], ColumnElement[Any], ColumnElement[bool]] | None:
    """The values at a dotted path of each row's JSON ``body`` as rows: arrays of
    objects along the path are traversed and an array at its end unwound, as MongoDB's
    ``distinct`` does. Table-valued functions to join, in order, after ``body``'s table
    (each with its ON condition), the value as JSON (``jsonb`` on PostgreSQL, JSON text
    on SQLite) and a condition for the WHERE clause; None for a path with a number part
    (which indexes arrays and is also a key: two ways at each such part)."""
    parts = _split(path)
    if any(is_index(part) for part in parts):
        return None
    joins, item, where = _path_rows(_root(body, dialect), parts)
    value = item.json_value()
    if dialect == "postgresql":
        value = sa.type_coerce(value, JSONB())
    return joins, value, where


def path_value(path: str, body: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The JSON value at a dotted path, arrays not traversed (a numeric part indexes an
    array), NULL when missing: ``jsonb`` on PostgreSQL, JSON text on SQLite, typed so that
    results come back as Python values.

    Deterministic, so usable in an expression index when the path's keys are printable
    ASCII without ``"``, ``/`` or ``\\``: render it with ``literal_binds`` over an
    unqualified column (``sqlalchemy.column("body")``; SQLite refuses ``table.body`` in
    index expressions). Equality filters do not use such an index, since they must also
    look into arrays; on PostgreSQL they use a GIN index on the body instead (see
    ``_sql_postgres.py``)."""
    value = _root(body, dialect).at_path(_split(path)).json_value()
    return sa.type_coerce(value, sa.JSON().with_variant(JSONB(), "postgresql"))


def _split(path: str) -> list[str]:
    return check_path(path, "the path").split(".")


def _root(body: ColumnElement[Any], dialect: str) -> _Ref:
    if dialect == "postgresql":
        return _PgRef(body)
    if dialect == "sqlite":
        return _PathRef(body, "$")
    raise ConfigError(f"the catalog runs on sqlite or postgresql, not {dialect!r}")
