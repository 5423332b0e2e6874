"""The catalog service on both databases: writes, reads, validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from neuroferry.catalog._indexes import values_at
from neuroferry.errors import Forbidden, InvalidInput, NotFound, QueryError

SESSIONS = [
    {
        "name": "ecephys_774659_2025-03-01_10-00-00",
        "location": "s3://lab-raw/ecephys_774659_2025-03-01_10-00-00",
        "subject": {"subject_id": "774659", "sex": "Female"},
        "data_description": {"project_name": "Ephys Platform", "modality": ["ecephys"]},
        "procedures": {"injections": [{"virus": "AAV1", "volume": 100}]},
    },
    {
        "name": "behavior_643634_2025-03-02_09-30-00",
        "subject": {"subject_id": "643634", "sex": "Male"},
        "data_description": {"project_name": "Ephys Platform", "modality": ["behavior", "fib"]},
        "procedures": {"injections": [{"virus": "AAV9", "volume": 50}, {"virus": "AAV1"}]},
    },
    {
        "name": "SPIM_700000_2025-03-03_08-00-00",
        "subject": {"subject_id": "700000", "sex": "Male"},
        "data_description": {"project_name": "Brain Atlas", "modality": ["SPIM"]},
        "rating": 1.0,
    },
]


@pytest.fixture
def filled(catalog):
    report = catalog.import_documents(SESSIONS)
    assert (report.inserted, report.updated) == (3, 0)
    return catalog


def _names(docs):
    return sorted(d["name"] for d in docs)


def test_insert_get_delete(catalog):
    doc_id = catalog.insert({"name": "a", "x": {"y": [1, 2]}})
    assert catalog.get(doc_id) == {"_id": doc_id, "name": "a", "x": {"y": [1, 2]}}
    catalog.delete(doc_id)
    with pytest.raises(NotFound, match=f"no catalog document has _id '{doc_id}'"):
        catalog.get(doc_id)
    with pytest.raises(NotFound):
        catalog.delete(doc_id)


def test_names_are_unique_and_upsert_replaces_keeping_the_id(catalog):
    first = catalog.insert({"name": "asset", "v": 1})
    with pytest.raises(InvalidInput, match="already exists; use upsert"):
        catalog.insert({"name": "asset", "v": 2})
    again, inserted = catalog.upsert({"name": "asset", "v": 3, "location": "s3://b/asset"})
    assert (again, inserted) == (first, False)
    assert catalog.get(first) == {"_id": first, "name": "asset", "v": 3, "location": "s3://b/asset"}


def test_an_id_taken_under_another_name_is_refused(catalog):
    catalog.insert({"_id": "fixed-1", "name": "one"})
    with pytest.raises(InvalidInput, match="_id is already used"):
        catalog.upsert({"_id": "fixed-1", "name": "two"})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"x": 1}, "'name' is required"),
        ({"name": ""}, "'name' is required"),
        ({"name": "a/b"}, "may not contain '/'"),
        ({"name": "a", "$set": 1}, "field name '\\$set'"),
        ({"name": "a", "x": {"a.b": 1}}, "field name 'a.b' at x"),
        ({"name": "a", "x": [1, float("nan")]}, "x.1: nan is not a JSON number"),
        ({"name": "a", "_id": "../x"}, "_id '../x' must be 1 to 64"),
        ({"name": "a", "location": 5}, "'location' must be a string"),
        (["name"], "must be a JSON object"),
    ],
)
def test_bad_documents_name_the_field(catalog, doc, message):
    with pytest.raises(InvalidInput, match=message):
        catalog.insert(doc)


def test_find_with_filter_projection_sort_skip_limit(filled):
    assert _names(filled.find({"subject.subject_id": "774659"})) == [SESSIONS[0]["name"]]
    ephys = {
        "data_description.project_name": "Ephys Platform",
        "subject.subject_id": {"$in": ["643634", "774659"]},
    }
    assert filled.count(ephys) == 2
    found = filled.find(ephys, {"subject.subject_id": 1, "_id": 0}, [("subject.subject_id", 1)])
    assert found == [{"subject": {"subject_id": "643634"}}, {"subject": {"subject_id": "774659"}}]
    page = filled.find({}, {"name": 1, "_id": 0}, {"name": 1}, skip=1, limit=1)
    assert page == [{"name": sorted(d["name"] for d in SESSIONS)[1]}]
    assert filled.count() == 3


def test_distinct_unwinds_arrays_and_keeps_types_apart(filled):
    assert sorted(filled.distinct("data_description.modality")) == [
        "SPIM",
        "behavior",
        "ecephys",
        "fib",
    ]
    assert sorted(filled.distinct("procedures.injections.virus")) == ["AAV1", "AAV9"]
    assert filled.distinct("subject.sex", {"data_description.project_name": "Brain Atlas"}) == [
        "Male"
    ]
    filled.insert({"name": "n1", "rating": 1})
    filled.insert({"name": "n2", "rating": True})
    values = filled.distinct("rating")
    assert len(values) == 2 and True in values and any(v == 1 and v is not True for v in values)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skip": -1}, "skip must be a whole number"),
        ({"limit": "10"}, "limit must be a whole number"),
        ({"filter": {"a": {"$foo": 1}}}, r"\$foo at a is not supported"),
        ({"projection": {"a": 1, "b": 0}}, "mixes inclusion and exclusion"),
    ],
)
def test_bad_queries_are_query_errors(filled, kwargs, message):
    with pytest.raises(QueryError, match=message):
        filled.find(**kwargs)


_SCALARS = st.none() | st.booleans() | st.sampled_from([1, 1.0, 2.5, "a", "b", "é"])
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xy"), inner),
    max_leaves=6,
)


def _canonical(values):
    """The values as sorted JSON texts, numbers as floats (1 and 1.0 are one value)."""

    def norm(v):
        if isinstance(v, list):
            return [norm(i) for i in v]
        if isinstance(v, dict):
            return {k: norm(i) for k, i in v.items()}
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    return sorted(json.dumps(norm(v), sort_keys=True) for v in values)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.lists(st.dictionaries(st.sampled_from("xy"), _VALUES, max_size=2), max_size=6))
def test_distinct_in_sql_finds_the_values_mongodb_unwinds(catalog, docs):
    with catalog.engine.begin() as conn:
        conn.execute(text("DELETE FROM catalog_documents"))
    catalog.import_documents([{**doc, "name": f"d{i}"} for i, doc in enumerate(docs)])
    for path in ("x", "x.y", "y.x.y", "x.1"):
        seen = {}
        for doc in docs:
            for value in values_at(doc, path.split(".")):
                for item in value if isinstance(value, list) else [value]:
                    key = json.dumps(item, sort_keys=True)
                    if isinstance(item, int | float) and not isinstance(item, bool):
                        key = repr(float(item))
                    seen.setdefault(key, item)
        found = catalog.distinct(path)
        assert _canonical(found) == _canonical(seen.values()), (path, found)


def test_distinct_needs_a_field(filled):
    with pytest.raises(QueryError, match="dotted field path"):
        filled.distinct("a..b")


# -- owners ---------------------------------------------------------------------------------


def test_users_read_only_their_own_documents(catalog):
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    alice, bob = (Owner(create_user(catalog.engine, name).id) for name in ("alice", "bob"))
    admin = Owner(create_user(catalog.engine, "admin", "admin").id, is_admin=True)
    a = catalog.upsert({"name": "a", "subject": {"id": "1"}}, alice)[0]
    catalog.upsert({"name": "b", "subject": {"id": "2"}}, bob)
    catalog.upsert({"name": "imported", "subject": {"id": "3"}})  # no owner: admins only
    assert _names(catalog.find({}, viewer=alice)) == ["a"]
    assert _names(catalog.find({"name": {"$in": ["a", "b"]}}, viewer=bob)) == ["b"]
    assert catalog.count({}, viewer=bob) == 1
    assert catalog.distinct("subject.id", viewer=alice) == ["1"]
    assert _names(catalog.find({}, viewer=admin)) == ["a", "b", "imported"]
    assert _names(catalog.find({})) == ["a", "b", "imported"]  # the service itself
    assert catalog.get(a, viewer=alice)["name"] == "a"
    with pytest.raises(NotFound):
        catalog.get(a, viewer=bob)

    # bob may not replace alice's document, nor one without an owner; nothing is written
    with pytest.raises(Forbidden, match="'a' belongs to another user"):
        catalog.upsert_many([{"name": "new-of-bob"}, {"name": "a", "forged": True}], bob)
    with pytest.raises(Forbidden, match="'imported'"):
        catalog.upsert({"name": "imported", "forged": True}, bob)
    assert catalog.count({"name": "new-of-bob"}) == 0
    assert "forged" not in catalog.get(a)
    # alice replaces her own; an admin replaces anyone's, which keeps its owner
    catalog.upsert({"name": "a", "v": 2}, alice)
    catalog.upsert({"name": "a", "v": 3}, admin)
    assert [d["v"] for d in catalog.find({"name": "a"}, viewer=alice)] == [3]


def test_distinct_and_filters_are_bounded(database_url: str) -> None:
    from neuroferry.catalog import Catalog, FilterLimits
    from neuroferry.db import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    small = Catalog(engine, FilterLimits(max_list=3), max_distinct=5)
    small.upsert_many([{"name": f"d{i}", "n": i % 7} for i in range(20)])
    assert sorted(small.distinct("n", {"n": {"$lt": 5}})) == [0, 1, 2, 3, 4]
    with pytest.raises(QueryError, match=r"more than 5 distinct values.*catalog_max_distinct"):
        small.distinct("n")
    assert small.count({"n": {"$in": [1, 2, 3]}}) == 9
    with pytest.raises(QueryError, match=r"\$in at n has 4 values; at most 3"):
        small.count({"n": {"$in": [1, 2, 3, 4]}})
    engine.dispose()


@pytest.mark.parametrize("pattern", ["(a|a)*b", "(?:.|.)*!", "^ecephys_700001(?:.|.)*!"])
def test_regexes_with_alternation_inside_a_repeat_finish(catalog, pattern):
    # backtracking takes exponential time on these; the catalog's matching is linear
    catalog.upsert_many(
        [
            {"name": "long-a", "text": "a" * 10_000},
            {"name": "long-x", "text": "ecephys_700001" + "x" * 10_000},
            {"name": "found", "text": "ecephys_700001 aab !"},
        ]
    )
    assert _names(catalog.find({"text": {"$regex": pattern}})) == ["found"]
    assert catalog.count({"text": {"$regex": pattern, "$options": "si"}}) == 1


def test_a_regex_runs_only_on_the_viewers_own_documents(tmp_path, monkeypatch):
    """On SQLite, the pattern never sees another user's text (no timing oracle)."""
    from neuroferry.auth import create_user
    from neuroferry.catalog import Catalog, Owner, _sql_sqlite
    from neuroferry.db import make_engine, upgrade

    seen: list[str] = []
    run = _sql_sqlite._sqlite_regexp

    def spy(pattern, value):
        seen.append(value)
        return run(pattern, value)

    monkeypatch.setattr(_sql_sqlite, "_sqlite_regexp", spy)
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    upgrade(engine)
    catalog = Catalog(engine)
    alice, bob = (Owner(create_user(engine, name).id) for name in ("alice", "bob"))
    admin = Owner(create_user(engine, "admin", "admin").id, is_admin=True)
    catalog.upsert_many([{"name": f"alice_{i}", "tag": "x"} for i in range(3)], alice)
    catalog.upsert_many([{"name": f"secret_{i}", "tag": "x"} for i in range(3)], bob)
    query = {"name": {"$regex": "^secret_"}, "tag": "x"}
    assert catalog.count(query, viewer=alice) == 0
    assert _names(catalog.find({"name": {"$regex": "_1$"}}, viewer=alice)) == ["alice_1"]
    assert catalog.distinct("name", {"name": {"$regex": "secret"}}, viewer=alice) == []
    assert seen and all(value.startswith("alice_") for value in seen), seen
    seen.clear()
    assert catalog.count(query, viewer=bob) == 3
    assert catalog.count(query, viewer=admin) == 3  # admins see every document
    assert any(value.startswith("alice_") for value in seen)
    engine.dispose()


