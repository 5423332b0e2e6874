"""MongoDB-style catalog filters and sorts, parsed and validated into a small AST.

A filter is checked completely before any SQL is built: every operator, every value and
every path. A mistake is a :class:`~neuroferry.errors.QueryError` that names the operator
and where it is (``$foo at subject.subject_id is not supported; supported: …``); no input
made of JSON values raises anything else.

The meaning of each node is MongoDB's, as implemented by ``mongomock`` (the reference the
tests compare against). Where mongomock is known to differ from a MongoDB server, the node's
docstring says which one is followed. Values are compared as JSON: objects compare without
regard to key order, ``1`` equals ``1.0``, ``true`` never equals ``1``.

Paths are dotted (``subject.subject_id``); a part made of ASCII digits indexes an array
(and is a key of an object). Over an array, any other part applies to each element that is
an object.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeAlias

import re2

from neuroferry.errors import QueryError

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"

#: Operators allowed at the top level of a filter (and inside ``$and``/``$or``/``$nor``).
LOGICAL_OPERATORS: tuple[str, ...] = ("$and", "$or", "$nor", "$comment")
#: Operators allowed in the object given for a field.
FIELD_OPERATORS: tuple[str, ...] = (
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$regex",
    "$options",
    "$elemMatch",
    "$size",
    "$all",
    "$type",
    "$not",
)
#: Every operator the catalog's filters understand.
SUPPORTED_OPERATORS: tuple[str, ...] = LOGICAL_OPERATORS + FIELD_OPERATORS

#: ``$type`` names (MongoDB's aliases) of the types a JSON document can hold.
TYPE_NAMES: tuple[str, ...] = (
    "double",
    "string",
    "object",
    "array",
    "bool",
    "null",
    "int",
    "long",
    "number",
)
#: MongoDB's numeric BSON type codes for the same types.
TYPE_CODES: Mapping[int, str] = {
    1: "double",
    2: "string",
    3: "object",
    4: "array",
    8: "bool",
    10: "null",
    16: "int",
    18: "long",
}
#: ``$options`` letters of ``$regex``: case-insensitive, multi-line, dot-all, verbose.
REGEX_OPTIONS = "imsx"
#: The longest ``$regex`` pattern accepted, in characters.
MAX_REGEX_LENGTH = 1_000

MAX_DEPTH = 64  # nesting of filters and of the JSON values in them (see FilterLimits too)
MAX_PATH_PARTS = 32
MAX_SORT_KEYS = 32
#: The largest bound on the SQL a filter compiles to that FilterLimits may set (each
#: nested $elemMatch can double it).
MAX_COMPLEXITY = 4096
MAX_INT = 2**63 - 1

CompareOp = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]
TypeName = Literal["double", "string", "object", "array", "bool", "null", "int", "long", "number"]
Where = str  # where in the filter something is, for error messages


#: Operators that take a list of values, bounded by ``FilterLimits.max_list``.
LIST_OPERATORS: tuple[str, ...] = ("$in", "$nin", "$all")


@dataclass(frozen=True)
class FilterLimits:
    """How large a filter may be; each is a setting (``catalog_max_filter_*``,
    ``catalog_max_in_values``) and a refusal names the setting and the limit.

    ``max_bytes`` bounds the filter written as compact JSON, ``max_nodes`` the JSON values
    in it (every object, array and scalar counts one), ``max_depth`` how deeply its objects
    and arrays nest (the filter object itself is level 1) and ``max_list`` the values of one
    ``$in``, ``$nin`` or ``$all``. ``max_complexity`` bounds the SQL the filter compiles to
    (about one unit per path part and condition; building it takes milliseconds per unit,
    in the request, before any statement timeout applies)."""

    max_bytes: int = 1_000_000
    max_nodes: int = 50_000
    max_depth: int = 32
    max_list: int = 10_000
    max_complexity: int = 512


DEFAULT_LIMITS = FilterLimits()


# -- the AST ------------------------------------------------------------------------------
#
# Nodes hold JSON values as given (lists and dicts), so they compare but do not hash.


@dataclass(frozen=True)
class MatchAll:
    """Matches every document: the filter ``{}`` or ``None``."""


@dataclass(frozen=True)
class And:
    """Every child matches (``$and``, and the keys of one filter object)."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child matches (``$or``)."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Nor:
    """No child matches (``$nor``)."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Field:
    """The conditions given for one path: ``{path: value}`` or ``{path: {operators}}``.

    The values found at the path are its *candidates*: one per branch of the path through
    arrays of objects; a branch that ends at a missing key counts as a missing candidate; a
    branch that meets a scalar or null before its end gives none (mongomock's rule: on a
    MongoDB server, ``{"a.b": null}`` matches ``{"a": 5}``; here, as in mongomock, it
    does not). The field matches when one candidate meets every condition at once. With
    ``$ne`` or ``$nin`` among the conditions, every candidate must meet them all instead
    (and there must be one unless only ``$ne``/``$nin`` are given), as in mongomock.
    ``$not`` and ``$all`` look at the path as a whole; ``{"$exists": false}`` alone also
    matches a path with no candidates.
    """

    path: str
    conditions: tuple[Condition, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        """The path's parts."""
        return tuple(self.path.split("."))


