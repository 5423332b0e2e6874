"""Differential tests: random documents and random filters (and sorts) answered by the
compiled SQL on SQLite and on PostgreSQL must equal mongomock's answers exactly.

The generators stay inside what mongomock gets right (see ``test_filter_sql.py`` for the
corners where it differs from MongoDB, tested against MongoDB's answers instead):

* no numbers equal to 0 or 1: mongomock compares with Python's ``==``, where ``True == 1``;
* ``$size`` and ``$all`` are given to mongomock in an equivalent form with MongoDB's
  meaning (``$size`` with ``$type: "array"``; ``$all`` as an ``$and`` of equalities);
* no ``$type: "null"`` or numeric type codes (mongomock has neither), no ``$not`` directly
  in a ``$elemMatch`` of operators, no ``$options`` inside ``$not`` (mongomock rejects it);
* sorts only over values that MongoDB orders by type and value: scalars, missing fields,
  and arrays of scalars (objects order among themselves field by field, not supported).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mongomock
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from conftest import docs_table
from neuroferry.catalog._filter import (
    compiled_re2,
    parse_filter,
    parse_sort,
    postgres_regex,
    re2_regex,
)
from neuroferry.catalog._sql import filter_clause, sort_clauses
from neuroferry.db import make_engine
from neuroferry.errors import QueryError

#: FERRY_TEST_EXAMPLES=5000 for a longer run
EXAMPLES = settings(
    max_examples=int(os.environ.get("FERRY_TEST_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


# -- one table per database for the whole module ---------------------------------------------


@dataclass
class Database:
    engine: sa.Engine
    table: sa.Table

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def holding(self, docs: list[Any]) -> Iterator[None]:
        """The documents (ids 0, 1, …) are in the table until the block ends."""
        if docs:
            with self.engine.begin() as conn:
                rows = [{"id": i, "body": doc} for i, doc in enumerate(docs)]
                conn.execute(self.table.insert(), rows)
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(self.table.delete())

    def ids(self, filter: dict[str, Any]) -> list[int]:
        clause = filter_clause(parse_filter(filter), self.table.c.body, self.dialect)
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(self.table.c.id).where(clause)).scalars())

    def sorted_ids(self, sort: list[tuple[str, int]]) -> list[int]:
        order = sort_clauses(parse_sort(sort), self.table.c.body, self.dialect)
        stmt = sa.select(self.table.c.id).order_by(*order, self.table.c.id)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())


def _database(url: str) -> Database:
    return Database(*docs_table(url))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """An empty documents table on SQLite or PostgreSQL, kept for the module."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("catalog") / "differential.db"
        database = _database(f"sqlite:///{path}")
        yield database
        database.engine.dispose()
        return
    with request.getfixturevalue("fresh_postgres_database")() as url:
        database = _database(url)
        yield database
        database.engine.dispose()


def mongo(docs: list[Any]) -> Any:
    collection = mongomock.MongoClient().db.docs
    if docs:
        collection.insert_many([{"_id": i, **doc} for i, doc in enumerate(docs)])
    return collection


# -- documents ---------------------------------------------------------------------------------

KEYS = ["a", "b"]  # few keys, few values: filters should find something
NUMBERS = [-1, 2, 2.0, 2.5, 3]  # no 0 or 1: mongomock has True == 1
STRINGS = ["", "x", "y", "X"]
SCALARS = st.none() | st.booleans() | st.sampled_from(NUMBERS) | st.sampled_from(STRINGS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*KEYS, "0"]), inner, max_size=2)
    ),
    max_leaves=6,
)
# {"a": {}} also matches documents without "a" in mongomock: no empty object as a literal
LITERALS = st.one_of(SCALARS, SCALARS, VALUES).filter(lambda v: v != {})
DOCS = st.lists(
    st.dictionaries(st.sampled_from(KEYS), SCALARS | VALUES, min_size=1, max_size=2),
    min_size=1,
    max_size=8,
)
PATHS = st.lists(st.sampled_from([*KEYS, *KEYS, "0", "1"]), min_size=1, max_size=3).map(".".join)


# -- filters -----------------------------------------------------------------------------------

PATTERNS = st.sampled_from(
    [
        "x",
        "^x",
        "y$",
        "^$",
        "x|y",
        "[xy]",
        "X",
        "^.$",
        "xy*",
        "(x|y)+$",
        ".",
        r"\w",
        "^[^x]",
        r"\bx",
        "^(?:x|X)$",
        "x{2}",
        r"\Ax",
    ]
)
TYPES = st.sampled_from(["string", "number", "double", "int", "bool", "object", "array"])


