"""The modality and platform lists and the project names that uploads may give, kept in
the database and edited by admins; the lists start as the package's ``MODALITIES`` and
``PLATFORMS``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.db import NAME, NAME_RULE, meta, no_nul, projects, transaction, utc, vocab_terms
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.pipelines.upload._schema import PROJECT_FACTS, check_project_facts
from neuroferry.pipelines.upload._vocab import _LEGACY_MODALITIES, MODALITIES, PLATFORMS, _fold

VocabList = Literal["modality", "platform"]
VOCAB_LISTS: tuple[VocabList, ...] = ("modality", "platform")


def _now() -> datetime:
    return datetime.now(UTC)


# -- modalities and platforms -----------------------------------------------------------


@dataclass(frozen=True)
class VocabTerm:
    """One modality or platform: its abbreviation (used in keys and asset names), its
    display name and names that older metadata used for it."""

    abbreviation: str
    name: str
    legacy_names: tuple[str, ...] = ()
    created_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "abbreviation": self.abbreviation,
            "name": self.name,
            "legacy_names": list(self.legacy_names),
            "created_by": self.created_by,
        }


def _legacy_names(abbreviation: str) -> tuple[str, ...]:
    return tuple(old for old, new in _LEGACY_MODALITIES.items() if new == abbreviation)


_DEFAULTS: dict[VocabList, tuple[VocabTerm, ...]] = {
    "modality": tuple(
        VocabTerm(t.abbreviation, t.name, _legacy_names(t.abbreviation)) for t in MODALITIES
    ),
    "platform": tuple(VocabTerm(t.abbreviation, t.name) for t in PLATFORMS),
}
"""The terms each list starts with: the database is seeded with them the first time the
list is used."""


def _check_list(list_name: str) -> None:
    if list_name not in VOCAB_LISTS:
        raise InvalidInput(f"list {list_name!r} is not known; allowed: {', '.join(VOCAB_LISTS)}")


def _seed(engine: Engine, list_name: VocabList) -> None:
    """Fill the list with its defaults, once per database (a list emptied by admins stays
    empty)."""
    key = f"vocab_seeded.{list_name}"
    with transaction(engine) as conn:
        if conn.execute(select(meta.c.key).where(meta.c.key == key)).first() is not None:
            return
    now = _now()
    try:
        with transaction(engine, keep=(IntegrityError,)) as conn:
            conn.execute(insert(meta).values(key=key, value=now.isoformat(), updated=now))
            existing = set(
                conn.execute(
                    select(vocab_terms.c.abbreviation).where(vocab_terms.c.list == list_name)
                ).scalars()
            )
            rows = [
                {
                    "list": list_name,
                    "abbreviation": t.abbreviation,
                    "name": t.name,
                    "legacy_names": list(t.legacy_names),
                    "created": now,
                    "created_by": None,
                }
                for t in _DEFAULTS[list_name]
                if t.abbreviation not in existing
            ]
            if rows:
                conn.execute(insert(vocab_terms), rows)
    except IntegrityError:
        pass  # another process seeded the list at the same moment


def _row_to_term(row: RowMapping) -> VocabTerm:
    return VocabTerm(
        abbreviation=row["abbreviation"],
        name=row["name"],
        legacy_names=tuple(row["legacy_names"] or ()),
        created_by=row["created_by"],
    )


def list_terms(engine: Engine, list_name: VocabList) -> list[VocabTerm]:
    """The modalities (``modality``) or platforms (``platform``) uploads may name."""
    _check_list(list_name)
    _seed(engine, list_name)
    with transaction(engine) as conn:
        rows = (
            conn.execute(select(vocab_terms).where(vocab_terms.c.list == list_name))
            .mappings()
            .all()
        )
    return sorted((_row_to_term(r) for r in rows), key=lambda t: t.abbreviation.casefold())


def put_term(
    engine: Engine,
    list_name: VocabList,
    abbreviation: str,
    name: str,
    user_name: str | None,
    legacy_names: Sequence[str] = (),
) -> VocabTerm:
    """Add a modality or platform, or change the name and legacy names of one."""
    no_nul("name", name)
    for i, old in enumerate(legacy_names):
        no_nul(f"legacy_names.{i}", old)
    _check_list(list_name)
    if not isinstance(abbreviation, str) or not NAME.fullmatch(abbreviation):
        raise InvalidInput(f"abbreviation {abbreviation!r} is not allowed: use {NAME_RULE}")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 256:
        raise InvalidInput("name: give the term's display name (1 to 256 characters)")
    legacy: list[str] = []
    for i, old in enumerate(legacy_names):
        if not isinstance(old, str) or not old.strip() or len(old) > 256:
            raise InvalidInput(f"legacy_names.{i}: {old!r} is not a name (1 to 256 characters)")
        legacy.append(old.strip())
    _seed(engine, list_name)
    term = VocabTerm(abbreviation, name.strip(), tuple(legacy), user_name)
    with transaction(engine) as conn:
        others = [
            _row_to_term(r)
            for r in conn.execute(
                select(vocab_terms).where(
                    vocab_terms.c.list == list_name, vocab_terms.c.abbreviation != abbreviation
                )
            )
            .mappings()
            .all()
        ]
        for mine in (abbreviation, *legacy):
            clash = next(
                (
                    o
                    for o in others
                    if _fold(mine) in {_fold(n) for n in (o.abbreviation, *o.legacy_names)}
                ),
                None,
            )
            if clash is not None:
                raise InvalidInput(
                    f"{mine!r} would match the {list_name} {clash.abbreviation!r} "
                    "(case, spaces, '_' and '-' do not count); pick another"
                )
        values = {
            "name": term.name,
            "legacy_names": legacy,
            "created": _now(),
            "created_by": user_name,
        }
        updated = conn.execute(
            update(vocab_terms)
            .where(vocab_terms.c.list == list_name, vocab_terms.c.abbreviation == abbreviation)
            .values(**values)
        ).rowcount
        if not updated:
            conn.execute(
                insert(vocab_terms).values(list=list_name, abbreviation=abbreviation, **values)
            )
    return term


def delete_term(engine: Engine, list_name: VocabList, abbreviation: str) -> None:
    """Remove a modality or platform from its list; NotFound lists the known ones."""
    no_nul("abbreviation", abbreviation)
    _check_list(list_name)
    _seed(engine, list_name)
    with transaction(engine) as conn:
        gone = conn.execute(
            delete(vocab_terms).where(
                vocab_terms.c.list == list_name, vocab_terms.c.abbreviation == abbreviation
            )
        ).rowcount
    if not gone:
        known = ", ".join(t.abbreviation for t in list_terms(engine, list_name))
        raise NotFound(f"no {list_name} {abbreviation!r}; known: {known or 'none'}")


# -- projects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A project name uploads may give."""

    name: str
    created: datetime
    created_by: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    """``institution``, ``funding_source``, ``investigators``: written into the data
    descriptions of the project's assets."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created.isoformat(),
            "created_by": self.created_by,
            **{k: self.facts.get(k) for k in PROJECT_FACTS},
        }


def _project(row: RowMapping) -> Project:
    return Project(row["name"], utc(row["created"]), row["created_by"], dict(row["facts"] or {}))


def list_projects(engine: Engine) -> list[Project]:
    """The project names uploads may give, by name; none means any name is allowed."""
    with transaction(engine) as conn:
        rows = conn.execute(select(projects).order_by(projects.c.name)).mappings().all()
    return [_project(r) for r in rows]


def find_project(engine: Engine, name: str) -> Project | None:
    """The project record named ``name``, if there is one."""
    with transaction(engine) as conn:
        row = conn.execute(select(projects).where(projects.c.name == name)).mappings().first()
    return _project(row) if row is not None else None


def set_project_facts(engine: Engine, name: str, facts: dict[str, Any]) -> Project:
    """Set the facts of project ``name`` that are given (``institution``,
    ``funding_source``, ``investigators``; None clears one), checked with
    aind-data-schema's vocabularies; NotFound lists the known projects."""
    no_nul("name", name)
    checked = check_project_facts({k: v for k, v in facts.items() if v is not None})
    with transaction(engine) as conn:
        row = conn.execute(select(projects).where(projects.c.name == name)).mappings().first()
        if row is None:
            known = ", ".join(p.name for p in list_projects(engine))
            raise NotFound(f"no project {name!r}; known projects: {known or 'none'}")
        merged = dict(row["facts"] or {})
        for key in facts:
            merged.pop(key, None)
        merged.update(checked)
        conn.execute(update(projects).where(projects.c.name == name).values(facts=merged))
    found = find_project(engine, name)
    assert found is not None
    return found


