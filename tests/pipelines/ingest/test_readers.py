"""The ingest readers against generated stacks: regions voxel for voxel, time series, RGB,
every kind of bad source data, custom readers, allowed source folders, pickling."""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import BaseModel

from neuroferry.config import get_settings
from neuroferry.errors import Forbidden, InvalidInput, SourceDataError
from neuroferry.grants import access_for
from neuroferry.pipelines.ingest import (
    BUILTIN_READERS,
    IngestConfig,
    Reader,
    load_config,
    open_reader,
    reader_names,
)
from neuroferry.pipelines.ingest._pattern import Template, natural_key

from ._stacks import (
    make_volume,
    read_plane,
    write_catmaid,
    write_image_folder,
    write_image_series,
    write_multipage_tiff_per_z,
    write_n5,
    write_tiff,
    write_zarr,
)

Shape = tuple[int, int, int, int, int]


def config_for(
    plugin: str, params: dict[str, Any], shape: Shape, dtype: str, **extra: Any
) -> IngestConfig:
    """A config over the whole of a source of ``shape`` (t, c, z, y, x)."""
    t, c, z, y, x = shape
    data: dict[str, Any] = {
        "name": "lab/test",
        "source": {"plugin": plugin, "params": params},
        "extent": {"x": [0, x], "y": [0, y], "z": [0, z], "t": [0, t]},
        "channels": c,
        "dtype": dtype,
        "voxel_size": {"x": 0.5, "y": 0.5, "z": 2.0},
        **extra,
    }
    return load_config(data)


def regions(shape: Shape, seed: int = 3) -> list[tuple[int, tuple[int, int], ...]]:
    """Whole-volume, corner, edge and random regions (t, z, y, x) of a source."""
    t, _, z, y, x = shape
    rng = np.random.default_rng(seed)
    found: list[Any] = [
        (0, (0, z), (0, y), (0, x)),
        (t - 1, (z - 1, z), (y - 1, y), (x - 1, x)),
        (0, (0, 1), (0, 1), (0, x)),
    ]
    for _ in range(5):
        z0, y0, x0 = (int(rng.integers(0, n)) for n in (z, y, x))
        z1, y1, x1 = (int(rng.integers(a + 1, n + 1)) for a, n in ((z0, z), (y0, y), (x0, x)))
        found.append((int(rng.integers(0, t)), (z0, z1), (y0, y1), (x0, x1)))
    return found


def assert_reads(reader: Reader, expected_tczyx: np.ndarray) -> None:
    """Every region of ``regions`` equals the same region of ``expected_tczyx``."""
    reader.check()
    shape: Any = expected_tczyx.shape
    for t, z, y, x in regions(shape):
        got = reader.read(t, z, y, x)
        want = expected_tczyx[t, :, z[0] : z[1], y[0] : y[1], x[0] : x[1]]
        assert got.dtype == expected_tczyx.dtype
        assert got.shape == want.shape, (t, z, y, x)
        np.testing.assert_array_equal(got, want, err_msg=f"region t={t} z={z} y={y} x={x}")


def raises_source(match_path: str | Path, *fragments: str) -> Any:
    """Context manager: SourceDataError whose message names the file and the fragments."""

    class _Check:
        def __enter__(self) -> None:
            self.ctx = pytest.raises(SourceDataError)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            assert str(match_path) in message, message
            for fragment in fragments:
                assert fragment in message, message
            return bool(handled)

    return _Check()


# -- file name templates -------------------------------------------------------------------


def test_template_fields_offsets_padding_and_braces() -> None:
    template = Template.parse("{z+3253}_sec{z:03d}_{{x}}.png", ("z",))
    assert template.fields == {"z"}
    assert template.format(z=7) == "3260_sec007_{x}.png"
    assert Template.parse("t{t-1}/c{c}", ("t", "c")).format(t=1, c=2) == "t0/c2"
    with pytest.raises(ValueError, match="would be -1"):
        Template.parse("{z-1}", ("z",)).format(z=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{q}.tif", "unknown field {q}; allowed: z, c, t"),
        ("{z:04q}.tif", "bad format"),
        ("{z.tif", "is not a field"),
        ("z}.tif", "single '}'"),
    ],
)
def test_template_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Template.parse(text, ("z", "c", "t"))


def test_natural_order() -> None:
    names = ["s10.tif", "s2.tif", "s1.tif", "S3.tif"]
    assert sorted(names, key=natural_key) == ["s1.tif", "s2.tif", "S3.tif", "s10.tif"]


# -- registry ------------------------------------------------------------------------------


def test_builtin_readers_are_installed_entry_points() -> None:
    assert set(BUILTIN_READERS) <= set(reader_names())
    assert reader_names() == sorted(reader_names())


def test_unknown_reader_lists_the_known_ones(tmp_path: Path) -> None:
    config = config_for("imagefolder", {"path": str(tmp_path)}, (1, 1, 1, 4, 4), "uint8")
    with pytest.raises(InvalidInput) as info:
        open_reader(config)
    message = str(info.value)
    assert "unknown reader 'imagefolder'" in message
    for name in BUILTIN_READERS:
        assert name in message
    assert info.value.problems[0]["field"] == "source.plugin"


def test_plugin_path_that_is_not_a_reader_or_cannot_be_imported(tmp_path: Path) -> None:
    config = config_for("os.path:join", {}, (1, 1, 1, 4, 4), "uint8")
    with pytest.raises(InvalidInput, match="is not a reader"):
        open_reader(config)
    config = config_for("no_such_package.readers:Reader", {}, (1, 1, 1, 4, 4), "uint8")
    with pytest.raises(InvalidInput, match=r"cannot import reader.*no_such_package"):
        open_reader(config)
    config = config_for("os.path:NoSuchReader", {}, (1, 1, 1, 4, 4), "uint8")
    with pytest.raises(InvalidInput, match="has no NoSuchReader"):
        open_reader(config)


class RampParams(BaseModel):
    start: int = 0


