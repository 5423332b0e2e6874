"""The assets a job writes: who owns them, and one unfinished job per asset.

A job's :class:`~neuroferry.engine.AssetClaim` keys become rows of ``asset_locks`` in the
transaction that creates (or retries) the job, and are deleted when the job ends; the
table's primary key makes a second unfinished job for an asset impossible, however the
requests are timed; a job's store URL also conflicts with an unfinished job writing a
folder or prefix inside it, or around it. An asset's catalog document belongs to the user
whose job registered it: another user's job naming it, or writing at, inside or around its
``location``, is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from neuroferry.catalog import Owner
from neuroferry.db import asset_locks, documents, jobs, users
from neuroferry.engine._context import TaskContext, TaskFailed
from neuroferry.engine._kinds import AssetClaim
from neuroferry.errors import Conflict, Forbidden, InvalidInput

MAX_KEY = 600
SUMMARY_KEY = "assets"
"""Where a job's summary keeps its claims, so that a retry can take them again."""


def lock_key(url: str) -> str:
    """The lock key of the store URL a job writes: without a trailing ``/``; a key longer
    than the column is replaced by its hash."""
    key = url.rstrip("/") or url
    if len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def catalog_key(name: str) -> str:
    """The lock key of a catalog document's name (store URLs always hold ``://``)."""
    return lock_key(f"catalog:{name}")


def claims_to_summary(claims: Iterable[AssetClaim]) -> list[dict[str, Any]]:
    """The claims as the job's summary keeps them."""
    return [
        {"key": c.key, "field": c.field, "catalog_name": c.catalog_name, "url": c.url}
        for c in claims
    ]


def ancestors(url: str) -> list[str]:
    """The store URLs that contain ``url``: each of its parent folders or prefixes, nearest
    last (``s3://b/x/y`` → ``s3://b``, ``s3://b/x``; ``file:///a/b`` → ``file:///a``)."""
    scheme, sep, rest = url.rstrip("/").partition("://")
    if not sep:
        return []
    parts = rest.split("/")
    found = []
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix.strip("/"):
            found.append(f"{scheme}://{prefix}")
    return found


def nested(a: str, b: str) -> bool:
    """Whether two normalised store URLs are the same, or one lies inside the other."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def claims_of(summary: Mapping[str, Any] | None) -> list[AssetClaim]:
    """The claims a job's summary kept (none for jobs submitted before there were any)."""
    kept = (summary or {}).get(SUMMARY_KEY) or []
    return [
        AssetClaim(
            str(c["key"]), str(c.get("field") or "asset"), c.get("catalog_name"), c.get("url")
        )
        for c in kept
        if isinstance(c, Mapping) and c.get("key")
    ]


def check_distinct(claims_by_job: Sequence[Sequence[AssetClaim]]) -> None:
    """Refuse a request whose jobs write the same asset twice (InvalidInput naming both)."""
    seen: dict[str, int] = {}
    for i, claims in enumerate(claims_by_job):
        for key, claim in _keys(claims).items():
            first = seen.setdefault(key, i)
            if first != i:
                raise InvalidInput(
                    f"job {i + 1}: {claim.field}: job {first + 1} of this request writes the "
                    f"same asset ({_shown(key)}); give each job its own asset"
                )
    located = [(i, c) for i, claims in enumerate(claims_by_job) for c in claims if c.location]
    for n, (i, claim) in enumerate(located):
        for j, other in located[:n]:
            if j != i and nested(str(claim.location), str(other.location)):
                raise InvalidInput(
                    f"job {i + 1}: {claim.field}: job {j + 1} of this request writes "
                    f"{other.location}, which holds or lies inside {claim.location}; give "
                    "each job its own folder or prefix"
                )


def _keys(claims: Iterable[AssetClaim]) -> dict[str, AssetClaim]:
    """The lock keys of claims: each one's store URL and catalog name."""
    keys: dict[str, AssetClaim] = {}
    for c in claims:
        keys[c.key] = c
        if c.catalog_name:
            keys[catalog_key(c.catalog_name)] = c
    return keys


