"""Compilation of catalog filters and sorts to SQL, for SQLite (JSON1) and PostgreSQL (JSONB).

Strategy, common to both dialects
---------------------------------
A field condition holds when some *candidate* (a value its path leads to, see
:class:`~neuroferry.catalog._filter.Field`) passes a test, or, for ``$ne`` and ``$nin``,
when every candidate does (``NOT EXISTS`` of the negated test). The path is followed over
*references* to JSON values, and the database decides, row by row, from each value's JSON
type which way applies:

* every value on the way is an object: key look-ups, inline (no sub-query);
* some value on the way is an array (an inline test finds out): one ``EXISTS`` over a
  chain of joined table-valued functions, one per part, which looks each part up in the
  value's elements that are objects (or takes the element at a number part). A holder
  without the key is a missing candidate, kept by LEFT JOINs when missing ones pass.

The test thus appears twice per field, whatever the path's length. Whether a test holds
for a missing candidate is known when compiling, so those branches fold into constants.
Negation is ``x IS NOT TRUE``, so that SQL's NULLs (a missing key) always read as "false"
and never leak through a ``NOT``. Type bracketing is explicit: each test checks the JSON
type before it compares, numbers with numbers, strings with strings. Every value and every
key from the filter is a bound parameter; the only SQL literals are the compiler's own
constants (type names, ``'{}'``).

PostgreSQL
----------
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

SQLite
------
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
import operator
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import re2
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, ColumnElement, False_, True_

from neuroferry.catalog._filter import (
    JSON,
    All,
    And,
    Compare,
    Condition,
    ElemMatch,
    ElemMatchValue,
    Equals,
    Exists,
    Field,
    In,
    MatchAll,
    Node,
    Nor,
    Not,
    Or,
    Regex,
    Size,
    Type,
    check_path,
    compiled_re2,
    is_index,
    postgres_regex,
    re2_regex,
)
from neuroferry.errors import ConfigError, QueryError

Cond = ColumnElement[bool]
Expr = ColumnElement[Any]
Test = Callable[["_Ref"], Cond]

_SQLITE = sqlite_dialect.dialect()
#: The name of the SQLite function behind ``$regex``.
SQLITE_REGEXP = "neuroferry_regexp"
_REGEX_GUARD: ContextVar[Cond | None] = ContextVar("_REGEX_GUARD", default=None)
_MAX_INDEX = 2**31 - 1
_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


# -- public API ---------------------------------------------------------------------------


def filter_clause(node: Node, body: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
    """The SQL condition that selects the rows whose JSON ``body`` matches the filter.

    :class:`QueryError` if the filter nests too deeply for SQLite's parser (which takes
    about ten sub-queries inside one another)."""
    clause = _node(node, _root(body, dialect), at_root=True)
    if dialect == "sqlite" and not isinstance(node, MatchAll):
        _check_sqlite_parses(clause)
    return clause


def sort_clauses(
    sort: list[tuple[str, int]], body: ColumnElement[Any], dialect: str
) -> list[ColumnElement[Any]]:
    """ORDER BY expressions for validated sort keys (see ``parse_sort`` for the order);
    append a unique column (the id) to make the order total."""
    root = _root(body, dialect)
    clauses: list[ColumnElement[Any]] = []
    for path, direction in sort:
        for key in root.at_path(_split(path)).sort_keys():
            clauses.append(key.asc() if direction == 1 else key.desc())
    return clauses


def path_value(path: str, body: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The JSON value at a dotted path, arrays not traversed (a numeric part indexes an
    array), NULL when missing: ``jsonb`` on PostgreSQL, JSON text on SQLite, typed so that
    results come back as Python values.

    Deterministic, so usable in an expression index when the path's keys are printable
    ASCII without ``"``, ``/`` or ``\\``: render it with ``literal_binds`` over an
    unqualified column (``sqlalchemy.column("body")``; SQLite refuses ``table.body`` in
    index expressions). Equality filters do not use such an index, since they must also
    look into arrays; on PostgreSQL they use a GIN index on the body instead (module
    docstring)."""
    value = _root(body, dialect).at_path(_split(path)).json_value()
    return sa.type_coerce(value, sa.JSON().with_variant(JSONB(), "postgresql"))


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


