"""Drop-boxes and their groups: an analysis published at a store location, with a folder
per user group (``inputs/ configs/ submissions/ results/``). Admins publish them and add
groups; users see the drop-boxes of their groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.auth import User, get_user
from neuroferry.config import Settings
from neuroferry.db import (
    NAME,
    NAME_RULE,
    dropbox_bypass,
    dropbox_groups,
    dropbox_members,
    dropboxes,
    transaction,
    users,
)
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.grants import access_for
from neuroferry.pipelines.analysis import get_analysis
from neuroferry.stores import Store, open_store

FOLDERS = ("inputs", "configs", "submissions", "results")
"""The folders of each group, as the original's users know them."""
FOLDER_MARKER = ".keep"
"""The zero-byte object that makes a group's empty folder visible on an object store."""


@dataclass(frozen=True)
class Limits:
    """A group's limits; None: no limit."""

    max_running: int | None = None
    """Datasets of the group's submissions that run at once (more wait their turn)."""
    max_minutes: int | None = None
    """Minutes one dataset may run (a longer one's job is cancelled); also the most a
    config's ``__duration__`` may ask for."""
    max_per_day: int | None = None
    """Datasets the group may submit in 24 hours."""

    def check(self) -> Limits:
        for name, value in self.__dict__.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidInput(f"{name}: {value!r}; give a whole number of 1 or more")
        return self

    def as_dict(self) -> dict[str, int | None]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Group:
    """One user group of a drop-box: its folder is ``{name}/`` in the drop-box's store."""

    id: int
    name: str
    members: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    bypass: str | None = None
    """How the group's storage bypass reaches other buckets (the endpoint, and whether
    with the group's key or unsigned); None: off."""


@dataclass(frozen=True)
class Dropbox:
    """An analysis published at a store location; ``name`` is what job folders are named
    by (``job__{name}_{timestamp}``); its jobs are owned by ``owner_id`` (who published
    it)."""

    id: int
    name: str
    analysis: str
    store_url: str
    owner_id: int | None
    owner: str | None
    created: datetime
    groups: tuple[Group, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "analysis": self.analysis,
            "store": self.store_url,
            "published_by": self.owner,
            "created": self.created.isoformat(),
            "groups": [
                {
                    "name": g.name,
                    "members": list(g.members),
                    "limits": g.limits.as_dict(),
                    "bypass": g.bypass,
                }
                for g in self.groups
            ],
        }


def group_limits(box: Dropbox, group: str) -> Limits:
    """The limits of ``group`` of ``box`` (none for a group it does not have)."""
    return next((g.limits for g in box.groups if g.name == group), Limits())


def check_name(label: str, name: str) -> str:
    """``name`` if it is a valid drop-box or group name; :class:`InvalidInput` naming
    ``label`` and the rule otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(f"{label}: {name!r} is not a valid name; use {NAME_RULE}")
    return name


def open_dropbox_store(box: Dropbox, settings: Settings) -> Store:
    """The drop-box's store, opened with the service's credentials."""
    return open_store(box.store_url, create=True, settings=settings)


def make_folder(store: Store, prefix: str) -> None:
    """An empty folder ``prefix`` that listings show: a directory on a local store; on an
    object store, where folders exist only through their objects, a zero-byte
    ``prefix/.keep`` (so ``aws s3 ls`` shows ``PRE prefix/``)."""
    root = store.local_root
    if root is not None:
        (root / prefix).mkdir(parents=True, exist_ok=True)
    else:
        store.put(f"{prefix.rstrip('/')}/{FOLDER_MARKER}", b"")


def publish_dropbox(
    engine: Engine, settings: Settings, by: User, name: str, analysis: str, store_url: str
) -> Dropbox:
    """Publish ``analysis`` as the drop-box ``name`` at ``store_url`` (admins only): a
    bucket, a prefix or an existing local folder, not the service's own files."""
    by.require_admin("publish drop-boxes")
    check_name("name", name)
    get_analysis(analysis)  # InvalidInput naming the known ones
    url = access_for(settings, by.name, by.role).check_write_url("store", store_url)
    # a local folder must exist (StoreNotFound otherwise); an object store is first used
    # when a group is added
    open_store(url, settings=settings)
    try:
        with transaction(engine, keep=(IntegrityError,)) as conn:
            conn.execute(
                insert(dropboxes).values(
                    name=name,
                    analysis=analysis,
                    store_url=url,
                    created_by=by.id,
                    created=datetime.now(UTC),
                )
            )
    except IntegrityError as exc:
        raise InvalidInput(f"name: a drop-box named {name!r} already exists") from exc
    return get_dropbox(engine, name)