class RampReader(Reader):
    """A custom reader: voxel value = start + z + y + x (+ 100·c)."""

    name: ClassVar[str] = "ramp"
    params_model: ClassVar[type[BaseModel]] = RampParams

    def read(self, t: int, z: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> Any:
        out = self.new_block(z, y, x)
        zz, yy, xx = np.meshgrid(np.arange(*z), np.arange(*y), np.arange(*x), indexing="ij")
        start = self.params.start  # type: ignore[attr-defined]
        for c in range(self.config.channels):
            out[c] = start + 100 * c + zz + yy + xx
        return out

    def check(self) -> None:
        pass


@pytest.mark.parametrize("sep", [":", "."])
def test_custom_reader_by_dotted_path(sep: str) -> None:
    plugin = f"{RampReader.__module__}{sep}RampReader"
    config = config_for(plugin, {"start": 5}, (1, 2, 4, 6, 8), "uint16")
    reader = open_reader(config)
    assert isinstance(reader, RampReader)
    block = reader.read(0, (1, 3), (2, 4), (0, 2))
    assert block.shape == (2, 2, 2, 2)
    assert block[0, 0, 0, 0] == 5 + 1 + 2 + 0
    assert block[1, 1, 1, 1] == 5 + 100 + 2 + 3 + 1
    with pytest.raises(InvalidInput, match=r"source\.params\.start"):
        open_reader(config_for(plugin, {"start": "x"}, (1, 1, 4, 6, 8), "uint16"))


# -- image-folder ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "dtype"),
    [("tif", "uint8"), ("tif", "uint16"), ("png", "uint8"), ("png", "uint16"), ("jpg", "uint8")],
)
def test_image_folder_regions(tmp_path: Path, ext: str, dtype: str) -> None:
    vol = make_volume((7, 37, 53), dtype, seed=1)
    paths = write_image_folder(tmp_path / "stack", vol, ext)
    expected = np.stack([read_plane(p) for p in paths])  # JPEG: the decoded pixels
    config = config_for("image-folder", {"path": str(tmp_path / "stack")}, (1, 1, 7, 37, 53), dtype)
    assert_reads(open_reader(config), expected[np.newaxis, np.newaxis])


def test_image_folder_pattern_offset_and_natural_order(tmp_path: Path) -> None:
    vol = make_volume((12, 9, 11), "uint16", seed=2)
    write_image_folder(tmp_path / "named", vol, "tif", name="{z}_section{z:03d}")
    # slice z is file number z + 100 in a pattern with an offset field
    shifted = tmp_path / "shifted"
    for z, plane in enumerate(vol):
        write_image_folder(shifted, plane[np.newaxis], "tif", name=f"{z + 100}_s{z:03d}")
    config = config_for(
        "image-folder",
        {"path": str(shifted), "pattern": "{z+100}_s{z:03d}.tif"},
        (1, 1, 12, 9, 11),
        "uint16",
    )
    assert_reads(open_reader(config), vol[np.newaxis, np.newaxis])
    # no pattern: natural order (2 before 10), and z_offset skips the first files
    config = config_for(
        "image-folder", {"path": str(tmp_path / "named")}, (1, 1, 12, 9, 11), "uint16"
    )
    assert_reads(open_reader(config), vol[np.newaxis, np.newaxis])
    config = config_for(
        "image-folder",
        {"path": str(tmp_path / "named"), "pattern": "*_section*.tif", "z_offset": 2},
        (1, 1, 10, 9, 11),
        "uint16",
    )
    assert_reads(open_reader(config), vol[np.newaxis, np.newaxis, 2:])


def test_image_folder_rgb_is_three_channels(tmp_path: Path) -> None:
    vol = make_volume((4, 15, 17, 3), "uint8", seed=3)
    write_image_folder(tmp_path / "rgb", vol, "png")
    config = config_for("image-folder", {"path": str(tmp_path / "rgb")}, (1, 3, 4, 15, 17), "uint8")
    assert_reads(open_reader(config), np.moveaxis(vol, -1, 0)[np.newaxis])
    gray = config_for("image-folder", {"path": str(tmp_path / "rgb")}, (1, 1, 4, 15, 17), "uint8")
    with raises_source(
        tmp_path / "rgb" / "slice_0000.png", "z=0", "3 samples per pixel", "set channels: 3"
    ):
        open_reader(gray).check()


def test_image_folder_channels_and_time_points_as_files(tmp_path: Path) -> None:
    vol = make_volume((3, 2, 5, 13, 19), "uint16", seed=4)
    write_image_series(tmp_path / "series", vol, "png", name="t{t}_c{c}_z{z:03d}")
    params = {"path": str(tmp_path / "series"), "pattern": "t{t}_c{c}_z{z:03d}.png"}
    assert_reads(open_reader(config_for("image-folder", params, vol.shape, "uint16")), vol)


def test_image_folder_one_time_point_without_t(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"extent\.t: \[0, 2\].*one time point"):
        open_reader(config_for("image-folder", {"path": str(tmp_path)}, (2, 1, 3, 4, 4), "uint8"))


