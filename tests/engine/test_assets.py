"""Assets a job writes, on both databases: one unfinished job per asset (taken with the
job, given back when it ends, taken again by a retry) and other users' assets refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, select

from neuroferry.auth import create_user
from neuroferry.catalog import Catalog, Owner
from neuroferry.config import Settings, get_settings
from neuroferry.db import asset_locks, make_engine, upgrade
from neuroferry.engine import (
    AssetClaim,
    JobKind,
    NewJob,
    PreparedJob,
    TaskDef,
    cancel_job,
    get_job,
    lock_key,
    register_kind,
    retry_job,
    submit_job,
    submit_jobs,
)
from neuroferry.errors import Conflict, Forbidden, InvalidInput
from neuroferry.stores import Store, open_store


class AssetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asset: str
    destination: str = "file:///lake"


def _prepare(spec: BaseModel, settings: Settings) -> PreparedJob:
    assert isinstance(spec, AssetSpec)
    url = f"{spec.destination}/{spec.asset}"
    return PreparedJob(
        name=spec.asset, assets=(AssetClaim(lock_key(url), "asset", catalog_name=spec.asset),)
    )


KIND = JobKind(
    name="asset-toy",
    spec_model=AssetSpec,
    prepare=_prepare,
    tasks=(TaskDef("write", "ferry_toy_tasks:record", placement="local"),),
)
register_kind(KIND)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def users(engine: Engine) -> dict[str, int]:
    return {
        name: create_user(engine, name, role).id
        for name, role in (("admin", "admin"), ("alice", "user"), ("bob", "user"))
    }


@pytest.fixture
def log_store() -> Store:
    return open_store("memory://asset-locks-logs", settings=get_settings())


def submit(engine: Engine, owner: int | None, **spec: Any) -> int:
    return submit_job(engine, "asset-toy", spec, owner_id=owner, settings=get_settings())


def locks(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(asset_locks.c.key, asset_locks.c.job_id)).all())


def test_a_second_job_for_an_asset_is_refused_until_the_first_ends(
    engine: Engine, users: dict[str, int], log_store: Store
) -> None:
    alice, bob = users["alice"], users["bob"]
    first = submit(engine, alice, asset="a1")
    assert locks(engine) == {"file:///lake/a1": first, "catalog:a1": first}
    with pytest.raises(Conflict) as refused:
        submit(engine, bob, asset="a1")
    message = str(refused.value)
    assert message.startswith("asset: ") and f"job {first}" in message and "a1" in message
    assert "cancel" in message
    # the same catalog name in another store is the same asset too
    with pytest.raises(Conflict, match=f"job {first}"):
        submit(engine, alice, asset="a1", destination="s3://other")
    other = submit(engine, alice, asset="a2")  # another asset: no conflict

    cancel_job(engine, log_store, first, None)  # a cancelled job gives its asset back
    assert get_job(engine, first)["state"] == "cancelled"
    assert set(locks(engine).values()) == {other}
    second = submit(engine, alice, asset="a1")
    with pytest.raises(Conflict, match=f"job {second}"):
        retry_job(engine, log_store, first, None)  # a retry must take it again
    assert get_job(engine, first)["state"] == "cancelled"
    cancel_job(engine, log_store, second, None)
    assert retry_job(engine, log_store, first, None)["state"] != "cancelled"
    assert locks(engine)["catalog:a1"] == first


def test_one_request_may_not_write_an_asset_twice(engine: Engine) -> None:
    twice = [NewJob("asset-toy", {"asset": "x"}), NewJob("asset-toy", {"asset": "x"})]
    with pytest.raises(InvalidInput, match="job 2: asset: job 1 of this request"):
        submit_jobs(engine, twice, owner_id=None, settings=get_settings())
    assert locks(engine) == {}


def test_concurrent_submissions_make_one_job(engine: Engine, users: dict[str, int]) -> None:
    start = threading.Barrier(8)
    made: list[int] = []
    refused: list[str] = []

    def client() -> None:
        start.wait()
        try:
            made.append(submit(engine, users["bob"], asset="raced"))
        except Conflict as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(refused) == 7, (made, refused)
    assert all(f"job {made[0]}" in r or "same moment" in r for r in refused), refused


def test_an_asset_of_another_user_is_refused(engine: Engine, users: dict[str, int]) -> None:
    catalog = Catalog(engine)
    catalog.upsert({"name": "alices"}, Owner(users["alice"]))
    catalog.upsert({"name": "nobodys"})  # an admin's import: no owner
    with pytest.raises(Forbidden, match="asset: the asset 'alices' belongs to another user"):
        submit(engine, users["bob"], asset="alices")
    with pytest.raises(Forbidden, match="'nobodys'"):
        submit(engine, users["alice"], asset="nobodys")
    assert locks(engine) == {}  # nothing was taken
    mine = submit(engine, users["alice"], asset="alices")
    cancel_job(engine, open_store("memory://x", settings=get_settings()), mine, None)
    assert submit(engine, users["admin"], asset="alices")  # admins may
    assert submit(engine, users["admin"], asset="nobodys")


def test_a_job_created_before_its_kind_gained_a_task_carries_on(engine: Engine) -> None:
    """Upload jobs gained ``check_asset_owner``: a job submitted by an earlier version has
    no row for it, and runs on as if it had been skipped."""
    from neuroferry.engine import get_kind
    from neuroferry.engine._advance import now_utc
    from neuroferry.engine._claims import Outcome, claim_tasks, finish_task

    def kind(*tasks: TaskDef) -> JobKind:
        return JobKind(name="growing", spec_model=AssetSpec, prepare=_prepare, tasks=tasks)

    first = TaskDef("first", "ferry_toy_tasks:record", placement="local")
    register_kind(kind(first, TaskDef("last", "ferry_toy_tasks:record", upstream=("first",))))
    job_id = submit_job(engine, "growing", {"asset": "g"}, owner_id=None, settings=get_settings())
    register_kind(
        kind(
            first,
            TaskDef("gained", "ferry_toy_tasks:record", upstream=("first",), placement="local"),
            TaskDef("last", "ferry_toy_tasks:record", upstream=("gained",)),
        )
    )
    assert [t.name for t in get_kind("growing").tasks] == ["first", "gained", "last"]
    [claim] = claim_tasks(engine, "orchestrator-1", 10, now_utc())
    assert claim.instance.task == "first"
    finish_task(engine, claim, "orchestrator-1", Outcome("succeeded"), now_utc())
    [claim] = claim_tasks(engine, "orchestrator-1", 10, now_utc())
    assert (claim.instance.job_id, claim.instance.task) == (job_id, "last")
    finish_task(engine, claim, "orchestrator-1", Outcome("succeeded"), now_utc())
    assert get_job(engine, job_id)["state"] == "succeeded"
    assert locks(engine) == {}  # and its asset was given back


def test_nested_locations_are_one_asset_while_a_job_writes_them(
    engine: Engine, users: dict[str, int], log_store: Store
) -> None:
    alice, bob = users["alice"], users["bob"]
    outer = submit(engine, alice, asset="nest")
    for inside in ("nest/behavior", "nest/a/b"):  # a folder inside the one being written
        with pytest.raises(Conflict, match=f"job {outer}") as refused:
            submit(engine, bob, asset=inside)
        assert "file:///lake/nest" in str(refused.value)
    assert submit(engine, bob, asset="nesting")  # a sibling that only shares a prefix
    cancel_job(engine, log_store, outer, None)
    inner = submit(engine, bob, asset="nest/inner")
    with pytest.raises(Conflict, match=f"job {inner}"):  # a folder around one being written
        submit(engine, alice, asset="nest")
    with pytest.raises(Conflict, match="which holds or lies inside file:///lake;"):
        submit(engine, alice, asset="lake", destination="file://")
    with pytest.raises(Conflict, match=f"job {inner}"):  # and a retry of one
        retry_job(engine, log_store, outer, None)
    twice = [NewJob("asset-toy", {"asset": "p"}), NewJob("asset-toy", {"asset": "p/q"})]
    with pytest.raises(InvalidInput, match="job 2: asset: job 1 of this request"):
        submit_jobs(engine, twice, owner_id=None, settings=get_settings())


def test_concurrent_nested_submissions_make_one_job(engine: Engine, users: dict[str, int]) -> None:
    start = threading.Barrier(8)
    made: list[int] = []
    refused: list[str] = []

    def client(i: int) -> None:
        start.wait()
        try:
            made.append(submit(engine, users["bob"], asset="deep" + "/x" * i))
        except Conflict as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(refused) == 7, refused


def test_the_location_of_another_users_asset_is_refused(
    engine: Engine, users: dict[str, int], log_store: Store
) -> None:
    alices = {"name": "vol", "location": "file:///lake/vlab/vol"}
    Catalog(engine).upsert(alices, Owner(users["alice"]))
    cases = {
        "is": {"asset": "vlab/vol"},
        "lies inside": {"asset": "vlab/vol/behavior"},
        "holds": {"asset": "vlab"},
    }
    for how, spec in cases.items():
        with pytest.raises(Forbidden, match=f"asset: this job would write .* which {how}"):
            submit(engine, users["bob"], **spec)
    assert locks(engine) == {}
    assert submit(engine, users["bob"], asset="vlab2")  # beside it: allowed
    admins = submit(engine, users["admin"], asset="vlab")  # admins may
    cancel_job(engine, log_store, admins, None)
    assert submit(engine, users["alice"], asset="vlab/vol/more")  # her own


def test_another_users_asset_location_is_refused_however_it_is_spelled(
    engine: Engine, users: dict[str, int]
) -> None:
    spellings = ["/lake/a", "file://localhost/lake/b", "file:///lake//c/", "FILE:///lake/d%2Fe"]
    Catalog(engine).upsert_many(
        [{"name": f"vol{i}", "location": where} for i, where in enumerate(spellings)],
        Owner(users["alice"]),
    )
    for asset in ("a", "b/x", "c", "d/e", "d"):
        with pytest.raises(Forbidden, match=f"asset: this job would write file:///lake/{asset},"):
            submit(engine, users["bob"], asset=asset)
    assert locks(engine) == {}
    assert submit(engine, users["bob"], asset="ab")  # beside them: allowed
