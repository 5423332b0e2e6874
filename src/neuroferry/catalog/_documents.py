"""The catalog's documents: insert, upsert by name, get, delete, find, count, distinct.

Filters are compiled to SQL (see ``_sql.py``), and so is the unwinding of ``distinct``
values along their path (but for a path with a number part); the projection of the
documents found happens in Python.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from neuroferry.catalog._filter import DEFAULT_LIMITS, FilterLimits, parse_filter, parse_sort
from neuroferry.catalog._indexes import (
    check_index_path,
    index_rows,
    name_prefilters,
    prefilter_sets,
    sort_candidates,
    sort_prefilter,
    values_at,
)
from neuroferry.catalog._projection import parse_projection
from neuroferry.catalog._sql import (
    filter_clause,
    path_values,
    regex_guard,
    register_sqlite_functions,
    sort_clauses,
    sort_key_values,
)
from neuroferry.db import catalog_index_values, catalog_indexes, documents
from neuroferry.errors import Forbidden, InvalidInput, NotFound, QueryError
from neuroferry.grants import normalise_url

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BATCH = 1000
RECORD_NAME = re.compile(r"[0-9a-f]{64}(?:\.[0-9]+)?", re.IGNORECASE)
"""The form of a provenance record's name (a result identity, then ``.`` and the id of the
user whose job made it): reserved for those records, so that no other document of a user
can take the name of another user's record before it is written."""


class Person(Protocol):
    """Who reads or writes: a user's id and whether they are an admin."""

    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True)
class Owner:
    """A user as the catalog needs them (a job's owner, say)."""

    id: int
    is_admin: bool = False


def _owned_by(person: Person | None) -> ColumnElement[bool] | None:
    """The condition on documents that ``person`` may see: users their own, admins (and
    the service itself, ``None``) every document."""
    if person is None or person.is_admin:
        return None
    return documents.c.owner_id == person.id


@dataclass(frozen=True)
class ImportReport:
    """What an import did: documents inserted and documents replaced (same name)."""

    inserted: int
    updated: int


