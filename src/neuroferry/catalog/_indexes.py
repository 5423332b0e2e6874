"""Declared index paths, kept as a multikey table of typed values beside the documents.

For every declared path, each document's values there (arrays element by element, as in
a MongoDB multikey index) are rows of ``catalog_index_values``: a *kind* tag and the value
in a sortable column (``num`` for numbers and booleans, ``text`` for strings, cut to
:data:`TEXT_PREFIX` characters), so that B-trees on ``(path, kind, num)`` and
``(path, kind, text)`` answer equality, ranges and string prefixes, within one type as
MongoDB's type bracketing wants. Kinds: ``n`` number, ``s`` string, ``b`` boolean, ``z``
null, ``o`` object, ``a`` array (empty, or inside an array) and ``w`` (a path that goes
through an array inside an array, which ``$elemMatch`` may look into). The kind is upper
case when the document has more than one value at the path or its value is an array:
a range then need not hold for one single value (``[300, 500]`` matches
``{"$gte": 400, "$lt": 402}``), while a lower-case row alone must meet all of it.

A filter on such paths gets *pre-conditions*: conditions on the document id that every
matching document meets, which the database answers from the value table. The compiled
filter still decides each match, so results are the same with or without the index:
where an exact answer needs more than the index holds (ranges over arrays, a
case-insensitive regex, long strings), the index narrows and the filter decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    false,
    intersect,
    or_,
    select,
    union,
)

from neuroferry.catalog._filter import (
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
    Or,
    Regex,
    parse_regex,
)
from neuroferry.db import catalog_index_values as values_table
from neuroferry.errors import QueryError

#: Strings are indexed by their first this many characters (a B-tree entry has a bounded
#: size); longer ones are narrowed by that prefix and decided by the filter.
TEXT_PREFIX = 256

Cond = ColumnElement[bool]
Ids = Select[Any] | CompoundSelect[Any]  # a select of document ids


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


def _nested(value: Any, parts: Sequence[str]) -> bool:
    """Whether the path meets an array inside an array before its end."""
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
    """How a value is stored in the value table (kind in lower case)."""
    if isinstance(value, bool):
        return "b", float(value), None
    if isinstance(value, int | float):
        return "n", _float(value), None
    if isinstance(value, str):
        return "s", None, value[:TEXT_PREFIX]
    if value is None:
        return "z", None, None
    if isinstance(value, Mapping):
        return "o", None, None
    return "a", None, None  # an empty array, or an array inside an array


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def index_rows(doc_id: str, body: Mapping[str, Any], paths: Iterable[str]) -> list[dict[str, Any]]:
    """The value-table rows of one document for the declared paths."""
    rows = []
    for path in paths:
        parts = path.split(".")
        found = list(values_at(body, parts))
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


# -- pre-conditions -----------------------------------------------------------------------
#
# A *row test* is a condition on one row of the value table at a path (the path is added
# when it becomes a sub-query); None when the condition cannot be narrowed by the index.


def _kinds(kinds: str, multi: bool = True) -> Cond:
    names = list(kinds) + ([k.upper() for k in kinds] if multi else [])
    column = values_table.c.kind
    return column == names[0] if len(names) == 1 else column.in_(names)


def _scalar_rows(values: Sequence[Any]) -> Cond | None:
    """Rows equal to one of the values (or the element of an array holding it)."""
    tests: list[Cond] = []
    numbers = [_float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    bools = [float(v) for v in values if isinstance(v, bool)]
    strings = [v[:TEXT_PREFIX] for v in values if isinstance(v, str)]
    if numbers:
        tests.append(and_(_kinds("n"), values_table.c.num.in_(sorted(set(numbers)))))
    if bools:
        tests.append(and_(_kinds("b"), values_table.c.num.in_(sorted(set(bools)))))
    if strings:
        tests.append(and_(_kinds("s"), values_table.c.text.in_(sorted(set(strings)))))
    if any(isinstance(v, Mapping) for v in values):
        tests.append(_kinds("o"))
    if any(v is None or isinstance(v, list) for v in values):
        return None  # null also matches a missing value; an array, its own equal
    return or_(*tests) if tests else false()


def _order_bound(op: str, value: Any) -> tuple[str, Cond] | None:
    """The kind and the test on the value column of an order comparison, the bound kept
    inclusive: a number is indexed as a float and a string by its prefix."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        column, bound, kind = values_table.c.num, _float(value), "n"
        return kind, column >= bound if op in ("$gt", "$gte") else column <= bound
    if isinstance(value, str):
        column, text, kind = values_table.c.text, value[:TEXT_PREFIX], "s"
        return kind, column >= text if op in ("$gt", "$gte") else column <= text
    return None