def test_image_folder_bad_data(tmp_path: Path) -> None:
    vol = make_volume((6, 20, 30), "uint16", seed=5)
    folder = tmp_path / "stack"
    paths = write_image_folder(folder, vol, "tif")
    params = {"path": str(folder), "pattern": "slice_{z:04d}.tif"}
    config = config_for("image-folder", params, (1, 1, 6, 20, 30), "uint16")
    reader = open_reader(config)

    paths[3].unlink()  # a missing slice
    with raises_source(paths[3], "z=3", "image is missing"):
        reader.check()
    with raises_source(paths[3], "z=3", "missing"):
        reader.read(0, (2, 5), (0, 20), (0, 30))
    reader.read(0, (0, 3), (0, 20), (0, 30))  # the slices before it still read

    write_image_folder(folder, vol[3:4, :19], "tif", name="slice_0003")  # wrong shape
    with raises_source(paths[3], "z=3", "19x30 pixels", "20x30"):
        reader.read(0, (3, 4), (0, 5), (0, 5))

    write_image_folder(folder, vol[3:4].astype(np.uint8), "tif", name="slice_0003")  # wrong dtype
    with raises_source(paths[3], "z=3", "data type is uint8", "dtype uint16"):
        reader.read(0, (3, 4), (0, 5), (0, 5))

    paths[3].write_bytes(b"II*\x00 this is not a TIFF")  # corrupt
    with raises_source(paths[3], "z=3", "cannot read the image"):
        reader.read(0, (3, 4), (0, 5), (0, 5))

    write_image_folder(folder, vol[3:4], "tif", name="slice_0003")
    beyond = config_for("image-folder", params, (1, 1, 6, 20, 31), "uint16")
    with raises_source(paths[0], "z=0", "x=[0, 31)", "lies beyond the image"):
        open_reader(beyond).check()
    deeper = config_for("image-folder", params, (1, 1, 7, 20, 30), "uint16")
    with raises_source(folder / "slice_0006.tif", "z=6", "image is missing"):
        open_reader(deeper).check()
    listed = config_for("image-folder", {"path": str(folder)}, (1, 1, 7, 20, 30), "uint16")
    with raises_source(folder, "z=6", "the folder has 6 image files"):
        open_reader(listed).check()
    nowhere = config_for(
        "image-folder", {"path": str(tmp_path / "nope")}, (1, 1, 1, 2, 2), "uint16"
    )
    with raises_source(tmp_path / "nope", "does not exist"):
        open_reader(nowhere).check()


def test_image_folder_corrupt_png(tmp_path: Path) -> None:
    vol = make_volume((2, 20, 30), "uint8", seed=6)
    paths = write_image_folder(tmp_path / "s", vol, "png")
    paths[1].write_bytes(paths[1].read_bytes()[:60])  # truncated
    reader = open_reader(
        config_for("image-folder", {"path": str(tmp_path / "s")}, (1, 1, 2, 20, 30), "uint8")
    )
    with raises_source(paths[1], "z=1", "cannot read the image"):
        reader.read(0, (0, 2), (0, 20), (0, 30))


def test_relative_source_path_is_refused() -> None:
    with pytest.raises(
        InvalidInput, match=r"source\.params\.path: 'stack' is not an absolute path"
    ):
        open_reader(config_for("image-folder", {"path": "stack"}, (1, 1, 1, 2, 2), "uint8"))


# -- catmaid -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "dtype", "pad"),
    [
        ("png", "uint8", True),
        ("png", "uint16", False),
        ("tif", "uint16", True),
        ("jpg", "uint8", True),
    ],
)
def test_catmaid_regions(tmp_path: Path, ext: str, dtype: str, pad: bool) -> None:
    vol = make_volume((5, 45, 70), dtype, seed=7)
    paths = write_catmaid(tmp_path / "cat", vol, (16, 32), ext, pad=pad)
    expected = vol
    if ext == "jpg":  # lossy: compare with what the tiles decode to
        expected = np.zeros_like(vol)
        for path in paths:
            z, (row, col) = int(path.parent.name), map(int, path.stem.split("_"))
            tile = read_plane(path)[: 45 - row * 16, : 70 - col * 32]
            expected[
                z, row * 16 : row * 16 + tile.shape[0], col * 32 : col * 32 + tile.shape[1]
            ] = tile
    params = {"root_dir": str(tmp_path / "cat"), "filetype": ext, "tile_size": {"x": 32, "y": 16}}
    config = config_for("catmaid", params, (1, 1, 5, 45, 70), dtype)
    assert_reads(open_reader(config), expected[np.newaxis, np.newaxis])


def test_catmaid_tile_size_from_config_and_zoom_level(tmp_path: Path) -> None:
    vol = make_volume((3, 40, 40), "uint8", seed=8)
    write_catmaid(tmp_path / "cat", vol, (20, 20), "png", zoom_level=0)
    params = {"root_dir": str(tmp_path / "cat"), "zoom_level": 0}
    config = config_for(
        "catmaid", params, (1, 1, 3, 40, 40), "uint8", tile_size={"x": 20, "y": 20, "z": 1, "t": 1}
    )
    assert_reads(open_reader(config), vol[np.newaxis, np.newaxis])
    # without zoom_level the tiles are not found: the error says how to name them
    plain = config_for(
        "catmaid",
        {"root_dir": str(tmp_path / "cat")},
        (1, 1, 3, 40, 40),
        "uint8",
        tile_size={"x": 20, "y": 20},
    )
    with raises_source(tmp_path / "cat" / "0" / "0_0.png", "z=0, row=0, col=0", "zoom_level: 0"):
        open_reader(plain).check()
    with pytest.raises(InvalidInput, match=r"source\.params\.tile_size: required"):
        open_reader(config_for("catmaid", {"root_dir": str(tmp_path)}, (1, 1, 3, 40, 40), "uint8"))


def test_catmaid_reads_only_the_tiles_a_region_touches(tmp_path: Path) -> None:
    vol = make_volume((2, 64, 64), "uint8", seed=9)
    write_catmaid(tmp_path / "cat", vol, (16, 16), "png")
    for path in (tmp_path / "cat").rglob("*.png"):
        if path.name not in ("1_2.png", "1_1.png"):
            path.write_bytes(b"not a png")  # would fail if read
    params = {"root_dir": str(tmp_path / "cat"), "tile_size": {"x": 16, "y": 16}}
    reader = open_reader(config_for("catmaid", params, (1, 1, 2, 64, 64), "uint8"))
    block = reader.read(0, (1, 2), (18, 30), (20, 40))
    np.testing.assert_array_equal(block[0], vol[1:2, 18:30, 20:40])


