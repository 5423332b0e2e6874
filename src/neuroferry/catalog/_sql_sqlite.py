"""SQLite (JSON1) references for the compilation of catalog filters and sorts, and the
SQL functions they call.

A reference is a JSON *path* into a JSON text (``json_type(src, :path)``,
``json_extract(src, :path)``), or a row of ``json_each`` (``type``, ``atom``). Keys of
printable ASCII other than ``"``, ``/`` and ``\\`` are appended to the bound path as
``."key"``; any other key is found with ``json_each … WHERE key = :key``, because SQLite
before 3.45 compares path labels with the stored, escaped key text (``größe`` is stored as
``gr\\u00f6\\u00dfe`` by Python's ``json``). SQLite's parser takes only about ten nested
sub-queries: inline look-ups are used only in the document and for such plain keys, the
chain alone elsewhere; filters that still nest too deeply (``$elemMatch`` in
``$elemMatch`` …) are checked with SQLite's own parser and are a
:class:`~neuroferry.errors.QueryError`. Strings compare with SQLite's binary collation: by
code point. ``$regex`` calls ``neuroferry_regexp(pattern, value)``: RE2 (linear-time matching) with
the pattern rewritten from Python's syntax (``_filter.re2_regex``), which every connection
must have: see :func:`register_sqlite_functions`. Built under :func:`regex_guard`, each
call is wrapped in ``CASE WHEN <owner condition> THEN … END``, so that it runs only on the
viewer's own rows.
"""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import re2
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from neuroferry.catalog._filter import JSON, compiled_re2, is_index, re2_regex
from neuroferry.catalog._sql_common import (
    _MAX_INDEX,
    FALSE,
    Cond,
    Expr,
    Test,
    _and,
    _anywhere,
    _branch,
    _c,
    _chain,
    _equals,
    _exists,
    _not,
    _or,
    _Ref,
)
from neuroferry.errors import QueryError

_SQLITE = sqlite_dialect.dialect()
#: The name of the SQLite function behind ``$regex``.
SQLITE_REGEXP = "neuroferry_regexp"
_REGEX_GUARD: ContextVar[Cond | None] = ContextVar("_REGEX_GUARD", default=None)


def register_sqlite_functions(dbapi_connection: Any, connection_record: Any = None) -> None:
    """Add the SQL functions that compiled filters use to a SQLite connection.

    Every SQLite connection that runs catalog filters needs them:
    ``sqlalchemy.event.listen(engine, "connect", register_sqlite_functions)``.
    """
    dbapi_connection.create_function(SQLITE_REGEXP, 2, _sqlite_regexp, deterministic=True)


def _sqlite_regexp(pattern: Any, value: Any) -> int:
    """1 if the RE2 ``pattern`` (from ``re2_regex``: linear-time matching, compiled once
    per pattern) finds a match in the text ``value``."""
    if not isinstance(value, str) or not isinstance(pattern, str):
        return 0
    try:
        return 1 if compiled_re2(pattern).search(value) else 0
    except re2.error:
        return 0


@contextmanager
def regex_guard(condition: Cond | None) -> Iterator[None]:
    """While building a SQLite filter, run every ``$regex`` only on the rows that meet
    ``condition`` (the viewer's own documents): a user's pattern never sees (nor spends
    time on) the text of rows they may not read, whatever order SQLite's planner picks."""
    token = _REGEX_GUARD.set(condition)
    try:
        yield
    finally:
        _REGEX_GUARD.reset(token)


def _check_sqlite_parses(clause: Cond) -> None:
    """Let SQLite's own parser judge the nesting; QueryError if its stack overflows."""
    sql = clause.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True})
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(f"SELECT 1 WHERE {sql}")
    except sqlite3.OperationalError as exc:
        if "parser stack overflow" in str(exc):
            raise QueryError(
                "the filter nests too deeply for SQLite ($elemMatch, $not and arrays along "
                "paths each add a level; SQLite takes about ten): simplify it, or run the "
                "catalog on PostgreSQL"
            ) from None
    except sqlite3.Error:
        pass  # it parsed (then missed the table): deep enough is fine
    finally:
        probe.close()