Node: TypeAlias = MatchAll | And | Or | Nor | Field


@dataclass(frozen=True)
class Equals:
    """``{path: value}``: a candidate equals the value, or is an array holding it."""

    value: JSON


@dataclass(frozen=True)
class Compare:
    """``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``.

    ``$eq`` with a value that is not an array is :class:`Equals`; with an array value, only
    an equal array matches (mongomock; a MongoDB server also matches an array holding the
    array). ``$ne`` is the negation of ``$eq``. Order comparisons take a number, string,
    boolean or null and compare only values of the same type (numbers with numbers,
    whatever their kind), a candidate array by its elements; ``$gte``/``$lte`` null match
    null values but not missing ones (mongomock; a server also matches missing ones).
    """

    op: CompareOp
    value: JSON


@dataclass(frozen=True)
class In:
    """``$in`` (or ``$nin`` when ``negated``): a candidate, or an element of a candidate
    array, equals one of the values; null among the values matches a missing candidate.
    A candidate array is compared element by element only (mongomock)."""

    values: tuple[JSON, ...]
    negated: bool = False


@dataclass(frozen=True)
class Exists:
    """``$exists``: the candidate is present (``True``) or missing (``False``)."""

    present: bool


@dataclass(frozen=True)
class Regex:
    """``$regex`` with ``$options``: a string candidate, or a string element of a candidate
    array, contains a match. The pattern is Python's ``re`` syntax (mongomock's, and
    PCRE's in everything common); constructs that cannot be run the same way on
    PostgreSQL are refused when parsing."""

    pattern: str
    options: str = ""


@dataclass(frozen=True)
class Size:
    """``$size``: the candidate is an array of this length (a server's meaning; mongomock
    also counts objects' keys and takes any other truthy value as length 1)."""

    length: int


@dataclass(frozen=True)
class Type:
    """``$type``: the candidate, or an element of a candidate array, has one of the types.

    ``int`` is an integer that fits in 32 bits, ``long`` a larger one, ``double`` a number
    written with a fraction or exponent, ``number`` any of them. On PostgreSQL a number
    written in exponent form without a fraction at or above 1e16 is stored as an integer.
    """

    types: tuple[TypeName, ...]


@dataclass(frozen=True)
class ElemMatch:
    """``$elemMatch`` with field conditions: an element of a candidate array matches the
    filter, the element taking the place of the document."""

    query: Node


@dataclass(frozen=True)
class ElemMatchValue:
    """``$elemMatch`` with operators only: an element of a candidate array meets them all.

    ``$not`` directly inside is taken as an operator on the element, as a server does
    (mongomock reads the object as a document then and matches any element)."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """``$not``: the path, taken as a whole, does not meet the conditions (mongomock: and
    it has at least one candidate, missing or not)."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class All:
    """``$all``: for each value, ``{path: value}`` matches (or each ``$elemMatch`` does);
    an empty list matches nothing. This is a server's meaning (an ``$and`` of equalities);
    mongomock flattens the candidates instead."""

    values: tuple[JSON, ...] = ()
    elem_matches: tuple[ElemMatch | ElemMatchValue, ...] = ()


Condition: TypeAlias = (
    Equals | Compare | In | Exists | Regex | Size | Type | ElemMatch | ElemMatchValue | Not | All
)


# -- parsing ------------------------------------------------------------------------------


def parse_filter(filter: Mapping[str, Any] | None, limits: FilterLimits = DEFAULT_LIMITS) -> Node:
    """The validated AST of a MongoDB-style filter; ``None`` or ``{}`` match everything.

    A filter larger than ``limits`` allow is a :class:`QueryError` naming the limit, found
    before anything else is done with it."""
    if filter is None:
        return MatchAll()
    check_size(filter, limits)
    node = _object(filter, "", 0)
    cost = _cost(node, root_is_object=True)
    most = min(limits.max_complexity, MAX_COMPLEXITY)
    if cost > most:
        raise QueryError(
            f"the filter is too complex to run ({cost} units, at most {most}; setting "
            "catalog_max_filter_complexity): each condition and path part counts, and "
            "$elemMatch and $not inside one another multiply; simplify it"
        )
    return node


