"""Catalog index values typed for ranges, prefixes, presence and $elemMatch: a kind for
every value (nulls, objects and arrays too, upper case for a document's several values),
strings cut to 256 characters and compared by code point, the document id last in the
value indexes (sets of ids read from the index alone), and a ``ready`` flag on each
declared index (false while it is being filled).

The values of the declared indexes are computed again from the documents. The rules are
copied here, as they are at this revision, so that the migration does not change when
the code does.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_BATCH = 1000
_TEXT_PREFIX = 256


def upgrade() -> None:
    with op.batch_alter_table("catalog_indexes") as batch:
        batch.add_column(sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.true()))
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute('ALTER TABLE catalog_index_values ALTER COLUMN text TYPE text COLLATE "C"')
    values = sa.table(
        "catalog_index_values",
        sa.column("path", sa.String()),
        sa.column("doc_id", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("num", sa.Float()),
        sa.column("text", sa.Text()),
    )
    documents = sa.table(
        "catalog_documents", sa.column("id", sa.String()), sa.column("body", sa.JSON())
    )
    for name in ("num", "text"):  # doc_id last: sets of ids read from the index alone
        op.drop_index(f"ix_catalog_index_values_{name}", table_name="catalog_index_values")
        op.create_index(
            f"ix_catalog_index_values_{name}",
            "catalog_index_values",
            ["path", "kind", name, "doc_id"],
        )
    paths = list(conn.execute(sa.text("SELECT path FROM catalog_indexes")).scalars())
    conn.execute(sa.delete(values))
    if not paths:
        return
    after = ""
    while True:
        rows = conn.execute(
            sa.select(documents.c.id, documents.c.body)
            .where(documents.c.id > after)
            .order_by(documents.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        found = []
        for doc_id, body in rows:
            doc = json.loads(body) if isinstance(body, str) else body
            found += _rows(doc_id, doc, paths)
        if found:
            conn.execute(sa.insert(values), found)
        after = rows[-1][0]


def downgrade() -> None:
    for name in ("num", "text"):
        op.drop_index(f"ix_catalog_index_values_{name}", table_name="catalog_index_values")
        op.create_index(
            f"ix_catalog_index_values_{name}", "catalog_index_values", ["path", "kind", name]
        )
    with op.batch_alter_table("catalog_indexes") as batch:
        batch.drop_column("ready")


def _values_at(value: Any, parts: Sequence[str]) -> Iterator[Any]:
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        if head in value:
            yield from _values_at(value[head], rest)
    elif isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            yield from _values_at(value[int(head)], rest)
        for item in value:
            if isinstance(item, Mapping):
                yield from _values_at(item, parts)


def _nested(value: Any, parts: Sequence[str]) -> bool:
    if not parts:
        return False
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        return head in value and _nested(value[head], rest)
    if isinstance(value, list):
        if any(isinstance(item, list) for item in value):
            return True
        if head.isdigit() and int(head) < len(value) and _nested(value[int(head)], rest):
            return True
        return any(_nested(item, parts) for item in value if isinstance(item, Mapping))
    return False


def _key(value: Any) -> tuple[str, float | None, str | None]:
    if isinstance(value, bool):
        return "b", float(value), None
    if isinstance(value, int | float):
        try:
            return "n", float(value), None
        except OverflowError:
            return "n", math.copysign(math.inf, value), None
    if isinstance(value, str):
        return "s", None, value[:_TEXT_PREFIX]
    if value is None:
        return "z", None, None
    return ("o" if isinstance(value, Mapping) else "a"), None, None


def _rows(doc_id: str, body: Any, paths: list[str]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        parts = path.split(".")
        found = list(_values_at(body, parts))
        multi = len(found) > 1 or any(isinstance(v, list) for v in found)
        keys: dict[tuple[str, float | None, str | None], None] = {}
        for value in found:
            if isinstance(value, list):
                for item in value:
                    keys.setdefault(_key(item))
                if not value:
                    keys.setdefault(_key(value))
            else:
                keys.setdefault(_key(value))
        if _nested(body, parts):
            keys.setdefault(("w", None, None))
        for kind, num, text in keys:
            rows.append(
                {
                    "path": path,
                    "doc_id": doc_id,
                    "kind": kind.upper() if multi else kind,
                    "num": num,
                    "text": text,
                }
            )
    return rows