def _order_rows(op: str, value: Any) -> Cond | None:
    """Rows that an order comparison may hold for."""
    found = _order_bound(op, value)
    return None if found is None else and_(_kinds(found[0]), found[1])


def _range(conds: Sequence[Compare]) -> Cond | None:
    """One lower-case row (a document's single value) meets every order comparison."""
    found = [_order_bound(c.op, c.value) for c in conds]
    bounds = [f for f in found if f is not None]
    if len(bounds) < len(found):
        return None
    kinds = {kind for kind, _ in bounds}
    if len(kinds) > 1:
        return false()  # a single value is not both a number and a string
    return and_(values_table.c.kind == kinds.pop(), *(test for _, test in bounds))


def regex_prefix(pattern: str, options: str) -> list[str] | None:
    """The prefixes one of which every string the pattern matches starts with (a
    pattern anchored at the start of the string, then literal characters), or None.

    Case-insensitively, each letter among the first few has its two cases (only ASCII
    letters whose cases have no other equivalent); at most 16 prefixes."""
    parsed, flags = parse_regex(pattern, options)
    if not parsed or str(parsed[0][0]) != "AT":
        return None
    anchor = str(parsed[0][1])
    multiline = "m" in options or bool(flags & 8)  # re.M
    if anchor != "AT_BEGINNING_STRING" and not (anchor == "AT_BEGINNING" and not multiline):
        return None
    ignore_case = bool(flags & 2)  # re.I
    prefixes = [""]
    for op, av in parsed[1:]:
        if str(op) != "LITERAL":
            break
        char = chr(av)
        if not ignore_case or not char.isalpha():
            if ignore_case and char.lower() != char.upper():
                break
            prefixes = [p + char for p in prefixes]
            continue
        if not char.isascii() or char.lower() in "iks" or len(prefixes) >= 16:
            break
        prefixes = [p + c for p in prefixes for c in (char.lower(), char.upper())]
    if prefixes == [""]:
        return None
    return sorted({p[:TEXT_PREFIX] for p in prefixes})


def _successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _regex_rows(cond: Regex) -> Cond | None:
    try:
        prefixes = regex_prefix(cond.pattern, cond.options)
    except QueryError:
        return None
    if prefixes is None:
        return None
    tests = []
    for prefix in prefixes:
        after = _successor(prefix)
        text = values_table.c.text
        test = text >= prefix if after is None else and_(text >= prefix, text < after)
        tests.append(and_(_kinds("s"), test))
    return or_(*tests)


def _row_tests(conditions: Sequence[Condition], each_order: bool = False) -> list[Cond] | None:
    """Row tests such that a document matching the conditions has, for each, a row at the
    path that passes it; None when nothing narrows. Several order comparisons are left
    to the caller (one range for a single value), unless ``each_order``."""
    tests: list[Cond] = []
    orders = [
        c for c in conditions if isinstance(c, Compare) and c.op in ("$gt", "$gte", "$lt", "$lte")
    ]
    for cond in conditions:
        test: Cond | None = None
        if isinstance(cond, Equals) or (isinstance(cond, Compare) and cond.op == "$eq"):
            test = _scalar_rows([cond.value])
        elif isinstance(cond, In) and not cond.negated and 0 < len(cond.values) <= 1000:
            test = _scalar_rows(list(cond.values))
        elif isinstance(cond, Compare) and cond in orders:
            if len(orders) > 1 and not each_order:
                continue  # below, as one range
            test = _order_rows(cond.op, cond.value)
        elif isinstance(cond, Regex):
            test = _regex_rows(cond)
        elif isinstance(cond, Exists) and cond.present:
            test = values_table.c.kind.is_not(None)
        elif isinstance(cond, All) and cond.values and not cond.elem_matches:
            for value in cond.values:
                if (one := _scalar_rows([value])) is not None:
                    tests.append(one)
            continue
        if test is not None:
            tests.append(test)
    return tests or None


def _rows(path: str, test: Cond) -> Select[Any]:
    """The ids of the documents with a row at ``path`` that passes ``test``: a sub-query
    of its own (never correlated, also inside a select from the value table)."""
    stmt = select(values_table.c.doc_id).where(values_table.c.path == path, test)
    return stmt.correlate(None)


def _rows_any(path: str, tests: Sequence[Cond]) -> Ids:
    """The ids of the documents with a row at ``path`` that passes one of the tests: a
    union, each part answered by a B-tree range (an OR would make the databases read
    every row of the path)."""
    return union(*(_rows(path, test) for test in tests))


