"""Declared index paths, kept as a multikey table of values beside the documents.

For every declared path, each document's values there (arrays element by element, as in
a MongoDB multikey index) are rows of ``catalog_index_values``. A filter that asks for
equality or ``$in`` on such a path gets a pre-condition that the database
answers from that table's B-tree indexes; the compiled filter still decides each match,
so results are the same with or without the index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from neuroferry.catalog._filter import And, Equals, Field, In, Node
from neuroferry.db import catalog_index_values as values_table
from neuroferry.errors import QueryError


def check_index_path(path: str) -> str:
    """A dotted path that may be indexed; :class:`QueryError` otherwise."""
    parts = path.split(".") if isinstance(path, str) else [""]
    if not path or len(path) > 512 or any(not p or p.startswith("$") for p in parts):
        raise QueryError(
            f"index path {path!r} must be a dotted field path such as subject.subject_id"
        )
    return path


def values_at(value: Any, parts: Sequence[str]) -> Iterator[Any]:
    """The values at a dotted path, MongoDB's way: arrays of documents along the path are
    traversed, and a numeric part also indexes an array."""
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        if head in value:
            yield from values_at(value[head], rest)
    elif isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            yield from values_at(value[int(head)], rest)
        for item in value:
            if isinstance(item, Mapping):
                yield from values_at(item, parts)


def _key(value: Any) -> tuple[str, float | None, str | None] | None:
    """How a scalar is stored in the value table; None for what is not indexed."""
    if isinstance(value, bool):
        return "b", float(value), None
    if isinstance(value, int | float):
        return "n", float(value), None
    if isinstance(value, str):
        return "s", None, value
    return None


def index_rows(doc_id: str, body: Mapping[str, Any], paths: Iterable[str]) -> list[dict[str, Any]]:
    """The value-table rows of one document for the declared paths."""
    rows = []
    for path in paths:
        seen = set()
        for value in values_at(body, path.split(".")):
            for item in value if isinstance(value, list) else [value]:
                key = _key(item)
                if key is not None and key not in seen:
                    seen.add(key)
                    kind, num, text = key
                    rows.append(
                        {"path": path, "doc_id": doc_id, "kind": kind, "num": num, "text": text}
                    )
    return rows


def _match(path: str, wanted: list[Any]) -> ColumnElement[bool] | None:
    keys = [_key(v) for v in wanted]
    if not keys or any(k is None for k in keys):
        return None
    by_kind: dict[str, list[Any]] = {}
    for kind, num, text in (k for k in keys if k is not None):
        by_kind.setdefault(kind, []).append(text if kind == "s" else num)
    tests = [
        and_(
            values_table.c.kind == kind,
            (values_table.c.text if kind == "s" else values_table.c.num).in_(values),
        )
        for kind, values in by_kind.items()
    ]
    return and_(values_table.c.path == path, or_(*tests))


def _field_condition(field: Field) -> ColumnElement[bool] | None:
    for cond in field.conditions:
        if isinstance(cond, Equals):
            found = _match(field.path, [cond.value])
        elif isinstance(cond, In) and not cond.negated:
            found = _match(field.path, list(cond.values))
        else:
            found = None
        if found is not None:
            return found
    return None


def prefilters(node: Node, indexed: set[str], doc_id: ColumnElement[Any]) -> list[Any]:
    """Necessary conditions on ``doc_id`` that the value table answers, for the fields of
    the filter's top level (or of a top-level ``$and``) on indexed paths."""
    fields = [node] if isinstance(node, Field) else []
    if isinstance(node, And):
        fields = [child for child in node.children if isinstance(child, Field)]
    found = []
    for field in fields:
        if field.path in indexed and (where := _field_condition(field)) is not None:
            found.append(doc_id.in_(select(values_table.c.doc_id).where(where)))
    return found


def name_prefilters(node: Node, name: ColumnElement[Any]) -> list[Any]:
    """``name IN (…)`` for each equality or ``$in`` on ``name`` at the filter's top level
    (or a top-level ``$and``): a document's ``name``, always a string, is also its row's
    unique ``name`` column, whose index then finds the documents instead of a scan of
    them all (the dedupe check of an analysis job looks up 100,000 names)."""
    fields = [node] if isinstance(node, Field) else []
    if isinstance(node, And):
        fields = [child for child in node.children if isinstance(child, Field)]
    found = []
    for field in fields:
        if field.path != "name":
            continue
        for cond in field.conditions:
            if isinstance(cond, Equals):
                found.append(name.in_([cond.value] if isinstance(cond.value, str) else []))
            elif isinstance(cond, In) and not cond.negated:
                found.append(name.in_([v for v in cond.values if isinstance(v, str)]))
    return found