def test_a_users_document_may_not_take_a_provenance_records_name(catalog):
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    bob = Owner(create_user(catalog.engine, "bob").id)
    admin = Owner(create_user(catalog.engine, "admin", "admin").id, is_admin=True)
    record = "ab" * 32 + ".7"
    for squat in (record, record.upper(), "ab" * 32):
        with pytest.raises(InvalidInput, match="form of a provenance record's name"):
            catalog.upsert({"name": squat, "kind": "volume"}, bob)
    assert catalog.count({}) == 0
    catalog.upsert_many([{"name": record, "kind": "analysis-result"}], bob, records=True)
    catalog.upsert({"name": "ab" * 32 + ".8"}, admin)  # an admin restores a record
    catalog.upsert({"name": "ab" * 31 + ".7"}, bob)  # not of that form
    assert catalog.count({}) == 3


def test_the_locations_a_user_may_not_see(catalog):
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    alice, bob = (Owner(create_user(catalog.engine, name).id) for name in ("alice", "bob"))
    admin = Owner(create_user(catalog.engine, "admin", "admin").id, is_admin=True)
    catalog.upsert({"name": "a", "location": "s3://lake/a"}, alice)
    catalog.upsert({"name": "a2", "location": "s3://lake/x/a2/"}, alice)
    catalog.upsert({"name": "ab", "location": "s3://lake/ab"}, alice)
    catalog.upsert({"name": "b", "location": "s3://lake/b"}, bob)
    catalog.upsert({"name": "service", "location": "s3://lake/s"})  # no owner
    assert catalog.hidden_from(bob, at=["s3://lake/a", "s3://lake/x/a2"]) == [
        "s3://lake/a",
        "s3://lake/x/a2",
    ]
    assert catalog.hidden_from(bob, under=["s3://lake"]) == [
        "s3://lake/a",
        "s3://lake/ab",
        "s3://lake/s",
        "s3://lake/x/a2",
    ]
    assert catalog.hidden_from(bob, under=["s3://lake/a"]) == []  # whole path parts
    assert catalog.hidden_from(alice, under=["s3://lake/x"]) == []
    assert catalog.hidden_from(admin, under=["s3://lake"]) == []
    assert catalog.hidden_from(None, at=["s3://lake/b"]) == []