def add_group(
    engine: Engine,
    settings: Settings,
    by: User,
    group: str,
    dropbox: str,
    members: list[str] | tuple[str, ...] = (),
    limits: Limits | None = None,
) -> Dropbox:
    """Add the user group ``group`` to ``dropbox`` with its ``members`` (user names) and
    ``limits``, and make its four folders in the drop-box's store (admins only)."""
    by.require_admin("add drop-box groups")
    check_name("group", group)
    limits = (limits or Limits()).check()
    box = get_dropbox(engine, dropbox)
    people = [get_user(engine, member) for member in dict.fromkeys(members)]
    try:
        with transaction(engine, keep=(IntegrityError,)) as conn:
            group_id = conn.execute(
                insert(dropbox_groups)
                .values(
                    dropbox_id=box.id,
                    name=group,
                    created=datetime.now(UTC),
                    **limits.as_dict(),
                )
                .returning(dropbox_groups.c.id)
            ).scalar_one()
            for person in people:
                conn.execute(insert(dropbox_members).values(group_id=group_id, user_id=person.id))
    except IntegrityError as exc:
        raise InvalidInput(f"group: drop-box {dropbox!r} has a group {group!r} already") from exc
    store = open_dropbox_store(box, settings)
    for folder in FOLDERS:
        make_folder(store, f"{group}/{folder}")
    return get_dropbox(engine, dropbox)


def set_group_limits(engine: Engine, by: User, dropbox: str, group: str, limits: Limits) -> Dropbox:
    """Replace the limits of ``group`` of ``dropbox`` (admins only)."""
    by.require_admin("change drop-box groups")
    limits.check()
    box = get_dropbox(engine, dropbox)
    if group not in {g.name for g in box.groups}:
        raise NotFound(f"drop-box {dropbox!r} has no group {group!r}")
    with transaction(engine) as conn:
        conn.execute(
            update(dropbox_groups)
            .where(dropbox_groups.c.dropbox_id == box.id, dropbox_groups.c.name == group)
            .values(**limits.as_dict())
        )
    return get_dropbox(engine, dropbox)


def _load(engine: Engine, name: str | None = None) -> list[Dropbox]:
    with engine.connect() as conn:
        query = (
            select(dropboxes, users.c.name.label("owner"))
            .outerjoin(users, users.c.id == dropboxes.c.created_by)
            .order_by(dropboxes.c.name)
        )
        if name is not None:
            query = query.where(dropboxes.c.name == name)
        boxes = conn.execute(query).mappings().all()
        groups = (
            conn.execute(select(dropbox_groups).order_by(dropbox_groups.c.name)).mappings().all()
        )
        members = conn.execute(
            select(dropbox_members.c.group_id, users.c.name)
            .join(users, users.c.id == dropbox_members.c.user_id)
            .order_by(users.c.name)
        ).all()
        bypasses = {
            r.group_id: f"{r.endpoint or 'AWS'}, " + ("the group's key" if r.signed else "unsigned")
            for r in conn.execute(
                select(
                    dropbox_bypass.c.group_id,
                    dropbox_bypass.c.endpoint,
                    dropbox_bypass.c.secret.is_not(None).label("signed"),
                )
            )
        }
    by_group: dict[int, list[str]] = {}
    for group_id, member in members:
        by_group.setdefault(group_id, []).append(member)
    found = []
    for row in boxes:
        own = tuple(
            Group(
                g["id"],
                g["name"],
                tuple(by_group.get(g["id"], [])),
                Limits(g["max_running"], g["max_minutes"], g["max_per_day"]),
                bypasses.get(g["id"]),
            )
            for g in groups
            if g["dropbox_id"] == row["id"]
        )
        created = row["created"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        found.append(
            Dropbox(
                row["id"],
                row["name"],
                row["analysis"],
                row["store_url"],
                row["created_by"],
                row["owner"],
                created,
                own,
            )
        )
    return found


def get_dropbox(engine: Engine, name: str) -> Dropbox:
    """The drop-box ``name``; :class:`NotFound` if there is none."""
    found = _load(engine, name) if isinstance(name, str) and NAME.fullmatch(name) else []
    if not found:
        raise NotFound(f"no drop-box is named {name!r}; `ferry dropbox list` shows them")
    return found[0]


def list_dropboxes(engine: Engine, viewer: User | None = None) -> list[Dropbox]:
    """Every drop-box (``viewer`` None or an admin), else those of the viewer's groups,
    with only those groups."""
    boxes = _load(engine)
    if viewer is None or viewer.is_admin:
        return boxes
    mine = []
    for box in boxes:
        groups = tuple(g for g in box.groups if viewer.name in g.members)
        if groups:
            mine.append(Dropbox(**{**box.__dict__, "groups": groups}))
    return mine
