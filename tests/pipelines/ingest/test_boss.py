"""Boss ingest client configs (v0.1, v0.2) as ingest configs: the mapped values, the
plugins we cannot read, structural errors, and mapped configs reading real stacks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest import (
    DEFAULT_VOXEL_SIZE,
    IngestConfig,
    boss_to_config,
    is_boss_config,
    load_config,
    open_reader,
)

from ._stacks import (
    make_volume,
    write_catmaid,
    write_image_folder,
    write_multipage_tiff_per_z,
    write_tiff,
    write_zarr,
)

DATA = Path(__file__).parent / "data" / "boss"
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "boss-ingest"


def fixture(name: str) -> Path:
    """A sample config of the Boss ingest client; skips where the fixtures are absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"the Boss ingest client's sample configs are not available ({path})")
    return path


def data(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def summary(config: IngestConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "plugin": config.source.plugin,
        "params": config.source.params,
        "extent": config.extent.model_dump(mode="json"),
        "dtype": config.dtype,
        "tile_size": config.tile_size,
        "channels": config.channels,
    }


def extent(x: int, y: int, z: tuple[int, int], t: int = 1) -> dict[str, list[int]]:
    return {"x": [0, x], "y": [0, y], "z": list(z), "t": [0, t]}


TILE_512 = {"x": 512, "y": 512, "z": 1, "t": 1}

# -- our own copies --------------------------------------------------------------------

MAPPED = {
    "catmaid-file-stack.json": {
        "name": "lab/mouse12/em",
        "plugin": "catmaid",
        "params": {"root_dir": "/data/catmaid/stack", "filetype": "png", "zoom_level": 0},
        "extent": extent(2048, 1536, (10, 210)),
        "dtype": "uint8",
        "tile_size": TILE_512,
        "channels": 1,
    },
    "zstack.json": {
        "name": "lab/brain-3/dapi",
        "plugin": "image-folder",
        "params": {"path": "/data/sections", "pattern": "{z+100}_section{z:03d}.tif"},
        "extent": extent(4096, 4096, (0, 300)),
        "dtype": "uint16",
        "tile_size": {"x": 1024, "y": 1024, "z": 1, "t": 1},
        "channels": 1,
    },
    "time-series.json": {
        "name": "lab/gcamp/green",
        "plugin": "multipage-tiff",
        "params": {"files": {"z_0": "/data/calcium/plane0.tif", "z_1": "/data/calcium/plane1.tif"}},
        "extent": extent(512, 256, (0, 2), t=1000),
        "dtype": "uint16",
        "tile_size": {"x": 512, "y": 256, "z": 1, "t": 1},
        "channels": 1,
    },
    "tiff-hyperstack.json": {
        "name": "lab/hyper/red",
        "plugin": "tiff",
        "params": {
            "path": "/data/hyper/run_{i+200:04d}.tif",
            "axes": "tzcyx",
            "sizes": {"z": 3, "c": 2},
            "channel": 1,
            "t_per_file": 500,
        },
        "extent": extent(256, 256, (0, 3), t=1500),
        "dtype": "uint16",
        "tile_size": {"x": 256, "y": 256, "z": 1, "t": 1},
        "channels": 1,
    },
    "zarr-volumetric.json": {
        "name": "lab/brain-4/raw",
        "plugin": "zarr",
        "params": {"path": "s3://lab-volumes/brain.zarr", "axes": "zyx", "array": "raw"},
        "extent": extent(2048, 2048, (0, 256)),
        "dtype": "uint8",
        "tile_size": {"x": 512, "y": 512, "z": 16},
        "channels": 1,
    },
    "catmaid-zoom-level-tile.json": {
        "name": "lab/zoomed/em",
        "plugin": "catmaid",
        "params": {
            "root_dir": "/data/catmaid/zoomed",
            "filetype": "jpg",
            "pattern": "0/{z}/{row}_{col}.jpg",
        },
        "extent": extent(1024, 1024, (0, 50)),
        "dtype": "uint8",
        "tile_size": {"x": 256, "y": 256, "z": 1, "t": 1},
        "channels": 1,
    },
}

REFUSED = {
    "catmaid-url-stack.json": ("CatmaidURLPathProcessor", "CATMAID web server"),
    "hdf5-single-file.json": ("Hdf5SingleFilePathProcessor", "HDF5 files are not read"),
    "cloudvolume.json": ("CloudVolumePathProcessor", "Neuroglancer precomputed"),
}


def test_every_data_file_is_covered() -> None:
    assert {p.name for p in DATA.glob("*.json")} == set(MAPPED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_our_boss_configs_map(name: str) -> None:
    config = load_config(DATA / name)
    assert summary(config) == MAPPED[name]
    assert config.voxel_size.model_dump() == {**DEFAULT_VOXEL_SIZE, "t": 1.0, "t_unit": "second"}
    assert config.destination == "default"
    assert config.version == 1


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_plugins_we_cannot_read_are_named(name: str) -> None:
    plugin, reason = REFUSED[name]
    with pytest.raises(InvalidInput) as info:
        load_config(DATA / name)
    message = str(info.value)
    assert str(DATA / name) in message
    assert "ingestclient.plugins." in message and plugin in message
    assert reason in message
    assert "Supported path processors: CatmaidDirectoryImageStackPathProcessor" in message
    assert info.value.problems[0]["field"] == "client.path_processor.class"


def test_our_copies_are_valid_boss_configs() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for path in sorted(DATA.glob("*.json")):
        config = json.loads(path.read_text())
        schema = json.loads(fixture(f"{config['schema']['name']}.json").read_text())
        jsonschema.validate(config, schema)


# -- the Boss ingest client's own samples ------------------------------------------------

FIXTURE_MAPPED = {
    "boss-v0.1-catmaid-file-stack-example.json": {
        "name": "my_col_1/my_exp_1/my_ch_1",
        "plugin": "catmaid",
        "params": {"root_dir": "", "filetype": "png", "zoom_level": 0},
        "extent": extent(2048, 2048, (0, 200)),
        "dtype": "uint8",
        "tile_size": TILE_512,
        "channels": 1,
    },
    "boss-v0.1-zStack-example.json": {
        "name": "my_col_1/my_exp_1/my_ch_1",
        "plugin": "image-folder",
        "params": {"path": "", "pattern": "{z+3253}_my_stack_section{z:03d}.png"},
        "extent": extent(8192, 8192, (0, 500)),
        "dtype": "uint8",
        "tile_size": {"x": 1024, "y": 1024, "z": 1, "t": 1},
        "channels": 1,
    },
    "boss-v0.1-time-series-example.json": {
        "name": "my_col_1/my_exp_1/my_ch_1",
        "plugin": "multipage-tiff",
        "params": {"files": {"z_0": ""}},
        "extent": extent(796, 512, (0, 1), t=1499),
        "dtype": "uint16",
        "tile_size": {"x": 796, "y": 512, "z": 1, "t": 1},
        "channels": 1,
    },
    "boss-v0.1-tiff-hyperstack-example.json": {
        "name": "my_col_1/my_exp_1/my_ch_1",
        "plugin": "tiff",
        "params": {
            "path": "/data/my_base_{i+200:04d}.tif",
            "axes": "tzcyx",
            "sizes": {"z": 3, "c": 2},
            "channel": 0,
            "t_per_file": 2000,
        },
        "extent": extent(512, 512, (0, 3), t=4000),
        "dtype": "uint16",
        "tile_size": TILE_512,
        "channels": 1,
    },
}

FIXTURE_REFUSED = {  # the plugin's class, after "ingestclient.plugins."
    "boss-v0.1-catmaid-url-stack-example.json": "catmaid.CatmaidURLPathProcessor",
    "boss-v0.1-hdf5Chunk-example.json": "hdf5.Hdf5ChunkPathProcessor",
    "boss-v0.1-hdf5SingleFile-example.json": "hdf5.Hdf5SingleFilePathProcessor",
    "boss-v0.1-hdf5TimeSeries-example.json": "hdf5.Hdf5TimeSeriesPathProcessor",
    "boss-v0.1-intern-example.json": "intern.InternPathProcessor",
    "boss-v0.2-cloudvolume-example.json": "cloudvolume.CloudVolumePathProcessor",
}


def test_every_sample_config_is_covered() -> None:
    fixture("boss-v0.1-schema.json")
    samples = {p.name for p in FIXTURES.glob("*example.json")}
    assert samples == set(FIXTURE_MAPPED) | set(FIXTURE_REFUSED)


@pytest.mark.parametrize("name", sorted(FIXTURE_MAPPED))
def test_sample_configs_map(name: str) -> None:
    config = load_config(fixture(name))
    assert summary(config) == FIXTURE_MAPPED[name]
    assert config.voxel_size.unit == "micrometer" and config.voxel_size.x == 1.0


@pytest.mark.parametrize("name", sorted(FIXTURE_REFUSED))
def test_sample_configs_we_cannot_read(name: str) -> None:
    path = fixture(name)
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    message = str(info.value)
    plugin = f"ingestclient.plugins.{FIXTURE_REFUSED[name]}"
    assert f"the Boss ingest client plugin {plugin} is not supported" in message
    assert str(path) in message
    assert info.value.problems == [
        {
            "field": "client.path_processor.class",
            "message": info.value.problems[0]["message"],
            "file": str(path),
        }
    ]


# -- structure ---------------------------------------------------------------------------


def _broken(change: Any) -> dict[str, Any]:
    config = copy.deepcopy(data("zstack.json"))
    change(config)
    return config


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda c: c["database"].pop("channel"), "database.channel", "required"),
        (
            lambda c: c["database"].update(channel="../up"),
            "database.channel",
            "'../up' is not allowed",
        ),
        (
            lambda c: c["schema"].update(name="boss-v0.3-schema"),
            "schema.name",
            "supported: boss-v0.1-schema, boss-v0.2-schema",
        ),
        (
            lambda c: c["ingest_job"].update(resolution=2),
            "ingest_job.resolution",
            "only full resolution (0)",
        ),
        (lambda c: c["ingest_job"]["extent"].pop("z"), "ingest_job.extent.z", "[start, stop]"),
        (lambda c: c["ingest_job"].pop("tile_size"), "ingest_job.tile_size", "required"),
        (lambda c: c["client"].pop("path_processor"), "client.path_processor", "required"),
        (
            lambda c: c["client"]["tile_processor"]["params"].update(datatype="uint12"),
            "client.tile_processor.params.datatype",
            "allowed: uint8",
        ),
        (
            lambda c: c["client"]["tile_processor"]["params"].update(filesystem="s3"),
            "client.tile_processor.params.filesystem",
            "copy them there",
        ),
        (
            lambda c: c["client"]["path_processor"]["params"].update(extension="gif"),
            "client.path_processor.params.extension",
            "allowed: png",
        ),
        (
            lambda c: c["client"]["path_processor"]["params"].update(base_filename="<x>_<>"),
            "client.path_processor.params.base_filename",
            "only one of <x> and <y>",
        ),
    ],
)
def test_structural_errors_name_the_field(change: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        boss_to_config(_broken(change))
    assert f"{field}: " in str(info.value) and message in str(info.value)
    assert info.value.problems[0]["field"] == field


def test_v02_layout_checks_the_ingest_type() -> None:
    config = data("catmaid-zoom-level-tile.json")
    del config["client"]["tile_processor"]
    with pytest.raises(InvalidInput, match=r"client\.tile_processor: required"):
        boss_to_config(config)
    config = data("zarr-volumetric.json")
    config["ingest_job"]["ingest_type"] = "tile"
    with pytest.raises(InvalidInput, match="ZarrPathProcessor needs ingest_type volumetric"):
        boss_to_config(config)
    config["ingest_job"]["ingest_type"] = "slab"
    with pytest.raises(InvalidInput, match="'slab' is not allowed; allowed: tile, volumetric"):
        boss_to_config(config)


def test_detection_voxel_size_datatype_and_overrides(tmp_path: Path) -> None:
    config = data("catmaid-file-stack.json")
    assert is_boss_config(config)
    assert not is_boss_config({"schema": "boss-v0.1-schema"})
    assert not is_boss_config({"name": "x"})
    config["ingest_job"]["voxel_size"] = {"x": 4, "y": 4, "z": 40, "unit": "nanometer"}
    config["ingest_job"]["datatype"] = "uint16"
    mapped = load_config(config)
    assert (mapped.voxel_size.z, mapped.voxel_size.unit, mapped.dtype) == (
        40,
        "nanometer",
        "uint16",
    )
    path = tmp_path / "boss.json"
    path.write_text(json.dumps(data("catmaid-file-stack.json")))
    overridden = load_config(
        path,
        overrides={
            "voxel_size": {"x": 8, "y": 8, "z": 30, "unit": "nanometer"},
            "destination": "archive",
            "levels": 3,
        },
    )
    assert overridden.voxel_size.x == 8 and overridden.destination == "archive"
    assert overridden.levels == 3 and overridden.name == "lab/mouse12/em"
    with pytest.raises(InvalidInput, match=r"boss\.json: invalid ingest config: levels: "):
        load_config(path, overrides={"levels": 0})


# -- mapped configs read real stacks -----------------------------------------------------


def test_catmaid_file_stack_reads(tmp_path: Path) -> None:
    vol = make_volume((4, 40, 56), "uint8", seed=40)
    write_catmaid(tmp_path / "stack", vol, (16, 16), "png", zoom_level=0)
    config = data("catmaid-file-stack.json")
    config["client"]["path_processor"]["params"]["root_dir"] = str(tmp_path / "stack")
    config["ingest_job"].update(
        extent=extent(56, 40, (1, 4)), tile_size={"x": 16, "y": 16, "z": 1, "t": 1}
    )
    reader = open_reader(load_config(config))
    reader.check()
    np.testing.assert_array_equal(reader.read(0, (1, 4), (0, 40), (0, 56))[0], vol[1:4])


def test_zindex_stack_reads(tmp_path: Path) -> None:
    vol = make_volume((5, 20, 24), "uint16", seed=41)
    for z, plane in enumerate(vol):
        write_image_folder(
            tmp_path / "sections", plane[None], "tif", name=f"{z + 100}_section{z:03d}"
        )
    config = data("zstack.json")
    config["client"]["path_processor"]["params"]["root_dir"] = str(tmp_path / "sections")
    config["ingest_job"]["extent"] = extent(24, 20, (0, 5))
    reader = open_reader(load_config(config))
    reader.check()
    np.testing.assert_array_equal(reader.read(0, (0, 5), (3, 20), (0, 24))[0], vol[:, 3:])


def test_single_time_tiff_reads(tmp_path: Path) -> None:
    vol = make_volume((6, 2, 12, 16), "uint16", seed=42)  # t, z, y, x
    paths = write_multipage_tiff_per_z(tmp_path / "planes", vol)
    config = data("time-series.json")
    config["client"]["path_processor"]["params"] = {f"z_{z}": str(p) for z, p in paths.items()}
    config["ingest_job"]["extent"] = extent(16, 12, (0, 2), t=6)
    reader = open_reader(load_config(config))
    reader.check()
    for t in range(6):
        np.testing.assert_array_equal(reader.read(t, (0, 2), (0, 12), (0, 16))[0], vol[t])


def test_tiff_hyperstack_reads(tmp_path: Path) -> None:
    vol = make_volume((5, 2, 3, 8, 10), "uint16", seed=43)  # t, c, z, y, x
    pages = vol.transpose(0, 2, 1, 3, 4)  # frames in t, z, c order, as the Boss client reads
    for i in range(3):
        part = pages[i * 2 : (i + 1) * 2].reshape(-1, 8, 10)
        write_tiff(tmp_path / f"run_{i + 200:04d}.tif", part)
    config = data("tiff-hyperstack.json")
    config["client"]["path_processor"]["params"].update(root_dir=str(tmp_path), time_chunk_size=2)
    config["ingest_job"]["extent"] = extent(10, 8, (0, 3), t=5)
    reader = open_reader(load_config(config))
    reader.check()
    for t in range(5):
        np.testing.assert_array_equal(reader.read(t, (0, 3), (0, 8), (0, 10))[0], vol[t, 1])


def test_zarr_chunk_processor_reads(tmp_path: Path) -> None:
    vol = make_volume((6, 10, 12), "uint8", seed=44)
    write_zarr(tmp_path / "brain.zarr", vol, zarr_format=2, array_path="raw")
    config = data("zarr-volumetric.json")
    config["client"]["chunk_processor"]["params"]["cloud_path"] = str(tmp_path / "brain.zarr")
    config["ingest_job"]["extent"] = extent(12, 10, (0, 6))
    reader = open_reader(load_config(config))
    reader.check()
    np.testing.assert_array_equal(reader.read(0, (2, 6), (0, 10), (4, 12))[0], vol[2:, :, 4:])