def parse_sort(
    sort: Sequence[tuple[str, int]] | Mapping[str, int] | None,
) -> list[tuple[str, int]]:
    """Validated sort keys ``[(path, 1 | -1), …]`` from a mapping or a list of pairs.

    Values sort in MongoDB's type order (missing and null, numbers, strings, objects,
    arrays, booleans); an empty array sorts before everything and any other array by its
    first element (mongomock; a server uses the smallest or largest element). Paths are
    followed through objects (and array positions given as numbers) but not through
    arrays: a path that meets an array before its end sorts as missing. Objects sort
    after strings but not among themselves. Callers add a unique last key (the id) for a
    stable order.
    """
    if sort is None:
        return []
    if isinstance(sort, Mapping):
        items: list[Any] = list(sort.items())
    elif isinstance(sort, str | bytes) or not isinstance(sort, Sequence):
        raise QueryError(
            f"sort must be an object like {{'name': 1}} or a list of [path, 1 or -1] pairs, "
            f"got {_kind(sort)}"
        )
    else:
        items = list(sort)
    if len(items) > MAX_SORT_KEYS:
        raise QueryError(f"sort has {len(items)} keys; at most {MAX_SORT_KEYS} are allowed")
    keys: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
            raise QueryError(f"sort key {i} must be a pair [path, 1 or -1], got {_kind(item)}")
        path, direction = item
        where = f"sort key {i}"
        if isinstance(path, str) and path.startswith("$"):
            raise QueryError(f"{where}: {path!r} is not a field path; sort takes field paths")
        path = check_path(path, where)
        if isinstance(direction, bool) or direction not in (1, -1):
            raise QueryError(
                f"sort direction of {path} must be 1 (ascending) or -1 (descending), "
                f"got {direction!r}"
            )
        if any(path == seen for seen, _ in keys):
            raise QueryError(f"sort names {path} twice")
        keys.append((path, int(direction)))
    return keys


def is_index(part: str) -> bool:
    """Whether a path part indexes arrays (ASCII digits only; ``-1`` is a key)."""
    return part.isascii() and part.isdigit()


def _object(filter: Any, where: Where, depth: int) -> Node:
    """A filter object (the top level, an ``$and`` item, an ``$elemMatch`` document)."""
    if not isinstance(filter, Mapping):
        raise QueryError(
            f"{_at(where, 'the filter')} must be an object like {{'field': value}}, "
            f"got {_kind(filter)}"
        )
    _check_depth(depth, where)
    children: list[Node] = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise QueryError(f"field names must be strings, got {key!r} at {where or 'top'}")
        if key.startswith("$"):
            child = _logical(key, value, where, depth)
            if child is not None:
                children.append(child)
            continue
        path = check_path(key, _join(where, "field name"))
        children.append(Field(path, _conditions(value, _join(where, path), depth + 1)))
    if not children:
        return MatchAll()
    return children[0] if len(children) == 1 else And(tuple(children))


def _logical(op: str, value: Any, where: Where, depth: int) -> Node | None:
    if op == "$comment":
        if not isinstance(value, str):
            raise QueryError(f"$comment at {_top(where)} must be a string")
        return None
    if op not in ("$and", "$or", "$nor"):
        raise _unsupported(op, _top(where), LOGICAL_OPERATORS)
    if not isinstance(value, list) or not value:
        raise QueryError(
            f"{op} at {_top(where)} needs a non-empty array of filter objects, got {_kind(value)}"
        )
    children = tuple(
        _object(item, _join(where, f"{op}[{i}]"), depth + 1) for i, item in enumerate(value)
    )
    if op == "$and":
        return And(children)
    return Or(children) if op == "$or" else Nor(children)


def _conditions(value: Any, where: Where, depth: int) -> tuple[Condition, ...]:
    """The conditions of a field: an object of operators, or a value to equal."""
    if _is_operator_object(value):
        return _operators(value, where, depth, allowed=FIELD_OPERATORS)
    return (Equals(_json(value, where, depth)),)


def _is_operator_object(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and any(isinstance(k, str) and k.startswith("$") for k in value)
    )