def _shown(key: str) -> str:
    return key.removeprefix("catalog:")


def job_owner(conn: Connection, owner_id: int | None) -> Owner | None:
    """The job's owner as the catalog needs them; ``None`` for jobs without an owner."""
    if owner_id is None:
        return None
    role = conn.execute(select(users.c.role).where(users.c.id == owner_id)).scalar()
    return Owner(owner_id, role == "admin")


def check_owners(conn: Connection, claims: Sequence[AssetClaim], owner_id: int | None) -> None:
    """Refuse (:class:`Forbidden`, naming the field) a job of a user that would write an
    asset whose catalog document another user owns, or that has no owner (admins only):
    by the document's name, or by its ``location`` (the job's store URL is that location,
    lies inside it or holds it)."""
    owner = job_owner(conn, owner_id)
    if owner is None or owner.is_admin:
        return
    names = {c.catalog_name: c for c in claims if c.catalog_name}
    if names:
        _check_names(conn, names, owner.id)
    for claim in claims:
        _check_location(conn, claim, owner.id)


def _check_names(conn: Connection, names: Mapping[str, AssetClaim], owner_id: int) -> None:
    found = conn.execute(
        select(documents.c.name, documents.c.owner_id).where(documents.c.name.in_(list(names)))
    ).all()
    for name, holder in found:
        if holder != owner_id:
            field = names[name].field
            raise Forbidden(
                f"{field}: the asset {name!r} belongs to another user; only they or an admin "
                f"may overwrite it. Choose another {field}"
            )


def _check_location(conn: Connection, claim: AssetClaim, owner_id: int) -> None:
    url = claim.location
    if url is None:
        return
    around = [url, *ancestors(url)]
    spelled = around + [u + "/" for u in around]
    key, raw = documents.c.location_key, documents.c.location
    found = conn.execute(
        select(documents.c.name, func.coalesce(key, raw).label("location"))
        .where(
            or_(documents.c.owner_id.is_(None), documents.c.owner_id != owner_id),
            or_(
                # however the document's location is spelled: its canonical form
                key.in_(spelled),
                key.startswith(url + "/", autoescape=True),
                # a location that is not a store URL: as stored
                and_(
                    key.is_(None),
                    or_(raw.in_(spelled), raw.startswith(url + "/", autoescape=True)),
                ),
            ),
        )
        .limit(1)
    ).first()
    if found is None:
        return
    where = str(found.location).rstrip("/")
    how = "is" if where == url else ("lies inside" if url.startswith(where) else "holds")
    raise Forbidden(
        f"{claim.field}: this job would write {url}, which {how} the location of the asset "
        f"{found.name!r} of another user ({where}); only they or an admin may write there. "
        f"Choose another {claim.field}"
    )