def _split(path: str) -> list[str]:
    return check_path(path, "the path").split(".")


def _root(body: ColumnElement[Any], dialect: str) -> _Ref:
    if dialect == "postgresql":
        return _PgRef(body)
    if dialect == "sqlite":
        return _PathRef(body, "$")
    raise ConfigError(f"the catalog runs on sqlite or postgresql, not {dialect!r}")


# -- boolean algebra with constant folding --------------------------------------------------

TRUE: Cond = sa.true()
FALSE: Cond = sa.false()


def _const(value: bool) -> Cond:
    return TRUE if value else FALSE


def _and(*conds: Cond) -> Cond:
    parts: list[Cond] = []
    for cond in conds:
        if isinstance(cond, False_):
            return FALSE
        if not isinstance(cond, True_):
            parts.append(cond)
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else sa.and_(*parts)


def _or(*conds: Cond) -> Cond:
    parts: list[Cond] = []
    for cond in conds:
        if isinstance(cond, True_):
            return TRUE
        if not isinstance(cond, False_):
            parts.append(cond)
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else sa.or_(*parts)


def _not(cond: Cond) -> Cond:
    if isinstance(cond, True_):
        return FALSE
    if isinstance(cond, False_):
        return TRUE
    if (
        isinstance(cond, BinaryExpression)
        and cond.operator is operators.is_not
        and isinstance(cond.right, True_)
    ):
        return cond.left  # type: ignore[no-any-return]  # NULL reads as false either way
    return cond.is_not(sa.true())


def _branch(has: Cond, has_not: Cond, present: Cond, missing: bool) -> Cond:
    """``present`` where a key is there, ``missing`` (a constant) where it is not."""
    if missing:
        return _or(has_not, present) if not isinstance(present, True_) else TRUE
    return _and(has, present)


def _c(text: str) -> Expr:
    """One of the compiler's own SQL string constants (never user input)."""
    assert re.fullmatch(r"[a-z{}.\[\]%!0-9-]*", text), text
    return sa.literal_column(f"'{text}'")


def _exists(table: Any, where: Cond, own: Sequence[Any] = ()) -> Cond:
    """EXISTS over a table-valued function (or a join of them: ``own``), correlated to
    everything else."""
    if isinstance(where, False_):
        return FALSE
    select: sa.Select[Any] = sa.select(sa.literal_column("1")).select_from(table).where(where)
    return select.correlate_except(*(own or [table])).exists()


# -- references to JSON values --------------------------------------------------------------


