"""The ingest config: defaults, the volume's layout per level, loading JSON and YAML, and
errors that name the field and what is allowed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest import IngestConfig, config_schema, load_config

BASE: dict[str, Any] = {
    "name": "lab/mouse12/em",
    "source": {
        "plugin": "image-folder",
        "params": {"path": "/data/stack", "pattern": "s_{z:04d}.tif"},
    },
    "extent": {"x": [0, 1001], "y": [0, 517], "z": [3, 260]},
    "dtype": "uint16",
    "voxel_size": {"x": 4, "y": 4, "z": 40, "unit": "nanometer"},
}


def with_(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = config
        for key in parents:
            target = target.setdefault(key, {})
        if value is _DROP:
            target.pop(last, None)
        else:
            target[last] = value
    return config


_DROP = object()


def test_defaults_and_layout() -> None:
    config = load_config(BASE)
    assert config.version == 1 and config.destination == "default"
    assert config.channels == 1 and config.image_kind == "intensity"
    assert config.chunk == (64, 128, 128) and config.shard == (64, 1024, 1024)
    assert config.compression.codec == "blosc-zstd" and config.compression.level == 5
    assert config.levels == 4 and config.method() == "mean"
    assert config.extent.t == (0, 1)
    assert config.extent.shape_tzyx == (1, 257, 517, 1001)
    assert config.volume_shape() == (1, 1, 257, 517, 1001)
    assert config.level_shapes() == [
        (1, 1, 257, 517, 1001),
        (1, 1, 129, 259, 501),
        (1, 1, 65, 130, 251),
        (1, 1, 33, 65, 126),
    ]
    assert [config.level_shard(k) for k in range(4)] == [
        (64, 1024, 1024),
        (32, 512, 512),
        (16, 256, 256),
        (8, 128, 128),
    ]
    assert [config.level_chunk(k) for k in range(4)] == [
        (64, 128, 128),
        (32, 128, 128),
        (16, 128, 128),
        (8, 128, 128),
    ]


def test_anisotropic_factors_labels_and_one_level() -> None:
    config = load_config(
        with_(
            downsample_factors=[1, 2, 2],
            image_kind="label",
            dtype="uint32",
            levels=3,
            chunk=[16, 64, 64],
            shard=[16, 256, 256],
        )
    )
    assert config.method() == "mode"
    assert config.level_shapes()[2] == (1, 1, 257, 130, 251)
    assert config.level_shard(2) == (16, 64, 64) and config.level_chunk(2) == (16, 64, 64)
    single = load_config(with_(levels=1, shard=[7, 9, 11], chunk=[7, 3, 11], downsample="stride"))
    assert single.level_shapes() == [single.volume_shape()] and single.method() == "stride"


def test_yaml_and_json_load_the_same(tmp_path: Path) -> None:
    json_path = tmp_path / "ingest.json"
    json_path.write_text(json.dumps(BASE, indent=2))
    yaml_path = tmp_path / "ingest.yaml"
    yaml_path.write_text(yaml.safe_dump(BASE))
    other = tmp_path / "ingest.conf"  # no telling suffix: the content decides
    other.write_text(yaml.safe_dump(BASE))
    expected = load_config(BASE)
    assert load_config(json_path) == expected
    assert load_config(str(yaml_path)) == expected
    assert load_config(other) == expected
    assert load_config(json.dumps(BASE)) == expected
    assert load_config(yaml.safe_dump(BASE)) == expected
    assert isinstance(expected, IngestConfig)


CASES = [
    (with_(name="../etc"), "name", "without '..'"),
    (with_(name="a/b/c/d/e"), "name", "1 to 4 parts"),
    (with_(name="/lab/x"), "name", "part '' is not allowed"),
    (with_(name="lab/mouse 12"), "name", "part 'mouse 12' is not allowed"),
    (with_(name="lab/."), "name", "part '.' is not allowed"),
    (with_(destination="not a url"), "destination", "neither a store URL"),
    (with_(dtype="uint12"), "dtype", "'uint8', 'uint16'"),
    (with_(extent__x=[5, 5]), "extent.x", "stop 5 must be greater than start 5"),
    (with_(extent__z=[-1, 4]), "extent.z", "start -1 is negative"),
    (with_(extent__y=_DROP), "extent.y", "required"),
    (with_(voxel_size__x=0), "voxel_size.x", "greater than 0"),
    (with_(voxel_size__unit="furlong"), "voxel_size.unit", "'nanometer', 'micrometer'"),
    (
        with_(compression={"codec": "gzip", "level": 12}),
        "compression",
        "level 12 is not allowed for gzip; allowed: 1 to 9",
    ),
    (with_(compression={"codec": "zstd", "level": 0}), "compression", "allowed: 1 to 22"),
    (with_(compression={"codec": "lzw"}), "compression.codec", "'blosc-zstd'"),
    (with_(shard=[64, 1000, 1024]), "shard", "1000 along y is not a multiple of chunk 128"),
    (with_(levels=8), "shard", "64 along z is not divisible by 2**7 = 128"),
    (with_(levels=9), "levels", "less than or equal to 8"),
    (with_(levels=0), "levels", "greater than or equal to 1"),
    (
        with_(chunk=[64, 128, 96], shard=[64, 1024, 288], levels=2),
        "shard",
        "at level 1 a shard is 144 along x",
    ),
    (with_(downsample_factors=[3, 2, 2]), "downsample_factors", "must be 1 or 2"),
    (with_(chunk=[0, 128, 128]), "chunk", "at least 1"),
    (with_(channels=0), "channels", "greater than or equal to 1"),
    (with_(image_kind="label", dtype="float32"), "dtype", "float32 cannot hold labels"),
    (
        with_(image_kind="label", dtype="uint8", downsample="mean"),
        "downsample",
        "'mean' invents label values",
    ),
    (with_(tile_size={"x": 512, "w": 3}), "tile_size", "unknown axis 'w'"),
    (with_(version=2), "version", "Input should be 1"),
    (with_(colour="red"), "colour", "unknown field; allowed: version, name, destination, source"),
    (with_(extent__w=[0, 1]), "extent.w", "unknown field; allowed: x, y, z, t"),
    (with_(source__plugin=""), "source.plugin", "at least 1 character"),
    (with_(source__params={"pattern": "*.tif"}), "source.params.path", "required"),
    (
        with_(source__params={"path": "/d", "sort": "name"}),
        "source.params.sort",
        "unknown field; allowed: path, pattern, z_offset",
    ),
    (
        with_(source__params={"path": "/d", "pattern": "../up/{z}.tif"}),
        "source.params.pattern",
        "must not contain '..'",
    ),
    (
        with_(source__params={"path": "/d", "pattern": "slice_{n}.tif"}),
        "source.params.pattern",
        "unknown field {n}",
    ),
    (
        with_(source__plugin="catmaid", source__params={"root_dir": "/d", "filetype": "gif"}),
        "source.params.filetype",
        "'png', 'jpg'",
    ),
    (
        with_(source__plugin="tiff", source__params={"path": "/d/x_{i}.tif"}),
        "source.params",
        "a path with {i} needs t_per_file",
    ),
    (
        with_(source__plugin="tiff", source__params={"path": "/d/x.tif", "axes": "tzyxc"}),
        "source.params.axes",
        "end with 'yx'",
    ),
    (
        with_(source__plugin="multipage-tiff", source__params={}),
        "source.params",
        "give either files or pattern",
    ),
    (
        with_(source__plugin="multipage-tiff", source__params={"files": {"plane0": "/d/a.tif"}}),
        "source.params.files",
        "'plane0' is not z_<index>",
    ),
    (
        with_(source__plugin="zarr", source__params={"path": "/d/v.zarr", "axes": "zzx"}),
        "source.params.axes",
        "at most once",
    ),
    (with_(extent__x=[0, 2**31]), "extent.x", "beyond the largest coordinate, 2147483647"),
    (with_(extent__z=[0, 10**40]), "extent.z", "beyond the largest coordinate"),
]


@pytest.mark.parametrize(("data", "field", "message"), CASES)
def test_errors_name_the_field(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_config(data)
    text = str(info.value)
    assert text.startswith("invalid ingest config: ")
    assert message in text, text
    fields = [p["field"] for p in info.value.problems]
    assert field in fields, info.value.problems
    if field:
        assert f"{field}: " in text


def test_several_problems_are_listed_separately() -> None:
    with pytest.raises(InvalidInput) as info:
        load_config(with_(dtype="u8", voxel_size__z=-1, extent__x=[2, 1]))
    assert {p["field"] for p in info.value.problems} == {"dtype", "voxel_size.z", "extent.x"}


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_(dtype="int64")))
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: invalid ingest config: dtype: ")
    assert info.value.problems[0]["file"] == str(path)

    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n "dtype": }')
    with pytest.raises(InvalidInput, match=rf"{broken}: not valid JSON: .* at line 2, column 11"):
        load_config(broken)
    broken_yaml = tmp_path / "broken.yml"
    broken_yaml.write_text("name: x\nsource: [a\n")
    with pytest.raises(InvalidInput, match=rf"{broken_yaml}: not valid YAML: .* at line 3"):
        load_config(broken_yaml)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match=rf"{listed}: an ingest config is a mapping of fields"):
        load_config(listed)
    with pytest.raises(InvalidInput, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(InvalidInput, match="is a folder, not a config file"):
        load_config(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(InvalidInput, match="not a text file"):
        load_config(binary)


def test_overrides_merge_nested_fields() -> None:
    config = load_config(
        BASE, overrides={"voxel_size": {"z": 30}, "compression": {"codec": "gzip"}}
    )
    assert (config.voxel_size.x, config.voxel_size.z) == (4, 30)
    assert config.compression.codec == "gzip" and config.compression.level == 5


def test_plugin_params_are_checked_only_for_builtin_readers() -> None:
    config = load_config(
        with_(source__plugin="mylab.readers:Special", source__params={"anything": [1, 2]})
    )
    assert config.source.params == {"anything": [1, 2]}


def test_json_schema() -> None:
    schema = config_schema()
    json.dumps(schema)
    assert schema["title"] == "neuroferry ingest config, version 1"
    assert {"name", "source", "extent", "dtype", "voxel_size"} <= set(schema["required"])
    assert schema["properties"]["version"]["const"] == 1


def test_an_ingest_declares_the_volume_it_writes(database_url: str, tmp_path: Path) -> None:
    """The volume's URL and catalog name are the job's asset: one unfinished ingest per
    volume, and a volume registered by another user is refused."""
    from neuroferry.auth import create_user
    from neuroferry.catalog import Catalog, Owner
    from neuroferry.config import get_settings
    from neuroferry.db import make_engine, upgrade
    from neuroferry.engine import submit_job
    from neuroferry.errors import Conflict, Forbidden
    from neuroferry.pipelines.ingest._kind import prepare

    lake = (tmp_path / "lake").as_uri()
    stack = tmp_path / "stack"
    stack.mkdir()
    spec = {
        "name": "lab/mouse12/em",
        "destination": lake,
        "source": {"plugin": "image-folder", "params": {"path": str(stack), "pattern": "{z}.tif"}},
        "extent": {"x": [0, 4], "y": [0, 4], "z": [0, 1]},
        "dtype": "uint8",
        "voxel_size": {"x": 1, "y": 1, "z": 1},
        "levels": 1,
    }
    settings = get_settings(source_roots=[stack], store_url=lake)  # users read and write there
    [claim] = prepare(load_config(spec), settings).assets
    assert (claim.key, claim.field, claim.catalog_name) == (
        f"{lake}/lab/mouse12/em.ome.zarr",
        "name",
        "lab:mouse12:em",
    )
    engine = make_engine(database_url)
    upgrade(engine)
    alice, bob = (create_user(engine, name).id for name in ("alice", "bob"))
    first = submit_job(engine, "ingest", spec, owner_id=alice, settings=settings)
    with pytest.raises(Conflict, match=f"name: job {first} "):
        submit_job(engine, "ingest", spec, owner_id=alice, settings=settings)
    other = {**spec, "name": "lab/mouse13/em"}
    Catalog(engine).upsert({"name": "lab:mouse13:em"}, Owner(alice))
    with pytest.raises(Forbidden, match="name: the asset 'lab:mouse13:em' belongs to another"):
        submit_job(engine, "ingest", other, owner_id=bob, settings=settings)
    engine.dispose()


def test_an_ingest_of_too_many_shards_is_refused_at_submit(tmp_path: Path) -> None:
    """A huge extent (here a CATMAID stack whose missing tiles read as zeros) is refused
    before anything looks at the source; the limit is a setting."""
    from neuroferry.config import get_settings
    from neuroferry.pipelines.ingest._kind import prepare

    root = tmp_path / "catmaid"
    root.mkdir()
    spec = {
        "name": "huge",
        "destination": (tmp_path / "lake").as_uri(),
        "source": {
            "plugin": "catmaid",
            "params": {"root_dir": str(root), "tile_size": {"x": 512, "y": 512}, "missing": "zero"},
        },
        "extent": {"x": [0, 10**6], "y": [0, 10**6], "z": [0, 10**5]},
        "dtype": "uint8",
        "voxel_size": {"x": 1, "y": 1, "z": 1},
    }
    settings = get_settings(source_roots=[root], store_url=(tmp_path / "lake").as_uri())
    with pytest.raises(InvalidInput) as refused:
        prepare(load_config(spec), settings)
    text = str(refused.value)
    assert text.startswith("extent: ") and "at most 1000000" in text, text
    assert "FERRY_INGEST_MAX_SHARDS" in text
    assert [p["field"] for p in refused.value.problems] == ["extent"]
    small = {**spec, "extent": {"x": [0, 4096], "y": [0, 4096], "z": [0, 64]}}
    assert prepare(load_config(small), settings).summary["shards"] < 100
    strict = get_settings(
        source_roots=[root], store_url=(tmp_path / "lake").as_uri(), ingest_max_shards=2
    )
    with pytest.raises(InvalidInput, match="at most 2 are allowed"):
        prepare(load_config(small), strict)


def test_the_long_ingest_checks_stop_at_their_checkpoint(tmp_path: Path) -> None:
    """``check_source`` and ``plan`` call the job's cancel check between slices and rows
    of shards, so that a cancelled job stops."""
    from neuroferry.config import get_settings
    from neuroferry.pipelines.ingest._plan import plan_units
    from neuroferry.pipelines.ingest._readers import open_reader
    from neuroferry.pipelines.ingest._zarr import Layout

    class Stop(Exception):
        pass

    calls: list[int] = []

    def stop_at_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    root = tmp_path / "catmaid"
    root.mkdir()
    config = load_config(
        {
            "name": "many",
            "source": {
                "plugin": "catmaid",
                "params": {"root_dir": str(root), "tile_size": {"x": 64, "y": 64}},
            },
            "extent": {"x": [0, 256], "y": [0, 256], "z": [0, 1000]},
            "dtype": "uint8",
            "voxel_size": {"x": 1, "y": 1, "z": 1},
            "chunk": [1, 64, 64],
            "shard": [1, 64, 64],
            "levels": 1,
        }
    )
    reader = open_reader(config, settings=get_settings(source_roots=[root]))
    reader.checkpoint = stop_at_third
    with pytest.raises(Stop):
        reader.check()
    assert len(calls) == 3  # it stopped at the third of 1000 slices
    calls.clear()
    with pytest.raises(Stop):
        plan_units(Layout.of(config), 64 * 64, stop_at_third)
    assert len(calls) == 3
    assert len(plan_units(Layout.of(config), 64 * 64)) == 1000 * 16  # one unit per shard


def test_an_ingest_checks_its_volume_is_still_its_owners_before_writing(
    database_url: str, tmp_path: Path
) -> None:
    """``check_asset_owner`` (in the service, before ``check_source``): a document another
    user registered since the job was submitted, at, inside or around the volume, fails
    the job before anything is written."""
    import logging

    from neuroferry.auth import create_user
    from neuroferry.catalog import Catalog, Owner
    from neuroferry.config import get_settings
    from neuroferry.db import make_engine, upgrade
    from neuroferry.engine import TaskContext, TaskFailed, TaskInstance
    from neuroferry.pipelines.ingest._kind import TASKS
    from neuroferry.pipelines.ingest._tasks import check_asset_owner
    from neuroferry.stores import open_store

    assert [t.name for t in TASKS[:2]] == ["check_asset_owner", "check_source"]
    assert TASKS[0].placement == "local" and TASKS[1].upstream == ("check_asset_owner",)
    lake = (tmp_path / "lake").as_uri()
    engine = make_engine(database_url)
    upgrade(engine)
    alice, bob = (create_user(engine, name).id for name in ("alice", "bob"))
    spec = {**BASE, "name": "lab/vol", "destination": lake}

    def run(owner: int) -> dict[str, Any]:
        ctx = TaskContext(
            TaskInstance(
                job_id=1,
                kind="ingest",
                job_name="lab/vol",
                task="check_asset_owner",
                spec=spec,
                summary={"volume": f"{lake}/lab/vol.ome.zarr"},
            ),
            config=get_settings(),
            log_store=open_store("memory://owner-check-logs"),
            log=logging.getLogger("neuroferry.task.test.owner"),
            db=engine,
            owner_id=owner,
        )
        return check_asset_owner(ctx)

    assert run(bob) == {"volume": f"{lake}/lab/vol.ome.zarr"}
    Catalog(engine).upsert({"name": "alices", "location": f"{lake}/lab"}, Owner(alice))
    with pytest.raises(TaskFailed, match=r"name: this job would write .* lies inside"):
        run(bob)
    assert run(alice)["volume"].endswith("/lab/vol.ome.zarr")
    engine.dispose()


def test_labels_go_only_into_an_image_of_their_owner(database_url: str, tmp_path: Path) -> None:
    """A label image with ``label_of`` is written inside that image: another user's image
    is refused at submit, as any write inside another user's asset is."""
    from neuroferry.auth import create_user
    from neuroferry.catalog import Catalog, Owner
    from neuroferry.config import get_settings
    from neuroferry.db import make_engine, upgrade
    from neuroferry.engine import submit_job
    from neuroferry.errors import Forbidden
    from neuroferry.pipelines.ingest._kind import prepare

    lake = (tmp_path / "lake").as_uri()
    stack = tmp_path / "stack"
    stack.mkdir()
    spec = {
        "name": "lab/cells",
        "destination": lake,
        "source": {"plugin": "image-folder", "params": {"path": str(stack), "pattern": "{z}.tif"}},
        "extent": {"x": [0, 4], "y": [0, 4], "z": [0, 1]},
        "dtype": "uint32",
        "image_kind": "label",
        "label_of": "lab/em",
        "voxel_size": {"x": 1, "y": 1, "z": 1},
        "levels": 1,
    }
    settings = get_settings(source_roots=[stack], store_url=lake)
    [claim] = prepare(load_config(spec), settings).assets
    assert claim.key == f"{lake}/lab/em.ome.zarr/labels/cells"
    engine = make_engine(database_url)
    upgrade(engine)
    alice, bob = (create_user(engine, name).id for name in ("alice", "bob"))
    Catalog(engine).upsert({"name": "lab:em", "location": f"{lake}/lab/em.ome.zarr"}, Owner(alice))
    with pytest.raises(Forbidden, match="lab:em"):
        submit_job(engine, "ingest", spec, owner_id=bob, settings=settings)
    assert submit_job(engine, "ingest", spec, owner_id=alice, settings=settings) > 0
    engine.dispose()