def operators(inner: st.SearchStrategy[Any], *, in_not: bool = False) -> st.SearchStrategy[Any]:
    """Objects of field operators (one to three of them)."""
    ops: dict[str, st.SearchStrategy[Any]] = {
        "$eq": LITERALS,
        "$ne": LITERALS,
        "$gt": SCALARS,
        "$gte": SCALARS,
        "$lt": SCALARS,
        "$lte": SCALARS,
        "$in": st.lists(LITERALS, max_size=3),
        "$nin": st.lists(LITERALS, max_size=3),
        "$exists": st.booleans(),
        "$regex": PATTERNS,
        "$size": st.integers(0, 3),
        "$type": TYPES,
        "$elemMatch": inner | element_operators(inner),
    }
    if not in_not:
        ops["$not"] = st.deferred(lambda: operators(inner, in_not=True))
    chosen = st.lists(st.sampled_from(sorted(ops)), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(
        lambda names: st.fixed_dictionaries({name: ops[name] for name in names})
    ).flatmap(lambda spec: _with_options(spec, in_not))


def _with_options(spec: dict[str, Any], in_not: bool) -> st.SearchStrategy[Any]:
    if "$size" in spec:
        spec.pop("$type", None)
    if "$regex" in spec and not in_not:
        return st.sampled_from(["", "i"]).map(lambda o: {**spec, "$options": o} if o else spec)
    return st.just(spec)


def element_operators(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A ``$elemMatch`` of operators: never ``$not`` alone (mongomock reads that as fields)."""
    return st.deferred(lambda: operators(inner, in_not=True))


def filters() -> st.SearchStrategy[Any]:
    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        condition = LITERALS | operators(inner) | all_operator(inner)
        one = st.dictionaries(PATHS, condition, min_size=1, max_size=1)
        fields = st.one_of(one, one, st.dictionaries(PATHS, condition, min_size=2, max_size=2))
        logic = st.sampled_from(["$and", "$or", "$nor"]).flatmap(
            lambda op: st.lists(inner, min_size=1, max_size=2).map(lambda items: {op: items})
        )
        return fields | logic | st.tuples(fields, logic).map(lambda p: {**p[0], **p[1]})

    leaves = st.dictionaries(
        PATHS, LITERALS | st.fixed_dictionaries({"$exists": st.booleans()}), min_size=1, max_size=1
    )
    return st.recursive(leaves, extend, max_leaves=6)


def all_operator(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    values = st.lists(LITERALS, max_size=2).map(lambda vs: {"$all": vs})
    matches = st.lists(inner | element_operators(inner), min_size=1, max_size=2).map(
        lambda qs: {"$all": [{"$elemMatch": q} for q in qs]}
    )
    return st.one_of(values, values, matches)


# -- MongoDB's meaning, written so that mongomock gets it right --------------------------------


def for_mongomock(filter: dict[str, Any]) -> dict[str, Any]:
    """The same filter with $size and $all in forms mongomock evaluates as MongoDB does."""
    out: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for key, value in filter.items():
        if key in ("$and", "$or", "$nor"):
            out[key] = [for_mongomock(item) for item in value]
        elif _is_operators(value):
            spec = _operators_for_mongomock(value)
            if "$all" in spec:
                items = spec.pop("$all")
                # {key: {}} is mongomock's quirk: an object to equal goes through $eq
                extra += [
                    {key: {"$eq": item} if isinstance(item, dict) else item} for item in items
                ] or [{key: {"$in": []}}]
            if spec:
                out[key] = spec
        else:
            out[key] = value
    if extra:
        out["$and"] = [*out.get("$and", []), *extra]
    return out


def _is_operators(value: Any) -> bool:
    return isinstance(value, dict) and any(k.startswith("$") for k in value)


def _operators_for_mongomock(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    if "$size" in out and "$type" not in out:
        out["$type"] = "array"  # mongomock's $size also counts objects' keys and scalars
    if "$not" in out:
        out["$not"] = _operators_for_mongomock(out["$not"])
    if "$elemMatch" in out:
        query = out["$elemMatch"]
        out["$elemMatch"] = (
            _operators_for_mongomock(query) if _is_operators_only(query) else for_mongomock(query)
        )
    if "$all" in out:
        out["$all"] = [
            {"$elemMatch": _operators_for_mongomock(i["$elemMatch"])}
            if _is_operators(i) and _is_operators_only(i["$elemMatch"])
            else {"$elemMatch": for_mongomock(i["$elemMatch"])}
            if _is_operators(i)
            else i
            for i in out["$all"]
        ]
    return out


def _is_operators_only(query: dict[str, Any]) -> bool:
    return all(k.startswith("$") and k not in ("$and", "$or", "$nor") for k in query)


# -- the tests ---------------------------------------------------------------------------------


@EXAMPLES
@given(docs=DOCS, filter=filters())
def test_filters_match_mongomock(db: Database, docs: list[Any], filter: dict[str, Any]) -> None:
    try:
        filter_clause(parse_filter(filter), db.table.c.body, db.dialect)
    except QueryError:  # too complex, or too deep for SQLite: refused, nothing to compare
        reject()
    expected = sorted(d["_id"] for d in mongo(docs).find(for_mongomock(filter)))
    with db.holding(docs):
        assert db.ids(filter) == expected


SORT_SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2.5, 2.0, 2])
    | st.sampled_from(["", "a", "B", "b", "é", "ab"])
)
SORT_VALUES = SORT_SCALARS | st.lists(SORT_SCALARS, max_size=3)
SORT_DOCS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "a": SORT_VALUES,
            "b": SORT_SCALARS | st.fixed_dictionaries({}, optional={"c": SORT_VALUES}),
        },
    ),
    max_size=10,
)
SORTS = st.lists(
    st.tuples(st.sampled_from(["a", "b.c", "a.0", "b"]), st.sampled_from([1, -1])),
    min_size=1,
    max_size=3,
    unique_by=lambda key: key[0],
)


@EXAMPLES
@given(docs=SORT_DOCS, sort=SORTS)
def test_sorts_match_mongomock(db: Database, docs: list[Any], sort: list[tuple[str, int]]) -> None:
    if any(path == "b" for path, _ in sort):  # objects only order by type: one object at most
        objects = [i for i, d in enumerate(docs) if isinstance(d.get("b"), dict)]
        docs = [d for i, d in enumerate(docs) if i not in objects[1:]]
    expected = [d["_id"] for d in mongo(docs).find({}, sort=sort)]
    with db.holding(docs):
        assert db.sorted_ids(sort) == expected


REGEX_ATOMS = st.sampled_from(
    ["a", "b", "A", ".", "\\.", "[ab]", "[^a]", "\\d", "\\w", "\\s", "\\b", "\\n", "é", "-", " "]
)


def _regex() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return (
            st.lists(inner, min_size=2, max_size=3).map("".join)
            | st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})")
            | st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,2}", "*?"])).map(
                lambda p: f"({p[0]}){p[1]}"
            )
        )

    body = st.recursive(REGEX_ATOMS, extend, max_leaves=5)
    return st.tuples(st.sampled_from(["", "^"]), body, st.sampled_from(["", "$"])).map("".join)


@pytest.mark.postgres
@settings(max_examples=300, deadline=None)
@given(
    pattern=_regex(),
    options=st.sampled_from(["", "i", "m", "s", "ms", "x"]),
    texts=st.lists(st.text("abAB. \n1é-", max_size=6), min_size=1, max_size=6),
)
def test_postgres_regexes_find_what_python_finds(
    pg_engine: sa.Engine, pattern: str, options: str, texts: list[str]
) -> None:
    flags = sum(f for o, f in [("i", re.I), ("m", re.M), ("s", re.S), ("x", re.X)] if o in options)
    try:
        are, ignore_case = postgres_regex(pattern, options)
    except QueryError:  # refused (Python cannot compile it, or PostgreSQL cannot run it alike)
        return
    expected = [bool(re.search(pattern, text, flags)) for text in texts]
    op = "~*" if ignore_case else "~"
    with pg_engine.connect() as conn:
        found = [
            conn.execute(
                sa.text(f"SELECT CAST(:text AS text) {op} :pattern"), {"text": text, "pattern": are}
            ).scalar()
            for text in texts
        ]
    assert found == expected, are


@settings(max_examples=500, deadline=None)
@given(
    pattern=_regex(),
    options=st.sampled_from(["", "i", "m", "s", "ms", "x"]),
    texts=st.lists(st.text("abAB. \n1é-", max_size=6), min_size=1, max_size=6),
)
def test_re2_regexes_find_what_python_finds(pattern: str, options: str, texts: list[str]) -> None:
    """What SQLite runs (RE2) finds what Python finds."""
    flags = sum(f for o, f in [("i", re.I), ("m", re.M), ("s", re.S), ("x", re.X)] if o in options)
    try:
        translated = re2_regex(pattern, options)
    except QueryError:  # refused (on both databases)
        return
    if "\\b" in pattern:  # RE2's word boundaries know ASCII word characters only (documented)
        texts = [text.replace("é", "e") for text in texts]
    expected = [bool(re.search(pattern, text, flags)) for text in texts]
    found = [bool(compiled_re2(translated).search(text)) for text in texts]
    assert found == expected, translated


@pytest.fixture(scope="module")
def pg_engine(fresh_postgres_database: Any) -> Iterator[sa.Engine]:
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()