def test_catmaid_bad_data(tmp_path: Path) -> None:
    vol = make_volume((4, 40, 50), "uint16", seed=10)
    root = tmp_path / "cat"
    write_catmaid(root, vol, (20, 25), "tif")
    params = {"root_dir": str(root), "filetype": "tif", "tile_size": {"x": 25, "y": 20}}
    reader = open_reader(config_for("catmaid", params, (1, 1, 4, 40, 50), "uint16"))
    tile = root / "2" / "1_0.tif"

    tile.unlink()
    with raises_source(tile, "z=2, row=1, col=0", "tile is missing"):
        reader.check()
    with raises_source(tile, "z=2, row=1, col=0", "tile is missing"):
        reader.read(0, (2, 3), (15, 25), (0, 10))
    zeros = open_reader(
        config_for("catmaid", {**params, "missing": "zero"}, (1, 1, 4, 40, 50), "uint16")
    )
    zeros.check()
    block = zeros.read(0, (2, 3), (0, 40), (0, 50))
    assert not block[0, 0, 20:, :25].any()
    np.testing.assert_array_equal(block[0, 0, :20], vol[2, :20])

    write_catmaid(tmp_path / "small", vol[2:3, 20:39, :24], (19, 24), "tif")  # a short tile
    (tmp_path / "small" / "0" / "0_0.tif").rename(tile)
    with raises_source(tile, "z=2, row=1, col=0", "19x24 pixels", "expected 20x25"):
        reader.read(0, (2, 3), (20, 40), (0, 25))

    write_catmaid(tmp_path / "u8", vol[2:3, 20:40, :25].astype(np.uint8), (20, 25), "tif")
    (tmp_path / "u8" / "0" / "0_0.tif").replace(tile)
    with raises_source(tile, "z=2, row=1, col=0", "data type is uint8"):
        reader.read(0, (2, 3), (20, 40), (0, 25))

    tile.write_bytes(b"MM\x00*garbage")
    with raises_source(tile, "z=2, row=1, col=0", "cannot read the tile"):
        reader.read(0, (2, 3), (20, 40), (0, 25))

    beyond = open_reader(config_for("catmaid", params, (1, 1, 4, 40, 51), "uint16"))
    with raises_source(root / "0" / "0_2.tif", "z=0, row=0, col=2", "tile is missing"):
        beyond.check()


def test_catmaid_check_counts_every_missing_tile(tmp_path: Path) -> None:
    vol = make_volume((4, 32, 32), "uint8", seed=12)
    write_catmaid(tmp_path / "cat", vol, (16, 16), "png")
    gone = sorted((tmp_path / "cat").rglob("*_1.png"))  # the right column of every slice
    for path in gone:
        path.unlink()
    params = {"root_dir": str(tmp_path / "cat"), "tile_size": {"x": 16, "y": 16}}
    reader = open_reader(config_for("catmaid", params, (1, 1, 4, 32, 32), "uint8"))
    with raises_source(
        tmp_path / "cat" / "0" / "0_1.png",
        "z=0, row=0, col=1",
        "(8 tiles are missing)",
        "and 3 more",
    ):
        reader.check()
    left = open_reader(config_for("catmaid", params, (1, 1, 4, 32, 16), "uint8"))
    left.check()  # the extent needs only the left column


def test_catmaid_short_edge_tiles_must_cover_the_extent(tmp_path: Path) -> None:
    vol = make_volume((1, 30, 30), "uint8", seed=11)
    write_catmaid(tmp_path / "cat", vol, (16, 16), "png", pad=False)  # edge tiles are 14 wide
    params = {"root_dir": str(tmp_path / "cat"), "tile_size": {"x": 16, "y": 16}}
    assert_reads(
        open_reader(config_for("catmaid", params, (1, 1, 1, 30, 30), "uint8")), vol[None, None]
    )
    wider = open_reader(config_for("catmaid", params, (1, 1, 1, 30, 31), "uint8"))
    with raises_source(tmp_path / "cat" / "0" / "0_1.png", "row=0, col=1", "16x14 pixels"):
        wider.read(0, (0, 1), (0, 30), (0, 31))


# -- multipage-tiff ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "compression"), [("uint8", None), ("uint16", None), ("uint16", "zlib")]
)
def test_multipage_tiff_time_series(tmp_path: Path, dtype: str, compression: str | None) -> None:
    vol = make_volume((6, 3, 21, 33), dtype, seed=12)  # t, z, y, x
    paths = write_multipage_tiff_per_z(tmp_path / "planes", vol, compression=compression)
    files = {f"z_{z}": str(p) for z, p in paths.items()}
    config = config_for("multipage-tiff", {"files": files}, (6, 1, 3, 21, 33), dtype)
    assert_reads(open_reader(config), vol[:, np.newaxis])
    pattern = str(tmp_path / "planes" / "plane_{z:02d}.tif")
    config = config_for("multipage-tiff", {"pattern": pattern}, (6, 1, 3, 21, 33), dtype)
    assert_reads(open_reader(config), vol[:, np.newaxis])


def test_multipage_tiff_rgb_pages(tmp_path: Path) -> None:
    vol = make_volume((2, 2, 9, 10, 3), "uint8", seed=13)
    write_multipage_tiff_per_z(tmp_path / "rgb", vol)
    pattern = str(tmp_path / "rgb" / "plane_{z:02d}.tif")
    config = config_for("multipage-tiff", {"pattern": pattern}, (2, 3, 2, 9, 10), "uint8")
    assert_reads(open_reader(config), np.moveaxis(vol, -1, 1))