class _Ref(ABC):
    """A JSON value inside the current row, as SQL expressions of one dialect."""

    @abstractmethod
    def is_type(self, kind: str) -> Cond:
        """The value is a null, bool, number, string, array or object."""

    @abstractmethod
    def eq(self, value: JSON) -> Cond:
        """The value equals ``value`` (JSON equality)."""

    @abstractmethod
    def is_in(self, values: Sequence[JSON]) -> Cond:
        """The value equals one of ``values``."""

    @abstractmethod
    def compare(self, op: str, value: int | float | str) -> Cond:
        """The value is a number (or string, as ``value``) and compares so with it."""

    @abstractmethod
    def regex(self, pattern: str, options: str) -> Cond:
        """The value is a string with a match of the pattern."""

    @abstractmethod
    def length_is(self, length: int) -> Cond:
        """The value, an array, has this many elements."""

    @abstractmethod
    def number_kind(self, kind: str) -> Cond:
        """The value is a number of kind ``int``, ``long`` or ``double``."""

    @abstractmethod
    def with_key(self, key: str, present: Test, missing: bool) -> Cond:
        """For an object: ``present`` of the key's value, or ``missing`` if it has none."""

    @abstractmethod
    def walk(self, parts: Sequence[str], present: Test, missing: bool, is_object: bool) -> Cond:
        """Some candidate at ``parts`` below this value passes ``present`` (``missing`` for a
        missing candidate); ``is_object`` when this value is the document."""

    @abstractmethod
    def lookup(self, part: str) -> _Ref:
        """The value under a key of this object, or at an index of this array (a number
        part); :meth:`there` is false when there is none."""

    @abstractmethod
    def there(self) -> Cond:
        """The value exists (it is not a missing key)."""

    @abstractmethod
    def not_there(self) -> Cond:
        """The value does not exist."""

    @abstractmethod
    def holders(self, index: bool) -> tuple[Any, _Ref, Cond]:
        """The values a path part is looked up in, as a table-valued function: this
        value's elements when it is an array and the part is a key (``index`` false),
        otherwise this value alone; with the row as a reference and the condition that
        it can hold the part (an object, or an array for an index)."""

    @abstractmethod
    def any_element(self, test: Test) -> Cond:
        """For an array: some element passes ``test``."""

    @abstractmethod
    def at_path(self, parts: Sequence[str]) -> _Ref:
        """The value at a path, arrays not traversed (numeric parts index them)."""

    @abstractmethod
    def sort_keys(self) -> list[Expr]:
        """ORDER BY expressions in MongoDB's order (see ``parse_sort``)."""

    @abstractmethod
    def json_value(self) -> Expr:
        """The value as JSON (``jsonb`` or JSON text), NULL if missing."""

    def prefilter(self, parts: Sequence[str], values: Sequence[JSON]) -> Cond:
        """A condition implied by "some candidate at ``parts`` equals one of ``values``",
        which an index may answer; TRUE when there is none."""
        return TRUE


# PostgreSQL ---------------------------------------------------------------------------------

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


# SQLite -------------------------------------------------------------------------------------

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


def _equals(value: JSON) -> Test:
    return lambda ref: ref.eq(value)


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


def _object_walk(
    ref: _Ref, parts: Sequence[str], present: Test, missing: bool, check: bool
) -> Cond:
    """The candidate at ``parts`` when every value on the way is an object."""
    part, rest = parts[0], parts[1:]

    def step(child: _Ref) -> Cond:
        return _object_walk(child, rest, present, missing, True) if rest else present(child)

    found = ref.with_key(part, step, missing)
    return _and(ref.is_type("object"), found) if check else found


def _anywhere(
    ref: _Ref, parts: Sequence[str], present: Test, missing: bool, is_object: bool = False
) -> Cond:
    """Some candidate at ``parts`` below ``ref`` passes: inline key look-ups where every
    value on the way is an object, and the join chain where one of them is an array."""
    prefixes: list[_Ref] = [] if is_object else [ref]
    value = ref
    for part in parts[:-1]:
        value = value.lookup(part)
        prefixes.append(value)
    through_arrays = _or(*(prefix.is_type("array") for prefix in prefixes))
    objects = _object_walk(ref, parts, present, missing, check=not is_object)
    chain = _chain(ref, parts, present, missing, is_object)
    return _or(objects, _and(through_arrays, chain))


def _chain(root: _Ref, parts: Sequence[str], present: Test, missing: bool, is_object: bool) -> Cond:
    """Some candidate at ``parts`` below ``root`` passes, as one ``EXISTS`` over a chain of
    joined table-valued functions, one per part (but the document's first): the SQL grows
    with the path's length, not exponentially, and SQLite's parser, which allows only
    about ten nested sub-queries, meets no more nesting for a longer path.

    Each part is looked up in *holders* (:meth:`_Ref.holders`). A holder without the key
    is a missing candidate; when those pass, the joins are LEFT JOINs so that such a holder
    ends its chain with a row of its own.
    """
    joins: list[tuple[Any, Cond]] = []
    missing_here: list[Cond] = []
    holder, holder_ok = root, TRUE
    value: _Ref | None = None
    for k, part in enumerate(parts):
        if k or not is_object:
            rows, holder, holder_ok = (value or root).holders(index=is_index(part))
            joins.append((rows, holder_ok))
        value = holder.lookup(part)
        if missing:
            missing_here.append(_and(holder_ok, holder.is_type("object"), value.not_there()))
    assert value is not None
    found = _and(holder_ok, value.there(), present(value))
    if not joins:
        return _or(found, *missing_here)
    # the document's own missing key needs no join (and the joins have no rows then)
    outside = missing_here[:1] if is_object else []
    where = _or(found, *missing_here[len(outside) :])
    (first, first_ok), rest = joins[0], joins[1:]
    chain: Any = first
    for rows, on in rest:
        chain = chain.join(rows, on, isouter=missing)
    return _or(*outside, _exists(chain, _and(first_ok, where), [rows for rows, _ in joins]))