def _operators(
    spec: Mapping[Any, Any], where: Where, depth: int, allowed: tuple[str, ...]
) -> tuple[Condition, ...]:
    """The conditions of an object of operators (``{"$gt": 1, "$lt": 5}``)."""
    _check_depth(depth, where)
    fields = [k for k in spec if not (isinstance(k, str) and k.startswith("$"))]
    if fields:
        raise QueryError(
            f"the object at {where} mixes operators ({', '.join(map(str, spec))}) with field "
            f"names ({', '.join(map(repr, fields))}); use either operators or a value to equal"
        )
    for op in spec:
        if op not in allowed:
            raise _unsupported(op, where, allowed)
    if "$options" in spec and "$regex" not in spec:
        raise QueryError(f"$options at {where} needs $regex next to it")
    conditions: list[Condition] = []
    for op, arg in spec.items():
        if op == "$options":
            continue
        conditions.append(_operator(op, arg, spec, where, depth))
    return tuple(conditions)


def _operator(op: str, arg: Any, spec: Mapping[str, Any], where: Where, depth: int) -> Condition:
    parser = _OPERATOR_PARSERS.get(op)
    if parser is not None:
        return parser(op, arg, where, depth)
    if op == "$regex":
        return _regex(arg, spec.get("$options", ""), where)
    # $eq, $ne, $gt, $gte, $lt, $lte
    return _compare(op, arg, where, depth)