def test_multipage_tiff_bad_data(tmp_path: Path) -> None:
    vol = make_volume((4, 3, 12, 14), "uint16", seed=14)
    paths = write_multipage_tiff_per_z(tmp_path / "p", vol)
    files = {f"z_{z}": str(p) for z, p in paths.items()}
    config = config_for("multipage-tiff", {"files": files}, (4, 1, 3, 12, 14), "uint16")
    reader = open_reader(config)

    more_time = config_for("multipage-tiff", {"files": files}, (5, 1, 3, 12, 14), "uint16")
    with raises_source(paths[0], "t=4, z=0", "has 4 pages (time points)"):
        open_reader(more_time).check()
    more_z = config_for("multipage-tiff", {"files": files}, (4, 1, 4, 12, 14), "uint16")
    with raises_source(
        "source.params.files", "z=3", "no file for this slice; the files are z_0, z_1, z_2"
    ):
        open_reader(more_z).check()

    paths[1].unlink()
    with raises_source(paths[1], "z=1", "TIFF file is missing"):
        reader.check()
    with raises_source(paths[1], "t=2, z=1", "missing"):
        reader.read(2, (0, 3), (0, 12), (0, 14))

    write_multipage_tiff_per_z(tmp_path / "q", vol[:, :, :11])  # wrong shape
    (tmp_path / "q" / "plane_01.tif").rename(paths[1])
    with raises_source(paths[1], "t=0, z=1", "11x14 pixels", "12x14"):
        reader.read(0, (0, 3), (0, 5), (0, 5))

    write_multipage_tiff_per_z(tmp_path / "r", vol.astype(np.float32))  # wrong dtype
    (tmp_path / "r" / "plane_01.tif").replace(paths[1])
    with raises_source(paths[1], "t=1, z=1", "data type is float32"):
        reader.read(1, (1, 2), (0, 5), (0, 5))

    paths[1].write_bytes(paths[0].read_bytes()[:300])  # truncated
    with raises_source(paths[1], "t=0, z=1", "the file is cut short"):
        reader.read(0, (1, 2), (0, 12), (0, 14))
    with raises_source(paths[1], "t=3, z=1", "has 1 pages"):
        reader.read(3, (1, 2), (0, 12), (0, 14))

    wide = config_for("multipage-tiff", {"files": files}, (4, 1, 1, 12, 15), "uint16")
    with raises_source(paths[0], "z=0", "x=[0, 15)", "lies beyond"):
        open_reader(wide).check()


# -- tiff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_ome_tiff(tmp_path: Path, dtype: str) -> None:
    vol = make_volume((3, 2, 5, 19, 23), dtype, seed=15)
    path = write_tiff(tmp_path / "v.ome.tif", vol, ome=True, axes="TCZYX")
    assert_reads(open_reader(config_for("tiff", {"path": str(path)}, vol.shape, dtype)), vol)
    one = config_for("tiff", {"path": str(path), "channel": 1}, (3, 1, 5, 19, 23), dtype)
    assert_reads(open_reader(one), vol[:, 1:2])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_hyperstack(tmp_path: Path, compression: str | None) -> None:
    vol = make_volume((2, 3, 4, 17, 21), "uint16", seed=16)  # t, c, z, y, x
    path = write_tiff(
        tmp_path / "h.tif",
        vol.transpose(0, 2, 1, 3, 4),
        imagej=True,
        axes="TZCYX",
        compression=compression,
    )
    assert_reads(open_reader(config_for("tiff", {"path": str(path)}, vol.shape, "uint16")), vol)


def test_tiff_without_metadata_plain_stack_and_rgb(tmp_path: Path) -> None:
    vol = make_volume((6, 15, 17), "uint8", seed=17)
    path = write_tiff(tmp_path / "z.tif", vol)  # pages without axes: a z-stack
    assert_reads(
        open_reader(config_for("tiff", {"path": str(path)}, (1, 1, 6, 15, 17), "uint8")),
        vol[None, None],
    )
    rgb = make_volume((4, 15, 17, 3), "uint8", seed=18)
    path = tmp_path / "rgb.tif"
    import tifffile

    tifffile.imwrite(path, rgb, photometric="rgb")
    config = config_for("tiff", {"path": str(path)}, (1, 3, 4, 15, 17), "uint8")
    assert_reads(open_reader(config), np.moveaxis(rgb, -1, 0)[None])


def test_tiff_axes_given_and_time_split_over_files(tmp_path: Path) -> None:
    # the Boss ingest client's hyperstack: pages in t, z, c order, 3 time points per file
    vol = make_volume((7, 2, 3, 11, 13), "uint16", seed=19)  # t, c, z, y, x
    pages = vol.transpose(0, 2, 1, 3, 4)  # t, z, c
    for i in range(3):
        part = pages[i * 3 : (i + 1) * 3].reshape(-1, 11, 13)
        write_tiff(tmp_path / f"stack_{i + 200:04d}.tif", part, compression="zlib" if i else None)
    params = {
        "path": str(tmp_path / "stack_{i+200:04d}.tif"),
        "t_per_file": 3,
        "axes": "tzcyx",
        "sizes": {"z": 3, "c": 2},
    }
    assert_reads(open_reader(config_for("tiff", params, vol.shape, "uint16")), vol)
    one = config_for("tiff", {**params, "channel": 1}, (7, 1, 3, 11, 13), "uint16")
    assert_reads(open_reader(one), vol[:, 1:2])
    longer = config_for("tiff", params, (8, 2, 3, 11, 13), "uint16")
    with raises_source(tmp_path / "stack_0202.tif", "t=7", "has 1 time points, so no time point 1"):
        open_reader(longer).check()
    shaped = make_volume((6 * 3, 11, 12), "uint16", seed=19)  # narrower pages in file 1
    write_tiff(tmp_path / "stack_0201.tif", shaped)
    with raises_source(tmp_path / "stack_0201.tif", "t=4", "11x12 uint16", "11x13 uint16"):
        open_reader(config_for("tiff", params, vol.shape, "uint16")).read(4, (0, 3), (0, 5), (0, 5))
    more = config_for("tiff", params, (10, 2, 3, 11, 13), "uint16")
    with raises_source(tmp_path / "stack_0203.tif", "t=9", "TIFF file is missing"):
        open_reader(more).check()
    with pytest.raises(InvalidInput, match=r"source\.params\.sizes: give the size of c"):
        open_reader(config_for("tiff", {**params, "sizes": {"z": 3}}, vol.shape, "uint16"))


