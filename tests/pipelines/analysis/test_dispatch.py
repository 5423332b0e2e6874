"""Dispatch: catalog filter, asset CSV or store URLs x parameter sets -> dispatch models,
against a real catalog (SQLite and PostgreSQL) and real stores (folders; S3 once)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from pydantic import BaseModel

from neuroferry.auth import User, create_user
from neuroferry.catalog import Catalog
from neuroferry.config import Settings, get_settings
from neuroferry.errors import Forbidden, InvalidInput, StoreNotFound
from neuroferry.grants import Access, access_for, normalise_url
from neuroferry.pipelines.analysis import (
    AnalysisParameters,
    Dispatched,
    check_not_others,
    dispatch,
    read_asset_ids,
    read_dispatch_folder,
    write_dispatch_folder,
)
from neuroferry.stores import open_store

A = "behavior_774659_2025-06-07_14-31-15_processed_2025-06-08_03-49-49"
B = "behavior_774659_2025-06-09_10-02-44_processed_2025-06-10_01-12-03"
C = "ecephys_774659_2025-06-10_09-00-00"  # raw: no .nwb file
D = "behavior_774659_2025-06-11_08-00-00_processed_2025-06-12_00-00-00"  # bob's

FILES: dict[str, dict[str, bytes]] = {
    A: {
        f"nwb/{A}_block-1.nwb": b"block 1",
        f"nwb/{A}_block-2.nwb": b"block 2",
        "qc/report.txt": b"fine",
    },
    B: {f"nwb/{B}.nwb": b"only block", "metadata.json": b"{}"},
    C: {"ecephys/continuous.dat": b"\0" * 16},
    D: {f"nwb/{D}.nwb": b"bob's"},
}
PARAMETERS = AnalysisParameters(
    fixed_parameters={
        "analysis_name": "Unit Quality Filtering",
        "analysis_tag": "baseline_v1.0",
        "isi_violations_cutoff": 0.05,
    },
    distributed_parameters=[{"method": "isolation_distance"}, {"method": "amplitude_cutoff"}],
)
DERIVED = {"subject.subject_id": "774659", "data_description.data_level": "derived"}
SETS = PARAMETERS.distributed_parameters


@dataclass
class World:
    """Alice's assets A, B, C in her lake, bob's D in his; each granted their own lake."""

    catalog: Catalog
    users: dict[str, User]
    lakes: dict[str, Path]
    settings: Settings
    ids: dict[str, str]

    def access(self, who: str) -> Access:
        return access_for(self.settings, who, self.users[who].role)

    def url(self, name: str) -> str:
        lake = self.lakes["bob" if name == D else "alice"]
        return (lake / name).as_uri()

    def dispatch(self, who: str = "alice", **kwargs: Any) -> Dispatched:
        kwargs.setdefault("parameters", PARAMETERS)
        return dispatch(
            catalog=self.catalog,
            viewer=self.users[who],
            access=self.access(who),
            settings=self.settings,
            **kwargs,
        )


def document(name: str, location: str, level: str = "derived") -> dict[str, Any]:
    return {
        "_id": f"id-{name[:8]}-{name[-8:]}",
        "name": name,
        "location": location,
        "subject": {"subject_id": "774659"},
        "data_description": {"data_level": level},
    }


@pytest.fixture
def world(
    engine: sqlalchemy.Engine,
    tmp_path: Path,
    make_tree: Callable[[Path, dict[str, bytes]], Path],
) -> World:
    users = {
        name: create_user(engine, name, role, f"{name}@lab.example.org")
        for name, role in (("alice", "user"), ("bob", "user"), ("admin", "admin"))
    }
    lakes = {name: tmp_path / f"{name}-lake" for name in ("alice", "bob")}
    settings = get_settings(
        grants={name: {"store_prefixes": [lake.as_uri()]} for name, lake in lakes.items()}
    )
    catalog = Catalog(engine)
    w = World(catalog, users, lakes, settings, {})
    for name, files in FILES.items():
        make_tree(Path(w.url(name).removeprefix("file://")), files)
    owned = {"alice": [A, B, C], "bob": [D]}
    for who, names in owned.items():
        docs = [document(n, w.url(n), "raw" if n == C else "derived") for n in names]
        _report, ids = catalog.upsert_many(docs, owner=users[who])
        w.ids.update(zip(names, ids, strict=True))
    return w


def summary(models: list[Any]) -> list[tuple[str, int | None, str | None]]:
    """(asset, number of files, method) of each model."""
    return [
        (
            m.asset_name[0],
            None if m.file_location is None else len(m.file_location),
            None if m.distributed_parameters is None else m.distributed_parameters["method"],
        )
        for m in models
    ]


# -- a catalog filter ----------------------------------------------------------------------


def test_split_files_on_gives_one_model_per_file_and_set(world: World) -> None:
    models = world.dispatch(filter=DERIVED, file_extension=".nwb", split_files=True)
    assert summary(models) == [
        (A, 1, "isolation_distance"),
        (A, 1, "amplitude_cutoff"),
        (A, 1, "isolation_distance"),
        (A, 1, "amplitude_cutoff"),
        (B, 1, "isolation_distance"),
        (B, 1, "amplitude_cutoff"),
    ]
    first = models[0]
    assert first.s3_location == [world.url(A)]
    assert first.docdb_record_id == [world.ids[A]]
    assert first.file_location == [f"{world.url(A)}/nwb/{A}_block-1.nwb"]
    assert models[2].file_location == [f"{world.url(A)}/nwb/{A}_block-2.nwb"]
    assert first.distributed_parameters == SETS[0]
    # the filter as the original writes it
    assert first.query == json.dumps(DERIVED)
    assert first.query == (
        '{"subject.subject_id": "774659", "data_description.data_level": "derived"}'
    )
    assert first.group_metadata is None and first.analysis_code is None
    preview = models.preview(first=2)
    assert (preview.assets, preview.inputs, preview.parameter_sets, preview.models) == (2, 3, 2, 6)
    assert preview.first == models[:2]
    assert preview.already_computed is None
    assert preview.without_files == []


def test_split_files_off_gives_one_model_per_asset_and_set(world: World) -> None:
    models = world.dispatch(filter=DERIVED, file_extension="nwb", split_files=False)
    assert summary(models) == [
        (A, 2, "isolation_distance"),
        (A, 2, "amplitude_cutoff"),
        (B, 1, "isolation_distance"),
        (B, 1, "amplitude_cutoff"),
    ]
    assert models[0].file_location == [
        f"{world.url(A)}/nwb/{A}_block-1.nwb",
        f"{world.url(A)}/nwb/{A}_block-2.nwb",
    ]
    # as the original: this path keeps no query
    assert {m.query for m in models} == {None}


def test_without_an_extension_nothing_is_listed(world: World) -> None:
    for split in (True, False):
        models = world.dispatch(filter=DERIVED, split_files=split)
        assert summary(models) == [
            (A, None, "isolation_distance"),
            (A, None, "amplitude_cutoff"),
            (B, None, "isolation_distance"),
            (B, None, "amplitude_cutoff"),
        ]
        assert {m.query for m in models} == {json.dumps(DERIVED)}


def test_without_distributed_sets_one_model_per_input(world: World) -> None:
    fixed_only = AnalysisParameters(fixed_parameters=PARAMETERS.fixed_parameters)
    models = world.dispatch(filter=DERIVED, file_extension=".nwb", parameters=fixed_only)
    assert summary(models) == [(A, 1, None), (A, 1, None), (B, 1, None)]
    assert models.preview().parameter_sets == 1
    assert summary(world.dispatch(filter=DERIVED, parameters=None)) == [
        (A, None, None),
        (B, None, None),
    ]


def test_n_inputs_times_m_sets(world: World) -> None:
    sets = [{"method": f"m{i}"} for i in range(5)]
    models = world.dispatch(
        filter={"subject.subject_id": "774659"},
        parameters=AnalysisParameters(distributed_parameters=sets),
    )
    assert len(models) == 3 * 5
    assert [m.distributed_parameters for m in models[:5]] == sets
    assert [m.asset_name[0] for m in models[::5]] == [A, B, C]


def test_assets_without_a_matching_file_are_left_out_and_named(world: World) -> None:
    models = world.dispatch(filter={"subject.subject_id": "774659"}, file_extension=".nwb")
    assert {m.asset_name[0] for m in models} == {A, B}
    preview = models.preview()
    assert (preview.assets, preview.inputs, preview.models) == (3, 3, 6)
    assert preview.without_files == [C]


def test_extensions_match_files_and_folders_ignoring_case(
    world: World, make_tree: Callable[[Path, dict[str, bytes]], Path]
) -> None:
    make_tree(
        Path(world.url(C).removeprefix("file://")),
        {
            "Probe A.NWB": b"upper case",
            "probe.zarr/.zarray": b"{}",
            "probe.zarr/0/0": b"\0",
            "nested/probe.zarr/zarr.json": b"{}",
            "notzarr": b"",
        },
    )
    models = world.dispatch(
        filter={"name": C}, file_extension="NWB", parameters=None, split_files=False
    )
    assert models[0].file_location == [f"{world.url(C)}/Probe A.NWB"]
    zarrs = world.dispatch(filter={"name": C}, file_extension=".zarr", parameters=None)
    assert [m.file_location for m in zarrs] == [
        [f"{world.url(C)}/nested/probe.zarr"],
        [f"{world.url(C)}/probe.zarr"],
    ]
    for bad in ("*.nwb", "nwb/x", "."):
        with pytest.raises(InvalidInput, match="file_extension"):
            world.dispatch(filter={"name": C}, file_extension=bad)


def test_users_see_only_their_own_documents(world: World) -> None:
    everything = {"subject.subject_id": "774659"}
    assert {m.asset_name[0] for m in world.dispatch("alice", filter=everything)} == {A, B, C}
    assert {m.asset_name[0] for m in world.dispatch("bob", filter=everything)} == {D}
    assert len(world.dispatch("admin", filter=everything)) == 4 * len(SETS)


def test_a_location_outside_the_owners_grant_is_refused(world: World) -> None:
    sneaky = document("sneaky_774659_2025-06-07_00-00-00", world.url(D))
    world.catalog.upsert_many([sneaky], owner=world.users["alice"])
    with pytest.raises(Forbidden) as caught:
        world.dispatch(filter={"subject.subject_id": "774659"}, file_extension=".nwb")
    message = str(caught.value)
    assert "asset 'sneaky_774659_2025-06-07_00-00-00'" in message
    assert world.url(D) in message and "user 'alice'" in message
    # an admin reads anywhere
    assert world.dispatch("admin", filter={"name": sneaky["name"]}, parameters=None)


def test_a_missing_location_names_the_asset(world: World) -> None:
    gone = document("gone_774659_2025-06-07_00-00-00", world.url(A) + "-moved")
    world.catalog.upsert_many([gone], owner=world.users["alice"])
    with pytest.raises(StoreNotFound, match="asset 'gone_774659_2025-06-07_00-00-00'"):
        world.dispatch(filter={"name": gone["name"]}, file_extension=".nwb")


# -- an asset CSV --------------------------------------------------------------------------


def test_csv_of_ids_and_names_in_row_order(world: World) -> None:
    csv_text = f"subject,asset_id\n774659,{B}\n774659,\n774659,{world.ids[A]}\n774659,{B}\n"
    models = world.dispatch(asset_csv=csv_text, file_extension=".nwb", split_files=False)
    assert summary(models) == [
        (B, 1, "isolation_distance"),
        (B, 1, "amplitude_cutoff"),
        (A, 2, "isolation_distance"),
        (A, 2, "amplitude_cutoff"),
    ]
    assert {m.query for m in models} == {None}  # as the original, for CSV input


def test_csv_from_a_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "data_asset_input.csv"
    path.write_text(f"\ufeffasset_id\n{A}\n", encoding="utf-8")  # as a spreadsheet saves it
    assert summary(world.dispatch(asset_csv=path, parameters=None)) == [(A, None, None)]


def test_csv_errors_name_the_row_or_the_column(world: World) -> None:
    with pytest.raises(InvalidInput, match="no 'asset_id' column") as caught:
        world.dispatch(asset_csv=f"name,id\n{A},1\n")
    assert "'name', 'id'" in str(caught.value)
    with pytest.raises(InvalidInput, match="asset_id column is empty"):
        world.dispatch(asset_csv="asset_id\n\n , \n")
    # row 3 is unknown; row 4 is bob's, which alice may not see
    with pytest.raises(InvalidInput) as caught:
        world.dispatch(asset_csv=f"asset_id\n{A}\nno-such-asset\n{D}\n")
    message = str(caught.value)
    assert "row 3: 'no-such-asset' is neither the _id nor the name" in message
    assert f"row 4: '{D}'" in message and "row 2" not in message
    assert [(p["row"], p["field"]) for p in caught.value.problems] == [
        (3, "asset_id"),
        (4, "asset_id"),
    ]
    assert read_asset_ids(f"asset_id\n{D}\n") == [(2, D)]
    assert world.dispatch("bob", asset_csv=f"asset_id\n{D}\n", parameters=None)


# -- store URLs ----------------------------------------------------------------------------


def test_store_urls_are_named_by_their_document(
    world: World, make_tree: Callable[[Path, dict[str, bytes]], Path]
) -> None:
    loose = world.lakes["alice"] / "loose_folder"
    make_tree(loose, {"x.nwb": b"x"})
    models = world.dispatch(
        urls=[world.url(B), loose.as_uri() + "/", world.url(B)], file_extension=".nwb"
    )
    assert [(m.asset_name, m.docdb_record_id, m.query) for m in models[::2]] == [
        ([B], [world.ids[B]], None),
        (["loose_folder"], [""], None),
    ]
    assert models[2].s3_location == [loose.as_uri()]  # canonical: no trailing slash
    assert models[2].file_location == [f"{loose.as_uri()}/x.nwb"]
    with pytest.raises(Forbidden, match=f"asset '{D}'"):
        world.dispatch(urls=[world.url(D)])
    # without a catalog, a URL is named by its last part
    plain = dispatch(urls=[world.url(B)], access=world.access("alice"), settings=world.settings)
    assert (plain[0].asset_name, plain[0].docdb_record_id) == ([B], [""])


def test_exactly_one_source_of_data(world: World) -> None:
    with pytest.raises(InvalidInput, match=r"exactly one way.*none"):
        world.dispatch()
    with pytest.raises(InvalidInput, match=r"exactly one way.*filter, urls"):
        world.dispatch(filter=DERIVED, urls=[world.url(A)])


def test_parameter_sets_validate_against_the_analysis_model(world: World) -> None:
    class Quality(BaseModel):
        analysis_name: str
        analysis_tag: str
        isi_violations_cutoff: float
        method: str

    models = world.dispatch(filter=DERIVED, parameter_model=Quality, overrides={"x": 1})
    assert len(models) == 4
    broken = AnalysisParameters(
        fixed_parameters=PARAMETERS.fixed_parameters,
        distributed_parameters=[{"method": "isolation_distance"}, {"methods": "typo"}],
    )
    with pytest.raises(InvalidInput, match=r"parameter set 2 .*method: Field required"):
        world.dispatch(filter=DERIVED, parameters=broken, parameter_model=Quality)
    with pytest.raises(InvalidInput, match="isi_violations_cutoff"):
        world.dispatch(
            filter=DERIVED,
            parameter_model=Quality,
            overrides={"isi_violations_cutoff": "high"},
        )


# -- a real S3 server ----------------------------------------------------------------------


@pytest.mark.s3
def test_assets_in_s3_dispatched_and_written_to_s3(
    engine: sqlalchemy.Engine, s3_env: str, read_store: Callable[[str], dict[str, bytes]]
) -> None:
    alice = create_user(engine, "alice", "user")
    settings = get_settings(grants={"alice": {"store_prefixes": [f"{s3_env}/lake"]}})
    for name, files in FILES.items():
        store = open_store(f"{s3_env}/lake/{name}", settings=settings)
        for key, data in files.items():
            store.put(key, data)
    catalog = Catalog(engine)
    catalog.upsert_many([document(name, f"{s3_env}/lake/{name}") for name in (A, B)], owner=alice)
    access = access_for(settings, "alice", "user")
    models = dispatch(
        filter=DERIVED,
        parameters=PARAMETERS,
        file_extension=".nwb",
        catalog=catalog,
        viewer=alice,
        access=access,
        settings=settings,
    )
    assert [m.file_location for m in models[::2]] == [
        [f"{s3_env}/lake/{A}/nwb/{A}_block-1.nwb"],
        [f"{s3_env}/lake/{A}/nwb/{A}_block-2.nwb"],
        [f"{s3_env}/lake/{B}/nwb/{B}.nwb"],
    ]
    out = f"{s3_env}/dispatch"
    keys = write_dispatch_folder(models, out, num_parallel_workers=4, settings=settings)
    assert [k.split("/")[0] for k in keys] == ["0", "0", "1", "1", "2", "3"]
    written = read_store(out)
    assert sorted(written) == sorted(keys)
    assert read_dispatch_folder(out, settings=settings) == sorted(
        models, key=lambda m: keys[models.index(m)]
    )


def test_a_listing_is_bounded(world: World) -> None:
    from neuroferry.pipelines.analysis import Asset, list_files

    asset = Asset(world.url(A), A, "")
    with pytest.raises(InvalidInput, match=r"holds more than 2 objects.*analysis_max_listed"):
        list_files(asset, ".nwb", max_listed=2)
    assert len(list_files(asset, ".nwb", max_listed=3)) == 2
    small = world.settings.model_copy(update={"analysis_max_listed": 1})
    with pytest.raises(InvalidInput, match=rf"asset '{B}': .* holds more than 1 objects"):
        dispatch(
            urls=[world.url(B)],
            file_extension=".nwb",
            catalog=world.catalog,
            viewer=world.users["alice"],
            access=world.access("alice"),
            settings=small,
        )


def test_a_user_reads_nothing_of_another_users_data(world: World) -> None:
    inside = world.url(A) + "/nwb"
    world.catalog.upsert({"name": "bobs-in-alices", "location": inside}, world.users["bob"])
    lake = world.lakes["alice"].as_uri()
    for urls, how in (([lake], "holds"), ([inside], "is"), ([inside + "/x.nwb"], "lies inside")):
        with pytest.raises(Forbidden, match=f" {how} the data of another user"):
            world.dispatch(urls=urls, file_extension=".nwb")
    with pytest.raises(Forbidden, match=f"asset '{A}'"):
        world.dispatch(filter={"name": A})  # her own document, holding bob's
    assert world.dispatch(filter={"name": B}).inputs == 1  # the others are hers to read
    assert world.dispatch("admin", urls=[lake], file_extension=".nwb").inputs == 3


@pytest.mark.parametrize(
    ("stored", "wanted"),
    [
        ("/data/alice/plain", "/data/alice/plain"),
        ("file://localhost/data/alice/lh", "file:///data/alice/lh"),
        ("s3://bucket/alice//dbl", "s3://bucket/alice/dbl"),
        ("S3://Bucket/alice/upper", "s3://bucket/alice/upper"),
        ("s3://bucket/alice/pct%20x", "s3://bucket/alice/pct x"),
        ("s3://bucket/alice/ok/", "s3://bucket/alice/ok"),
    ],
)
def test_another_users_data_is_refused_however_its_location_is_spelled(
    catalog: Catalog, stored: str, wanted: str
) -> None:
    alice, bob = (create_user(catalog.engine, name) for name in ("alice", "bob"))
    catalog.upsert({"name": "hers", "location": stored}, alice)
    url = normalise_url("results", wanted)
    parent = url.rsplit("/", 1)[0]
    for where, how in ((url, "is"), (url + "/out", "lies inside"), (parent, "holds")):
        with pytest.raises(Forbidden, match=f"^results: .* {how} the data of another user"):
            check_not_others([("results", where)], catalog, bob)
        check_not_others([("results", where)], catalog, alice)  # her own
    check_not_others([("results", url + "2")], catalog, bob)  # beside it


def test_a_location_that_is_not_a_store_url_is_compared_as_stored(catalog: Catalog) -> None:
    alice, bob = (create_user(catalog.engine, name) for name in ("alice", "bob"))
    catalog.upsert({"name": "odd", "location": "s3://lake/../odd/"}, alice)
    with pytest.raises(Forbidden, match=r"^results: s3://lake holds the data of another"):
        check_not_others([("results", "s3://lake")], catalog, bob)
    check_not_others([("results", "s3://lake/odd")], catalog, bob)