SPELLINGS = {
    "plain": ("/data/alice/plain", "file:///data/alice/plain"),
    "localhost": ("file://localhost/data/alice/lh", "file:///data/alice/lh"),
    "double": ("s3://bucket/alice//dbl", "s3://bucket/alice/dbl"),
    "upper": ("S3://Bucket/alice/upper", "s3://bucket/alice/upper"),
    "percent": ("s3://bucket/alice/pct%20x", "s3://bucket/alice/pct x"),
    "dots": ("s3://bucket/alice/./x/../dots/", "s3://bucket/alice/dots"),
    "canonical": ("s3://bucket/alice/ok", "s3://bucket/alice/ok"),
}


def test_another_users_locations_are_found_however_they_are_spelled(catalog):
    from sqlalchemy import select

    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner
    from neuroferry.db import documents

    alice, bob = (Owner(create_user(catalog.engine, name).id) for name in ("alice", "bob"))
    catalog.upsert_many(
        [{"name": name, "location": given} for name, (given, _key) in SPELLINGS.items()], alice
    )
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            select(documents.c.name, documents.c.location, documents.c.location_key)
        ).all()
    # the documents keep their location as given; the key is its canonical form
    assert {name: (location, key) for name, location, key in rows} == SPELLINGS
    found = {doc["name"]: doc["location"] for doc in catalog.find({})}
    assert found == {name: given for name, (given, _key) in SPELLINGS.items()}
    for name, (_given, key) in SPELLINGS.items():
        assert catalog.hidden_from(bob, at=[key]) == [key], name
        parent = key.rsplit("/", 1)[0]
        assert key in catalog.hidden_from(bob, under=[parent]), name
        assert catalog.hidden_from(alice, at=[key]) == [], name
    keys = sorted(key for _given, key in SPELLINGS.values())
    assert catalog.hidden_from(bob, under=["s3://bucket", "file:///data"]) == keys
    assert catalog.hidden_from(bob, under=["s3://bucket/alic", "file:///data/alic"]) == []