# -- filters --------------------------------------------------------------------------------


def _node(node: Node, root: _Ref, at_root: bool) -> Cond:
    if isinstance(node, MatchAll):
        return TRUE
    if isinstance(node, And):
        return _and(*(_node(child, root, at_root) for child in node.children))
    if isinstance(node, Or):
        return _or(*(_node(child, root, at_root) for child in node.children))
    if isinstance(node, Nor):
        return _not(_or(*(_node(child, root, at_root) for child in node.children)))
    source = _PathSource(root, node.parts, root_is_object=at_root)
    match = _field(node.conditions, source)
    if at_root:
        match = _and(_prefilter(node, root), match)
    return match


def _prefilter(field: Field, root: _Ref) -> Cond:
    """A pre-condition that an index can answer (see the module docstring)."""
    for cond in field.conditions:
        if isinstance(cond, Equals) and cond.value is not None:
            return root.prefilter(field.parts, [cond.value])
        if isinstance(cond, In) and not cond.negated and 0 < len(cond.values) <= 64:
            return root.prefilter(field.parts, cond.values)
    return TRUE


class _Source(ABC):
    """Where a field's candidates come from."""

    @abstractmethod
    def exists(self, present: Test, missing: bool) -> Cond:
        """Some candidate passes: ``present`` for a value, ``missing`` for a missing one."""

    def every(self, present: Test, missing: bool) -> Cond:
        """Every candidate passes (true when there are none)."""
        return _not(self.exists(lambda ref: _not(present(ref)), not missing))

    def nonempty(self) -> Cond:
        """There is a candidate (perhaps a missing one)."""
        return self.exists(lambda ref: TRUE, True)


@dataclass(frozen=True)
class _PathSource(_Source):
    """The candidates at a path from a root value (the document, or an array element)."""

    root: _Ref
    parts: tuple[str, ...]
    root_is_object: bool

    def exists(self, present: Test, missing: bool) -> Cond:
        return self.root.walk(self.parts, present, missing, self.root_is_object)


@dataclass(frozen=True)
class _OneSource(_Source):
    """A single candidate that is there: an array element under ``$elemMatch``."""

    ref: _Ref

    def exists(self, present: Test, missing: bool) -> Cond:
        return present(self.ref)


def _field(conditions: Sequence[Condition], source: _Source) -> Cond:
    """The conditions of one field, over its candidates (see ``Field``)."""
    alls = [c for c in conditions if isinstance(c, All)]
    rest = [c for c in conditions if not isinstance(c, All)]
    parts = [_all(c, source) for c in alls]
    if list(conditions) == [Exists(False)]:
        parts.append(_or(_not(source.nonempty()), source.exists(lambda ref: FALSE, True)))
    elif rest:
        parts.append(_each_candidate(rest, source))
    return _and(*parts)


def _each_candidate(conditions: Sequence[Condition], source: _Source) -> Cond:
    nots = [c for c in conditions if isinstance(c, Not)]
    ops = [c for c in conditions if not isinstance(c, Not)]
    negated = [c for c in ops if _is_negative(c)]
    positive = bool(nots) or len(negated) < len(ops)
    outside = _and(*(_not(_field(n.conditions, source)) for n in nots))

    def present(ref: _Ref) -> Cond:
        return _and(*(_present(c, ref) for c in ops))

    missing = all(_missing(c) for c in ops)
    if negated:
        needs_one = source.nonempty() if positive else TRUE
        return _and(outside, needs_one, source.every(present, missing))
    return _and(outside, source.exists(present, missing))


