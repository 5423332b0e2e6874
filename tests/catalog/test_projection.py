"""Projections against mongomock, and the cases mongomock gets wrong against MongoDB."""

from __future__ import annotations

import mongomock
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neuroferry.catalog._projection import parse_projection
from neuroferry.errors import QueryError

KEYS = st.sampled_from(["a", "b", "c"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text("xy", max_size=2)
# mongomock cannot project into arrays that mix documents and scalars: documents only here
DOCS = st.recursive(
    SCALARS,
    lambda inner: (
        st.dictionaries(KEYS, inner, max_size=3)
        | st.lists(st.dictionaries(KEYS, inner, max_size=3), max_size=3)
    ),
    max_leaves=8,
)
PATHS = st.lists(KEYS, min_size=1, max_size=3).map(".".join)


def _scalar_on_the_way(doc, parts) -> bool:
    """Whether a non-document value stands on a strict prefix of the path in ``doc``."""
    if len(parts) < 2 or parts[0] not in doc:
        return False
    value = doc[parts[0]]
    if isinstance(value, dict):
        return _scalar_on_the_way(value, parts[1:])
    if isinstance(value, list):
        return any(_scalar_on_the_way(v, parts[1:]) for v in value if isinstance(v, dict))
    return True


def _no_collisions(paths: list[str]) -> bool:
    return not any(a != b and b.startswith(a + ".") for a in paths for b in paths)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(KEYS, DOCS, max_size=3),
    paths=st.lists(PATHS, min_size=1, max_size=3, unique=True).filter(_no_collisions),
    include=st.booleans(),
    keep_id=st.sampled_from([None, 0, 1]),
)
def test_projection_matches_mongomock(doc, paths, include, keep_id):
    # mongomock drops a value that an excluded path would cross ({"a": null} with
    # {"a.b": 0}); MongoDB keeps it, and so do we (test_exclusion_keeps_values_on_the_way)
    assume(include or not any(_scalar_on_the_way(doc, p.split(".")) for p in paths))
    spec = {p: int(include) for p in paths}
    if keep_id is not None:
        spec["_id"] = keep_id
    coll = mongomock.MongoClient().db.docs
    coll.insert_one({"_id": "x", **doc})
    expected = coll.find_one({}, spec)
    got = parse_projection(spec).apply({"_id": "x", **doc})
    assert got == expected


def test_arrays_mixing_documents_and_values_follow_mongodb():
    doc = {"_id": 1, "a": [{"b": 1, "c": 2}, 3, {"c": 4}]}
    assert parse_projection({"a.b": 1}).apply(doc) == {"_id": 1, "a": [{"b": 1}, {}]}
    assert parse_projection({"a.b": 0}).apply(doc) == {"_id": 1, "a": [{"c": 2}, 3, {"c": 4}]}


def test_exclusion_keeps_values_on_the_way():
    doc = {"_id": 1, "a": None, "b": 3, "c": {"d": 1, "e": 2}}
    assert parse_projection({"a.x": 0, "b.y": 0, "c.d": 0}).apply(doc) == {
        "_id": 1,
        "a": None,
        "b": 3,
        "c": {"e": 2},
    }


def test_only_id():
    doc = {"_id": 7, "name": "x"}
    assert parse_projection({"_id": 1}).apply(doc) == {"_id": 7}
    assert parse_projection({"_id": 0}).apply(doc) == {"name": "x"}
    assert parse_projection(None) is None and parse_projection({}) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": 1, "b": 0}, "mixes inclusion and exclusion"),
        ({"a": 1, "a.b": 1}, "'a' and 'a.b' collide"),
        ({"a": "yes"}, "allowed: 1 or true to include"),
        ({"a": {"$slice": 2}}, "allowed: 1 or true to include"),
        ({"a..b": 1}, "not a dotted field path"),
        ({"a.$": 1}, "positional and $ operators are not supported"),
        (["a"], "must be an object"),
    ],
)
def test_bad_projections_say_what_is_allowed(spec, message):
    with pytest.raises(QueryError, match=message.replace("$", r"\$").replace(".", r"\.")):
        parse_projection(spec)