def _check_json(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
                raise InvalidInput(
                    f"field name {key!r} at {path or 'the top level'} is not allowed: "
                    "names must be non-empty and contain no '.' and not start with '$'"
                )
            _check_json(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}.{i}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{path}: {value} is not a JSON number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidInput(f"{path}: {type(value).__name__} is not a JSON value")


def location_key(location: str | None) -> str | None:
    """The canonical form of a document's ``location`` (``normalise_url``: scheme and
    host in lower case, percent-decoded, no empty, ``.`` or ``..`` parts, no trailing
    ``/``, ``file://`` for a plain path), by which documents are found at, inside or
    around a store URL; None without a location or for one that is not a store URL (a
    relative path, a query, a ``..`` above the root …): such documents are matched by
    their location as stored."""
    if location is None:
        return None
    try:
        return normalise_url("location", location)
    except InvalidInput:
        return None


def _prepare(doc: Any) -> dict[str, Any]:
    """Validate a document and return the row values (``body`` includes ``_id``)."""
    if not isinstance(doc, Mapping):
        raise InvalidInput(f"a document must be a JSON object, not {type(doc).__name__}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 512:
        raise InvalidInput("document field 'name' is required: a string of 1 to 512 characters")
    if _CONTROL.search(name) or "/" in name or "\\" in name:
        raise InvalidInput(
            f"document name {name!r} may not contain '/', '\\' or control characters"
        )
    doc_id = doc.get("_id", uuid.uuid4().hex)
    if not isinstance(doc_id, str) or not _ID.fullmatch(doc_id):
        raise InvalidInput(
            f"document _id {doc_id!r} must be 1 to 64 letters, digits, '_', '.', ':' or '-'"
        )
    location = doc.get("location")
    if location is not None and not isinstance(location, str):
        raise InvalidInput("document field 'location' must be a string (a store URL)")
    body = {**doc, "_id": doc_id}
    _check_json(body, "")
    return {
        "id": doc_id,
        "name": name,
        "location": location,
        "location_key": location_key(location),
        "body": body,
    }


def _refuse_record_names(rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        if RECORD_NAME.fullmatch(row["name"]):
            raise InvalidInput(
                f"document name {row['name']!r} has the form of a provenance record's name "
                "(64 hexadecimal digits, optionally '.' and a user id), which only the "
                "analysis kind's records may have: choose another name"
            )


def _batched(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _check_page(skip: int, limit: int) -> None:
    for label, value in (("skip", skip), ("limit", limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise QueryError(f"{label} must be a whole number of at least 0, got {value!r}")


class Catalog:
    """The documents of the catalog, in the service's database."""

    def __init__(
        self, engine: Engine, limits: FilterLimits = DEFAULT_LIMITS, max_distinct: int = 10_000
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.max_distinct = max_distinct
        self.dialect = engine.dialect.name
        if self.dialect == "sqlite" and not event.contains(
            engine, "connect", register_sqlite_functions
        ):
            # compiled filters call Python functions that every SQLite connection needs:
            # register them, and drop the connections made before
            event.listen(engine, "connect", register_sqlite_functions)
            engine.dispose()

    # -- writes ---------------------------------------------------------------------------

    def insert(self, doc: Mapping[str, Any]) -> str:
        """Add a new document; its ``name`` and ``_id`` must not be taken."""
        row = _prepare(doc)
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(documents).values(**row, created=now, modified=now))
                self._reindex(conn, [row])
        except IntegrityError as exc:
            raise InvalidInput(
                f"a document named {row['name']!r} or with _id {row['id']!r} already exists; "
                "use upsert to replace it"
            ) from exc
        return str(row["id"])

    def upsert(self, doc: Mapping[str, Any], owner: Person | None = None) -> tuple[str, bool]:
        """Insert the document, or replace the one with the same name; (id, inserted).
        ``owner``: see :meth:`upsert_many`."""
        report, ids = self.upsert_many([doc], owner)
        return ids[0], bool(report.inserted)

    def import_documents(self, docs: Iterable[Mapping[str, Any]]) -> ImportReport:
        """Upsert many documents by name, in batches of 1,000 per transaction."""
        inserted = updated = 0
        batch: list[Mapping[str, Any]] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == BATCH:
                report, _ = self.upsert_many(batch)
                inserted, updated = inserted + report.inserted, updated + report.updated
                batch = []
        if batch:
            report, _ = self.upsert_many(batch)
            inserted, updated = inserted + report.inserted, updated + report.updated
        return ImportReport(inserted, updated)

    def upsert_many(
        self,
        docs: Sequence[Mapping[str, Any]],
        owner: Person | None = None,
        *,
        records: bool = False,
    ) -> tuple[ImportReport, list[str]]:
        """Upsert documents by name in one transaction; the report and each one's _id.

        With an ``owner``, new documents are theirs, and a user (not an admin) may replace
        only their own documents (:class:`Forbidden` names the first other one, and
        nothing is written); a replaced document keeps its owner. Without one (the
        service's own tools), new documents have no owner: only admins see them. A user's
        document may have a name of the :data:`RECORD_NAME` form only when it is a
        provenance record (``records``, the analysis kind's)."""
        rows = [_prepare(doc) for doc in docs]
        if not records and owner is not None and not owner.is_admin:
            _refuse_record_names(rows)
        by_name = {row["name"]: row for row in rows}  # the last of a name wins
        now = datetime.now(UTC)
        try:
            new = self._store_rows(by_name, now, owner)
        except IntegrityError as exc:  # an _id taken by a document of another name
            raise InvalidInput(
                "a document's _id is already used by a document of another name; "
                "leave _id out to have one assigned"
            ) from exc
        ids = [str(by_name[row["name"]]["id"]) for row in rows]
        return ImportReport(new, len(by_name) - new), ids

    def _store_rows(
        self, by_name: dict[str, dict[str, Any]], now: datetime, owner: Person | None
    ) -> int:
        with self.engine.begin() as conn:
            found = conn.execute(
                select(documents.c.name, documents.c.id, documents.c.owner_id).where(
                    documents.c.name.in_(list(by_name))
                )
            ).all()
            existing = {name: (doc_id, owner_id) for name, doc_id, owner_id in found}
            if owner is not None and not owner.is_admin:
                for name, (_doc_id, owner_id) in existing.items():
                    if owner_id != owner.id:
                        raise Forbidden(
                            f"the asset {name!r} belongs to another user; only they or an "
                            "admin may overwrite it: choose another name"
                        )
            new = [row for name, row in by_name.items() if name not in existing]
            for name, row in by_name.items():
                if name in existing:
                    doc_id, owner_id = existing[name]
                    row["id"] = doc_id
                    row["body"]["_id"] = doc_id
                    values: dict[str, Any] = {
                        "location": row["location"],
                        "location_key": row["location_key"],
                        "body": row["body"],
                        "modified": now,
                    }
                    if owner_id is None and owner is not None:
                        values["owner_id"] = owner.id
                    conn.execute(update(documents).where(documents.c.id == doc_id).values(**values))
            if new:
                owner_id = owner.id if owner is not None else None
                conn.execute(
                    insert(documents),
                    [{**row, "owner_id": owner_id, "created": now, "modified": now} for row in new],
                )
            self._reindex(conn, list(by_name.values()))
        return len(new)

    # -- indexes --------------------------------------------------------------------------

    @staticmethod
    def _indexed(conn: Connection, ready: bool = True) -> set[str]:
        """The declared paths: those filters may use (``ready``), or every one that
        writes keep up to date."""
        stmt = select(catalog_indexes.c.path)
        if ready:
            stmt = stmt.where(catalog_indexes.c.ready)
        return set(conn.execute(stmt).scalars())

    def _reindex(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Bring the index values of freshly written documents up to date.

        On PostgreSQL, the declared paths are read under a lock that a declaration waits
        for (until this transaction ends): an index declared meanwhile either is seen
        here or finds these documents when it fills (see :meth:`create_index`)."""
        if self.dialect == "postgresql":
            conn.execute(text(f"LOCK TABLE {catalog_indexes.name} IN SHARE MODE"))
        paths = self._indexed(conn, ready=False)
        if not paths:
            return
        ids = [row["id"] for row in rows]
        conn.execute(delete(catalog_index_values).where(catalog_index_values.c.doc_id.in_(ids)))
        values = [v for row in rows for v in index_rows(row["id"], row["body"], paths)]
        if values:
            conn.execute(insert(catalog_index_values), values)

    def create_index(self, path: str, created_by: str | None = None) -> bool:
        """Declare an index on a dotted path and fill it; False if it was declared already.

        The declaration is committed first, not ready: every write from then on keeps
        the index's values (on PostgreSQL it waits for the writes under way to end, see
        :meth:`_reindex`). Then the documents are read and the index filled, and only
        then do filters use it. A declaration left not ready (a fill that failed) is
        filled again by the next call."""
        check_index_path(path)
        try:
            with self.engine.begin() as conn:
                found = conn.execute(
                    select(catalog_indexes.c.ready).where(catalog_indexes.c.path == path)
                ).first()
                if found is not None and found.ready:
                    return False
                if found is None:
                    conn.execute(
                        insert(catalog_indexes).values(
                            path=path,
                            created=datetime.now(UTC),
                            created_by=created_by,
                            ready=False,
                        )
                    )
        except IntegrityError:  # declared by another process meanwhile
            return False
        with self.engine.begin() as conn:
            conn.execute(delete(catalog_index_values).where(catalog_index_values.c.path == path))
            rows = conn.execute(select(documents.c.id, documents.c.body)).yield_per(BATCH)
            for batch in rows.partitions():
                values = [v for doc_id, body in batch for v in index_rows(doc_id, body, [path])]
                if values:
                    conn.execute(insert(catalog_index_values), values)
            conn.execute(
                update(catalog_indexes).where(catalog_indexes.c.path == path).values(ready=True)
            )
            # fresh statistics, or the planner may not see that the new rows are selective
            conn.execute(text(f"ANALYZE {catalog_index_values.name}"))
        return True

    def drop_index(self, path: str) -> None:
        """Forget an index; :class:`NotFound` if the path is not indexed."""
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(catalog_indexes).where(catalog_indexes.c.path == path)
            ).rowcount
            conn.execute(delete(catalog_index_values).where(catalog_index_values.c.path == path))
        if not gone:
            raise NotFound(f"no catalog index on {path!r}")

    def indexes(self) -> list[dict[str, Any]]:
        """The declared index paths, with who declared them and when."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(catalog_indexes).order_by(catalog_indexes.c.path))
            return [dict(row) for row in rows.mappings()]

    def _where(
        self, filter: Mapping[str, Any] | None, conn: Connection, viewer: Person | None
    ) -> ColumnElement[bool]:
        node = parse_filter(filter, self.limits)
        owned = _owned_by(viewer)
        with regex_guard(owned):
            clause = filter_clause(node, documents.c.body, self.dialect)
        mine = [] if owned is None else [owned]
        indexed = _narrow(conn, prefilter_sets(node, self._indexed(conn)))
        return and_(*mine, *name_prefilters(node, documents.c.name), *indexed, clause)

    def delete(self, doc_id: str) -> None:
        """Remove a document; :class:`NotFound` if there is none with that id."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(documents).where(documents.c.id == doc_id)).rowcount
        if not gone:
            raise NotFound(f"no catalog document has _id {doc_id!r}")

    # -- reads ----------------------------------------------------------------------------

    def get(self, doc_id: str, viewer: Person | None = None) -> dict[str, Any]:
        """The document with this id; :class:`NotFound` if there is none (that ``viewer``
        may see: users see their own documents, admins every one)."""
        owned = _owned_by(viewer)
        stmt = select(documents.c.body).where(documents.c.id == doc_id)
        if owned is not None:
            stmt = stmt.where(owned)
        with self.engine.connect() as conn:
            body = conn.execute(stmt).scalar_one_or_none()
        if body is None:
            raise NotFound(f"no catalog document has _id {doc_id!r}")
        return dict(body)

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        sort: Sequence[tuple[str, int]] | Mapping[str, int] | None = None,
        skip: int = 0,
        limit: int = 0,
        viewer: Person | None = None,
    ) -> list[dict[str, Any]]:
        """The documents matching a MongoDB-style filter; ``limit`` 0 means no limit.
        With a ``viewer``, only the documents they may see (users: their own)."""
        _check_page(skip, limit)
        shape = parse_projection(projection)
        body = documents.c.body
        keys = parse_sort(sort)
        order = [*sort_clauses(keys, body, self.dialect), documents.c.id]
        with self.engine.connect() as conn:
            where = self._where(filter, conn, viewer)
            if limit and keys and keys[0][1] == -1 and keys[0][0] in self._indexed(conn):
                where = and_(where, *self._top(conn, where, order, keys[0][0], skip + limit))
            stmt = select(body).where(where).order_by(*order)
            if skip:
                stmt = stmt.offset(skip)
            if limit:
                stmt = stmt.limit(limit)
            found = [dict(doc) for doc in conn.execute(stmt).scalars()]
        return [shape.apply(doc) for doc in found] if shape else found

    def _top(
        self,
        conn: Connection,
        where: ColumnElement[bool],
        order: list[ColumnElement[Any]],
        path: str,
        count: int,
    ) -> list[ColumnElement[bool]]:
        """For the first ``count`` documents of a sort whose first key is ``path``
        descending, an indexed path: a pre-condition that they all meet, or none.

        The documents with the largest numbers and strings at ``path`` (from the index)
        are sorted exactly; when ``count`` of them match, each of the first ``count``
        of all has a sort key at least that of the last of those (whose key is then a
        bound on the value table, see ``sort_prefilter``). Otherwise, nothing narrows."""
        key = sort_key_values(path, documents.c.body, self.dialect)
        for how_many in (4 * count + 64, 64 * count + 1024):
            ids = {
                doc_id
                for kind in ("n", "s")
                for doc_id in conn.execute(sort_candidates(path, kind, how_many)).scalars()
            }
            if len(ids) < count:
                return []  # too few values at the path: nothing to gain
            found = conn.execute(
                select(*key)
                .where(documents.c.id.in_(sorted(ids)), where)
                .order_by(*order)
                .offset(count - 1)
                .limit(1)
            ).first()
            if found is not None:
                bound = _sort_bound(tuple(found))
                if bound is None:
                    return []
                return _narrow(conn, [sort_prefilter(path, bound[0], bound[1])])
        return []

    def hidden_from(
        self, viewer: Person | None, *, at: Sequence[str] = (), under: Sequence[str] = ()
    ) -> list[str]:
        """The location of each document ``viewer`` may not see (a user: other users'
        and those without an owner; admins and the service: none) that is one of the
        canonical store URLs ``at`` or lies under one of ``under`` (whole path parts),
        however it is spelled: its canonical form (:func:`location_key`). A location
        that has none (not a store URL) is compared as stored and given as stored."""
        if viewer is None or viewer.is_admin:
            return []
        hidden = or_(documents.c.owner_id.is_(None), documents.c.owner_id != viewer.id)
        key = documents.c.location_key
        raw = documents.c.location
        spelled = list(dict.fromkeys(u for a in at for u in (a.rstrip("/"), a.rstrip("/") + "/")))
        wheres: list[ColumnElement[bool]] = [key.in_(list(b)) for b in _batched(spelled)]
        wheres += [key.startswith(u.rstrip("/") + "/", autoescape=True) for u in under]
        # locations that are not store URLs: as stored, as before canonical keys
        wheres += [and_(key.is_(None), raw.in_(list(b))) for b in _batched(spelled)]
        wheres += [
            and_(key.is_(None), raw.startswith(u.rstrip("/") + "/", autoescape=True)) for u in under
        ]
        found: set[str] = set()
        with self.engine.connect() as conn:
            for where in wheres:
                rows = conn.execute(select(func.coalesce(key, raw)).where(hidden, where))
                found.update(str(location) for location in rows.scalars())
        return sorted(found)

    def count(self, filter: Mapping[str, Any] | None = None, viewer: Person | None = None) -> int:
        """How many documents (that ``viewer`` may see) match the filter."""
        with self.engine.connect() as conn:
            where = self._where(filter, conn, viewer)
            stmt = select(func.count()).select_from(documents).where(where)
            return int(conn.execute(stmt).scalar_one())

    def distinct(
        self, field: str, filter: Mapping[str, Any] | None = None, viewer: Person | None = None
    ) -> list[Any]:
        """The distinct values at a dotted path among the matching documents (that
        ``viewer`` may see); array values count element by element, as in MongoDB. More
        than ``max_distinct`` values is a :class:`QueryError` (the answer would be too
        large: narrow the filter)."""
        if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
            raise QueryError(f"distinct needs a dotted field path, got {field!r}")
        parts = field.split(".")
        seen: dict[str, Any] = {}
        spread = path_values(field, documents.c.body, self.dialect)
        with self.engine.connect() as conn:
            where = self._where(filter, conn, viewer)
            if spread is None:  # a number part: unwound here
                found = conn.execute(select(documents.c.body).where(where)).scalars()
                values: Iterable[Any] = (
                    item
                    for body in found
                    for value in values_at(body, parts)
                    for item in (value if isinstance(value, list) else [value])
                )
            else:
                joins, value, present = spread
                source: Any = documents
                for rows, on in joins:
                    source = source.join(rows, on)
                stmt = select(value).select_from(source).where(where, present).distinct()
                found = conn.execute(stmt).scalars()
                values = (json.loads(v) if self.dialect == "sqlite" else v for v in found)
            for item in values:
                seen.setdefault(_identity(item), item)
                if len(seen) > self.max_distinct:
                    raise QueryError(
                        f"{field} has more than {self.max_distinct} distinct values "
                        f"among the matching documents; at most {self.max_distinct} "
                        "are returned (setting catalog_max_distinct): narrow the filter"
                    )
        return list(seen.values())


#: A set of ids from the index that has at most this many is read first and given to
#: the query as a list: the documents are then looked up by id, whatever the planner
#: thinks of the sets' sizes.
NARROW_IDS = 10_000


def _narrow(conn: Connection, sets: Sequence[Any]) -> list[ColumnElement[bool]]:
    """Conditions on the documents' ids from sets of ids (selects on the index): the
    ids of the sets no larger than :data:`NARROW_IDS`, read and intersected here, or
    when every set is larger, each set as a sub-query (all are necessary conditions)."""
    small: set[str] | None = None
    for ids in sets:
        found = conn.execute(_limited(ids, NARROW_IDS + 1)).scalars().all()
        if len(found) <= NARROW_IDS:
            small = set(found) if small is None else small & set(found)
    if small is None:
        return [documents.c.id.in_(ids) for ids in sets]
    return [documents.c.id.in_(sorted(small))]


def _limited(ids: Any, most: int) -> Any:
    if isinstance(ids, Select):
        return ids.limit(most)
    inner = ids.subquery()
    return select(inner.c.doc_id).limit(most)


def _sort_bound(key: tuple[Any, ...]) -> tuple[str, float | str] | None:
    """The kind and value of a sort key (rank, scalar[, text]) that is a number or a
    string, as ``sort_key_values`` gives it; None for any other."""
    rank, scalar = key[0], key[1]
    if rank == 2 and isinstance(scalar, int | float) and not isinstance(scalar, bool):
        return "n", float(scalar)
    if rank == 3:
        found = key[2] if len(key) > 2 else scalar
        return ("s", found) if isinstance(found, str) else None
    return None


def _identity(value: Any) -> str:
    """A key under which equal JSON values (1 and 1.0, but not 1 and true) coincide."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"n:{float(value)!r}"
    return json.dumps(value, sort_keys=True)