def _compare(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if op in ("$eq", "$ne"):
        value = _json(arg, _join(where, op), depth)
        if op == "$eq" and not isinstance(value, list):
            return Equals(value)
        return Compare("$eq" if op == "$eq" else "$ne", value)
    if arg is not None and not isinstance(arg, bool | int | float | str):
        raise QueryError(
            f"{op} at {where} compares with a number, string, boolean or null, got {_kind(arg)}"
        )
    value = _json(arg, _join(where, op), depth)
    return Compare(op, value)  # type: ignore[arg-type]  # one of $gt, $gte, $lt, $lte


def _in(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if not isinstance(arg, list | tuple):
        raise QueryError(f"{op} at {where} needs an array of values, got {_kind(arg)}")
    values = []
    for i, item in enumerate(arg):
        if _is_operator_object(item):
            raise QueryError(
                f"{op} at {where}: item {i} is an object of operators "
                f"({', '.join(map(str, item))}); {op} takes plain values only"
            )
        values.append(_json(item, _join(where, f"{op}[{i}]"), depth))
    return In(tuple(values), negated=op == "$nin")


def _exists(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if not isinstance(arg, bool):
        raise QueryError(f"$exists at {where} needs true or false, got {_kind(arg)}")
    return Exists(arg)


def _size(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if isinstance(arg, float) and arg.is_integer():
        arg = int(arg)
    if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= MAX_INT:
        raise QueryError(f"$size at {where} needs a whole number of at least 0, got {arg!r}")
    return Size(arg)


def _type(op: str, arg: Any, where: Where, depth: int) -> Condition:
    items = arg if isinstance(arg, list) else [arg]
    if not items:
        raise QueryError(f"$type at {where} needs a type name or a non-empty list of them")
    names: list[TypeName] = []
    for item in items:
        name = _type_name(item)
        if name is None:
            raise QueryError(
                f"$type {item!r} at {where} is not supported; supported: "
                f"{', '.join(TYPE_NAMES)} (or their numbers "
                f"{', '.join(str(c) for c in TYPE_CODES)})"
            )
        names.append(name)
    return Type(tuple(dict.fromkeys(names)))


def _type_name(item: Any) -> TypeName | None:
    if isinstance(item, str) and item in TYPE_NAMES:
        return item  # type: ignore[return-value]  # checked against TYPE_NAMES
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if isinstance(item, int) and not isinstance(item, bool) and item in TYPE_CODES:
        return TYPE_CODES[item]  # type: ignore[return-value]
    return None


def _elem_match(op: str, arg: Any, where: Where, depth: int) -> Condition:
    here = _join(where, "$elemMatch")
    if not isinstance(arg, Mapping) or not arg:
        raise QueryError(f"$elemMatch at {where} needs a non-empty object, got {_kind(arg)}")
    keys = list(arg)
    document_keys = [
        k for k in keys if not (isinstance(k, str) and k.startswith("$")) or k in LOGICAL_OPERATORS
    ]
    if not document_keys:
        return ElemMatchValue(_operators(arg, here, depth + 1, allowed=FIELD_OPERATORS))
    stray = [k for k in keys if isinstance(k, str) and k in FIELD_OPERATORS]
    if stray:
        raise QueryError(
            f"$elemMatch at {where} mixes field conditions with operators "
            f"({', '.join(stray)}); give either conditions on the elements' fields, like "
            "{'name': 'x'}, or operators on the elements, like {'$gt': 1}"
        )
    return ElemMatch(_object(arg, here, depth + 1))


def _all(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if not isinstance(arg, list | tuple):
        raise QueryError(f"$all at {where} needs an array, got {_kind(arg)}")
    elem_matches: list[ElemMatch | ElemMatchValue] = []
    values: list[JSON] = []
    for i, item in enumerate(arg):
        here = _join(where, f"$all[{i}]")
        if _is_operator_object(item):
            if list(item) != ["$elemMatch"]:
                raise QueryError(
                    f"$all at {where}: item {i} may be a value or {{'$elemMatch': …}}, "
                    f"not an object of operators ({', '.join(map(str, item))})"
                )
            match = _elem_match("$elemMatch", item["$elemMatch"], here, depth + 1)
            assert isinstance(match, ElemMatch | ElemMatchValue)
            elem_matches.append(match)
        else:
            values.append(_json(item, here, depth))
    if elem_matches and values:
        raise QueryError(
            f"$all at {where} mixes values and $elemMatch objects; use one kind (or $and)"
        )
    return All(tuple(values), tuple(elem_matches))


def _not(op: str, arg: Any, where: Where, depth: int) -> Condition:
    if not _is_operator_object(arg):
        raise QueryError(
            f"$not at {where} needs an object of operators, like {{'$not': {{'$gt': 1}}}}, "
            f"got {_kind(arg)}"
        )
    return Not(_operators(arg, _join(where, "$not"), depth + 1, allowed=FIELD_OPERATORS))


_OPERATOR_PARSERS: dict[str, Callable[[str, Any, Where, int], Condition]] = {
    "$in": _in,
    "$nin": _in,
    "$exists": _exists,
    "$size": _size,
    "$type": _type,
    "$elemMatch": _elem_match,
    "$all": _all,
    "$not": _not,
}


def _regex(pattern: Any, options: Any, where: Where) -> Regex:
    if not isinstance(pattern, str):
        raise QueryError(f"$regex at {where} needs a string, got {_kind(pattern)}")
    if not isinstance(options, str) or any(c not in REGEX_OPTIONS for c in options):
        raise QueryError(
            f"$options at {where} must be a string of the letters {', '.join(REGEX_OPTIONS)}, "
            f"got {options!r}"
        )
    _check_string(pattern, f"$regex at {where}")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise QueryError(
            f"$regex at {where} is {len(pattern)} characters long; "
            f"the longest pattern accepted is {MAX_REGEX_LENGTH} characters"
        )
    options = "".join(sorted(set(options)))
    try:
        postgres_regex(pattern, options)
        re2_regex(pattern, options)
    except QueryError as exc:
        raise QueryError(f"$regex at {where}: {exc}") from None
    return Regex(pattern, options)


# -- values and paths ---------------------------------------------------------------------


def _json(value: Any, where: Where, depth: int) -> JSON:
    """A copy of a JSON value, checked to be one that both databases can store."""
    _check_depth(depth, where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise QueryError(f"the integer at {where} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"the number at {where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, str):
        _check_string(value, f"the string at {where}")
        return value
    if isinstance(value, list | tuple):
        return [_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        copy: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise QueryError(f"object keys must be strings, got {key!r} at {where}")
            _check_string(key, f"the key {key!r} at {where}")
            copy[key] = _json(item, f"{where}.{key}", depth + 1)
        return copy
    raise QueryError(f"the value at {where} is {_kind(value)}, which is not a JSON value")


def check_path(path: Any, where: Where) -> str:
    """A dotted field path, checked."""
    if not isinstance(path, str) or not path:
        raise QueryError(f"{where}: a field path must be a non-empty string, got {path!r}")
    _check_string(path, f"the field path {path!r}")
    parts = path.split(".")
    if any(not part for part in parts):
        raise QueryError(
            f"the field path {path!r} has an empty part; write parts separated by single dots"
        )
    if len(parts) > MAX_PATH_PARTS:
        raise QueryError(f"the field path {path!r} has more than {MAX_PATH_PARTS} parts")
    return path


def _check_string(text: str, what: str) -> None:
    if "\x00" in text:
        raise QueryError(f"{what} contains a NUL character, which the catalog cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _check_depth(depth: int, where: Where) -> None:
    if depth > MAX_DEPTH:
        raise QueryError(f"the filter is nested more than {MAX_DEPTH} levels deep at {where}")


# -- size -----------------------------------------------------------------------------------


def check_size(filter: Any, limits: FilterLimits = DEFAULT_LIMITS) -> None:
    """:class:`QueryError` if the filter is larger than ``limits`` allow.

    One pass without recursion, in time linear in the filter's size, that stops at the
    first list, nesting, byte or node count over its limit (so a huge filter costs no more
    than the limit)."""
    nodes = size = 0
    stack: list[tuple[Any, int, Where]] = [(filter, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise QueryError(
                f"the filter has more than {limits.max_nodes} values (objects, arrays and "
                f"scalars); at most {limits.max_nodes} are allowed "
                "(setting catalog_max_filter_nodes): split the query"
            )
        if depth > limits.max_depth and isinstance(value, Mapping | list | tuple):
            raise QueryError(
                f"the filter is nested more than {limits.max_depth} levels deep at "
                f"{where or 'the top level'}; at most {limits.max_depth} levels of objects "
                "and arrays are allowed (setting catalog_max_filter_depth)"
            )
        if isinstance(value, Mapping):
            size += 2 + max(len(value) - 1, 0)  # {} and commas
            for key, item in value.items():
                size += _text_size(key) + 1  # "key":
                if key in LIST_OPERATORS and isinstance(item, list | tuple):
                    _check_list(key, item, where, limits)
                stack.append((item, depth + 1, _join(where, str(key))))
        elif isinstance(value, list | tuple):
            size += 2 + max(len(value) - 1, 0)
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            size += _text_size(value)
        else:
            size += len(str(value))  # numbers, true/false/null: about as long as repr
        if size > limits.max_bytes:
            raise QueryError(
                f"the filter is larger than {limits.max_bytes} bytes as JSON; at most "
                f"{limits.max_bytes} bytes are allowed (setting catalog_max_filter_bytes): "
                "split the query"
            )


def _check_list(op: str, items: Sequence[Any], where: Where, limits: FilterLimits) -> None:
    if len(items) > limits.max_list:
        raise QueryError(
            f"{op} at {where or 'the top level'} has {len(items)} values; at most "
            f"{limits.max_list} are allowed (setting catalog_max_in_values): split the "
            "list over several queries"
        )


def _text_size(text: Any) -> int:
    """About the bytes of a string written in JSON (quotes included)."""
    return len(str(text).encode("utf-8", "surrogatepass")) + 2


# -- complexity ---------------------------------------------------------------------------


def _cost(node: Node, root_is_object: bool) -> int:
    """An estimate of the size of the SQL a node compiles to (see _sql.py)."""
    if isinstance(node, MatchAll):
        return 0
    if isinstance(node, And | Or | Nor):
        return sum(_cost(child, root_is_object) for child in node.children)
    # the test appears twice (objects inline, arrays by the join chain), the path once each
    return min(len(node.parts) + 2 * (1 + _conditions_cost(node.conditions)), MAX_COMPLEXITY + 1)


def _conditions_cost(conditions: Sequence[Condition]) -> int:
    total = 0
    for c in conditions:
        if isinstance(c, ElemMatch):
            total += _cost(c.query, root_is_object=False)
        elif isinstance(c, ElemMatchValue):
            total += _conditions_cost(c.conditions)
        elif isinstance(c, Not):  # the path again, on its own
            total += 2 * _conditions_cost(c.conditions)
        elif isinstance(c, All):
            total += 2 * (len(c.values) + _conditions_cost(c.elem_matches))
        total += 1
    return min(total, MAX_COMPLEXITY + 1)


# -- regular expressions ------------------------------------------------------------------
#
# Patterns are written in Python's syntax (which mongomock runs). They are parsed by Python's
# own regex parser (never run by it) and written again, construct by construct, in
# PostgreSQL's ARE syntax and in RE2's syntax (SQLite runs RE2 through a function: matching
# takes linear time, whatever the pattern), so that both databases find the same matches;
# whatever has no exact counterpart on both is refused, on both.

_sre: Any = importlib.import_module("re._parser")  # Python's regex parser (no type stubs)
_MAXREPEAT: int = importlib.import_module("re._constants").MAXREPEAT
_ARE_MAX_REPEAT = 255  # PostgreSQL's largest {m,n} bound
_MAX_EXPANSION = 10_000  # repeated repeats make PostgreSQL's automaton too large

_CATEGORIES = {"CATEGORY_DIGIT": "[:digit:]", "CATEGORY_SPACE": "[:space:]"}
_CATEGORIES["CATEGORY_WORD"] = "[:alnum:]_"
# Python's \d, \s and \w are Unicode-aware; RE2's are ASCII only: spell them out
_RE2_CATEGORIES = {
    "CATEGORY_DIGIT": r"\p{Nd}",
    "CATEGORY_SPACE": r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}",
    "CATEGORY_WORD": r"\p{L}\p{N}_",
}
_RE2_OPTIONS = re2.Options()
_NOT_CATEGORIES = {
    "CATEGORY_NOT_DIGIT": "CATEGORY_DIGIT",
    "CATEGORY_NOT_SPACE": "CATEGORY_SPACE",
    "CATEGORY_NOT_WORD": "CATEGORY_WORD",
}


class _Unsupported(QueryError):
    """A regex construct PostgreSQL or RE2 cannot run the same way."""


def regex_flags(options: str) -> int:
    """Python ``re`` flags for MongoDB ``$options`` letters."""
    flags = 0
    for letter, flag in (("i", re.I), ("m", re.M), ("s", re.S), ("x", re.X)):
        if letter in options:
            flags |= flag
    return flags


@lru_cache(maxsize=512)
def postgres_regex(pattern: str, options: str) -> tuple[str, bool]:
    """The pattern in PostgreSQL ARE syntax and whether to match case-insensitively."""
    parsed, flags = _parse_regex(pattern, options)
    return _items(parsed, flags, [_MAX_EXPANSION], False), bool(flags & re.I)


@lru_cache(maxsize=512)
def re2_regex(pattern: str, options: str) -> str:
    """The pattern in RE2 syntax, flags included (what SQLite runs); :class:`QueryError`
    if RE2 cannot compile it (too large a program, say)."""
    parsed, flags = _parse_regex(pattern, options)
    out = _items(parsed, flags, [_MAX_EXPANSION], True)
    if flags & re.I:
        out = "(?i)" + out
    try:
        compiled_re2(out)
    except re2.error as exc:
        raise _Unsupported(f"the regular expression cannot be run: {exc}") from None
    return out


@lru_cache(maxsize=512)
def compiled_re2(pattern: str) -> Any:
    """An RE2 pattern (from :func:`re2_regex`), compiled once."""
    return re2.compile(pattern, _RE2_OPTIONS)


def parse_regex(pattern: str, options: str) -> tuple[list[tuple[Any, Any]], int]:
    """A pattern parsed by Python's regex parser: its items and its flags."""
    return _parse_regex(pattern, options)


def _parse_regex(pattern: str, options: str) -> tuple[list[tuple[Any, Any]], int]:
    try:
        parsed = _sre.parse(pattern, regex_flags(options))
    except re.error as exc:
        raise QueryError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    except RecursionError:
        raise QueryError(f"{pattern!r} is nested too deeply") from None
    flags = int(parsed.state.flags)
    if flags & (re.A | re.L):
        raise _Unsupported("the (?a) and (?L) flags are not supported")
    return list(parsed), flags


def _items(items: list[tuple[Any, Any]], flags: int, budget: list[int], r2: bool) -> str:
    return "".join(_item(str(op), av, flags, budget, r2) for op, av in items)


def _item(op: str, av: Any, flags: int, budget: list[int], r2: bool) -> str:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unsupported("the regular expression is too large")
    if op == "LITERAL":
        return _literal(av, r2)
    if op == "NOT_LITERAL":
        return f"[^{_literal(av, r2)}]"
    if op == "ANY":
        if flags & re.S:
            return r"[\x{0}-\x{10ffff}]" if r2 else "."
        return r"[^\n]"
    if op == "IN":
        return _bracket(av, r2)
    if op in ("MAX_REPEAT", "MIN_REPEAT"):  # greediness never changes whether one matches
        return _repeat(av, flags, budget, r2)
    if op == "SUBPATTERN":
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Unsupported("flags inside a group, like (?i:…), are not supported")
        return f"(?:{_items(list(sub), flags, budget, r2)})"
    if op == "BRANCH":
        return "(?:" + "|".join(_items(list(alt), flags, budget, r2) for alt in av[1]) + ")"
    if op == "AT":
        return _anchor(str(av), flags, r2)
    names = {
        "ASSERT": "look-arounds like (?=…) or (?<=…)",
        "ASSERT_NOT": "look-arounds like (?!…) or (?<!…)",
        "GROUPREF": "back-references like \\1",
        "GROUPREF_EXISTS": "conditional groups",
        "ATOMIC_GROUP": "atomic groups",
        "POSSESSIVE_REPEAT": "possessive repeats like a*+",
    }
    raise _Unsupported(f"{names.get(op, op)} are not supported")


def _repeat(av: Any, flags: int, budget: list[int], r2: bool) -> str:
    low, high, sub = av
    sub = list(sub)
    if sub and _only_constraints(sub):
        raise _Unsupported("a repeated anchor or look-around is not supported")
    if low > _ARE_MAX_REPEAT or (high != _MAXREPEAT and high > _ARE_MAX_REPEAT):
        raise _Unsupported(f"repeat counts above {_ARE_MAX_REPEAT} are not supported")
    times = max(low, 1) if high == _MAXREPEAT else max(high, 1)
    inner_budget = [budget[0] // times]
    body = _items(sub, flags, inner_budget, r2)
    if high > 1 and _repeats(sub):
        raise _Unsupported(
            "a repeat inside a repeat, like (a+)+ or (a*b?)*, can take exponential time "
            "to match; write the pattern without repeating a repeat"
        )
    budget[0] = inner_budget[0] * times
    atomic = len(sub) == 1 and str(sub[0][0]) in (
        "LITERAL",
        "NOT_LITERAL",
        "ANY",
        "IN",
        "SUBPATTERN",
        "BRANCH",
    )
    if not atomic:
        body = f"(?:{body})"
    if high == _MAXREPEAT:
        suffix = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    elif (low, high) == (0, 1):
        suffix = "?"
    else:
        suffix = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    return body + suffix


def _repeats(items: list[tuple[Any, Any]]) -> bool:
    """Whether the items hold a repeat that can match more than once (``*``, ``+``,
    ``{2,}``…), at any depth."""
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if av[1] > 1 or _repeats(list(av[2])):
                return True
        elif name == "SUBPATTERN":
            if _repeats(list(av[3])):
                return True
        elif name == "BRANCH":
            if any(_repeats(list(alt)) for alt in av[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT") and _repeats(list(av[1])):
            return True
    return False


def _only_constraints(items: list[tuple[Any, Any]]) -> bool:
    """Whether the items match the empty string only, by anchors and look-arounds."""
    for op, av in items:
        name = str(op)
        if name == "SUBPATTERN":
            if not av[3] or not _only_constraints(list(av[3])):
                return False
        elif name == "BRANCH":
            if not all(alt and _only_constraints(list(alt)) for alt in av[1]):
                return False
        elif name not in ("AT", "ASSERT", "ASSERT_NOT"):
            return False
    return True


def _anchor(at: str, flags: int, r2: bool) -> str:
    multiline = bool(flags & re.M)
    if r2:
        # Python's $ also matches before a final newline: RE2 takes that newline (the same
        # matches for a $ at the end of the pattern, where the docs ask it to be)
        anchors = {
            "AT_BEGINNING": "(?m:^)" if multiline else r"\A",
            "AT_BEGINNING_STRING": r"\A",
            "AT_END": "(?m:$)" if multiline else r"(?:\n?\z)",
            "AT_END_STRING": r"\z",
            "AT_BOUNDARY": r"\b",
            "AT_NON_BOUNDARY": r"\B",
        }
    else:
        anchors = {
            "AT_BEGINNING": r"(?:^|(?<=\n))" if multiline else "^",
            "AT_BEGINNING_STRING": "^",
            "AT_END": r"(?=\n|$)" if multiline else r"(?=\n?$)",
            "AT_END_STRING": "$",
            "AT_BOUNDARY": r"\y",
            "AT_NON_BOUNDARY": r"\Y",
        }
    if at not in anchors:
        raise _Unsupported(f"the anchor {at} is not supported")
    return anchors[at]


def _bracket(items: list[tuple[Any, Any]], r2: bool) -> str:
    negate = bool(items) and str(items[0][0]) == "NEGATE"
    rest = items[1:] if negate else list(items)
    if len(rest) == 1 and str(rest[0][0]) == "CATEGORY" and str(rest[0][1]) in _NOT_CATEGORIES:
        # [\D] is [^\d]: flip the negation
        negate = not negate
        rest = [(rest[0][0], _NOT_CATEGORIES[str(rest[0][1])])]
    out = []
    for op, av in rest:
        name = str(op)
        if name == "LITERAL":
            out.append(_literal(av, r2))
        elif name == "RANGE":
            out.append(f"{_literal(av[0], r2)}-{_literal(av[1], r2)}")
        elif name == "CATEGORY" and str(av) in _CATEGORIES:
            out.append((_RE2_CATEGORIES if r2 else _CATEGORIES)[str(av)])
        else:
            raise _Unsupported("negated classes like \\D inside [...] are not supported")
    return "[" + ("^" if negate else "") + "".join(out) + "]"


def _literal(code: int, r2: bool) -> str:
    """One character, written so that ARE or RE2 takes it literally (inside brackets too)."""
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if r2:
        return f"\\x{{{code:x}}}"
    if code < 0x20 or code == 0x7F:
        return f"\\u{code:04x}"
    if char.isascii():
        return "\\" + char
    return char


# -- messages -----------------------------------------------------------------------------


def _unsupported(op: str, where: Where, allowed: Sequence[str]) -> QueryError:
    return QueryError(f"{op} at {where} is not supported; supported: {', '.join(allowed)}")


def _join(where: Where, name: str) -> Where:
    return f"{where}.{name}" if where else name


def _at(where: Where, default: str) -> str:
    return f"the filter at {where}" if where else default


def _top(where: Where) -> str:
    return where or "the top level"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"
