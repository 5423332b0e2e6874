"""Projections: which fields of the found documents to return, MongoDB's way."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neuroferry.errors import QueryError


@dataclass(frozen=True)
class Projection:
    """A validated projection: the dotted paths to keep (``include``) or to drop."""

    paths: tuple[tuple[str, ...], ...]
    include: bool
    keep_id: bool

    def apply(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The projected copy of ``doc``."""
        tree = _tree(self.paths)
        out = _keep(doc, tree) if self.include else _drop(doc, tree)
        if self.keep_id and "_id" in doc:
            out = {"_id": doc["_id"], **{k: v for k, v in out.items() if k != "_id"}}
        elif not self.keep_id:
            out.pop("_id", None)
        return out


def parse_projection(spec: Mapping[str, Any] | None) -> Projection | None:
    """Validate a projection such as ``{"subject.subject_id": 1, "_id": 0}``; None for all.

    Values are 1/0 or true/false; inclusion and exclusion cannot be mixed (except ``_id``),
    and no path may lie inside another.
    """
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise QueryError('projection must be an object such as {"name": 1}')
    keep_id = True
    modes: dict[str, bool] = {}
    for path, value in spec.items():
        if not isinstance(value, bool | int | float) or value != value:  # NaN is no flag
            raise QueryError(
                f"projection of {path!r} is {value!r}; allowed: 1 or true to include, "
                "0 or false to exclude"
            )
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise QueryError(f"projection path {path!r} is not a dotted field path")
        if path.startswith("$") or ".$" in path:
            raise QueryError(
                f"projection path {path!r}: positional and $ operators are not supported"
            )
        if path == "_id":
            keep_id = bool(value)
        else:
            modes[path] = bool(value)
    if len(set(modes.values())) > 1:
        raise QueryError(
            "projection mixes inclusion and exclusion; use only 1s or only 0s (except for _id)"
        )
    paths = sorted(modes)
    for a, b in itertools.pairwise(paths):
        if b.startswith(a + "."):
            raise QueryError(f"projection paths {a!r} and {b!r} collide: one lies inside the other")
    if not modes:  # only _id: {"_id": 1} keeps just it, {"_id": 0} all but it
        return Projection((), include=keep_id, keep_id=keep_id)
    return Projection(
        tuple(tuple(p.split(".")) for p in paths), next(iter(modes.values())), keep_id
    )


def _tree(paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for parts in paths:
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = True
    return tree


def _keep(doc: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key not in doc:
            continue
        value = doc[key]
        if sub is True:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = _keep(value, sub)
        elif isinstance(value, list):  # into each sub-document; other elements are dropped
            out[key] = [_keep(v, sub) for v in value if isinstance(v, Mapping)]
    return out


def _drop(doc: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        sub = tree.get(key)
        if sub is True:
            continue
        if sub is None:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = _drop(value, sub)
        elif isinstance(value, list):  # from each sub-document; other elements stay
            out[key] = [_drop(v, sub) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out
