"""Declared index paths: same answers with and without them, kept up to date, used."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text

from neuroferry.catalog import Catalog
from neuroferry.catalog._filter import parse_filter
from neuroferry.catalog._indexes import prefilters
from neuroferry.db import documents, make_engine, upgrade
from neuroferry.errors import NotFound, QueryError

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([1.0, 2.5, "a", "b", "ab", "B", "é", "a.b"])
)
VALUE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xy"), inner),
    max_leaves=6,
)
DOCS = st.lists(st.dictionaries(st.sampled_from(["x", "y"]), VALUE, max_size=2), max_size=8)
PATHS = ["x", "x.y", "x.0", "y.x.y", "x.x"]
STRINGS = st.sampled_from(["a", "ab", "b", "B", "", "é"])
FILTERS = st.one_of(
    st.builds(
        lambda p, lo, hi: {p: {"$gte": lo, "$lt": hi}},
        st.sampled_from(PATHS),
        st.integers(-3, 3) | STRINGS,
        st.integers(-3, 3) | STRINGS,
    ),
    st.builds(
        lambda p, prefix, opts: {p: {"$regex": f"^{prefix}", "$options": opts}},
        st.sampled_from(PATHS),
        st.sampled_from(["a", "ab", "A", "b", "é", "\\.", ""]),
        st.sampled_from(["", "i"]),
    ),
    st.builds(lambda p, present: {p: {"$exists": present}}, st.sampled_from(PATHS), st.booleans()),
    st.builds(
        lambda v, w: {"x": {"$elemMatch": {"y": v, "x": {"$gte": w}}}},
        SCALARS,
        st.integers(-3, 3),
    ),
    st.builds(lambda v: {"x": {"$elemMatch": {"$gte": v, "$lt": 3}}}, st.integers(-3, 3)),
    st.builds(
        lambda p, v, q, w: {"$or": [{p: v}, {q: {"$gt": w}}]},
        st.sampled_from(PATHS),
        SCALARS,
        st.sampled_from(PATHS),
        st.integers(-3, 3),
    ),
    st.builds(lambda p, v: {p: {"$all": v}}, st.sampled_from(PATHS), st.lists(SCALARS, max_size=2)),
    st.builds(lambda p, v: {p: v}, st.sampled_from(PATHS), SCALARS),
    st.builds(lambda p, v: {p: {"$in": v}}, st.sampled_from(PATHS), st.lists(SCALARS, max_size=3)),
    st.builds(
        lambda p, op, v: {p: {op: v}},
        st.sampled_from(PATHS),
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
        st.integers(-3, 3) | st.sampled_from([1.5, "a"]),
    ),
    st.builds(
        lambda p, v, q, w: {"$and": [{p: v}, {q: {"$ne": w}}]},
        st.sampled_from(PATHS),
        SCALARS,
        st.sampled_from(PATHS),
        SCALARS,
    ),
)


def _ids(catalog, filter):
    return sorted(d["_id"] for d in catalog.find(filter))


def _top(catalog, path, n):
    """The first documents of a descending sort, with a limit, then from the second."""
    first = [d["_id"] for d in catalog.find({}, sort=[(path, -1)], limit=n)]
    return first, [d["_id"] for d in catalog.find({}, sort=[(path, -1)], skip=1, limit=n)]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(docs=DOCS, filters=st.lists(FILTERS, min_size=1, max_size=4))
def test_indexed_paths_give_the_same_answers(catalog, docs, filters):
    with catalog.engine.begin() as conn:  # each example starts empty
        conn.execute(text("DELETE FROM catalog_documents"))
        conn.execute(text("DELETE FROM catalog_index_values"))
        conn.execute(text("DELETE FROM catalog_indexes"))
    catalog.import_documents([{**doc, "name": f"d{i}"} for i, doc in enumerate(docs)])
    before = {repr(f): _ids(catalog, f) for f in filters}
    sorts = [(path, -1) for path in PATHS]
    top = {(p, n): _top(catalog, p, n) for p, _ in sorts for n in (1, 3)}
    for path in PATHS:
        assert catalog.create_index(path, "tester")
    assert {(p, n): _top(catalog, p, n) for p, _ in sorts for n in (1, 3)} == top
    assert {repr(f): _ids(catalog, f) for f in filters} == before
    # writes after declaring keep the index current
    catalog.import_documents([{**doc, "name": f"d{i}"} for i, doc in enumerate(reversed(docs))])
    catalog.insert({"name": "late", "x": [{"y": 2}, 1, "a"]})
    for f in filters:
        plain = [d["_id"] for d in catalog.find(f)]
        with catalog.engine.begin() as conn:
            conn.execute(text("DELETE FROM catalog_indexes"))
        assert sorted(d["_id"] for d in catalog.find(f)) == sorted(plain), f
        for path in PATHS:
            catalog.create_index(path)


def test_declare_list_drop(catalog):
    catalog.insert({"name": "s1", "subject": {"subject_id": "774659"}, "tags": ["a", "b"]})
    assert catalog.create_index("subject.subject_id", "admin") is True
    assert catalog.create_index("subject.subject_id") is False
    assert [i["path"] for i in catalog.indexes()] == ["subject.subject_id"]
    assert catalog.count({"subject.subject_id": "774659"}) == 1
    catalog.drop_index("subject.subject_id")
    assert catalog.indexes() == []
    with pytest.raises(NotFound, match="no catalog index on 'tags'"):
        catalog.drop_index("tags")
    for bad in ("", "a..b", "$where", "a.$x"):
        with pytest.raises(QueryError, match="must be a dotted field path"):
            catalog.create_index(bad)


def test_equality_on_an_indexed_path_uses_the_index(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    catalog = Catalog(engine)
    catalog.create_index("subject.subject_id")
    catalog.insert({"name": "s1", "subject": {"subject_id": "774659"}})
    node = parse_filter({"subject.subject_id": {"$in": ["774659", "643634"]}})
    (pre,) = prefilters(node, {"subject.subject_id"}, documents.c.id)
    stmt = documents.select().where(pre)
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_catalog_index_values_text" in plan, plan
    for narrowed, filter in [
        (True, {"$regex": "^77"}),
        (True, {"$regex": "^77", "$options": "i"}),
        (False, {"$regex": "77"}),
        (False, {"$regex": "^77", "$options": "m"}),
        (True, {"$gt": "7", "$lt": "8"}),
        (True, {"$exists": True}),
        (False, {"$exists": False}),
        (False, {"$in": ["7", None]}),
    ]:
        found = prefilters(
            parse_filter({"subject.subject_id": filter}), {"subject.subject_id"}, documents.c.id
        )
        assert bool(found) is narrowed, filter
    engine.dispose()


def test_a_filter_on_name_finds_the_documents_by_the_name_column(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'names.db'}")
    upgrade(engine)
    catalog = Catalog(engine)
    for name in ("a", "b", "c"):
        catalog.insert({"name": name, "kind": "k"})
    assert _names(catalog, {"name": {"$in": ["a", "c", 1, None]}}) == ["a", "c"]
    assert _names(catalog, {"name": "b", "kind": "k"}) == ["b"]
    assert _names(catalog, {"name": 1}) == []
    assert _names(catalog, {"$and": [{"name": {"$in": ["a", "b"]}}, {"name": {"$ne": "a"}}]}) == [
        "b"
    ]
    assert _names(catalog, {"name": {"$nin": ["a"]}}) == ["b", "c"]
    with engine.connect() as conn:
        where = catalog._where({"name": {"$in": ["a", "b"]}, "kind": "k"}, conn, None)
        sql = str(
            documents.select().where(where).compile(engine, compile_kwargs={"literal_binds": True})
        )
        plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "(name=?)" in plan, plan
    engine.dispose()


def _names(catalog, filter):
    return sorted(d["name"] for d in catalog.find(filter))


def test_an_index_declared_during_a_write_finds_its_documents(catalog):
    """A write under way when an index is declared: the declaration waits for it (or the
    write sees the declaration), so the index never misses the written documents."""
    row = {"id": "w1", "name": "w1", "location": None, "location_key": None, "body": {}}
    row["body"] = {"_id": "w1", "name": "w1", "x": 5}
    done = threading.Event()

    def declare():
        catalog.create_index("x")
        done.set()

    with catalog.engine.connect() as conn:
        trans = conn.begin()
        now = datetime.now(UTC)
        conn.execute(insert(documents).values(**row, created=now, modified=now))
        catalog._reindex(conn, [row])  # the index is not declared yet: no values
        declaring = threading.Thread(target=declare)
        declaring.start()
        declaring.join(timeout=1.0)
        trans.commit()
    declaring.join()
    assert done.is_set()
    assert [i["ready"] for i in catalog.indexes()] == [True]
    with catalog.engine.connect() as conn:
        indexed = catalog._indexed(conn)
        where = catalog._where({"x": 5}, conn, None)
        assert indexed == {"x"}
        assert conn.execute(select(documents.c.id).where(where)).scalars().all() == ["w1"]
