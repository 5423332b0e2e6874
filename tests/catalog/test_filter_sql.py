"""Compiled filters on SQLite and PostgreSQL: each operator, arrays, null and missing values,
type bracketing, nested arrays, numeric path parts, hostile keys and values; compared with
mongomock, and with MongoDB's answer written out where mongomock gets it wrong."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import mongomock
import pytest
import sqlalchemy as sa

from conftest import docs_table
from neuroferry.catalog._filter import parse_filter, parse_sort
from neuroferry.catalog._sql import filter_clause, path_value, sort_clauses
from neuroferry.catalog._sql_sqlite import _unique
from neuroferry.errors import QueryError


@dataclass
class Docs:
    """A throw-away table of JSON documents ``{id: body}`` and its twin in mongomock."""

    engine: sa.Engine
    table: sa.Table
    docs: dict[int, Any]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ids(self, filter: Mapping[str, Any] | None) -> list[int]:
        clause = filter_clause(parse_filter(filter), self.table.c.body, self.dialect)
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(self.table.c.id).where(clause)).scalars())

    def sorted_ids(self, sort: Any) -> list[int]:
        order = sort_clauses(parse_sort(sort), self.table.c.body, self.dialect)
        stmt = sa.select(self.table.c.id).order_by(*order, self.table.c.id)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def mongo(self) -> Any:
        collection = mongomock.MongoClient().db.docs
        if self.docs:
            collection.insert_many([{"_id": i, **doc} for i, doc in self.docs.items()])
        return collection

    def mongo_ids(self, filter: Mapping[str, Any]) -> list[int]:
        return sorted(doc["_id"] for doc in self.mongo().find(filter))


def make_docs(url: str, docs: Mapping[int, Any]) -> Docs:
    engine, table = docs_table(url)
    if docs:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "body": doc} for i, doc in docs.items()])
    return Docs(engine, table, dict(docs))


@pytest.fixture
def corpus(database_url: str) -> Iterator[Docs]:
    """The documents below, in a fresh database of each kind."""
    docs = make_docs(database_url, CORPUS)
    yield docs
    docs.engine.dispose()


# No 0 or 1 (nor 0.0, 1.0) anywhere: mongomock finds True == 1 (Python), MongoDB does not.
CORPUS: dict[int, Any] = {
    1: {"a": 5},
    2: {"a": 2.5},
    3: {"a": "x"},
    4: {"a": "Xyz"},
    5: {"a": None},
    6: {},
    7: {"a": True},
    8: {"a": False},
    9: {"a": [5, 7]},
    10: {"a": [[5, 7], 3]},
    11: {"a": []},
    12: {"a": {"b": 5}},
    13: {"a": {"b": None}},
    14: {"a": {"b": [5, "x"]}},
    15: {"a": [{"b": 5}, {"c": 2}]},
    16: {"a": [{"b": [7]}, 3, None]},
    17: {"a": [[{"b": 5}]]},
    18: {"a": {"b": {"c": [{"d": 2.5}, {"d": "y"}]}}},
    19: {"a": {"0": "zero", "2": {"b": 5}}},
    20: {"a": [{"b": 5, "c": "x"}, {"b": 6, "c": "y"}]},
    21: {"a": 5.0},
    22: {"a": "5"},
    23: {"a": {"b": 5, "c": 2}},
    24: {"a": {"c": 2, "b": 5}},
    25: {"a": "ab\ncd", "b": "line\n"},
    26: {"a": ["x", "Xa", 7, None]},
    27: {"a": 3, "b": [{"c": [{"d": 5}]}, {"c": {"d": 6}}]},
    28: {"a": -2147483649},
    29: {"a": [[], [None]]},
    30: {"a": {"b": {}}},
}

CASES: dict[str, list[dict[str, Any]]] = {
    "equality": [
        {"a": 5},
        {"a": 5.0},
        {"a": "x"},
        {"a": "5"},
        {"a": True},
        {"a": False},
        {"a": [5, 7]},
        {"a": [7, 5]},
        {"a": []},
        {"a": {"b": 5}},
        {"a": {"b": 5, "c": 2}},
        {"a": {"c": 2, "b": 5}},
        {"a": {"$eq": 5}},
        {"a": {"$eq": [5, 7]}},
        {"a": {"$eq": {"b": None}}},
        {"a": {"$ne": 5}},
        {"a": {"$ne": [5, 7]}},
        {"a": {"$ne": "x"}},
        {"b": {"c": {"d": 6}}},
        {"a": [[5, 7], 3]},
        {"a": [None]},
    ],
    "null_and_missing": [
        {"a": None},
        {"a": {"$eq": None}},
        {"a": {"$ne": None}},
        {"a.b": None},
        {"a.b": {"$ne": None}},
        {"a.c": None},
        {"a.b.c": None},
        {"z": None},
        {"a": {"$exists": True}},
        {"a": {"$exists": False}},
        {"a.b": {"$exists": True}},
        {"a.b": {"$exists": False}},
        {"a.c": {"$exists": False}},
        {"a.b.c.d": {"$exists": False}},
        {"a": {"$in": [None]}},
        {"a.b": {"$in": [None, 6]}},
        {"a.b": {"$nin": [None]}},
        {"a": {"$gte": None}},
        {"a": {"$lte": None}},
        {"a": {"$gt": None}},
        {"a": {"$lt": None}},
        {"a": {"$exists": True, "$ne": None}},
    ],
    "comparisons": [
        {"a": {"$gt": 3}},
        {"a": {"$gte": 5}},
        {"a": {"$lt": 5}},
        {"a": {"$lte": 2.5}},
        {"a": {"$gt": 2, "$lt": 6}},
        {"a": {"$gt": "X"}},
        {"a": {"$gte": "x"}},
        {"a": {"$lt": "x"}},
        {"a": {"$lt": "a"}},
        {"a": {"$gt": False}},
        {"a": {"$gte": False}},
        {"a": {"$lt": True}},
        {"a": {"$lte": True}},
        {"a": {"$gt": True}},
        {"a.b": {"$gt": 4}},
        {"a.b": {"$lt": "y"}},
        {"a.b": {"$gt": 4, "$lt": 6}},
        {"a": {"$gt": -(2**40)}},
        {"a": {"$lt": -(2**31)}},
    ],
    "arrays_and_paths": [
        {"a.b": 5},
        {"a.b": 7},
        {"a.b": "x"},
        {"a.c": 2},
        {"a.0": 5},
        {"a.0": "zero"},
        {"a.1": 7},
        {"a.1": 3},
        {"a.0.b": 5},
        {"a.2.b": 5},
        {"a.5": 5},
        {"a.0.0": 5},
        {"a.0.0.b": 5},
        {"a.b.c.d": 2.5},
        {"a.b.c.d": "y"},
        {"a.b.c.0.d": 2.5},
        {"b.c.d": 5},
        {"b.c.d": 6},
        {"b.c": {"d": 6}},
        {"b.0.c.0.d": 5},
        {"a.b": [5, "x"]},
        {"a.b": [7]},
        {"a.b.0": 7},
        {"a": 7},
        {"a": 3},
        {"a.c": "y"},
    ],
    "in_and_nin": [
        {"a": {"$in": [5, "x"]}},
        {"a": {"$in": [7]}},
        {"a": {"$in": [[5, 7]]}},
        {"a": {"$in": [{"b": 5}]}},
        {"a": {"$in": []}},
        {"a": {"$in": [True, 2.5]}},
        {"a.b": {"$in": [5, 6]}},
        {"a": {"$nin": [5, "x"]}},
        {"a": {"$nin": []}},
        {"a.b": {"$nin": [5]}},
        {"a.b": {"$nin": [7, None]}},
        {"a": {"$nin": [None, 5], "$gt": 2}},
        {"a": {"$in": ["x", None, [5, 7]]}},
    ],
    "regex": [
        {"a": {"$regex": "x"}},
        {"a": {"$regex": "^x"}},
        {"a": {"$regex": "^x", "$options": "i"}},
        {"a": {"$regex": "y[z]$"}},
        {"a": {"$regex": "^cd$"}},
        {"a": {"$regex": "^cd$", "$options": "m"}},
        {"a": {"$regex": "b.c"}},
        {"a": {"$regex": "b.c", "$options": "s"}},
        {"b": {"$regex": "line$"}},
        {"b": {"$regex": "line\\Z"}},
        {"a": {"$regex": "\\d"}},
        {"a": {"$regex": "\\bX"}},
        {"a": {"$regex": "X a # comment", "$options": "x"}},
        {"a": {"$regex": "(?i)^xa$"}},
        {"a.b.c.d": {"$regex": "^y"}},
        {"a": {"$regex": ""}},
        {"a": {"$not": {"$regex": "x"}}},
    ],
    "elem_match_size_type": [
        {"a": {"$elemMatch": {"b": 5}}},
        {"a": {"$elemMatch": {"b": 5, "c": "y"}}},
        {"a": {"$elemMatch": {"b": 6, "c": "y"}}},
        {"a": {"$elemMatch": {"b": {"$gte": 5}, "c": "x"}}},
        {"a": {"$elemMatch": {"$or": [{"b": 6}, {"c": 2}]}}},
        {"a": {"$elemMatch": {"b": {"$exists": False}}}},
        {"a": {"$elemMatch": {"$gt": 4}}},
        {"a": {"$elemMatch": {"$gt": 4, "$lt": 6}}},
        {"a": {"$elemMatch": {"$eq": None}}},
        {"a": {"$elemMatch": {"$type": "array"}}},
        {"a": {"$elemMatch": {"$in": [3, "x"]}}},
        {"a": {"$elemMatch": {"$regex": "^X"}}},
        {"a": {"$elemMatch": {"$size": 0}}},
        {"a.b": {"$elemMatch": {"$eq": 7}}},
        {"b": {"$elemMatch": {"c.d": 5}}},
        {"b": {"$elemMatch": {"c": {"$elemMatch": {"d": 5}}}}},
        {"a": {"$size": 0}},
        {"a": {"$size": 4}},
        {"a": {"$type": "string"}},
        {"a": {"$type": "number"}},
        {"a": {"$type": "double"}},
        {"a": {"$type": "bool"}},
        {"a": {"$type": "object"}},
        {"a": {"$type": "array"}},
        {"a.b": {"$type": "number"}},
    ],
    "logic_and_not": [
        {"$or": [{"a": 5}, {"a.b": 5}]},
        {"$and": [{"a": {"$gt": 2}}, {"a": {"$lt": 6}}]},
        {"$nor": [{"a": 5}, {"a": {"$type": "array"}}]},
        {"$or": [{"a": {"$exists": False}}, {"a": None}]},
        {"a": {"$exists": True}, "$nor": [{"a": None}]},
        {"a": {"$not": {"$gt": 3}}},
        {"a": {"$not": {"$eq": 5}}},
        {"a.b": {"$not": {"$exists": True}}},
        {"a.b": {"$not": {"$eq": 5}}},
        {"a.b": {"$not": {"$in": [5, 7]}}},
        {"a": {"$not": {"$not": {"$gt": 3}}}},
        {"a": {"$not": {"$size": 2}, "$type": "array"}},
        {"a": {"$gt": 2, "$not": {"$gt": 5}}},
        {"a": {"$ne": 5, "$exists": True}},
        {"a.b": {"$ne": 5, "$gt": 4}},
        {"$and": [{"$or": [{"a": 5}, {"a": "x"}]}, {"$or": [{"a": {"$type": "number"}}, {}]}]},
        {"$comment": "x", "a": 3},
    ],
}


# Lists longer than the ones SQLite gets inline (one JSON parameter instead): the same
# answers, with filler values that match nothing and repeats (5 and 5.0, "x" twice).
_FILLER: list[Any] = [f"zz{i}" for i in range(40)] + list(range(1000, 1040))
CASES["long_in_lists"] = [
    {"a": {"$in": [5, "x", *_FILLER]}},
    {"a": {"$in": [5, 5.0, 5, "x", "x", True, *_FILLER]}},
    {"a": {"$in": [2.5, None, [5, 7], {"b": 5}, *_FILLER]}},
    {"a.b": {"$in": [5, 6, *_FILLER]}},
    {"a": {"$nin": [5, "x", *_FILLER]}},
    {"a.b": {"$nin": [7, None, *_FILLER]}},
    {"a": {"$elemMatch": {"$in": [7, *_FILLER]}}},
]


@pytest.mark.parametrize("group", sorted(CASES))
def test_cases_match_mongomock(corpus: Docs, group: str) -> None:
    mismatches = []
    for filter in CASES[group]:
        ours, theirs = corpus.ids(filter), corpus.mongo_ids(filter)
        if ours != theirs:
            mismatches.append(f"{filter}: ours {ours}, mongomock {theirs}")
    assert not mismatches, "\n".join(mismatches)


def test_the_same_answers_with_an_index_declared(corpus: Docs) -> None:
    """A GIN index (PostgreSQL) changes the plan of equality and $in filters, not the result."""
    if corpus.dialect == "postgresql":
        with corpus.engine.begin() as conn:
            conn.exec_driver_sql("CREATE INDEX docs_body ON docs USING gin (body jsonb_path_ops)")
            conn.exec_driver_sql("ANALYZE docs")
            conn.exec_driver_sql("SET enable_seqscan = off")
    for filter in CASES["equality"] + CASES["arrays_and_paths"] + CASES["in_and_nin"]:
        assert corpus.ids(filter) == corpus.mongo_ids(filter), filter


# -- where mongomock is not MongoDB: MongoDB's answers ----------------------------------------

BRACKETS: dict[int, Any] = {
    1: {"a": 1},
    2: {"a": True},
    3: {"a": 0},
    4: {"a": False},
    5: {"a": [1]},
    6: {"a": [True]},
    7: {"a": {"b": 1}},
    8: {"a": {"b": True}},
    9: {"a": 1.0},
    10: {"a": "1"},
}


BOOLEAN_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"a": 1}, [1, 5, 9]),
    ({"a": True}, [2, 6]),
    ({"a": 0}, [3]),
    ({"a": False}, [4]),
    ({"a": {"$in": [1]}}, [1, 5, 9]),
    ({"a": {"$in": [True, "1"]}}, [2, 6, 10]),
    ({"a": {"$nin": [True]}}, [1, 3, 4, 5, 7, 8, 9, 10]),
    ({"a": {"$ne": 1}}, [2, 3, 4, 6, 7, 8, 10]),
    ({"a": {"b": 1}}, [7]),
    ({"a": {"$all": [True]}}, [2, 6]),
    ({"a": {"$gte": 0}}, [1, 3, 5, 9]),
    ({"a": {"$lte": True}}, [2, 4, 6]),
]


def test_booleans_are_not_numbers(database_url: str) -> None:
    docs = make_docs(database_url, BRACKETS)
    wrong = [(f, docs.ids(f), expected) for f, expected in BOOLEAN_CASES if docs.ids(f) != expected]
    assert not wrong
    docs.engine.dispose()


#: (filter, MongoDB's answer, what mongomock says instead)
MONGOMOCK_DIFFERS: list[tuple[dict[str, Any], list[int], str]] = [
    # $size counts array elements only (mongomock: objects' keys, and 1 for any scalar)
    ({"a": {"$size": 1}}, [17], "scalars and objects too"),
    ({"a": {"$size": 2}}, [9, 10, 15, 20, 29], "objects with two keys too"),
    # $all is an $and of equalities
    ({"a": {"$all": [5, 7]}}, [9], "same"),
    ({"a": {"$all": [[5, 7]]}}, [9, 10], "only arrays holding it"),
    ({"a": {"$all": []}}, [], "everything"),
    ({"a": {"$all": [None]}}, [5, 6, 16, 26], "no missing ones"),
    ({"a.b": {"$all": [5, 7]}}, [], "same"),
    ({"a.b": {"$all": [5, "x"]}}, [14], "same"),
    ({"a.b": {"$all": [5, 6]}}, [20], "same"),
    ({"a.b": {"$all": [7, 5]}}, [], "fails"),
    ({"a": {"$all": [{"$elemMatch": {"b": 5}}, {"$elemMatch": {"c": 2}}]}}, [15], "same"),
    ({"a": {"$all": [5], "$size": 2}}, [9], "same"),
    # $type null: mongomock has no such type
    ({"a": {"$type": "null"}}, [5, 16, 26], "an error"),
    ({"a.b": {"$type": [10, "array"]}}, [13, 14, 16], "an error"),
    ({"a": {"$type": 2}}, [3, 4, 22, 25, 26], "an error (no numeric codes)"),
    ({"a.b": {"$size": 1}}, [16], "scalars too"),
    # $not directly in $elemMatch applies to the elements
    ({"a": {"$elemMatch": {"$not": {"$gt": 4}}}}, [10, 15, 16, 17, 20, 26, 29], "any array"),
    # int is 32 bits (mongomock: up to 2**32), long is larger
    ({"a": {"$type": "int"}}, [1, 9, 10, 16, 26, 27], "also -2**31 - 1"),
    ({"a": {"$type": "long"}}, [28], "nothing"),
    # an empty object is a value to equal (mongomock: also matches a missing field)
    ({"a.b": {}}, [30], "also documents without a.b"),
    ({"a": {}}, [], "also documents without a"),
]


def test_where_mongomock_is_not_mongodb(corpus: Docs) -> None:
    wrong = [
        (filter, corpus.ids(filter), expected)
        for filter, expected, _ in MONGOMOCK_DIFFERS
        if corpus.ids(filter) != expected
    ]
    assert not wrong


def test_long_paths_run_and_deep_nesting_is_refused_on_sqlite_only(database_url: str) -> None:
    deep_doc = {"a": [{"a": [{"a": [{"a": [{"a": [{"a": 5}]}]}]}]}]}
    long_path = ".".join(["a"] * 12)
    docs = make_docs(database_url, {1: deep_doc, 2: {"a": [{"a": 5}]}, 3: {"a": 5}})
    assert docs.ids({long_path: {"$exists": False}}) == docs.mongo_ids(
        {long_path: {"$exists": False}}
    )
    assert docs.ids({"a.a.a.a.a.a": 5}) == [1]
    nested: dict[str, Any] = {"a": 5}
    for _ in range(5):
        nested = {"a": {"$elemMatch": nested}}
    if docs.dialect == "sqlite":
        with pytest.raises(QueryError, match="nests too deeply for SQLite"):
            docs.ids(nested)
    else:
        assert docs.ids(nested) == docs.mongo_ids(nested) == [1]
    docs.engine.dispose()


# -- hostile keys and values --------------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE docs; --",
    '"',
    "\\",
    "'",
    "$",
    "$x",
    "a b",
    "é",
    "ключ",
    "🙂",
    "%s",
    "%(x)s",
    "?",
    ":name",
    "{}",
    "[0]",
    "/",
    "\\u0041",
    "\n",
    "*",
]


def _hostile_docs() -> dict[int, Any]:
    docs: dict[int, Any] = {}
    for i, word in enumerate(HOSTILE):
        top = word if not word.startswith("$") else f"k{word}"
        docs[2 * i + 1] = {top: word, "n": {word: [word, i]}, "s": word}
        docs[2 * i + 2] = {"n": [{word: {word: word}}], "s": [word + word, ""], "": word}
    docs[999] = {"x.y": 1, "": "", "n": {"": []}}
    return docs


def _hostile_filters() -> Iterator[dict[str, Any]]:
    for word in HOSTILE:
        top = word if not word.startswith("$") else f"k{word}"
        yield {top: word}
        yield {f"n.{word}": word}
        yield {f"n.{word}.{word}": word}
        yield {f"n.{word}": {"$in": [word, 3]}}
        yield {f"n.{word}": {"$elemMatch": {"$eq": word}}}
        if not word.startswith("$"):
            yield {"n": {"$elemMatch": {f"{word}.{word}": word}}}
        if not word.startswith("$"):  # {"$x": …} would be an operator
            yield {"n": {word: [word, HOSTILE.index(word)]}}
        yield {"s": {"$gt": word}}
        yield {"s": {"$lte": word}}
        yield {"s": {"$regex": "^" + re.escape(word)}}
        yield {"s": {"$nin": [word, ""]}}
        yield {f"n.{word}": {"$exists": False}}
        yield {"s": word + word}


def test_hostile_keys_and_values_are_only_ever_parameters(database_url: str) -> None:
    docs = make_docs(database_url, _hostile_docs())
    mismatches = []
    for filter in _hostile_filters():
        statement = sa.select(docs.table.c.id).where(
            filter_clause(parse_filter(filter), docs.table.c.body, docs.dialect)
        )
        sql = str(statement.compile(docs.engine))
        for text in [*filter, *map(str, filter.values())]:
            for word in HOSTILE:
                if word in text and len(word) > 2:
                    assert word not in sql, (word, sql)
        ours, theirs = docs.ids(filter), docs.mongo_ids(filter)
        if ours != theirs:
            mismatches.append(f"{filter!r}: ours {ours}, mongomock {theirs}")
    assert not mismatches, "\n".join(mismatches)
    with docs.engine.connect() as conn:  # the table is still there, untouched
        assert conn.execute(sa.select(sa.func.count()).select_from(docs.table)).scalar() == len(
            docs.docs
        )
    docs.engine.dispose()


# -- sorting ----------------------------------------------------------------------------------

SORTABLE: dict[int, Any] = {
    1: {"a": 5, "b": {"c": "x"}},
    2: {"a": "b", "b": {"c": 2}},
    3: {"a": None},
    4: {},
    5: {"a": True, "b": {"c": None}},
    6: {"a": False, "b": {"c": "x"}},
    7: {"a": [], "b": {"c": True}},
    8: {"a": [3, 9], "b": 5},
    9: {"a": ["a", 1]},
    10: {"a": 2.5, "b": {"c": 2.0}},
    11: {"a": "B", "b": {"c": -1}},
    12: {"a": {"x": 1}},
    13: {"a": "é"},
    14: {"a": 5.0, "b": {"c": "y"}},
    15: {"a": -3},
    16: {"a": [None]},
}


SORTS: list[Any] = [
    {"a": 1},
    {"a": -1},
    [("b.c", 1), ("a", -1)],
    [("b.c", -1), ("a", 1)],
    {"a.0": 1},
    {"missing": -1},
]


def test_sort_matches_mongomock(database_url: str) -> None:
    docs = make_docs(database_url, SORTABLE)
    for sort in SORTS:
        expected = [doc["_id"] for doc in docs.mongo().find({}, sort=list(dict(sort).items()))]
        assert docs.sorted_ids(sort) == expected, sort
    docs.engine.dispose()


def test_path_value(database_url: str) -> None:
    docs = make_docs(
        database_url,
        {
            1: {"a": {"b": [1, {"c": "x"}], "é": 2.5, 'q"': None, "0": "zero"}},
            2: {"a": [{"b": 3}, 4]},
            3: {"a": "s"},
            4: {"a": {"b": {"c": 0.30000000000000004, "d": True, "e": {}}}},
        },
    )
    paths = ["a.b", "a.é", 'a.q"', "a.0", "a.1", "a.b.1.c", "a.b.c", "a.b.d", "a.b.e", "a.x"]
    with docs.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                docs.table.c.id, *(path_value(p, docs.table.c.body, docs.dialect) for p in paths)
            ).order_by(docs.table.c.id)
        ).all()
    found = {row[0]: dict(zip(paths, row[1:], strict=True)) for row in rows}
    assert found[1] == {
        **dict.fromkeys(paths),
        "a.b": [1, {"c": "x"}],
        "a.é": 2.5,
        "a.0": "zero",
        "a.b.1.c": "x",
    }
    assert found[2] == {**dict.fromkeys(paths), "a.0": {"b": 3}, "a.1": 4}
    assert found[3] == dict.fromkeys(paths)
    assert found[4] == {
        **dict.fromkeys(paths),
        "a.b": {"c": 0.30000000000000004, "d": True, "e": {}},
        "a.b.c": 0.30000000000000004,
        "a.b.d": True,
        "a.b.e": {},
    }
    docs.engine.dispose()


def test_path_value_is_indexable(database_url: str) -> None:
    """An expression index on a path (an unqualified column, literal binds) is accepted, and
    a query on the same expression uses it."""
    docs = make_docs(database_url, {i: {"subject": {"subject_id": str(i)}} for i in range(50)})
    body = sa.column("body", docs.table.c.body.type)
    value = path_value("subject.subject_id", body, docs.dialect)
    expression = value.compile(docs.engine, compile_kwargs={"literal_binds": True})
    with docs.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE INDEX docs_subject_id ON docs (({expression}))")
        conn.exec_driver_sql("ANALYZE docs")
        if docs.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        query = sa.select(docs.table.c.id).where(value.op("=")(sa.literal_column("'\"7\"'")))
        sql = query.compile(docs.engine, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN" if docs.dialect == "postgresql" else "EXPLAIN QUERY PLAN"
        plan = " ".join(str(row) for row in conn.exec_driver_sql(f"{explain} {sql}"))
        assert "docs_subject_id" in plan, plan
    docs.engine.dispose()


# -- $in lists ------------------------------------------------------------------------------


def test_unique_drops_repeats_only() -> None:
    values: list[Any] = [1, 1.0, True, 1, "1", None, None, False, 0]
    values += [{"a": 1, "b": [2]}, {"b": [2], "a": 1}, [1], [True], [1], "é", "é"]
    expected = [1, 1.0, True, "1", None, False, 0, {"a": 1, "b": [2]}, [1], [True], "é"]
    assert _unique(values) == expected
    assert [type(v) for v in _unique(values)[:3]] == [int, float, bool]
    assert _unique(values)[-2] == [True] and _unique(values)[-3][0] is not True


def test_unique_takes_linear_time() -> None:
    # the quadratic version needed hours for this
    values = [str(i) for i in range(200_000)] * 2
    assert _unique(values) == values[:200_000]


def test_the_largest_allowed_in_list_runs(database_url: str) -> None:
    docs = make_docs(database_url, {i: {"a": i, "s": str(i)} for i in range(1, 21)})
    numbers = list(range(0, 20_000, 2))
    strings = [str(i) for i in range(10_000)]
    assert len(numbers) == len(strings) == 10_000
    assert docs.ids({"a": {"$in": numbers}}) == list(range(2, 21, 2))
    assert docs.ids({"s": {"$in": strings}, "a": {"$nin": numbers}}) == list(range(1, 21, 2))
    docs.engine.dispose()