def add_project(engine: Engine, name: str, user_name: str | None) -> Project:
    """Add a project name (once there is one, uploads must give a listed name)."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 256:
        raise InvalidInput("name: give the project's name (1 to 256 characters)")
    if any(ord(c) < 32 for c in name):
        raise InvalidInput(f"name: {name!r} contains control characters")
    project = Project(name.strip(), _now(), user_name)
    try:
        with transaction(engine, keep=(IntegrityError,)) as conn:
            conn.execute(
                insert(projects).values(
                    name=project.name, created=project.created, created_by=project.created_by
                )
            )
    except IntegrityError as exc:
        raise InvalidInput(f"name: project {project.name!r} exists already") from exc
    return project


def delete_project(engine: Engine, name: str) -> None:
    """Remove a project name; NotFound lists the known ones."""
    no_nul("name", name)
    with transaction(engine) as conn:
        gone = conn.execute(delete(projects).where(projects.c.name == name)).rowcount
    if not gone:
        known = ", ".join(p.name for p in list_projects(engine))
        raise NotFound(f"no project {name!r}; known projects: {known or 'none'}")


# -- what a submitted job may name --------------------------------------------------------


class AllowedTerms(NamedTuple):
    """The modalities, platforms and projects a job may name (no projects: any name)."""

    modalities: tuple[VocabTerm, ...]
    platforms: tuple[VocabTerm, ...]
    projects: tuple[str, ...] = ()

    def modality(self, value: str, where: str = "modalities") -> VocabTerm:
        """The modality ``value`` names (abbreviation, name or legacy name, in any case);
        InvalidInput names ``where`` and lists the allowed ones."""
        return _find(self.modalities, value, where, "modality")

    def platform(self, value: str, where: str = "platform") -> VocabTerm:
        """The platform ``value`` names; InvalidInput names ``where`` and the allowed ones."""
        return _find(self.platforms, value, where, "platform")

    def check_project(self, name: str, where: str = "project_name") -> str:
        """``name`` if projects are not restricted or it is listed; InvalidInput otherwise."""
        if self.projects and name not in self.projects:
            raise InvalidInput(
                f"{where}: {name!r} is not a known project; allowed: {', '.join(self.projects)}"
            )
        return name


def _find(terms: Sequence[VocabTerm], value: str, where: str, what: str) -> VocabTerm:
    folded = _fold(value)
    matches: tuple[Callable[[VocabTerm], bool], ...] = (
        lambda t: _fold(t.abbreviation) == folded,
        lambda t: _fold(t.name) == folded,
        lambda t: folded in {_fold(n) for n in t.legacy_names},
    )
    for match in matches:
        for term in terms:
            if match(term):
                return term
    allowed = ", ".join(t.abbreviation for t in terms) or "none"
    raise InvalidInput(f"{where}: {value!r} is not a known {what}; allowed: {allowed}")


def allowed_terms(engine: Engine) -> AllowedTerms:
    """The modalities, platforms and projects jobs may name now (for the submit step)."""
    return AllowedTerms(
        modalities=tuple(list_terms(engine, "modality")),
        platforms=tuple(list_terms(engine, "platform")),
        projects=tuple(p.name for p in list_projects(engine)),
    )