def _is_negative(cond: Condition) -> bool:
    return (isinstance(cond, Compare) and cond.op == "$ne") or (
        isinstance(cond, In) and cond.negated
    )


def _all(cond: All, source: _Source) -> Cond:
    if not cond.values and not cond.elem_matches:
        return FALSE
    parts = [_field([Equals(value)], source) for value in cond.values]
    parts += [_field([match], source) for match in cond.elem_matches]
    return _and(*parts)


def _missing(cond: Condition) -> bool:
    """Whether a condition holds for a missing candidate (known when compiling)."""
    if isinstance(cond, Equals):
        return cond.value is None
    if isinstance(cond, Compare):
        if cond.op in ("$eq", "$ne"):
            return (cond.value is None) == (cond.op == "$eq")
        return False
    if isinstance(cond, In):
        return any(v is None for v in cond.values) != cond.negated
    if isinstance(cond, Exists):
        return not cond.present
    return False


def _present(cond: Condition, ref: _Ref) -> Cond:
    """Whether a condition holds for a candidate that is there."""
    if isinstance(cond, Equals):
        return _or(ref.eq(cond.value), _elements(ref, _equals(cond.value)))
    if isinstance(cond, Compare):
        return _compare(cond, ref)
    if isinstance(cond, In):
        return _in(cond, ref)
    if isinstance(cond, Exists):
        return _const(cond.present)
    if isinstance(cond, Regex):
        return _or(
            ref.regex(cond.pattern, cond.options),
            _elements(ref, lambda item: item.regex(cond.pattern, cond.options)),
        )
    if isinstance(cond, Size):
        return _and(ref.is_type("array"), ref.length_is(cond.length))
    if isinstance(cond, Type):
        return _or(_typed(ref, cond), _elements(ref, lambda item: _typed(item, cond)))
    if isinstance(cond, ElemMatch):
        return _elements(ref, lambda item: _node(cond.query, item, at_root=False))
    if isinstance(cond, ElemMatchValue):
        return _elements(ref, lambda item: _field(cond.conditions, _OneSource(item)))
    raise AssertionError(f"unexpected condition {cond!r}")  # Not and All are whole-path


def _elements(ref: _Ref, test: Test) -> Cond:
    """The candidate is an array with an element that passes."""
    return _and(ref.is_type("array"), ref.any_element(test))


def _compare(cond: Compare, ref: _Ref) -> Cond:
    value = cond.value
    if cond.op in ("$eq", "$ne"):
        if isinstance(value, list):
            equal = ref.eq(value)
        else:
            equal = _or(ref.eq(value), _elements(ref, _equals(value)))
        return equal if cond.op == "$eq" else _not(equal)

    def one(item: _Ref) -> Cond:
        return _order(item, cond.op, value)

    return _or(one(ref), _elements(ref, one))


def _order(ref: _Ref, op: str, value: JSON) -> Cond:
    """``ref op value`` for a scalar value, within its type only."""
    if value is None:
        return ref.is_type("null") if op in ("$gte", "$lte") else FALSE
    if isinstance(value, bool):
        return _bool_order(ref, op, value)
    assert isinstance(value, int | float | str)
    return ref.compare(_OPS[op], value)


def _bool_order(ref: _Ref, op: str, value: bool) -> Cond:
    """false < true, and booleans compare with booleans only."""
    compare = _PY_OPS[op]
    matches = [b for b in (False, True) if compare(b, value)]
    if len(matches) == 2:
        return ref.is_type("bool")
    return _or(*(ref.eq(b) for b in matches))


def _in(cond: In, ref: _Ref) -> Cond:
    values = cond.values
    whole = ref.is_in(values)
    if any(isinstance(v, list) for v in values):
        whole = _and(_not(ref.is_type("array")), whole)
    found = _or(whole, _elements(ref, lambda item: item.is_in(values)))
    return _not(found) if cond.negated else found


def _typed(ref: _Ref, cond: Type) -> Cond:
    conds = []
    for name in cond.types:
        if name in ("int", "long", "double"):
            conds.append(ref.number_kind(name))
        else:
            conds.append(ref.is_type("number" if name == "number" else name))
    return _or(*conds)
