"""The part of the SQL compilation of catalog filters and sorts that both dialects share:
boolean algebra, the :class:`_Ref` interface each dialect implements, the walk along a
path and the compilation of filter nodes.

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
"""

from __future__ import annotations

import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
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
    is_index,
)

Cond = ColumnElement[bool]
Expr = ColumnElement[Any]
Test = Callable[["_Ref"], Cond]

_MAX_INDEX = 2**31 - 1
_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


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
    def spread(self) -> tuple[Any, _Ref]:
        """A table-valued function of this value's elements when it is an array,
        otherwise of this value alone, and its row as a reference."""

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


def _equals(value: JSON) -> Test:
    return lambda ref: ref.eq(value)


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


def _path_rows(root: _Ref, parts: Sequence[str]) -> tuple[list[tuple[Any, Cond]], _Ref, Cond]:
    """The values at ``parts`` below the document ``root``, arrays of objects along the
    way traversed and an array at the end unwound (``distinct``'s meaning, for paths
    without number parts): table-valued functions to join one after the other, each with
    its ON condition, the value of each joined row, and the condition it must meet."""
    joins: list[tuple[Any, Cond]] = []
    holder, value = root, root
    for k, part in enumerate(parts):
        if k:
            rows, holder, holder_ok = value.holders(index=False)
            joins.append((rows, holder_ok))
        value = holder.lookup(part)
    rows, item = value.spread()
    joins.append((rows, TRUE))
    return joins, item, value.there()


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
