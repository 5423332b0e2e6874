"""PostgreSQL (JSONB) references for the compilation of catalog filters and sorts.

A reference is a ``jsonb`` expression: ``x -> :key``, ``x -> :index``; the chain joins
``jsonb_array_elements`` (implicitly lateral). The document's first key is looked up once
per row, in a ``LATERAL (SELECT … OFFSET 0)``: each ``body -> key`` decompresses a
TOASTed body again. Equality and ``$in`` compare ``jsonb`` with ``jsonb``
(``x = CAST(:json AS jsonb)``, ``x = ANY(CAST(:list AS jsonb[]))``): ``1 = 1.0``,
``true <> 1``, objects without regard to key order. Other number comparisons are ``jsonb``
ones too; strings compare as text ``COLLATE "C"`` (code point order, as in MongoDB,
whatever the database's collation). ``$regex`` is ``~``/``~*`` with the pattern rewritten
from Python's syntax to ARE (``_filter.postgres_regex``). Equality and ``$in`` on paths of
plain keys also get a necessary pre-condition ``body @@ '$."a"."b" == "x"'`` (a lax JSON
path, which unwraps arrays), which a GIN index on the body (``jsonb_path_ops``) answers.
The correlated sub-queries make these plans large in the planner's eyes: turn JIT off for
catalog connections (``SET jit = off``), or it compiles each query for 0.1 to 0.3 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH

from neuroferry.catalog._filter import JSON, is_index, postgres_regex
from neuroferry.catalog._sql_common import (
    _MAX_INDEX,
    FALSE,
    TRUE,
    Cond,
    Expr,
    Test,
    _and,
    _anywhere,
    _branch,
    _c,
    _exists,
    _not,
    _or,
    _Ref,
)

_PG_TYPES = {
    "null": "null",
    "bool": "boolean",
    "number": "number",
    "string": "string",
    "array": "array",
    "object": "object",
}


def _jsonb(value: JSON) -> Expr:
    return sa.cast(sa.literal(json.dumps(value), sa.Text), JSONB)


@dataclass(frozen=True)
class _PgRef(_Ref):
    x: Expr  # a jsonb expression; SQL NULL when missing

    def _typeof(self) -> Expr:
        return sa.func.jsonb_typeof(self.x)

    def _text(self) -> Expr:
        return self.x.op("#>>", return_type=sa.Text)(_c("{}"))

    def _arrow(self, key: Expr) -> _PgRef:
        return _PgRef(self.x.op("->", return_type=JSONB)(key))

    def is_type(self, kind: str) -> Cond:
        return self._typeof() == _c(_PG_TYPES[kind])

    def eq(self, value: JSON) -> Cond:
        return self.x.op("=", is_comparison=True)(_jsonb(value))

    def is_in(self, values: Sequence[JSON]) -> Cond:
        if not values:
            return FALSE
        if len(values) == 1:
            return self.eq(values[0])
        items = sa.literal([json.dumps(v) for v in values], ARRAY(sa.Text))
        return self.x.op("=", is_comparison=True)(sa.any_(sa.cast(items, ARRAY(JSONB))))

    def compare(self, op: str, value: int | float | str) -> Cond:
        if isinstance(value, str):
            text = sa.collate(self._text(), "C")
            return _and(self.is_type("string"), text.op(op, is_comparison=True)(value))
        return _and(self.is_type("number"), self.x.op(op, is_comparison=True)(_jsonb(value)))

    def regex(self, pattern: str, options: str) -> Cond:
        are, ignore_case = postgres_regex(pattern, options)
        matches = self._text().op("~*" if ignore_case else "~", is_comparison=True)(
            sa.literal(are, sa.Text)
        )
        return _and(self.is_type("string"), matches)

    def length_is(self, length: int) -> Cond:
        array = sa.case((self.is_type("array"), self.x), else_=sa.null())
        return sa.func.jsonb_array_length(array) == length

    def number_kind(self, kind: str) -> Cond:
        if kind == "double":
            return _and(self.is_type("number"), sa.func.strpos(self._text(), _c(".")) > 0)
        integral = _and(self.is_type("number"), sa.func.strpos(self._text(), _c(".")) == 0)
        low = self.x.op(">=", is_comparison=True)(_jsonb(-(2**31)))
        high = self.x.op("<=", is_comparison=True)(_jsonb(2**31 - 1))
        int32 = _and(low, high)
        return _and(integral, int32 if kind == "int" else _not(int32))

    def with_key(self, key: str, present: Test, missing: bool) -> Cond:
        child = self._arrow(sa.literal(key, sa.Text))
        return _branch(child.x.is_not(None), child.x.is_(None), present(child), missing)

    def with_key_once(self, key: str, present: Test, missing: bool) -> Cond:
        # Each "body -> key" decompresses a TOASTed body again; a sub-select with OFFSET 0
        # (never flattened) computes the key's value once, and the test reads it from there.
        value = self._arrow(sa.literal(key, sa.Text)).x.label("value")
        row = sa.select(value).correlate_except(None).offset(sa.literal_column("0")).lateral()
        child = _PgRef(row.c.value)
        return _exists(
            row, _branch(child.x.is_not(None), child.x.is_(None), present(child), missing)
        )

    def walk(self, parts: Sequence[str], present: Test, missing: bool, is_object: bool) -> Cond:
        if not is_object:
            return _anywhere(self, parts, present, missing)
        part, rest = parts[0], parts[1:]
        step = (lambda child: _anywhere(child, rest, present, missing)) if rest else present
        return self.with_key_once(part, step, missing)

    def lookup(self, part: str) -> _PgRef:
        by_key = self._arrow(sa.literal(part, sa.Text))
        if not (is_index(part) and int(part) <= _MAX_INDEX):
            return by_key
        by_index = self._arrow(sa.cast(sa.literal(int(part)), sa.Integer))
        return _PgRef(sa.case((self.is_type("array"), by_index.x), else_=by_key.x))

    def there(self) -> Cond:
        return self.x.is_not(None)

    def not_there(self) -> Cond:
        return self.x.is_(None)

    def holders(self, index: bool) -> tuple[Any, _Ref, Cond]:
        alone = sa.func.jsonb_build_array(self.x)
        spread = sa.case((self.is_type("array"), self.x), else_=alone) if not index else alone
        rows = sa.func.jsonb_array_elements(spread).table_valued(sa.column("value", JSONB))
        rows = rows.alias()
        holder = _PgRef(rows.c.value)
        kinds = ("object", "array") if index else ("object",)
        return rows, holder, _or(*(holder.is_type(kind) for kind in kinds))

    def spread(self) -> tuple[Any, _Ref]:
        rows, holder, _ = self.holders(index=False)
        return rows, holder

    def any_element(self, test: Test) -> Cond:
        array = sa.case((self.is_type("array"), self.x), else_=sa.null())
        elements = sa.func.jsonb_array_elements(array).table_valued(sa.column("value", JSONB))
        elements = elements.alias()
        return _exists(elements, test(_PgRef(elements.c.value)))

    def at_path(self, parts: Sequence[str]) -> _Ref:
        ref: _PgRef = self
        for part in parts:
            ref = ref.lookup(part)
        return ref

    def sort_keys(self) -> list[Expr]:
        first = _PgRef(
            sa.case(
                (self.is_type("array"), self._arrow(sa.cast(sa.literal(0), sa.Integer)).x),
                else_=self.x,
            )
        )
        kind = first._typeof()
        rank = sa.case(
            (self.x.op("=", is_comparison=True)(_c("[]")), 0),
            else_=sa.case(*((kind == _c(name), n) for name, n in _PG_RANKS.items()), else_=1),
        )
        scalar = sa.case((kind.in_([_c("number"), _c("boolean")]), first.x), else_=sa.null())
        text = sa.case((kind == _c("string"), sa.collate(first._text(), "C")), else_=sa.null())
        return [rank, scalar, text]

    def json_value(self) -> Expr:
        return self.x

    def prefilter(self, parts: Sequence[str], values: Sequence[JSON]) -> Cond:
        literals = [_jsonpath_literal(v) for v in values]
        if not literals or any(lit is None for lit in literals) or any(map(is_index, parts)):
            return TRUE
        path = "$" + "".join("." + json.dumps(part, ensure_ascii=False) for part in parts)
        query = " || ".join(f"{path} == {lit}" for lit in literals)
        return self.x.op("@@", is_comparison=True)(sa.cast(sa.literal(query, sa.Text), JSONPATH))


_PG_RANKS = {"number": 2, "string": 3, "object": 4, "array": 5, "boolean": 6}


def _jsonpath_literal(value: JSON) -> str | None:
    """``value`` as a JSON path literal a GIN index can use, or None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, float) and re.fullmatch(r"[0-9]+\.[0-9]+", repr(value)):
        return repr(value)
    return None