def _serialise(conn: Connection) -> None:
    """Make the jobs that take asset locks wait for each other, so that each sees the
    locks of the others when it looks for nested ones: on PostgreSQL a transaction-scoped
    advisory lock; SQLite has one writer at a time (the job's row was written already)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(b"neuroferry.asset_locks").digest()
        conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], signed=True))))


def _nested_holder(
    conn: Connection, job_id: int, claims: Sequence[AssetClaim]
) -> tuple[AssetClaim, str, int] | None:
    """A lock of another unfinished job on a store URL inside or around one of ``claims``."""
    for claim in claims:
        url = claim.location
        if url is None:
            continue
        found = conn.execute(
            select(asset_locks.c.key, asset_locks.c.job_id)
            .where(
                asset_locks.c.job_id != job_id,
                or_(
                    asset_locks.c.key.in_(ancestors(url)),
                    asset_locks.c.key.startswith(url + "/", autoescape=True),
                ),
            )
            .limit(1)
        ).first()
        if found is not None:
            return claim, str(found.key), int(found.job_id)
    return None


def take_locks(conn: Connection, job_id: int, claims: Sequence[AssetClaim], now: datetime) -> None:
    """Insert the job's ``asset_locks`` rows (one per store URL and one per catalog name
    it writes); :class:`Conflict` naming the asset and the job that holds it if another
    unfinished job writes one of them."""
    wanted = _keys(claims)
    if not wanted:
        return
    _serialise(conn)
    nested_lock = _nested_holder(conn, job_id, claims)
    if nested_lock is not None:
        raise _busy(*nested_lock, conn)
    held = conn.execute(
        select(asset_locks.c.key, asset_locks.c.job_id).where(asset_locks.c.key.in_(list(wanted)))
    ).all()
    for key, holder in held:
        if holder != job_id:
            raise _busy(wanted[key], key, holder, conn)
    mine = {key for key, _ in held}
    rows = [{"key": k, "job_id": job_id, "created": now} for k in wanted if k not in mine]
    if not rows:
        return
    try:
        conn.execute(insert(asset_locks), rows)
    except IntegrityError as exc:  # another request took it since the look above
        with conn.engine.connect() as other:  # this transaction may be aborted (PostgreSQL)
            found = other.execute(
                select(asset_locks.c.key, asset_locks.c.job_id).where(
                    asset_locks.c.key.in_(list(wanted))
                )
            ).first()
            if found is None:
                raise Conflict(
                    f"{claims[0].field}: another job for the asset {claims[0].key} was "
                    "submitted at the same moment; wait for it to end, then submit again"
                ) from exc
            raise _busy(wanted[found.key], found.key, found.job_id, other) from exc


def release_locks(conn: Connection, job_id: int) -> None:
    """Give back the assets of a job that ended."""
    conn.execute(delete(asset_locks).where(asset_locks.c.job_id == job_id))


def _busy(claim: AssetClaim, key: str, holder: int, conn: Connection) -> Conflict:
    state = conn.execute(select(jobs.c.state).where(jobs.c.id == holder)).scalar()
    shown = _shown(key)
    what = (
        f"the same asset ({shown})"
        if key in _keys([claim])
        else f"{shown}, which holds or lies inside {claim.location}"
    )
    return Conflict(
        f"{claim.field}: job {holder} ({state or 'unfinished'}) is writing {what}; one "
        f"unfinished job per asset. Wait for job {holder} to end, or "
        "have it cancelled (by its owner or an admin), then submit again"
    )


def claim_assets(
    conn: Connection,
    job_id: int,
    claims: Sequence[AssetClaim],
    owner_id: int | None,
    now: datetime,
) -> None:
    """Check the owners of the job's assets and take their locks (see the module's doc)."""
    take_locks(conn, job_id, claims, now)
    check_owners(conn, claims, owner_id)


def check_asset_owners(engine: Engine, claims: Sequence[AssetClaim], owner_id: int | None) -> None:
    """At run time, before a job writes: :class:`Forbidden` if one of its assets now
    belongs to another user (see :func:`check_owners`)."""
    with engine.connect() as conn:
        check_owners(conn, claims, owner_id)


def recheck_asset_owner(ctx: TaskContext, claim: AssetClaim) -> None:
    """In a ``local`` task, before the job writes anything: :class:`TaskFailed` if the
    claimed asset now belongs to another user (registered since the job was submitted)."""
    try:
        check_asset_owners(ctx.db, [claim], ctx.owner_id)
    except Forbidden as exc:
        raise TaskFailed(f"{exc}; nothing was written") from exc
    ctx.log.info("%s is this job's owner's to write", claim.catalog_name or claim.url)


def owner_of_job(engine: Engine, owner_id: int | None) -> Owner | None:
    """A job's owner as the catalog needs them (``None``: the job has no owner)."""
    with engine.connect() as conn:
        return job_owner(conn, owner_id)