_SQLITE_TYPES = {
    "null": ("null",),
    "bool": ("true", "false"),
    "number": ("integer", "real"),
    "string": ("text",),
    "array": ("array",),
    "object": ("object",),
}
_SQLITE_RANKS = {
    "integer": 2,
    "real": 2,
    "text": 3,
    "object": 4,
    "array": 5,
    "true": 6,
    "false": 6,
}


def _safe_key(key: str) -> bool:
    """Whether SQLite finds the key by a quoted JSON path label (``."key"``)."""
    return all(" " <= c <= "~" and c not in '"\\/' for c in key)


def _bind(value: Any) -> Expr:
    return sa.literal(value, sa.Text) if isinstance(value, str) else sa.literal(value)


class _SqliteRef(_Ref):
    """A JSON value in SQLite: its ``json_type`` name and its SQL value (``atom``)."""

    @property
    @abstractmethod
    def type_(self) -> Expr:
        """``json_type`` of the value (NULL when missing)."""

    @property
    @abstractmethod
    def atom(self) -> Expr:
        """The value as SQL: text, integer, real, 1/0 for booleans, NULL for null."""

    @abstractmethod
    def as_path(self) -> _PathRef:
        """The same value as a JSON path reference (for arrays and objects)."""

    def is_type(self, kind: str) -> Cond:
        names = _SQLITE_TYPES[kind]
        if len(names) == 1:
            return self.type_ == _c(names[0])
        return self.type_.in_([_c(name) for name in names])

    def eq(self, value: JSON) -> Cond:
        if value is None:
            return self.is_type("null")
        if isinstance(value, bool):
            return self.type_ == _c("true" if value else "false")
        if isinstance(value, int | float):
            return _and(self.is_type("number"), self.atom == _bind(value))
        if isinstance(value, str):
            return _and(self.is_type("string"), self.atom == _bind(value))
        path = self.as_path()
        if isinstance(value, list):
            return _and(
                path.is_type("array"),
                path.length_is(len(value)),
                *(path.with_index(i, _equals(item)) for i, item in enumerate(value)),
            )
        return _and(
            path.is_type("object"),
            path.key_count() == len(value),
            *(path.with_key(key, _equals(item), missing=False) for key, item in value.items()),
        )

    def is_in(self, values: Sequence[JSON]) -> Cond:
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        strings = [v for v in values if isinstance(v, str)]
        others = [v for v in values if v is None or isinstance(v, bool | list | dict)]
        conds = [self.eq(v) for v in _unique(others)]
        if numbers:
            conds.append(_and(self.is_type("number"), _one_of(self.atom, _unique(numbers))))
        if strings:
            conds.append(_and(self.is_type("string"), _one_of(self.atom, _unique(strings))))
        return _or(*conds)

    def compare(self, op: str, value: int | float | str) -> Cond:
        kind = "string" if isinstance(value, str) else "number"
        return _and(self.is_type(kind), self.atom.op(op, is_comparison=True)(_bind(value)))

    def regex(self, pattern: str, options: str) -> Cond:
        call: Expr = getattr(sa.func, SQLITE_REGEXP)(_bind(re2_regex(pattern, options)), self.atom)
        guard = _REGEX_GUARD.get()
        if guard is not None:  # CASE runs the function only when the guard holds
            call = sa.case((guard, call), else_=sa.literal(0))
        return _and(self.is_type("string"), call == 1)

    def number_kind(self, kind: str) -> Cond:
        if kind == "double":
            return self.type_ == _c("real")
        int32 = self.atom.between(-(2**31), 2**31 - 1)
        return _and(self.type_ == _c("integer"), int32 if kind == "int" else _not(int32))

    def length_is(self, length: int) -> Cond:
        return self.as_path().length_is(length)

    def walk(self, parts: Sequence[str], present: Test, missing: bool, is_object: bool) -> Cond:
        # Inline look-ups only in the document, and for keys that fit in a JSON path: they
        # nest, and SQLite's parser allows little nesting. Elsewhere, the join chain alone.
        plain = all(_safe_key(p) and not is_index(p) for p in parts)
        if is_object and plain and len(parts) > 1:
            return _anywhere(self.as_path(), parts, present, missing, is_object=True)
        return _chain(self.as_path(), parts, present, missing, is_object)

    def lookup(self, part: str) -> _Ref:
        return self.as_path().lookup(part)

    def there(self) -> Cond:
        return self.type_.is_not(None)

    def not_there(self) -> Cond:
        return self.type_.is_(None)

    def holders(self, index: bool) -> tuple[Any, _Ref, Cond]:
        text = self.json_value()
        spread = self.is_type("array") if not index else FALSE
        listed = sa.case((spread, text), else_=sa.literal("[", sa.Text) + text + "]")
        rows = sa.func.json_each(listed).table_valued("key", "value", "type", "atom").alias()
        kinds = ("object", "array") if index else ("object",)
        holder = _EachRef(rows)
        return rows, holder.as_path(), holder.type_.in_([_c(kind) for kind in kinds])

    def spread(self) -> tuple[Any, _Ref]:
        text = self.json_value()
        listed = sa.case((self.is_type("array"), text), else_=sa.literal("[", sa.Text) + text + "]")
        rows = sa.func.json_each(listed).table_valued("key", "value", "type", "atom").alias()
        return rows, _EachRef(rows)

    def with_key(self, key: str, present: Test, missing: bool) -> Cond:
        return self.as_path().with_key(key, present, missing)

    def any_element(self, test: Test) -> Cond:
        return self.as_path().any_element(test)

    def at_path(self, parts: Sequence[str]) -> _Ref:
        return self.as_path().at_path(parts)

    def sort_keys(self) -> list[Expr]:
        return self.as_path().sort_keys()

    def json_value(self) -> Expr:
        return self.as_path().json_value()


