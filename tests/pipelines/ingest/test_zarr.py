"""The OME-Zarr writer: generated volumes written unit by unit into a local store and read
back with zarr-python voxel for voxel at every level, against a pyramid computed here in a
plain way; the Zarr v3 and NGFF 0.5 metadata checked rule by rule; resuming, verifying and
cleaning up a volume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import obstore
import pytest
import zarr

from neuroferry.errors import SourceDataError
from neuroferry.pipelines.ingest import (
    ChunkCodec,
    IngestConfig,
    Layout,
    Unit,
    encode_shard,
    plan_units,
    shard_totals,
)
from neuroferry.pipelines.ingest._writer import (
    PLAN_KEY,
    Volume,
    cleanup_volume,
    load_record,
    put_json,
    record_key,
    verify_volume,
    write_unit,
)
from neuroferry.pipelines.ingest._zarr import dumps
from neuroferry.stores import Store, open_store

from .test_pyramid import reference

LOG = __import__("logging").getLogger("test-ingest")


def config(shape_tczyx: tuple[int, ...], dtype: str, **options: Any) -> IngestConfig:
    t, c, z, y, x = shape_tczyx
    return IngestConfig.model_validate(
        {
            "name": options.pop("name", "lab/vol"),
            "source": {"plugin": "tests:Unused"},
            "extent": {"t": [0, t], "z": [3, 3 + z], "y": [0, y], "x": [10, 10 + x]},
            "channels": c,
            "dtype": dtype,
            "voxel_size": {"x": 0.25, "y": 0.25, "z": 1.5, "unit": "micrometer", "t": 2.0},
            # the byte-level tests below keep (t, c, z, y, x); test_time_axis covers both
            "time_axis": options.pop("time_axis", "always"),
            **options,
        }
    )


def never(_result: dict[str, Any]) -> None:
    """A cancel check that never stops the unit."""


class Written:
    """A volume written from a numpy array by the writer, unit by unit."""

    def __init__(self, root: Path, volume: np.ndarray, cfg: IngestConfig, budget: int) -> None:
        self.volume = volume
        self.layout = Layout.of(cfg)
        self.fingerprint = self.layout.fingerprint()
        self.store: Store = open_store(root.as_uri(), create=True)
        self.progress_root = root.parent / ".ferry" / "ingest" / root.name
        self.volume_stores = Volume(
            self.store, open_store(self.progress_root.as_uri(), create=True)
        )
        self.root = root
        self.units = plan_units(self.layout, budget)
        for level in range(self.layout.levels):
            obstore.put(
                self.store.raw, f"{level}/zarr.json", dumps(self.layout.array_metadata(level))
            )
        put_json(self.volume_stores.progress, PLAN_KEY, {"fingerprint": self.fingerprint})
        self.reads: list[str] = []

    def read(self, unit: Unit) -> np.ndarray:
        self.reads.append(unit.name)
        (z0, z1), (y0, y1), (x0, x1) = unit.region(self.layout)
        return self.volume[unit.t, :, z0:z1, y0:y1, x0:x1].copy()

    def write(
        self, units: list[Unit] | None = None, stop: Callable[[dict[str, Any]], None] = never
    ) -> dict[str, dict[str, Any]]:
        return {
            u.name: write_unit(
                self.volume_stores,
                self.layout,
                self.fingerprint,
                u,
                self.read,
                log=LOG,
                check_cancelled=stop,
            )
            for u in (self.units if units is None else units)
        }

    def commit(self) -> None:
        obstore.put(self.store.raw, "zarr.json", dumps(self.layout.group_metadata()))

    def objects(self) -> dict[str, tuple[int, int]]:
        """Shard files: key -> (inode, mtime ns)."""
        return {
            p.relative_to(self.root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in self.root.rglob("*")
            if p.is_file() and "/c/" in p.relative_to(self.root).as_posix()
        }


def plain_pyramid(volume: np.ndarray, levels: int, factors: tuple[int, int, int], method: str):
    """Each level from the one before, the straightforward way: mean as the average of the
    voxels of each block that exist (float, rounded half up), mode and stride block by
    block."""
    out = [volume]
    for _ in range(1, levels):
        prev = out[-1]
        if method != "mean":
            out.append(reference(prev, factors, method))
            continue
        z, y, x = prev.shape[-3:]
        fz, fy, fx = factors
        padded = np.full(
            (*prev.shape[:-3], -(-z // fz) * fz, -(-y // fy) * fy, -(-x // fx) * fx), np.nan
        )
        padded[..., :z, :y, :x] = prev
        lead = prev.shape[:-3]
        shaped = padded.reshape(*lead, -(-z // fz), fz, -(-y // fy), fy, -(-x // fx), fx)
        k = len(lead)
        mean = np.nanmean(shaped, axis=(k + 1, k + 3, k + 5))
        out.append(np.floor(mean + 0.5).astype(volume.dtype))
    return out


CASES = {
    # name: (t, c, z, y, x), dtype, chunk, shard, levels
    "uint8 3-D odd sizes, 3 levels": ((1, 1, 19, 45, 37), "uint8", (4, 8, 8), (8, 16, 16), 3),
    "uint16 2-D (z = 1), 4 levels": ((1, 1, 1, 70, 53), "uint16", (1, 16, 16), (8, 32, 32), 4),
    "uint16 time series, 2 channels": ((2, 2, 9, 20, 30), "uint16", (2, 8, 8), (4, 16, 16), 3),
    "uint16 one level": ((1, 1, 7, 33, 17), "uint16", (4, 8, 8), (4, 16, 16), 1),
}


@pytest.mark.parametrize("case", CASES)
def test_written_volume_reads_back_voxel_for_voxel_at_every_level(
    case: str, tmp_path: Path
) -> None:
    shape, dtype, chunk, shard, levels = CASES[case]
    rng = np.random.default_rng(len(case))
    info = np.iinfo(dtype)
    volume = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    volume[..., : chunk[0], : chunk[1], : chunk[2]] = 0  # a chunk that is not stored
    cfg = config(shape, dtype, chunk=chunk, shard=shard, levels=levels)
    budget = volume[0].nbytes // 3  # a few units for each time point
    written = Written(tmp_path / "vol.ome.zarr", volume, cfg, budget)
    assert len(written.units) > 1
    results = written.write()
    checked = verify_volume(
        written.volume_stores, written.layout, written.fingerprint, written.units, results
    )
    assert checked.ok, checked.problems
    assert len(checked.shards) == shard_totals(written.layout)["shards"]
    written.commit()

    group = zarr.open_group(str(tmp_path / "vol.ome.zarr"), mode="r")
    want = plain_pyramid(volume, levels, cfg.downsample_factors, "mean")
    for level in range(levels):
        array = group[str(level)]
        assert array.shape == want[level].shape == tuple(written.layout.shapes[level])
        assert array.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(array[...], want[level], err_msg=f"level {level}")
    assert sorted(name for name, _ in group.members()) == [str(k) for k in range(levels)]
    check_ngff_05(tmp_path / "vol.ome.zarr", written.layout)


def test_labels_are_downsampled_by_mode(tmp_path: Path) -> None:
    shape = (1, 1, 9, 21, 19)
    rng = np.random.default_rng(3)
    volume = (rng.integers(0, 3, size=shape, dtype=np.uint32) * 7).astype(np.uint32)
    cfg = config(shape, "uint32", chunk=(4, 8, 8), shard=(8, 16, 16), levels=3, image_kind="label")
    assert cfg.method() == "mode"
    written = Written(tmp_path / "labels.ome.zarr", volume, cfg, budget=1)
    written.write()
    written.commit()
    group = zarr.open_group(str(tmp_path / "labels.ome.zarr"), mode="r")
    want = plain_pyramid(volume, 3, (2, 2, 2), "mode")
    for level in range(3):
        np.testing.assert_array_equal(group[str(level)][...], want[level])
    ome = group.attrs["ome"]
    assert ome["image-label"] == {}
    assert ome["multiscales"][0]["type"] == "mode"


@pytest.mark.parametrize("codec", ["blosc-zstd", "blosc-lz4", "zstd", "gzip", "none"])
def test_every_codec_is_readable_by_zarr(codec: str, tmp_path: Path) -> None:
    shape = (1, 1, 6, 20, 20)
    volume = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    level = {"blosc-zstd": 3, "blosc-lz4": 3, "zstd": 3, "gzip": 6, "none": 0}[codec]
    cfg = config(
        shape,
        "uint8",
        chunk=(2, 8, 8),
        shard=(4, 16, 16),
        levels=2,
        compression={"codec": codec, "level": level},
    )
    written = Written(tmp_path / "v.ome.zarr", volume, cfg, budget=10**6)
    written.write()
    array = zarr.open_array(str(tmp_path / "v.ome.zarr" / "0"), mode="r")
    np.testing.assert_array_equal(array[...], volume)
    codecs = written.layout.array_metadata(0)["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in codecs] == ["bytes"] + (
        {
            "blosc-zstd": ["blosc"],
            "blosc-lz4": ["blosc"],
            "zstd": ["zstd"],
            "gzip": ["gzip"],
            "none": [],
        }[codec]
    )


def check_ngff_05(root: Path, layout: Layout) -> None:
    """The NGFF 0.5 rules for an image's ``multiscales``, and the Zarr v3 metadata of its
    arrays (shape, sharding, chunk key encoding), checked one by one."""
    group = json.loads((root / "zarr.json").read_text())
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"
    assert "version" not in ome["multiscales"][0]  # 0.5 keeps the version at the top only
    [multiscale] = ome["multiscales"]
    axes = multiscale["axes"]
    assert 2 <= len(axes) <= 5
    assert [a["name"] for a in axes] == ["t", "c", "z", "y", "x"]
    assert len({a["name"] for a in axes}) == len(axes)
    types = [a.get("type") for a in axes]
    assert types == ["time", "channel", "space", "space", "space"]
    # time first, then channel, then 2 or 3 space axes
    order = {"time": 0, "channel": 1, "space": 2}
    assert [order[t] for t in types] == sorted(order[t] for t in types)
    assert axes[0]["unit"] in ("millisecond", "second", "minute", "hour")
    assert "unit" not in axes[1]
    assert all(a["unit"] == layout.unit for a in axes[2:])
    assert layout.unit in ("nanometer", "micrometer", "millimeter", "meter")
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == [str(k) for k in range(layout.levels)]
    previous = None
    for level, dataset in enumerate(datasets):
        transforms = dataset["coordinateTransformations"]
        assert transforms[0]["type"] == "scale"
        assert [t["type"] for t in transforms[1:]] in ([], ["translation"])
        scale = transforms[0]["scale"]
        assert len(scale) == len(axes) and all(s > 0 for s in scale)
        factors = [1, 1, *(f**level for f in layout.factors)]
        expected = [layout.time_step, 1.0, *layout.voxel]
        assert scale == pytest.approx([e * f for e, f in zip(expected, factors, strict=True)])
        if previous is not None:  # highest resolution first
            assert all(s >= p for s, p in zip(scale, previous, strict=True))
        previous = scale
        if len(transforms) == 2:
            translation = transforms[1]["translation"]
            assert len(translation) == len(axes)
            start = [0, 0, 3 * layout.voxel[0], 0, 10 * layout.voxel[2]]
            shift = [
                0,
                0,
                *(
                    (f**level - 1) / 2 * v
                    for f, v in zip(layout.factors, layout.voxel, strict=True)
                ),
            ]
            assert translation == pytest.approx([s + h for s, h in zip(start, shift, strict=True)])
        meta = json.loads((root / str(level) / "zarr.json").read_text())
        assert meta["zarr_format"] == 3 and meta["node_type"] == "array"
        assert meta["shape"] == list(layout.shapes[level])
        assert len(meta["shape"]) == len(axes)
        assert meta["dimension_names"] == ["t", "c", "z", "y", "x"]
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, *layout.shards[level]]
        assert meta["chunk_key_encoding"] == {
            "name": "default",
            "configuration": {"separator": "/"},
        }
        [sharding] = meta["codecs"]
        assert sharding["name"] == "sharding_indexed"
        inner = sharding["configuration"]
        assert inner["chunk_shape"] == [1, 1, *layout.chunks[level]]
        assert [c["name"] for c in inner["index_codecs"]] == ["bytes", "crc32c"]
        assert inner["index_location"] == "end"


def test_a_unit_run_again_writes_nothing_twice(tmp_path: Path) -> None:
    shape = (1, 1, 8, 32, 32)
    volume = np.random.default_rng(0).integers(1, 200, size=shape, dtype=np.uint8)
    cfg = config(shape, "uint8", chunk=(4, 8, 8), shard=(4, 16, 16), levels=2)
    written = Written(tmp_path / "v.ome.zarr", volume, cfg, budget=1)
    stopped_after: list[int] = []

    def stop_after_two(result: dict[str, Any]) -> None:
        from neuroferry.engine import Cancelled

        if len(result["shards"]) >= 4:  # two full-resolution shards, two levels each
            stopped_after.append(len(result["shards"]))
            raise Cancelled("cancelled", result)

    unit = Unit(0, 0, (0, 2), (0, 2))
    from neuroferry.engine import Cancelled

    with pytest.raises(Cancelled) as stopped:
        written.write([unit], stop=stop_after_two)
    assert len(stopped.value.result["shards"]) == 4
    before = written.objects()
    assert len(before) == 4
    progress = written.volume_stores.progress
    assert set(load_record(progress, unit.name, written.fingerprint)) == set(before)

    # a shard put whose record was lost: the same bytes are kept, not written again
    lost = "0/c/0/0/0/1/1"  # level 0, t 0, c 0, shard z 0, y 1, x 1
    again = written.write([unit])[unit.name]
    assert again["recorded"] == 4 and again["written"] == 4 and again["same"] == 0
    record = json.loads((written.progress_root / record_key(unit.name)).read_text())
    del record["shards"][lost]
    (written.progress_root / record_key(unit.name)).write_text(json.dumps(record))
    middle = written.objects()
    third = written.write([unit])[unit.name]
    assert third["same"] == 1 and third["written"] == 0 and third["recorded"] == 7
    assert written.objects() == middle  # nothing rewritten: same inodes, same mtimes
    assert all(middle[k] == v for k, v in before.items())
    # everything recorded: the source is not even read
    reads = len(written.reads)
    assert written.write([unit])[unit.name]["recorded"] == 8
    assert len(written.reads) == reads


def test_empty_shards_are_recorded_but_not_stored(tmp_path: Path) -> None:
    shape = (1, 1, 4, 32, 16)
    volume = np.zeros(shape, dtype=np.uint16)
    volume[0, 0, :, 20:, :] = 9  # only the second row of shards holds data
    cfg = config(shape, "uint16", chunk=(4, 8, 8), shard=(4, 16, 16), levels=2)
    written = Written(tmp_path / "v.ome.zarr", volume, cfg, budget=10**6)
    results = written.write()
    [result] = results.values()
    assert result["empty"] == 2 and result["written"] == 2
    assert sorted(written.objects()) == ["0/c/0/0/0/1/0", "1/c/0/0/0/1/0"]
    checked = verify_volume(
        written.volume_stores, written.layout, written.fingerprint, written.units, results
    )
    assert checked.ok
    assert checked.shards["0/c/0/0/0/0/0"].sha256 is None
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "v.ome.zarr" / "0"), mode="r")[...], volume
    )


def test_verify_names_missing_and_changed_shards(tmp_path: Path) -> None:
    shape = (1, 1, 4, 32, 32)
    volume = np.random.default_rng(1).integers(1, 9, size=shape, dtype=np.uint8)
    cfg = config(shape, "uint8", chunk=(4, 8, 8), shard=(4, 16, 16), levels=1)
    written = Written(tmp_path / "v.ome.zarr", volume, cfg, budget=1)
    results = written.write()
    (written.root / "0/c/0/0/0/0/1").unlink()
    (written.root / "0/c/0/0/0/1/1").write_bytes(b"short")
    checked = verify_volume(
        written.volume_stores, written.layout, written.fingerprint, written.units, results
    )
    assert not checked.ok
    assert any("0/c/0/0/0/0/1: recorded but missing" in p for p in checked.problems)
    assert any("0/c/0/0/0/1/1: the store holds 5 bytes" in p for p in checked.problems)
    assert checked.bad_units == {"t0.z0.y0-1.x1-2", "t0.z0.y1-2.x1-2"}
    results.pop("t0.z0.y0-1.x0-1")  # a unit without a result is read from its record
    assert (
        "t0.z0.y0-1.x0-1"
        not in verify_volume(
            written.volume_stores, written.layout, written.fingerprint, written.units, results
        ).bad_units
    )


def test_cleanup_removes_what_no_unit_recorded(tmp_path: Path) -> None:
    shape = (1, 1, 4, 32, 32)
    volume = np.random.default_rng(2).integers(1, 9, size=shape, dtype=np.uint8)
    cfg = config(shape, "uint8", chunk=(4, 8, 8), shard=(4, 16, 16), levels=1)
    written = Written(tmp_path / "v.ome.zarr", volume, cfg, budget=1)
    written.write(written.units[:2])
    kept = written.objects()
    (written.root / "0/c/0/0/0/1/1").parent.mkdir(parents=True, exist_ok=True)
    (written.root / "0/c/0/0/0/1/1").write_bytes(b"a put whose record never came")
    (written.root / "0/c/0/0/0/1/0#3").write_bytes(b"an interrupted put")
    other = Layout.of(config(shape, "uint8", chunk=(4, 8, 8), shard=(4, 16, 16), levels=2))
    untouched = cleanup_volume(written.volume_stores, other, other.fingerprint())
    assert untouched["removed"] == 0 and (written.root / "0/c/0/0/0/1/1").exists()

    done = cleanup_volume(written.volume_stores, written.layout, written.fingerprint)
    assert done == {"removed": 1, "kept": 2, "staging_removed": 1}
    assert written.objects() == kept
    assert not (written.root / "0/c/0/0/0/1/0#3").exists()


def test_a_reader_that_gives_the_wrong_shape_or_type_is_refused(tmp_path: Path) -> None:
    shape = (1, 1, 4, 16, 16)
    cfg = config(shape, "uint16", chunk=(4, 8, 8), shard=(4, 16, 16), levels=1)
    layout = Layout.of(cfg)
    stores = Volume(
        open_store((tmp_path / "v").as_uri(), create=True),
        open_store((tmp_path / "p").as_uri(), create=True),
    )
    unit = plan_units(layout, 10**6)[0]
    for data, match in (
        (np.zeros((1, 4, 16, 15), dtype=np.uint16), r"shape \(1, 4, 16, 15\).*t 0, z 3-7"),
        (np.zeros((1, 4, 16, 16), dtype=np.uint8), "gave uint8 data.*dtype is uint16"),
    ):
        with pytest.raises(SourceDataError, match=match):
            write_unit(
                stores, layout, "x", unit, lambda _u, d=data: d, log=LOG, check_cancelled=never
            )
    assert not any((tmp_path / "v").rglob("c"))  # nothing written


def test_encode_shard_stores_no_all_fill_chunk_and_no_empty_shard() -> None:
    codec = ChunkCodec("blosc-zstd", 3, 2)
    block = np.zeros((3, 10, 10), dtype=np.uint16)
    assert encode_shard(block, (4, 16, 16), (2, 8, 8), codec).data is None
    block[2, 9, 9] = 1
    shard = encode_shard(block, (4, 16, 16), (2, 8, 8), codec)
    assert shard.chunks == 8 and shard.stored == 1 and shard.data is not None
    index = np.frombuffer(shard.data[-4 - 8 * 2 * 8 : -4], dtype="<u8").reshape(2, 2, 2, 2)
    assert (index[1, 1, 1] != 2**64 - 1).all() and (index[0] == 2**64 - 1).all()
    with pytest.raises(ValueError, match="at most"):
        encode_shard(np.zeros((5, 4, 4), dtype=np.uint16), (4, 16, 16), (2, 8, 8), codec)


def test_units_hold_whole_rows_within_the_budget_or_runs_of_shards() -> None:
    cfg = config((2, 1, 20, 64, 64), "uint8", chunk=(4, 8, 8), shard=(8, 16, 16), levels=1)
    layout = Layout.of(cfg)
    row = 8 * 16 * 64  # one row of shards, 8 deep
    units = plan_units(layout, 2 * row)
    assert [u.name for u in units[:3]] == ["t0.z0.y0-2.x0-4", "t0.z0.y2-4.x0-4", "t0.z1.y0-2.x0-4"]
    # the last slab is 4 deep: all its 4 rows fit in one unit
    assert units[4].name == "t0.z2.y0-4.x0-4"
    assert len(units) == 2 * (2 + 2 + 1) and all(u.nbytes(layout) <= 2 * row for u in units)
    small = plan_units(layout, 2 * 8 * 16 * 16)  # two shards: rows are cut in runs of two
    assert small[0].name == "t0.z0.y0-1.x0-2" and small[1].name == "t0.z0.y0-1.x2-4"
    assert len(small) == 2 * (8 + 8 + 4)
    every = [k for u in plan_units(layout, 1) for k in u.keys(layout)]
    assert len(every) == len(set(every)) == shard_totals(layout)["shards"]
    assert Unit.from_params(units[4].params()) == units[4]


@pytest.mark.parametrize(
    ("t", "time_axis", "axes"),
    [
        (1, "auto", ["c", "z", "y", "x"]),  # a 3-D stack
        (2, "auto", ["t", "c", "z", "y", "x"]),  # a time series
        (1, "always", ["t", "c", "z", "y", "x"]),  # as volumes were written before
    ],
)
def test_time_axis(t: int, time_axis: str, axes: list[str], tmp_path: Path) -> None:
    """A volume has a ``t`` axis only when it has several time points (or when asked);
    either way it reads back voxel for voxel and validates as NGFF 0.5."""
    models = pytest.importorskip("ome_zarr_models.v05")
    shape = (t, 2, 6, 20, 24)
    volume = (np.arange(np.prod(shape)) % 65521).astype(np.uint16).reshape(shape)
    cfg = config(shape, "uint16", chunk=(2, 8, 8), shard=(4, 16, 16), levels=2, time_axis=time_axis)
    written = Written(tmp_path / "vol.ome.zarr", volume, cfg, volume[0].nbytes // 2)
    results = written.write()
    assert verify_volume(
        written.volume_stores, written.layout, written.fingerprint, written.units, results
    ).ok
    written.commit()
    group = zarr.open_group(str(tmp_path / "vol.ome.zarr"), mode="r")
    image = models.Image.from_zarr(group)
    [multiscale] = image.attributes.ome.multiscales
    assert [a.name for a in multiscale.axes] == axes
    for dataset in multiscale.datasets:
        assert len(dataset.coordinateTransformations[0].scale) == len(axes)
    level0 = group["0"][...]
    assert level0.shape == (volume if "t" in axes else volume[0]).shape
    np.testing.assert_array_equal(level0, volume if "t" in axes else volume[0])
    assert group["1"].metadata.dimension_names == tuple(axes)
    keys = sorted(written.objects())
    assert all(len(k.split("/")) == len(axes) + 2 for k in keys), keys[:3]
    if time_axis == "always":  # a partial volume of either layout is not resumed by the other
        auto = Layout.of(
            config(shape, "uint16", chunk=(2, 8, 8), shard=(4, 16, 16), levels=2, time_axis="auto")
        )
        assert auto.fingerprint() != written.layout.fingerprint()