def test_tiff_bad_data(tmp_path: Path) -> None:
    vol = make_volume((2, 3, 9, 10), "uint16", seed=20)  # t, z, y, x
    path = write_tiff(tmp_path / "v.ome.tif", vol, ome=True, axes="TZYX")
    with raises_source(path, "t=1", "has 1 channels, but the config says channels: 2"):
        open_reader(config_for("tiff", {"path": str(path)}, (2, 2, 3, 9, 10), "uint16")).check()
    with raises_source(path, "t=2", "has 2 time points, so no time point 2"):
        open_reader(config_for("tiff", {"path": str(path)}, (3, 1, 3, 9, 10), "uint16")).check()
    with raises_source(path, "z=[0, 4)", "lies beyond the data (3 z-slices)"):
        open_reader(config_for("tiff", {"path": str(path)}, (2, 1, 4, 9, 10), "uint16")).check()
    with raises_source(path, "y=[0, 10)", "lies beyond the image (9x10 pixels)"):
        open_reader(config_for("tiff", {"path": str(path)}, (2, 1, 3, 10, 10), "uint16")).check()
    with raises_source(path, "data type is uint16", "dtype int16"):
        open_reader(config_for("tiff", {"path": str(path)}, (2, 1, 3, 9, 10), "int16")).check()
    reader = open_reader(config_for("tiff", {"path": str(path)}, (2, 1, 3, 9, 10), "uint16"))
    path.write_bytes(b"II*\x00" + b"\x00" * 10)
    with raises_source(path, "t=1", "cannot read the TIFF"):
        reader.read(1, (0, 3), (0, 9), (0, 10))
    path.unlink()
    with raises_source(path, "t=0", "TIFF file is missing"):
        reader.check()
    flat = write_tiff(tmp_path / "flat.tif", make_volume((12, 4, 4), "uint8"))
    with raises_source(flat, "has 12 pages, not a multiple of 5"):
        given = {"path": str(flat), "axes": "tzyx", "sizes": {"z": 5}}
        open_reader(config_for("tiff", given, (1, 1, 5, 4, 4), "uint8")).check()


def test_tiff_reads_only_the_pages_it_needs(tmp_path: Path) -> None:
    vol = make_volume((2, 1, 16, 128, 128), "uint16", seed=21)  # 1 MiB, 32 KiB per page
    plain = write_tiff(tmp_path / "plain.ome.tif", vol, ome=True, axes="TCZYX")
    packed = write_tiff(
        tmp_path / "packed.ome.tif", vol, ome=True, axes="TCZYX", compression="zlib"
    )
    for path in (plain, packed):
        reader = open_reader(config_for("tiff", {"path": str(path)}, vol.shape, "uint16"))
        reader.read(0, (0, 1), (0, 1), (0, 1))  # imports, caches
        tracemalloc.start()
        block = reader.read(1, (4, 6), (10, 40), (20, 50))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.testing.assert_array_equal(block, vol[1, :, 4:6, 10:40, 20:50])
        # far less than the 512 KiB of a time point: a page or two and the decoder's buffers
        assert peak < 5 * 128 * 128 * 2, f"{path.name}: peak {peak} bytes for a 2-page region"


# -- zarr and n5 ---------------------------------------------------------------------------


@pytest.mark.parametrize(("zarr_format", "dtype"), [(2, "uint8"), (3, "uint16")])
def test_zarr_arrays(tmp_path: Path, zarr_format: int, dtype: str) -> None:
    vol = make_volume((2, 3, 5, 19, 23), dtype, seed=22)
    path = write_zarr(tmp_path / "v.zarr", vol, zarr_format=zarr_format, chunks=(1, 1, 2, 8, 8))
    assert_reads(open_reader(config_for("zarr", {"path": str(path)}, vol.shape, dtype)), vol)
    one = config_for("zarr", {"path": str(path), "channel": 2}, (2, 1, 5, 19, 23), dtype)
    assert_reads(open_reader(one), vol[:, 2:3])


def test_zarr_axes_from_names_or_params_and_array_in_group(tmp_path: Path) -> None:
    vol = make_volume((5, 19, 23, 2), "uint16", seed=23)  # z, y, x, c
    path = write_zarr(
        tmp_path / "g.zarr", vol, dimension_names=("z", "y", "x", "c"), array_path="raw/s0"
    )
    expected = np.moveaxis(vol, -1, 0)[None]
    config = config_for("zarr", {"path": str(path), "array": "raw/s0"}, (1, 2, 5, 19, 23), "uint16")
    assert_reads(open_reader(config), expected)
    plain = write_zarr(tmp_path / "p.zarr", vol, zarr_format=2)
    config = config_for(
        "zarr", {"path": f"file://{plain}", "axes": "zyxc"}, (1, 2, 5, 19, 23), "uint16"
    )
    assert_reads(open_reader(config), expected)
    with raises_source(plain, "4 dimensions", "give source.params.axes"):
        open_reader(
            config_for("zarr", {"path": str(plain), "axes": "zyx"}, (1, 2, 5, 19, 23), "uint16")
        ).check()
    group = config_for("zarr", {"path": str(path)}, (1, 2, 5, 19, 23), "uint16")
    with raises_source(path, "is a Zarr group, not an array"):
        open_reader(group).check()


def test_ome_zarr_image_reads_its_first_level(tmp_path: Path) -> None:
    import zarr
    from zarr.storage import LocalStore

    vol = make_volume((2, 9, 12), "uint8", seed=24)  # c, y, x
    group = zarr.open_group(LocalStore(tmp_path / "img.zarr"), mode="w")
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {"axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}
        ],
    }
    group.create_array("0", shape=vol.shape, chunks=(1, 4, 4), dtype="uint8")[...] = vol
    config = config_for("zarr", {"path": str(tmp_path / "img.zarr")}, (1, 2, 1, 9, 12), "uint8")
    assert_reads(open_reader(config), vol[None, :, None])


