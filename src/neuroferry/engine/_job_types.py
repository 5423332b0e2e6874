"""Job types: named, versioned presets of task settings.

Job types are generic over job kinds: a kind validates its presets with its
``check_preset`` and puts them under a request's own settings with its ``merge_preset``.
Every change is a new version row; nothing is overwritten. The current version is the
highest; deleting adds a version marked ``deleted``, so the history keeps what was there
and a later change revives the name.

The same versions keep other admin definitions (command analyses): each is a namespace
registered with :func:`register_definitions` under a ``kind:what`` key that no job kind
has; the functions here, given that key as ``kind``, store, list, compare, roll back and
delete them, and their messages name them by the namespace's noun.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Select,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from neuroferry.db import NAME, NAME_RULE, job_types, no_nul, transaction, utc
from neuroferry.engine._kinds import get_kind
from neuroferry.errors import ConfigError, DatabaseError, InvalidInput, NotFound

DEFAULT_JOB_TYPE = "default"
"""The job type a request names when it names none; without a preset of that name in
the database, such a request has no preset."""

_PUT_ATTEMPTS = 10

DefinitionCheck = Callable[[str, Mapping[str, Any]], dict[str, Any]]
"""``check(name, settings) -> normalised settings``: validates one definition (raising
InvalidInput naming the field)."""
_NAMESPACES: dict[str, tuple[str, DefinitionCheck]] = {}


def register_definitions(key: str, noun: str, check: DefinitionCheck) -> None:
    """Keep definitions other than job types (``noun``, e.g. ``command analysis``) as job
    types are kept, under ``key`` (``kind:what``): the job type functions given ``key`` as
    their kind keep them, ``check`` validating each one saved. Job type lists leave them
    out."""
    if ":" not in key or len(key) > 32:
        raise ConfigError(f"definitions key {key!r}: use kind:what, at most 32 characters")
    _NAMESPACES[key] = (noun, check)


def _noun(kind: str) -> str:
    return _NAMESPACES[kind][0] if kind in _NAMESPACES else "job type"


def _check_kind(kind: str) -> None:
    """A job kind or a registered namespace of definitions (else the kind's error)."""
    if kind not in _NAMESPACES:
        get_kind(kind)


def _now() -> datetime:
    return datetime.now(UTC)


def _canonical(value: Any) -> str:
    """The form two JSON values are compared in (``1`` and ``true`` differ here)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- job types --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobType:
    """One version of a job type."""

    kind: str
    name: str
    version: int
    settings: dict[str, Any]
    created: datetime
    created_by: str | None = None
    comment: str | None = None
    deleted: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (``created`` as ISO 8601)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "settings": self.settings,
            "created": self.created.isoformat(),
            "created_by": self.created_by,
            "comment": self.comment,
            "deleted": self.deleted,
        }


@dataclass(frozen=True)
class Change:
    """One difference between two versions' settings, at a dotted ``path``.

    ``change`` is ``added`` (``old`` is None), ``removed`` (``new`` is None) or ``changed``.
    """

    path: str
    old: Any
    new: Any
    change: Literal["added", "removed", "changed"] = "changed"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.change, "old": self.old, "new": self.new}


def check_job_type_name(name: str) -> str:
    """``name`` if it is a valid job type name; InvalidInput says the rule otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(f"job type name {name!r} is not allowed: use {NAME_RULE}")
    return name


def _row_to_job_type(row: RowMapping) -> JobType:
    return JobType(
        kind=row["kind"],
        name=row["name"],
        version=int(row["version"]),
        settings=dict(row["settings"] or {}),
        created=utc(row["created"]),
        created_by=row["created_by"],
        comment=row["comment"],
        deleted=bool(row["deleted"]),
    )


def _versions(kind: str, name: str) -> Select[Any]:
    """A select of the versions of job type ``name`` of ``kind``."""
    return select(job_types).where(job_types.c.kind == kind, job_types.c.name == name)


def _first(conn: Connection, query: Select[Any]) -> JobType | None:
    row = conn.execute(query).mappings().first()
    return None if row is None else _row_to_job_type(row)


def _current(conn: Connection, kind: str, name: str) -> JobType | None:
    return _first(conn, _versions(kind, name).order_by(job_types.c.version.desc()).limit(1))


def _latest_rows(kind: str | None) -> Select[Any]:
    """A select of the newest row of every job type (of ``kind``, if given)."""
    newest = select(
        job_types.c.kind, job_types.c.name, func.max(job_types.c.version).label("version")
    ).group_by(job_types.c.kind, job_types.c.name)
    if kind is not None:
        newest = newest.where(job_types.c.kind == kind)
    latest = newest.subquery()
    return (
        select(job_types)
        .join(
            latest,
            (job_types.c.kind == latest.c.kind)
            & (job_types.c.name == latest.c.name)
            & (job_types.c.version == latest.c.version),
        )
        .order_by(job_types.c.kind, job_types.c.name)
    )


def _known(conn: Connection, kind: str) -> list[str]:
    rows = conn.execute(_latest_rows(kind)).mappings().all()
    return [r["name"] for r in rows if not r["deleted"]]


def _known_text(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none yet"


def _no_such(conn: Connection, kind: str, name: str) -> NotFound:
    noun = _noun(kind)
    where = "" if kind in _NAMESPACES else f" of kind {kind!r}"
    return NotFound(f"no {noun} {name!r}{where}; known {noun}s: {_known_text(_known(conn, kind))}")


def _check_settings(kind: str, name: str, settings: Any) -> dict[str, Any]:
    if kind in _NAMESPACES:
        if not isinstance(settings, Mapping):
            raise InvalidInput(f"a {_noun(kind)} is an object, not {type(settings).__name__}")
        normalised = _NAMESPACES[kind][1](name, settings)
        if "\\u0000" in _canonical(normalised):
            raise InvalidInput(f"text in a {_noun(kind)} may not contain NUL characters")
        return normalised
    job_kind = get_kind(kind)
    if job_kind.check_preset is None:
        raise InvalidInput(f"job kind {kind!r} has no job types (its tasks take no presets)")
    if not isinstance(settings, Mapping):
        raise InvalidInput(
            f"settings: a job type's settings are an object of task name to task settings, "
            f"not {type(settings).__name__}"
        )
    normalised = job_kind.check_preset(settings)
    if "\\u0000" in _canonical(normalised):
        raise InvalidInput("settings: text in a job type may not contain NUL characters")
    return normalised


def _lock(conn: Connection, kind: str, name: str) -> None:
    """Serialise writers of one job type: on PostgreSQL a transaction-scoped advisory lock
    on the job type; on SQLite, take the database's write lock before reading."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"neuroferry.job_type:{kind}:{name}".encode()).digest()
        conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], signed=True))))
    else:
        # a write that touches no row: SQLite's write lock, held until the commit
        conn.execute(update(job_types).where(job_types.c.id == -1).values(deleted=False))


def _add_version(
    engine: Engine,
    kind: str,
    name: str,
    settings: dict[str, Any],
    user_name: str | None,
    comment: str | None,
    *,
    deleted: bool,
    skip_if_same: bool,
) -> JobType:
    """Insert the next version. Writers of one job type wait for each other (an advisory
    lock on PostgreSQL, the write lock on SQLite); a writer that still finds its version
    number taken tries again."""
    for attempt in range(_PUT_ATTEMPTS):
        try:
            with transaction(engine, keep=(IntegrityError,)) as conn:
                _lock(conn, kind, name)
                current = _current(conn, kind, name)
                if (
                    skip_if_same
                    and current is not None
                    and not current.deleted
                    and _canonical(current.settings) == _canonical(settings)
                ):
                    return current
                if deleted:  # a deletion keeps the settings of the version it ends
                    if current is None or current.deleted:
                        raise NotFound(f"{_noun(kind)} {name!r} ({kind}) is deleted already")
                    settings = current.settings
                new = JobType(
                    kind=kind,
                    name=name,
                    version=(current.version if current else 0) + 1,
                    settings=settings,
                    created=_now(),
                    created_by=user_name,
                    comment=comment,
                    deleted=deleted,
                )
                conn.execute(insert(job_types).values(**asdict(new)))
                return new
        except IntegrityError as exc:
            if attempt == _PUT_ATTEMPTS - 1:
                raise DatabaseError(
                    f"{_noun(kind)} {name!r} kept changing while it was saved; try again"
                ) from exc
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def put_job_type(
    engine: Engine,
    kind: str,
    name: str,
    settings: Mapping[str, Any],
    user_name: str | None,
    comment: str | None = None,
) -> JobType:
    """Save ``settings`` as the next version of job type ``name`` of ``kind`` (validated
    by the kind) and return it; settings identical to the current version's change
    nothing and return the current version. Saving a deleted job type revives it."""
    no_nul("comment", comment)
    if kind not in _NAMESPACES:  # a namespace's check says its own rule
        check_job_type_name(name)
    normalised = _check_settings(kind, name, settings)
    return _add_version(
        engine, kind, name, normalised, user_name, comment, deleted=False, skip_if_same=True
    )


def find_job_type(engine: Engine, kind: str, name: str) -> JobType | None:
    """The current version of job type ``name``, or None if there is none or it was
    deleted."""
    no_nul("name", name)
    with transaction(engine) as conn:
        current = _current(conn, kind, name)
    return None if current is None or current.deleted else current


def get_job_type(engine: Engine, kind: str, name: str, version: int | None = None) -> JobType:
    """The current version of job type ``name`` (or the given ``version``, deleted or not).

    NotFound names the job type and lists the known ones.
    """
    no_nul("name", name)
    _check_kind(kind)
    with transaction(engine) as conn:
        if version is None:
            found = _current(conn, kind, name)
            if found is not None and found.deleted:
                raise NotFound(
                    f"{_noun(kind)} {name!r} ({kind}) was deleted in version {found.version}; "
                    f"known {_noun(kind)}s: {_known_text(_known(conn, kind))}"
                )
        else:
            found = _first(conn, _versions(kind, name).where(job_types.c.version == version))
            latest = _current(conn, kind, name) if found is None else None
            if latest is not None:
                raise NotFound(
                    f"{_noun(kind)} {name!r} ({kind}) has no version {version}; "
                    f"its versions are 1 to {latest.version}"
                )
        if found is None:
            raise _no_such(conn, kind, name)
    return found


def list_job_types(
    engine: Engine, kind: str | None = None, *, include_deleted: bool = False
) -> list[JobType]:
    """The current version of every job type (of ``kind``, if given; or the definitions
    of a namespace), by kind and name."""
    if kind is not None:
        _check_kind(kind)
    with transaction(engine) as conn:
        rows = conn.execute(_latest_rows(kind)).mappings().all()
    found = [_row_to_job_type(r) for r in rows if kind is not None or ":" not in r["kind"]]
    return [t for t in found if include_deleted or not t.deleted]


def job_type_history(engine: Engine, kind: str, name: str) -> list[JobType]:
    """Every version of job type ``name``, oldest first (deletions included)."""
    no_nul("name", name)
    _check_kind(kind)
    with transaction(engine) as conn:
        rows = conn.execute(_versions(kind, name).order_by(job_types.c.version)).mappings().all()
        if not rows:
            raise _no_such(conn, kind, name)
    return [_row_to_job_type(r) for r in rows]


def diff_job_types(a_settings: Mapping[str, Any], b_settings: Mapping[str, Any]) -> list[Change]:
    """What changed from ``a_settings`` to ``b_settings``, one entry per dotted path whose
    value differs (objects are compared key by key, anything else as a whole)."""
    changes: list[Change] = []

    def walk(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str) -> None:
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}{key}"
            if key not in b:
                changes.append(Change(path, a[key], None, "removed"))
            elif key not in a:
                changes.append(Change(path, None, b[key], "added"))
            elif isinstance(a[key], Mapping) and isinstance(b[key], Mapping):
                walk(a[key], b[key], f"{path}.")
            elif _canonical(a[key]) != _canonical(b[key]):
                changes.append(Change(path, a[key], b[key], "changed"))

    walk(a_settings, b_settings, "")
    return changes


def diff_job_type_versions(
    engine: Engine,
    kind: str,
    name: str,
    from_version: int | None = None,
    to_version: int | None = None,
) -> tuple[int, int, list[Change]]:
    """``(from, to, changes)`` between two versions of job type ``name``: ``to`` defaults
    to the newest version, ``from`` to the one before it; version 0 is empty settings."""
    versions = {v.version: v for v in job_type_history(engine, kind, name)}
    new = to_version if to_version is not None else max(versions)
    old = from_version if from_version is not None else max(new - 1, 0)
    settings: dict[str, dict[str, Any]] = {}
    for field, number in (("to", new), ("from", old)):
        if number == 0:
            settings[field] = {}
        elif number in versions:
            settings[field] = versions[number].settings
        else:
            raise InvalidInput(
                f"{field}: {_noun(kind)} {name!r} has no version {number}; "
                f"its versions are 1 to {max(versions)} (0: empty settings)"
            )
    return old, new, diff_job_types(settings["from"], settings["to"])


def rollback_job_type(
    engine: Engine,
    kind: str,
    name: str,
    version: int,
    user_name: str | None,
    comment: str | None = None,
) -> JobType:
    """A new version of job type ``name`` with the settings of ``version`` (which revives
    a deleted job type); nothing changes if the current version has those settings."""
    no_nul("comment", comment)
    old = get_job_type(engine, kind, name, version)
    return _add_version(
        engine,
        kind,
        name,
        _check_settings(kind, name, old.settings),
        user_name,
        comment or f"rollback to version {version}",
        deleted=False,
        skip_if_same=True,
    )


def delete_job_type(
    engine: Engine,
    kind: str,
    name: str,
    user_name: str | None,
    comment: str | None = None,
) -> JobType:
    """Delete job type ``name``: a new version marked deleted (keeping the settings, so
    the history shows them and a rollback restores them). NotFound if there is no such
    job type or it is deleted already."""
    no_nul("comment", comment)
    get_job_type(engine, kind, name)  # NotFound naming the known job types
    return _add_version(
        engine,
        kind,
        name,
        {},
        user_name,
        comment or "deleted",
        deleted=True,
        skip_if_same=False,
    )


def _requested(job_type: str | None) -> str:
    """The job type a request names: ``default`` when it names none."""
    return (job_type or "").strip() or DEFAULT_JOB_TYPE


def resolve_job_type(engine: Engine, kind: str, job_type: str | None) -> JobType | None:
    """The preset a request names: the current version of ``job_type``; None for
    ``default`` (or no name) when no such preset is stored. Any other name that is not a
    job type of ``kind`` is InvalidInput naming ``job_type`` and the known ones."""
    no_nul("job_type", job_type)
    name = _requested(job_type)
    found = find_job_type(engine, kind, name)
    if found is not None or name == DEFAULT_JOB_TYPE:
        return found
    with transaction(engine) as conn:
        known = _known(conn, kind)
    raise InvalidInput(
        f"job_type: {name!r} is not a job type of {kind} jobs; known job types: "
        f"{_known_text([DEFAULT_JOB_TYPE, *(k for k in known if k != DEFAULT_JOB_TYPE)])}"
    )


def apply_job_type(
    engine: Engine, kind: str, spec: Mapping[str, Any]
) -> tuple[dict[str, Any], str, int | None]:
    """A request with its job type's preset applied: ``(merged spec, job type name,
    version)``; the version is None when no preset applies (``default``, or no
    ``job_type``, with no such job type stored).

    The kind's ``merge_preset`` puts the preset's task settings under the request's own
    (by default the request's ``tasks`` entries win, task by task; for uploads,
    per-modality entries modality by modality). A job type that does not exist is
    InvalidInput naming ``job_type`` and the known ones.
    """
    raw = spec.get("job_type")
    if raw is not None and not isinstance(raw, str):
        raise InvalidInput(f"job_type: {raw!r} is not a job type name")
    name = _requested(raw)
    job_kind = get_kind(kind)
    preset = resolve_job_type(engine, kind, name)
    if preset is None:
        return dict(spec), name, None
    return job_kind.merge_preset(preset.settings, spec), preset.name, preset.version