def test_a_location_moved_by_an_upsert_moves_its_key(catalog):
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner

    alice, bob = (Owner(create_user(catalog.engine, name).id) for name in ("alice", "bob"))
    catalog.upsert({"name": "a", "location": "S3://Lake/old"}, alice)
    catalog.upsert({"name": "a", "location": "s3://lake//new/"}, alice)
    assert catalog.hidden_from(bob, under=["s3://lake"]) == ["s3://lake/new"]
    catalog.upsert_many([{"name": "a", "location": "/x/../y"}], alice)
    assert catalog.hidden_from(bob, under=["s3://lake"]) == []
    assert catalog.hidden_from(bob, at=["file:///y"]) == ["file:///y"]


def test_a_location_that_is_not_a_store_url_is_matched_as_stored(catalog):
    from neuroferry.auth import create_user
    from neuroferry.catalog import Owner, location_key

    for location in ("relative/path", "s3://lake/q?x=1", "s3://lake/../up", "s3://me@lake/x"):
        assert location_key(location) is None, location
    assert location_key(None) is None
    alice, bob = (Owner(create_user(catalog.engine, name).id) for name in ("alice", "bob"))
    catalog.upsert({"name": "q", "location": "s3://lake/q?x=1"}, alice)
    catalog.upsert({"name": "up", "location": "s3://lake/../up/"}, alice)
    assert catalog.find({"name": "q"})[0]["location"] == "s3://lake/q?x=1"
    assert catalog.hidden_from(bob, under=["s3://lake"]) == [
        "s3://lake/../up/",
        "s3://lake/q?x=1",
    ]
    assert catalog.hidden_from(bob, at=["s3://lake/../up"]) == ["s3://lake/../up/"]
    assert catalog.hidden_from(bob, at=["s3://lake/q"]) == []