def test_zarr_bad_data(tmp_path: Path) -> None:
    vol = make_volume((4, 10, 12), "uint16", seed=25)
    path = write_zarr(tmp_path / "v.zarr", vol, chunks=(2, 5, 6))
    with raises_source(path, "x=[0, 13)", "lies beyond the Zarr array"):
        open_reader(config_for("zarr", {"path": str(path)}, (1, 1, 4, 10, 13), "uint16")).check()
    with raises_source(path, "data type is uint16", "set dtype: uint16"):
        open_reader(config_for("zarr", {"path": str(path)}, (1, 1, 4, 10, 12), "uint8")).check()
    with raises_source(tmp_path / "missing.zarr", "Zarr store does not exist"):
        open_reader(
            config_for(
                "zarr", {"path": str(tmp_path / "missing.zarr")}, (1, 1, 4, 10, 12), "uint16"
            )
        ).check()
    reader = open_reader(config_for("zarr", {"path": str(path)}, (1, 1, 4, 10, 12), "uint16"))
    chunk = path / "c" / "1" / "1" / "1"
    chunk.write_bytes(b"\x00garbage")
    with raises_source(path, "t=0, z=2", "cannot read the region"):
        reader.read(0, (2, 4), (5, 10), (6, 12))
    np.testing.assert_array_equal(reader.read(0, (0, 2), (0, 10), (0, 12))[0], vol[:2])


@pytest.mark.s3
def test_zarr_in_a_store(tmp_path: Path, s3_env: str) -> None:
    import zarr
    from zarr.storage import ObjectStore

    from neuroferry.stores import open_store

    vol = make_volume((3, 10, 14), "uint16", seed=26)
    url = f"{s3_env}/volumes/v.zarr"
    store = ObjectStore(open_store(url).raw)
    zarr.create_array(store=store, shape=vol.shape, chunks=(1, 5, 7), dtype="uint16")[...] = vol
    assert_reads(
        open_reader(config_for("zarr", {"path": url}, (1, 1, 3, 10, 14), "uint16")), vol[None, None]
    )


@pytest.mark.parametrize(("compression", "dtype"), [("raw", "uint8"), ("gzip", "uint16")])
def test_n5_datasets(tmp_path: Path, compression: str, dtype: str) -> None:
    vol = make_volume((2, 5, 19, 23), dtype, seed=27)  # c, z, y, x
    path = write_n5(
        tmp_path / "v.n5", vol, block=(1, 2, 8, 8), compression=compression, dataset="setup0/s0"
    )
    config = config_for("n5", {"path": str(path), "dataset": "setup0/s0"}, (1, 2, 5, 19, 23), dtype)
    assert_reads(open_reader(config), vol[None])