def _field(field: Field, indexed: set[str]) -> list[Ids]:
    found: list[Ids] = []
    if field.path in indexed:
        for test in _row_tests(field.conditions) or []:
            found.append(_rows(field.path, test))
        orders = [
            c
            for c in field.conditions
            if isinstance(c, Compare) and c.op in ("$gt", "$gte", "$lt", "$lte")
        ]
        if len(orders) > 1 and (single := _range(orders)) is not None:
            # one sub-query: the single values in the range, and the documents with
            # several values with one on each side of every bound
            bounds = [b for b in (_order_bound(c.op, c.value) for c in orders) if b is not None]
            first, *rest = [and_(values_table.c.kind == k.upper(), test) for k, test in bounds]
            multi = _rows(field.path, first).where(
                *(values_table.c.doc_id.in_(_rows(field.path, test)) for test in rest)
            )
            found.append(union(_rows(field.path, single), multi))
    for cond in field.conditions:
        if isinstance(cond, ElemMatch):
            found += _elem_match(field.path, cond.query, indexed)
        elif isinstance(cond, ElemMatchValue) and field.path in indexed:
            # an element that is an array is looked into: rows of kind "a" may match
            for test in _row_tests(cond.conditions, each_order=True) or []:
                found.append(_rows_any(field.path, [test, _kinds("a")]))
    return found


def _elem_match(path: str, query: Node, indexed: set[str]) -> list[Ids]:
    """Pre-conditions of ``{path: {"$elemMatch": query}}``: a field of the query at
    ``path.field`` has a row that passes, or the path goes through nested arrays there
    (kind ``w``: the element may be an array, which the query looks into)."""
    fields = [query] if isinstance(query, Field) else []
    if isinstance(query, And):
        fields = [c for c in query.children if isinstance(c, Field)]
    found: list[Ids] = []
    for field in fields:
        inner = f"{path}.{field.path}"
        if inner not in indexed:
            continue
        for test in _row_tests(field.conditions, each_order=True) or []:
            found.append(_rows_any(inner, [test, _kinds("w")]))
    return found


def _node(node: Node, indexed: set[str]) -> list[Ids]:
    if isinstance(node, Field):
        return _field(node, indexed)
    if isinstance(node, And):
        return [c for child in node.children for c in _node(child, indexed)]
    if isinstance(node, Or):
        branches = [_node(child, indexed) for child in node.children]
        if branches and all(branches):
            return [union(*(_all_of(b) for b in branches))]
    return []


def _all_of(sets: Sequence[Ids]) -> Select[Any]:
    """The ids in every one of the sets, as one select."""
    if len(sets) == 1:
        return _plain(sets[0])
    both = intersect(*(_plain(s) for s in sets)).subquery()
    return select(both.c.doc_id)


def _plain(ids: Ids) -> Select[Any]:
    """A select usable inside a compound one (SQLite takes no parenthesized compound)."""
    if isinstance(ids, Select):
        return ids
    inner = ids.subquery()
    return select(inner.c.doc_id)


def prefilter_sets(node: Node, indexed: set[str]) -> list[Ids]:
    """Sets of document ids (selects from the value table) that every document matching
    the filter is in, for the fields on indexed paths of the filter's top level, of its
    ``$and`` and of ``$or`` whose every branch has one; ``$elemMatch`` of fields on
    indexed paths (``path.field``) too."""
    if isinstance(node, MatchAll) or not indexed:
        return []
    return _node(node, indexed)


def prefilters(node: Node, indexed: set[str], doc_id: ColumnElement[Any]) -> list[Any]:
    """:func:`prefilter_sets` as conditions on ``doc_id``."""
    return [doc_id.in_(ids) for ids in prefilter_sets(node, indexed)]


def sort_prefilter(path: str, kind: str, bound: float | str) -> Ids:
    """For a descending sort on ``path``: documents whose sort key is at least ``bound``
    (a number, or a string) have a row at least as large, or one of a later type."""
    if kind == "n":
        at_least = and_(_kinds("n"), values_table.c.num >= bound)
        later = "sboaw"
    else:
        at_least = and_(_kinds("s"), values_table.c.text >= str(bound)[:TEXT_PREFIX])
        later = "boaw"
    return _rows_any(path, [at_least, _kinds(later)])


def sort_candidates(path: str, kind: str, how_many: int) -> Select[Any]:
    """The ids of the documents with the largest values of a kind at ``path``."""
    column = values_table.c.num if kind == "n" else values_table.c.text
    return (
        select(values_table.c.doc_id)
        .where(values_table.c.path == path, _kinds(kind))
        .order_by(column.desc())
        .limit(how_many)
    )


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