#: Lists longer than this go to SQLite as one JSON parameter, not one parameter each:
#: SQLite takes a bounded number of parameters per statement (32,766 by default).
_INLINE_LIST = 32


def _one_of(atom: Expr, values: Sequence[JSON]) -> Cond:
    """``atom`` equals one of the scalar ``values`` (numbers, or strings)."""
    if len(values) <= _INLINE_LIST:
        return atom.in_(values)
    each = sa.func.json_each(_bind(json.dumps(values, ensure_ascii=False)))
    items = each.table_valued("value").alias()
    return atom.in_(sa.select(items.c.value).correlate_except(items).scalar_subquery())


def _unique(values: Sequence[JSON]) -> list[JSON]:
    """The values without repeats, in their first order, in linear time: two values are
    repeats when their canonical JSON is the same (``1`` and ``1.0`` stay apart, which
    costs at most a redundant test, and ``true`` never meets ``1``)."""
    seen: dict[str, JSON] = {}
    for value in values:
        seen.setdefault(_canonical(value), value)
    return list(seen.values())


def _canonical(value: JSON) -> str:
    """A text equal for JSON values of the same type and value (objects whatever their
    key order)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class _PathRef(_SqliteRef):
    src: Expr  # JSON text (the body, or an array's or object's text); NULL gives NULLs
    path: str  # a JSON path into it, bound as a parameter

    @property
    def type_(self) -> Expr:
        return sa.func.json_type(self.src, _bind(self.path))

    @property
    def atom(self) -> Expr:
        return sa.func.json_extract(self.src, _bind(self.path))

    def as_path(self) -> _PathRef:
        return self

    def _each(self) -> Any:
        each = sa.func.json_each(self.src, _bind(self.path))
        return each.table_valued("key", "value", "type", "atom").alias()

    def _child(self, key: str) -> _PathRef:
        return _PathRef(self.src, f'{self.path}."{key}"')

    def length_is(self, length: int) -> Cond:
        return sa.func.json_array_length(self.src, _bind(self.path)) == length

    def key_count(self) -> Expr:
        each = self._each()
        return sa.select(sa.func.count()).select_from(each).correlate_except(each).scalar_subquery()

    def with_key(self, key: str, present: Test, missing: bool) -> Cond:
        if _safe_key(key):
            child = self._child(key)
            return _branch(child.type_.is_not(None), child.type_.is_(None), present(child), missing)
        each = self._each()
        found = _exists(each, _and(each.c.key == _bind(key), present(_EachRef(each))))
        if not missing:
            return found
        other = self._each()
        return _or(found, _not(_exists(other, other.c.key == _bind(key))))

    def with_index(self, index: int, present: Test) -> Cond:
        child = _PathRef(self.src, f"{self.path}[{index}]")
        return _and(child.type_.is_not(None), present(child))

    def lookup(self, part: str) -> _PathRef:
        """The value under a key of this object, or at an index of this array (a number
        part); its type is NULL when there is none."""
        if is_index(part) and int(part) <= _MAX_INDEX:
            by_index = _PathRef(self.src, f"{self.path}[{int(part)}]").json_value()
            by_key = self._child(part).json_value()
            return _PathRef(sa.case((self.is_type("array"), by_index), else_=by_key), "$")
        if _safe_key(part):
            return self._child(part)
        each = self._each()
        value = (
            sa.select(_EachRef(each).json_value())
            .select_from(each)
            .where(each.c.key == _bind(part))
            .correlate_except(each)
            .limit(1)
            .scalar_subquery()
        )
        return _PathRef(value, "$")

    def any_element(self, test: Test) -> Cond:
        each = self._each()
        return _exists(each, test(_EachRef(each)))

    def at_path(self, parts: Sequence[str]) -> _Ref:
        ref = self
        for part in parts:
            ref = ref.lookup(part)
        return ref

    def sort_keys(self) -> list[Expr]:
        is_array = self.is_type("array")
        first = _PathRef(self.src, f"{self.path}[0]")
        kind = sa.case((is_array, first.type_), else_=self.type_)
        atom = sa.case((is_array, first.atom), else_=self.atom)
        rank = sa.case(
            (_and(is_array, self.length_is(0)), 0),
            else_=sa.case(*((kind == _c(name), n) for name, n in _SQLITE_RANKS.items()), else_=1),
        )
        scalar = sa.case((kind.in_([_c(k) for k in _SCALAR_TYPES]), atom), else_=sa.null())
        return [rank, scalar]

    def json_value(self) -> Expr:
        return self.src.op("->", return_type=sa.Text)(_bind(self.path))


_SCALAR_TYPES = ("integer", "real", "text", "true", "false")


@dataclass(frozen=True)
class _EachRef(_SqliteRef):
    each: Any  # a json_each(...) alias; this is its current row

    @property
    def type_(self) -> Expr:
        return self.each.c.type  # type: ignore[no-any-return]

    @property
    def atom(self) -> Expr:
        return self.each.c.atom  # type: ignore[no-any-return]

    def as_path(self) -> _PathRef:
        container = self.each.c.type.in_([_c("object"), _c("array")])
        return _PathRef(sa.case((container, self.each.c.value), else_=sa.null()), "$")

    def json_value(self) -> Expr:
        kind, atom = self.each.c.type, self.atom
        return sa.case(
            (kind == _c("text"), sa.func.json_quote(atom)),
            (kind == _c("real"), sa.func.printf(_c("%!.17g"), atom)),
            (kind == _c("integer"), sa.cast(atom, sa.Text)),
            (kind.in_([_c("true"), _c("false"), _c("null")]), kind),
            else_=self.each.c.value,
        )