def test_n5_written_by_tensorstore(tmp_path: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    vol = make_volume((5, 19, 23), "uint16", seed=28)
    spec = {
        "driver": "n5",
        "kvstore": {"driver": "file", "path": str(tmp_path / "ts.n5")},
        "metadata": {
            "dimensions": [23, 19, 5],
            "blockSize": [8, 8, 2],
            "dataType": "uint16",
            "compression": {"type": "gzip"},
        },
        "create": True,
    }
    array = ts.open(spec).result()
    array[...] = vol.transpose()  # tensorstore indexes N5 in its own (x, y, z) order
    config = config_for("n5", {"path": str(tmp_path / "ts.n5")}, (1, 1, 5, 19, 23), "uint16")
    assert_reads(open_reader(config), vol[None, None])


def test_n5_missing_block_is_zero_and_corrupt_block_is_named(tmp_path: Path) -> None:
    vol = make_volume((4, 10, 12), "uint8", seed=29)
    path = write_n5(tmp_path / "v.n5", vol, block=(2, 5, 6), axes=("z", "y", "x"))
    reader = open_reader(config_for("n5", {"path": str(path)}, (1, 1, 4, 10, 12), "uint8"))
    (path / "1" / "0" / "1").unlink()  # x-block 1, y-block 0, z-block 1
    block = reader.read(0, (0, 4), (0, 10), (0, 12))[0]
    assert not block[2:4, 0:5, 6:12].any()
    np.testing.assert_array_equal(block[:2], vol[:2])
    (path / "0" / "1" / "0").write_bytes(b"\x00\x00\x00\x03garbage")
    with raises_source(path / "0" / "1" / "0", "corrupt block", "block [0, 1, 0] in N5 order"):
        reader.read(0, (0, 2), (5, 10), (0, 6))
    with raises_source(path, "data type is uint8", "set dtype: uint8"):
        open_reader(config_for("n5", {"path": str(path)}, (1, 1, 4, 10, 12), "uint16")).check()
    with raises_source(path, "t=0", "z=[0, 5)", "lies beyond the N5 dataset"):
        open_reader(config_for("n5", {"path": str(path)}, (1, 1, 5, 10, 12), "uint8")).check()
    with raises_source(tmp_path / "v.n5" / "nope" / "attributes.json", "no N5 dataset here"):
        open_reader(
            config_for("n5", {"path": str(path), "dataset": "nope"}, (1, 1, 4, 10, 12), "uint8")
        ).check()


# -- across readers ----------------------------------------------------------------------


def _every_reader(tmp_path: Path) -> list[tuple[Reader, np.ndarray]]:
    vol = make_volume((3, 14, 18), "uint16", seed=30)
    made = []
    write_image_folder(tmp_path / "f", vol)
    made.append(("image-folder", {"path": str(tmp_path / "f")}))
    write_catmaid(tmp_path / "c", vol, (8, 8), "tif")
    made.append(
        (
            "catmaid",
            {"root_dir": str(tmp_path / "c"), "filetype": "tif", "tile_size": {"x": 8, "y": 8}},
        )
    )
    paths = write_multipage_tiff_per_z(tmp_path / "m", vol[None])
    made.append(("multipage-tiff", {"files": {f"z_{z}": str(p) for z, p in paths.items()}}))
    made.append(("tiff", {"path": str(write_tiff(tmp_path / "t.tif", vol))}))
    made.append(("zarr", {"path": str(write_zarr(tmp_path / "v.zarr", vol))}))
    made.append(("n5", {"path": str(write_n5(tmp_path / "v.n5", vol))}))
    return [
        (open_reader(config_for(name, params, (1, 1, 3, 14, 18), "uint16")), vol)
        for name, params in made
    ]


def test_readers_survive_pickling_after_use(tmp_path: Path) -> None:
    readers = _every_reader(tmp_path)
    assert {r.name for r, _ in readers} == set(BUILTIN_READERS)
    for reader, vol in readers:
        reader.check()
        reader.read(0, (0, 1), (0, 2), (0, 2))
        copy = pickle.loads(pickle.dumps(reader))
        np.testing.assert_array_equal(
            copy.read(0, (1, 3), (2, 14), (3, 17))[0], vol[1:3, 2:14, 3:17], err_msg=reader.name
        )


def test_sources_outside_the_granted_folders_are_refused(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    vol = make_volume((2, 6, 6), "uint8", seed=31)
    write_image_folder(other / "stack", vol)
    settings = get_settings(home=tmp_path / "home", source_roots=[allowed])
    alice = access_for(settings, "alice", "user")
    config = config_for("image-folder", {"path": str(other / "stack")}, (1, 1, 2, 6, 6), "uint8")
    with pytest.raises(Forbidden, match=r"source\.params\.path: .* is not under a folder user"):
        open_reader(config, settings=settings, access=alice)
    for name, params in [
        ("zarr", {"path": str(other / "v.zarr")}),
        ("zarr", {"path": "s3://other-bucket/v.zarr"}),
        ("tiff", {"path": str(other / "x_{i}.tif"), "t_per_file": 2}),
        ("multipage-tiff", {"files": {"z_0": str(allowed / "a.tif"), "z_1": str(other / "b.tif")}}),
    ]:
        with pytest.raises(Forbidden, match="is not under a"):
            open_reader(config_for(name, params, (1, 1, 2, 6, 6), "uint8"), access=alice)
    # a store prefix granted to every user, spelled differently
    shared = get_settings(home=tmp_path / "home", store_prefixes=["S3://Lab-Data/shared/"])
    url = "s3://lab-data//shared/./mouse/v.zarr"
    open_reader(
        config_for("zarr", {"path": url}, (1, 1, 2, 6, 6), "uint8"),
        settings=shared,
        access=access_for(shared, "alice", "user"),
    )
    for escape in ("s3://lab-data/shared/%2e%2e/private/v.zarr", "s3://lab-data/sharedx/v.zarr"):
        with pytest.raises(Forbidden):
            open_reader(
                config_for("zarr", {"path": escape}, (1, 1, 2, 6, 6), "uint8"),
                settings=shared,
                access=access_for(shared, "alice", "user"),
            )
    # a symlink inside a granted folder that leads out of it
    allowed.mkdir()
    os.symlink(other / "stack", allowed / "link")
    config = config_for("image-folder", {"path": str(allowed / "link")}, (1, 1, 2, 6, 6), "uint8")
    reader = open_reader(config, settings=settings, access=alice)
    with pytest.raises(Forbidden, match=r"link \(which is .*other/stack\) is not under"):
        reader.check()
    inside = config_for("image-folder", {"path": str(other / "stack")}, (1, 1, 2, 6, 6), "uint8")
    granted = get_settings(home=tmp_path / "home", grants={"alice": {"source_roots": [other]}})
    open_reader(inside, settings=granted, access=access_for(granted, "alice", "user")).check()
    open_reader(inside, settings=settings).check()  # the service's own jobs read it


def test_the_services_own_files_are_never_a_source(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = get_settings(home=home, source_roots=[tmp_path])
    for path in (home / "lake", home / "ferry.db", tmp_path):
        config = config_for("zarr", {"path": str(path)}, (1, 1, 2, 6, 6), "uint8")
        with pytest.raises(Forbidden, match="the service's own"):
            open_reader(config, settings=settings, access=access_for(settings, "root", "admin"))


@pytest.mark.parametrize("kind", ["zarr", "n5"])
def test_a_chunk_that_is_a_symlink_out_of_the_granted_folder_is_refused(
    tmp_path: Path, kind: str
) -> None:
    granted, outside = tmp_path / "granted", tmp_path / "outside"
    vol = make_volume((4, 8, 8), "uint8", seed=5)
    if kind == "zarr":
        path = write_zarr(granted / "v.zarr", vol, zarr_format=2, chunks=(2, 8, 8))
        chunk, params = path / "1.0.0", {"path": str(path)}
    else:
        path = write_n5(granted / "v.n5", vol, block=(2, 8, 8), compression="raw")
        chunk, params = path / "0" / "0" / "1", {"path": str(path)}
    outside.mkdir()
    stolen = outside / "secret"
    stolen.write_bytes(chunk.read_bytes())  # a valid chunk, but not the user's
    chunk.unlink()
    chunk.symlink_to(stolen)
    settings = get_settings(home=tmp_path / "home", grants={"alice": {"source_roots": [granted]}})
    config = config_for(kind, params, (1, 1, 4, 8, 8), "uint8")
    reader = open_reader(config, settings=settings, access=access_for(settings, "alice", "user"))
    np.testing.assert_array_equal(reader.read(0, (0, 2), (0, 8), (0, 8))[0], vol[0:2])
    with pytest.raises((Forbidden, SourceDataError), match=r"which is .*outside/secret"):
        reader.read(0, (2, 4), (0, 8), (0, 8))
    # the service's own jobs (and admins) may follow it
    np.testing.assert_array_equal(
        open_reader(config, settings=settings).read(0, (2, 4), (0, 8), (0, 8))[0], vol[2:4]
    )
