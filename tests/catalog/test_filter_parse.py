"""Parsing catalog filters and sorts: the AST, and every error a user can get."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from neuroferry.catalog._filter import (
    FIELD_OPERATORS,
    MAX_REGEX_LENGTH,
    SUPPORTED_OPERATORS,
    All,
    And,
    Compare,
    ElemMatch,
    ElemMatchValue,
    Equals,
    Exists,
    Field,
    FilterLimits,
    In,
    MatchAll,
    Nor,
    Not,
    Or,
    Regex,
    Size,
    Type,
    check_size,
    compiled_re2,
    parse_filter,
    parse_sort,
    postgres_regex,
    re2_regex,
    regex_flags,
)
from neuroferry.catalog._sql import filter_clause, path_value, sort_clauses
from neuroferry.errors import InvalidInput, QueryError

FIELD_LIST = ", ".join(FIELD_OPERATORS)


# -- results --------------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, {}, {"$comment": "why"}])
def test_empty_filters_match_everything(empty: Any) -> None:
    assert parse_filter(empty) == MatchAll()


@pytest.mark.parametrize(
    ("filter", "node"),
    [
        ({"a": 1}, Field("a", (Equals(1),))),
        ({"a.b.0": "x"}, Field("a.b.0", (Equals("x"),))),
        ({"a": None}, Field("a", (Equals(None),))),
        ({"a": [1, 2]}, Field("a", (Equals([1, 2]),))),
        ({"a": {"b": 1}}, Field("a", (Equals({"b": 1}),))),  # an object to equal
        ({"a": {}}, Field("a", (Equals({}),))),
        ({"a": {"$eq": 1}}, Field("a", (Equals(1),))),
        ({"a": {"$eq": [1]}}, Field("a", (Compare("$eq", [1]),))),
        ({"a": {"$ne": None}}, Field("a", (Compare("$ne", None),))),
        ({"a": {"$gt": 1, "$lte": 2.5}}, Field("a", (Compare("$gt", 1), Compare("$lte", 2.5)))),
        (
            {"a": {"$gte": "b", "$lt": True}},
            Field("a", (Compare("$gte", "b"), Compare("$lt", True))),
        ),
        ({"a": {"$in": [1, None, [2]]}}, Field("a", (In((1, None, [2])),))),
        ({"a": {"$nin": []}}, Field("a", (In((), negated=True),))),
        ({"a": {"$exists": False}}, Field("a", (Exists(False),))),
        ({"a": {"$regex": "^x"}}, Field("a", (Regex("^x", ""),))),
        ({"a": {"$options": "si", "$regex": "x"}}, Field("a", (Regex("x", "is"),))),
        ({"a": {"$size": 2}}, Field("a", (Size(2),))),
        ({"a": {"$size": 2.0}}, Field("a", (Size(2),))),
        ({"a": {"$type": "string"}}, Field("a", (Type(("string",)),))),
        ({"a": {"$type": [2, "int", 16.0]}}, Field("a", (Type(("string", "int")),))),
        ({"a": {"$elemMatch": {"b": 1}}}, Field("a", (ElemMatch(Field("b", (Equals(1),))),))),
        (
            {"a": {"$elemMatch": {"$or": [{"b": 1}], "c": 2}}},
            Field(
                "a",
                (ElemMatch(And((Or((Field("b", (Equals(1),)),)), Field("c", (Equals(2),))))),),
            ),
        ),
        (
            {"a": {"$elemMatch": {"$gt": 1, "$not": {"$eq": 3}}}},
            Field("a", (ElemMatchValue((Compare("$gt", 1), Not((Equals(3),)))),)),
        ),
        ({"a": {"$all": [1, [2]]}}, Field("a", (All((1, [2])),))),
        ({"a": {"$all": []}}, Field("a", (All(),))),
        (
            {"a": {"$all": [{"$elemMatch": {"b": 1}}]}},
            Field("a", (All((), (ElemMatch(Field("b", (Equals(1),))),)),)),
        ),
        ({"a": {"$not": {"$gt": 1}}}, Field("a", (Not((Compare("$gt", 1),)),))),
        (
            {"a": 1, "b": 2},
            And((Field("a", (Equals(1),)), Field("b", (Equals(2),)))),
        ),
        (
            {"$and": [{"a": 1}], "$nor": [{"b": 2}, {}]},
            And((And((Field("a", (Equals(1),)),)), Nor((Field("b", (Equals(2),)), MatchAll())))),
        ),
        (
            {"a": {"b": {"$gt": 1}}},  # operators below the first level are values
            Field("a", (Equals({"b": {"$gt": 1}}),)),
        ),
        ({"a.$b": 1}, Field("a.$b", (Equals(1),))),  # only a leading $ makes an operator
    ],
)
def test_parse(filter: dict[str, Any], node: Any) -> None:
    assert parse_filter(filter) == node


def test_supported_operators_are_listed_once() -> None:
    assert len(set(SUPPORTED_OPERATORS)) == len(SUPPORTED_OPERATORS)
    assert {"$and", "$or", "$nor", "$not", "$elemMatch", "$all", "$type"} <= set(
        SUPPORTED_OPERATORS
    )


def test_values_are_copied() -> None:
    value = {"b": [1, 2]}
    node = parse_filter({"a": value})
    value["b"].append(3)
    assert node == Field("a", (Equals({"b": [1, 2]}),))


# -- errors ---------------------------------------------------------------------------------


def _error(filter: Any) -> str:
    with pytest.raises(QueryError) as info:
        parse_filter(filter)
    assert isinstance(info.value, InvalidInput)
    assert info.value.status_code == 422
    return str(info.value)


def test_unsupported_field_operator_names_operator_position_and_alternatives() -> None:
    message = _error({"data_description.project_name": {"$foo": 1}})
    assert message == (
        f"$foo at data_description.project_name is not supported; supported: {FIELD_LIST}"
    )


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        (
            {"$where": "1"},
            "$where at the top level is not supported; supported: $and, $or, $nor, $comment",
        ),
        ({"$not": {"a": 1}}, "$not at the top level is not supported"),
        ({"$or": [{"x": 1}, {"a": {"$near": 1}}]}, "$near at $or[1].a is not supported"),
        ({"a": {"$elemMatch": {"b": {"$foo": 1}}}}, "$foo at a.$elemMatch.b is not supported"),
        ({"a": {"$elemMatch": {"$foo": 1}}}, "$foo at a.$elemMatch is not supported"),
        ({"a": {"$not": {"$foo": 1}}}, "$foo at a.$not is not supported"),
        ({"a": {"$elemMatch": {"$where": 1, "b": 1}}}, "$where at a.$elemMatch is not supported"),
        ({"$and": [{"$expr": {}}]}, "$expr at $and[0] is not supported"),
    ],
)
def test_unsupported_operators(filter: dict[str, Any], message: str) -> None:
    assert _error(filter).startswith(message)


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ([{"a": 1}], "the filter must be an object like {'field': value}, got an array"),
        ("a", "the filter must be an object like {'field': value}, got a string ('a')"),
        ({1: 2}, "field names must be strings, got 1 at top"),
        ({"$and": {"a": 1}}, "$and at the top level needs a non-empty array of filter objects"),
        ({"$or": []}, "$or at the top level needs a non-empty array of filter objects, got an"),
        ({"$nor": [1]}, "the filter at $nor[0] must be an object like {'field': value}, got a"),
        ({"$comment": 5}, "$comment at the top level must be a string"),
        (
            {"a": {"$gt": 1, "b": 2}},
            "the object at a mixes operators ($gt, b) with field names ('b'); use either",
        ),
        ({"a": {"$options": "i"}}, "$options at a needs $regex next to it"),
        ({"a": {"$regex": "x", "$options": "g"}}, "$options at a must be a string of the letters"),
        ({"a": {"$regex": "x", "$options": 1}}, "$options at a must be a string of the letters"),
        ({"a": {"$regex": 5}}, "$regex at a needs a string, got a number (5)"),
        ({"a": {"$regex": "("}}, "$regex at a: '(' is not a valid regular expression: missing"),
        ({"a": {"$regex": r"(a)\1"}}, "$regex at a: back-references like \\1 are not supported"),
        ({"a": {"$regex": "(?i:a)"}}, "$regex at a: flags inside a group, like (?i:…), are not"),
        ({"a": {"$regex": "a{300}"}}, "$regex at a: repeat counts above 255 are not supported"),
        ({"a": {"$regex": "(?a)x"}}, "$regex at a: the (?a) and (?L) flags are not supported"),
        ({"a": {"$regex": "a*+"}}, "$regex at a: possessive repeats like a*+ are not supported"),
        ({"a": {"$regex": "(?>a)"}}, "$regex at a: atomic groups are not supported"),
        ({"a": {"$regex": "(a)(?(1)b)"}}, "$regex at a: conditional groups are not supported"),
        ({"a": {"$regex": r"[\Da]"}}, "$regex at a: negated classes like \\D inside [...] are not"),
        ({"a": {"$regex": "(?:^)*"}}, "$regex at a: a repeated anchor or look-around is not"),
        ({"a": {"$regex": "((a{200}){200}){200}"}}, "$regex at a: the regular expression is too"),
        ({"a": {"$in": 1}}, "$in at a needs an array of values, got a number (1)"),
        ({"a": {"$nin": {"b": 1}}}, "$nin at a needs an array of values, got an object"),
        (
            {"a": {"$in": [1, {"$regex": "x"}]}},
            "$in at a: item 1 is an object of operators ($regex); $in takes plain values only",
        ),
        ({"a": {"$exists": 1}}, "$exists at a needs true or false, got a number (1)"),
        ({"a": {"$size": -1}}, "$size at a needs a whole number of at least 0, got -1"),
        ({"a": {"$size": 1.5}}, "$size at a needs a whole number of at least 0, got 1.5"),
        ({"a": {"$size": True}}, "$size at a needs a whole number of at least 0, got True"),
        ({"a": {"$size": "2"}}, "$size at a needs a whole number of at least 0, got '2'"),
        ({"a": {"$type": "date"}}, "$type 'date' at a is not supported; supported: double, str"),
        ({"a": {"$type": 99}}, "$type 99 at a is not supported"),
        ({"a": {"$type": True}}, "$type True at a is not supported"),
        ({"a": {"$type": []}}, "$type at a needs a type name or a non-empty list of them"),
        ({"a": {"$gt": [1]}}, "$gt at a compares with a number, string, boolean or null, got an"),
        ({"a": {"$lte": {"b": 1}}}, "$lte at a compares with a number, string, boolean or null"),
        ({"a": {"$elemMatch": 1}}, "$elemMatch at a needs a non-empty object, got a number (1)"),
        ({"a": {"$elemMatch": {}}}, "$elemMatch at a needs a non-empty object, got an object"),
        (
            {"a": {"$elemMatch": {"b": 1, "$gt": 2}}},
            "$elemMatch at a mixes field conditions with operators ($gt); give either",
        ),
        ({"a": {"$all": 1}}, "$all at a needs an array, got a number (1)"),
        (
            {"a": {"$all": [1, {"$elemMatch": {"b": 1}}]}},
            "$all at a mixes values and $elemMatch objects; use one kind (or $and)",
        ),
        (
            {"a": {"$all": [{"$gt": 1}]}},
            "$all at a: item 0 may be a value or {'$elemMatch': …}, not an object of operators",
        ),
        ({"a": {"$all": [{"$elemMatch": []}]}}, "$elemMatch at a.$all[0] needs a non-empty"),
        ({"a": {"$not": 1}}, "$not at a needs an object of operators, like {'$not': {'$gt': 1}}"),
        ({"a": {"$not": {}}}, "$not at a needs an object of operators"),
        ({"a": {"$not": {"b": 1}}}, "$not at a needs an object of operators"),
        ({"a..b": 1}, "the field path 'a..b' has an empty part; write parts separated by single"),
        ({".a": 1}, "the field path '.a' has an empty part"),
        ({"a.": 1}, "the field path 'a.' has an empty part"),
        ({"a\x00": 1}, "the field path 'a\\x00' contains a NUL character, which the catalog"),
        ({"a\ud800": 1}, "the field path 'a\\ud800' is not valid Unicode (a lone surrogate)"),
        ({".".join("a" * 33): 1}, "the field path 'a.a.a"),
        ({"a": float("nan")}, "the number at a is nan, which JSON cannot hold"),
        ({"a": {"$gt": float("inf")}}, "the number at a.$gt is inf, which JSON cannot hold"),
        ({"a": 2**63}, "the integer at a does not fit in 64 bits"),
        ({"a": {"$in": ["x\x00"]}}, "the string at a.$in[0] contains a NUL character"),
        ({"a": {"b": "\udfff"}}, "the string at a.b is not valid Unicode (a lone surrogate)"),
        ({"a": {"\x00": 1}}, "the key '\\x00' at a contains a NUL character"),
        ({"a": {1: 2}}, "object keys must be strings, got 1 at a"),
        ({"a": [{2: 1}]}, "object keys must be strings, got 2 at a[0]"),
        ({"a": {1, 2}}, "the value at a is a set, which is not a JSON value"),
        ({"a": b"x"}, "the value at a is a bytes, which is not a JSON value"),
        ({"a": {"$regex": "a\x00"}}, "$regex at a contains a NUL character"),
    ],
)
def test_errors(filter: Any, message: str) -> None:
    assert _error(filter).startswith(message), _error(filter)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    value: Any = 1
    for _ in range(200):
        value = [value]
    inner = "[0]" * 31
    assert f"nested more than 32 levels deep at a{inner}; at most 32 levels" in _error({"a": value})
    deep: dict[str, Any] = {"a": 1}
    for _ in range(200):
        deep = {"$and": [deep]}
    assert "nested more than 32 levels" in _error(deep)
    assert "setting catalog_max_filter_depth" in _error(deep)
    # the parser's own bound still holds for callers that allow more
    roomy = FilterLimits(max_depth=1000)
    with pytest.raises(QueryError, match="nested more than 64 levels"):
        parse_filter(deep, roomy)


def test_filters_that_would_compile_to_huge_sql_are_refused() -> None:
    many = {f"k{i}.x": {"$in": [1, 2]} for i in range(1000)}
    assert _error(many).startswith(
        "the filter is too complex to run (6000 units, at most 512; setting "
        "catalog_max_filter_complexity)"
    )
    fewer = {f"k{i}.x": {"$in": [1, 2]} for i in range(85)}  # 510 units
    assert parse_filter(fewer)
    roomy = FilterLimits(max_complexity=4096)
    with pytest.raises(QueryError, match=r"\(6000 units, at most 4096;"):
        parse_filter(many, roomy)
    assert parse_filter({f"k{i}.x": {"$in": [1, 2]} for i in range(600)}, roomy)
    nested: dict[str, Any] = {"a.b": 1}
    for _ in range(12):
        nested = {"a.b": {"$elemMatch": nested}}
    assert _error(nested).startswith("the filter is too complex to run")
    assert parse_filter({".".join("abcdefghijklmnopqrstuvwxyz"): 1})  # long paths are fine


def test_regex_translation_to_postgres() -> None:
    assert postgres_regex("^a.b$", "") == (r"^a[^\n]b(?=\n?$)", False)
    assert postgres_regex("a.b", "s") == ("a.b", False)
    assert postgres_regex("^x$", "m") == (r"(?:^|(?<=\n))x(?=\n|$)", False)
    assert postgres_regex(r"\bx\B\d+\s?\w*", "i") == (
        r"\yx\Y[[:digit:]]+[[:space:]]?[[:alnum:]_]*",
        True,
    )
    assert postgres_regex(r"[^a-c\]\-]|\D", "") == (r"(?:[^a-c\]\-]|[^[:digit:]])", False)
    assert postgres_regex(r"bx{2,3}?(y|z){4}", "") == (r"bx{2,3}(?:[yz]){4}", False)
    assert postgres_regex("a b # c", "x") == ("ab", False)
    assert postgres_regex("'\"; é\x01", "") == ("\\'\\\"\\;\\ é\\u0001", False)


# -- sorts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "keys"),
    [
        (None, []),
        ({}, []),
        ({"a": 1, "b.c": -1}, [("a", 1), ("b.c", -1)]),
        ([("a", -1), ["b", 1]], [("a", -1), ("b", 1)]),
        ((("a.0", 1),), [("a.0", 1)]),
    ],
)
def test_parse_sort(sort: Any, keys: list[tuple[str, int]]) -> None:
    assert parse_sort(sort) == keys


@pytest.mark.parametrize(
    ("sort", "message"),
    [
        ("a", "sort must be an object like {'name': 1} or a list of [path, 1 or -1] pairs, got"),
        (5, "sort must be an object like {'name': 1} or a list of [path, 1 or -1] pairs"),
        ({"a": 0}, "sort direction of a must be 1 (ascending) or -1 (descending), got 0"),
        ({"a": True}, "sort direction of a must be 1 (ascending) or -1 (descending), got True"),
        ({"a": "1"}, "sort direction of a must be 1 (ascending) or -1 (descending), got '1'"),
        ([("a", 1, 2)], "sort key 0 must be a pair [path, 1 or -1], got an array"),
        (["ab"], "sort key 0 must be a pair [path, 1 or -1], got a string ('ab')"),
        ([("a", 1), ("a", -1)], "sort names a twice"),
        ({"$natural": 1}, "sort key 0: '$natural' is not a field path; sort takes field paths"),
        ({"a..b": 1}, "the field path 'a..b' has an empty part"),
        ([(5, 1)], "sort key 0: a field path must be a non-empty string, got 5"),
        ({f"k{i}": 1 for i in range(33)}, "sort has 33 keys; at most 32 are allowed"),
    ],
)
def test_sort_errors(sort: Any, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_sort(sort)
    assert str(info.value).startswith(message), str(info.value)


# -- arbitrary input: a Node or a QueryError, never anything else -----------------------------

KEYS = st.sampled_from(
    [*SUPPORTED_OPERATORS, "$foo", "$not", "a", "b.c", "a.0", "", "a..b", "0", "$", "é"]
) | st.text(st.characters(codec=None, categories=None), max_size=4)  # incl. surrogates
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, categories=None), max_size=6)
    | st.sampled_from(["string", "int", "^a(", "(a)\\1", "i", "x", "double", "[a-", "a{2,1}"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=25,
)
BODY = sa.Table(
    "t", sa.MetaData(), sa.Column("body", sa.JSON().with_variant(JSONB(), "postgresql"))
)
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_any_json_is_a_node_or_a_query_error(filter: Any) -> None:
    try:
        node = parse_filter(filter)
    except QueryError:
        return
    for name, dialect in DIALECTS.items():  # and every node compiles (or is too deep for SQLite)
        try:
            clause = filter_clause(node, BODY.c.body, name)
        except QueryError as exc:
            assert name == "sqlite" and "nests too deeply for SQLite" in str(exc)
            continue
        sa.select(BODY).where(clause).compile(dialect=dialect)


@settings(max_examples=200, deadline=None)
@given(JSON | st.lists(st.lists(JSON, max_size=3), max_size=3))
def test_any_sort_is_keys_or_a_query_error(sort: Any) -> None:
    try:
        keys = parse_sort(sort)
    except QueryError:
        return
    for name, dialect in DIALECTS.items():
        stmt = sa.select(BODY).order_by(*sort_clauses(keys, BODY.c.body, name))
        stmt.compile(dialect=dialect)
        for path, _ in keys:
            sa.select(path_value(path, BODY.c.body, name)).compile(dialect=dialect)


def test_path_value_checks_its_path() -> None:
    with pytest.raises(QueryError, match=re.escape("the field path 'a..b' has an empty part")):
        path_value("a..b", BODY.c.body, "sqlite")


# -- size limits -----------------------------------------------------------------------------


def test_lists_longer_than_the_limit_are_refused_naming_the_operator_and_path() -> None:
    limits = FilterLimits(max_list=100)
    for op in ("$in", "$nin", "$all"):
        filter = {"subject.subject_id": {op: [str(i) for i in range(101)]}}
        with pytest.raises(QueryError) as caught:
            parse_filter(filter, limits)
        message = str(caught.value)
        assert message.startswith(f"{op} at subject.subject_id has 101 values; at most 100")
        assert "catalog_max_in_values" in message
        exactly = {"subject.subject_id": {op: [str(i) for i in range(100)]}}
        assert parse_filter(exactly, limits)
    nested = {"$or": [{"a": {"$elemMatch": {"b": {"$in": list(range(101))}}}}]}
    with pytest.raises(QueryError, match=r"^\$in at \$or\[0\]\.a\.\$elemMatch\.b has 101"):
        parse_filter(nested, limits)


def test_the_default_list_limit_is_ten_thousand() -> None:
    assert isinstance(parse_filter({"a": {"$in": list(range(10_000))}}), Field)
    with pytest.raises(QueryError, match="has 100000 values; at most 10000"):
        parse_filter({"a": {"$in": list(range(100_000))}})


def test_filters_with_too_many_values_or_bytes_are_refused() -> None:
    many = {f"k{i}": i for i in range(60)}
    with pytest.raises(QueryError, match=r"more than 100 values .*catalog_max_filter_nodes"):
        check_size({"$or": [many, many]}, FilterLimits(max_nodes=100))
    check_size(many, FilterLimits(max_nodes=100))
    wide = {"a": {"$in": ["x" * 1000] * 100}}
    with pytest.raises(QueryError, match=r"larger than 50000 bytes .*catalog_max_filter_bytes"):
        parse_filter(wide, FilterLimits(max_bytes=50_000))
    assert parse_filter(wide, FilterLimits(max_bytes=200_000))
    # bytes are counted as UTF-8
    with pytest.raises(QueryError, match="larger than 2000 bytes"):
        check_size({"a": "é" * 1000}, FilterLimits(max_bytes=2000))
    check_size({"a": "e" * 1000}, FilterLimits(max_bytes=2000))


def test_a_huge_filter_is_refused_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(QueryError, match="nested more than 32 levels"):
        check_size({"a": deep})


def test_regex_translation_to_re2() -> None:
    assert re2_regex("^a.b$", "") == r"\Aa[^\n]b(?:\n?\z)"
    assert re2_regex("a.b", "s") == r"a[\x{0}-\x{10ffff}]b"
    assert re2_regex("^x$", "m") == "(?m:^)x(?m:$)"
    assert re2_regex(r"\bx\B\d+\w*", "i") == r"(?i)\bx\B[\p{Nd}]+[\p{L}\p{N}_]*"
    assert re2_regex(r"[^a-c\]\-]|\D", "") == r"(?:[^a-c\x{5d}\x{2d}]|[^\p{Nd}])"
    assert re2_regex("a b # c", "x") == "ab"
    assert re2_regex("'\"; é\x01", "") == r"\x{27}\x{22}\x{3b}\x{20}\x{e9}\x{1}"


@pytest.mark.parametrize(
    ("pattern", "text", "options", "found"),
    [
        ("^a.b$", "a-b\n", "", True),
        ("^a.b$", "a\nb", "", False),
        ("a.b", "a\nb", "s", True),
        ("^b$", "a\nb\nc", "m", True),
        ("É", "é", "i", True),
        (r"\d\s\w", "٣\u3000é", "", True),
        (r"\Ax\Z", "x\n", "", False),
        ("[^a]", "a", "", False),
    ],
)
def test_re2_finds_what_python_finds(pattern: str, text: str, options: str, found: bool) -> None:
    assert bool(re.search(pattern, text, regex_flags(options))) is found
    assert bool(compiled_re2(re2_regex(pattern, options)).search(text)) is found


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"(a)\1", "back-references like \\1"),
        (r"(?P<x>a)(?P=x)", "back-references like \\1"),
        ("a(?=b)", "look-arounds like (?=…)"),
        ("a(?!b)", "look-arounds like (?!…)"),
        ("(?<=a)b", "look-arounds like (?=…) or (?<=…)"),
        ("(?<!a)b", "look-arounds like (?!…) or (?<!…)"),
    ],
)
def test_regexes_re2_cannot_run_are_refused_on_both_databases(pattern: str, what: str) -> None:
    message = _error({"name": {"$regex": pattern}})
    assert message.startswith(f"$regex at name: {what}"), message
    assert message.endswith("are not supported"), message


def test_long_regexes_are_refused() -> None:
    assert isinstance(parse_filter({"a": {"$regex": "a" * MAX_REGEX_LENGTH}}), Field)
    message = _error({"a": {"$regex": "a" * (MAX_REGEX_LENGTH + 1)}})
    assert message == (
        f"$regex at a is {MAX_REGEX_LENGTH + 1} characters long; "
        f"the longest pattern accepted is {MAX_REGEX_LENGTH} characters"
    )
    assert _error({"a": {"$regex": "(x|y)*" * 150_000}}).startswith("$regex at a is 900000 ")


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*b?)*", "(?:x|y+)*z", "((ab)+c){2,}", "(a*)*"])
def test_regexes_that_can_take_exponential_time_are_refused(pattern: str) -> None:
    # on SQLite such a pattern runs in the service's own process, where nothing stops it
    message = _error({"a": {"$regex": pattern}})
    assert message.startswith("$regex at a: a repeat inside a repeat, like (a+)+"), message


@pytest.mark.parametrize("pattern", ["(ab)+", "(x|y)+$", "(a?b?)*$", "^ecephys_.*_2024", "a{2}b*"])
def test_repeats_that_are_not_nested_are_fine(pattern: str) -> None:
    assert isinstance(parse_filter({"a": {"$regex": pattern}}), Field)
