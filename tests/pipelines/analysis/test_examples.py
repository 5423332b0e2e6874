"""The example analyses over real files: ``file-summary`` over TIFF, ``.npy`` and Zarr
arrays and plain files in a local store and on S3; ``volume-stats`` over OME-Zarr volumes
written by the ingest writer."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from zarr.storage import LocalStore

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.analysis import (
    FILE_SUMMARY,
    VOLUME_STATS,
    Analysis,
    AnalysisRun,
    FileSummaryOutputs,
    VolumeStatsOutputs,
    _examples,
)
from neuroferry.stores import open_store

from ._data import dispatch, write_volume

Run = Callable[..., tuple[Any, Path]]


def stats_of(values: np.ndarray, bins: int) -> dict[str, Any]:
    """What the examples report for ``values``, computed in one go with numpy."""
    data = values.astype(np.float64).ravel()
    data = data[np.isfinite(data)]
    counts, edges = np.histogram(data, bins=bins, range=(data.min(), data.max()))
    return {
        "count": data.size,
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def assert_stats(found: dict[str, Any], want: dict[str, Any]) -> None:
    assert found["count"] == want["count"]
    for key in ("min", "max", "mean", "std"):
        assert found[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), key
    assert found["histogram"]["counts"] == want["histogram"]["counts"]
    assert found["histogram"]["edges"] == pytest.approx(want["histogram"]["edges"])


# -- file-summary -----------------------------------------------------------------------


def sample_asset(root: Path) -> dict[str, Any]:
    """An asset folder with a text file, a TIFF, a .npy with a NaN, a Zarr v3 and a Zarr v2
    array, a broken TIFF and neuroferry's own records; the arrays by name."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 4000, size=(5, 12, 9), dtype=np.uint16)
    table = rng.normal(size=(40, 3)).astype(np.float32)
    table[3, 1] = np.nan
    stack = rng.integers(-50, 50, size=(6, 10, 10), dtype=np.int16)
    old = np.arange(30, dtype=np.float64).reshape(5, 6)
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("acquired on rig 3\n")
    (root / "raw").mkdir()
    tifffile.imwrite(root / "raw" / "image.tif", image)
    np.save(root / "table.npy", table)
    (root / "broken.tiff").write_bytes(b"not a tiff")
    new_array = zarr.create_array(
        LocalStore(root / "stack.zarr"), shape=stack.shape, chunks=(2, 5, 5), dtype=stack.dtype
    )
    new_array[...] = stack
    v2 = zarr.open_array(
        LocalStore(root / "old.zarr"),
        mode="w",
        shape=old.shape,
        chunks=(2, 3),
        dtype="f8",
        zarr_format=2,
    )
    v2[...] = old
    (root / ".ferry").mkdir()
    (root / ".ferry" / "record.json").write_text("{}")
    return {
        "raw/image.tif": image,
        "table.npy": table,
        "stack.zarr/zarr.json": stack,
        "old.zarr/.zarray": old,
    }


def test_file_summary_describes_every_file_of_each_asset(tmp_path: Path, run_analysis: Run) -> None:
    asset = tmp_path / "lake" / "asset-1"
    arrays = sample_asset(asset)
    outputs, results = run_analysis(
        FILE_SUMMARY, dispatch([asset.as_uri()]), label="first look", bins=8, scale=2
    )
    summary = json.loads((results / "summary.json").read_text())
    files = {f["path"]: f for f in summary["files"]}
    on_disk = {
        p.relative_to(asset).as_posix(): p
        for p in asset.rglob("*")
        if p.is_file() and ".ferry" not in p.parts
    }
    assert set(files) == set(on_disk)
    for key, path in on_disk.items():
        assert files[key]["location"] == asset.as_uri()
        assert files[key]["size"] == path.stat().st_size
        assert files[key]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, values in arrays.items():
        found = files[key]["array"]
        assert found["shape"] == list(values.shape)
        assert found["dtype"] == str(values.dtype)
        assert_stats(found, stats_of(values * 2.0, 8))
    assert files["table.npy"]["array"]["count"] == 40 * 3 - 1  # the NaN left out
    assert "array" not in files["notes.txt"]
    assert "TiffFileError" in files["broken.tiff"]["array_error"]
    assert "array" not in files["stack.zarr/c/0/0/0"]
    total = sum(p.stat().st_size for p in on_disk.values())
    assert outputs == FileSummaryOutputs(files=len(on_disk), bytes=total, arrays=4)
    assert summary["label"] == "first look"
    assert (summary["bins"], summary["scale"]) == (8, 2.0)
    assert summary["totals"] == outputs.model_dump()


def test_file_summary_reads_only_the_file_locations_when_given(
    tmp_path: Path, run_analysis: Run
) -> None:
    asset = tmp_path / "asset"
    arrays = sample_asset(asset)
    chosen = [(asset / "table.npy").as_uri(), (asset / "stack.zarr" / "zarr.json").as_uri()]
    outputs, results = run_analysis(FILE_SUMMARY, dispatch([asset.as_uri()], chosen))
    files = json.loads((results / "summary.json").read_text())["files"]
    assert [f["location"] for f in files] == chosen
    assert [f["path"] for f in files] == ["table.npy", "zarr.json"]
    assert_stats(files[1]["array"], stats_of(arrays["stack.zarr/zarr.json"], 16))
    assert outputs.files == 2 and outputs.arrays == 2


def test_file_summary_takes_large_arrays_block_by_block(
    tmp_path: Path, run_analysis: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = tmp_path / "asset"
    arrays = sample_asset(asset)
    monkeypatch.setattr(_examples, "BLOCK_BYTES", 7)  # one row of the last axis at a time
    _, results = run_analysis(FILE_SUMMARY, dispatch([asset.as_uri()]), bins=5)
    files = {f["path"]: f for f in json.loads((results / "summary.json").read_text())["files"]}
    for key in ("stack.zarr/zarr.json", "old.zarr/.zarray"):
        assert_stats(files[key]["array"], stats_of(arrays[key], 5))


def test_block_slices_cover_an_array_once() -> None:
    shape = (3, 4, 5)
    for budget in (1, 8, 40, 10**6):
        seen = np.zeros(shape, dtype=int)
        original = _examples.BLOCK_BYTES
        try:
            _examples.BLOCK_BYTES = budget
            for where in _examples.block_slices(shape, 2):
                seen[where] += 1
        finally:
            _examples.BLOCK_BYTES = original
        assert (seen == 1).all(), budget


@pytest.mark.s3
def test_file_summary_over_s3(s3_env: str, tmp_path: Path, run_analysis: Run) -> None:
    image = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    local = tmp_path / "image.tif"
    tifffile.imwrite(local, image, photometric="minisblack")
    store = open_store(f"{s3_env}/asset", create=True)
    store.put("image.tif", local.read_bytes())
    store.put("readme.md", b"# asset\n")
    outputs, results = run_analysis(FILE_SUMMARY, dispatch([f"{s3_env}/asset"]))
    files = json.loads((results / "summary.json").read_text())["files"]
    assert [f["path"] for f in files] == ["image.tif", "readme.md"]
    assert files[0]["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert_stats(files[0]["array"], stats_of(image, 16))
    assert outputs == FileSummaryOutputs(files=2, bytes=local.stat().st_size + 8, arrays=1)


def test_an_empty_array_has_no_statistics(tmp_path: Path, run_analysis: Run) -> None:
    asset = tmp_path / "asset"
    asset.mkdir()
    np.save(asset / "empty.npy", np.zeros((0, 3)))
    np.save(asset / "words.npy", np.array(["a", "b"]))
    _, results = run_analysis(FILE_SUMMARY, dispatch([asset.as_uri()]))
    files = {
        f["path"]: f["array"] for f in json.loads((results / "summary.json").read_text())["files"]
    }
    assert files["empty.npy"] == {
        "shape": [0, 3],
        "dtype": "float64",
        "count": 0,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "histogram": None,
    }
    assert files["words.npy"] == {"shape": [2], "dtype": "<U1"}


# -- volume-stats -----------------------------------------------------------------------


def two_channel_volume() -> np.ndarray:
    rng = np.random.default_rng(11)
    volume = rng.integers(0, 60000, size=(1, 2, 11, 23, 19), dtype=np.uint16)
    volume[0, 1] //= 7
    return volume


def test_volume_stats_per_channel_at_each_level(tmp_path: Path, run_analysis: Run) -> None:
    lake = tmp_path / "lake"
    volume = two_channel_volume()
    write_volume(lake.as_uri(), "brain", volume, levels=2)
    group = zarr.open_group(str(lake / "brain.ome.zarr"), mode="r")
    for level in (0, 1):
        outputs, results = run_analysis(
            VOLUME_STATS, dispatch([lake.as_uri()]), level=level, bins=10
        )
        stats = json.loads((results / "stats.json").read_text())
        assert (stats["level"], stats["bins"]) == (level, 10)
        [found] = stats["volumes"]
        data = np.asarray(group[str(level)][...])
        assert found["location"] == f"{lake.as_uri()}/brain.ome.zarr"
        assert found["name"] == "brain"
        assert (found["path"], found["shape"], found["dtype"]) == (
            str(level),
            list(data.shape),
            "uint16",
        )
        assert found["axes"] == ["c", "z", "y", "x"]  # a 3-D stack has no time axis
        assert [c["channel"] for c in found["channels"]] == [0, 1]
        for c in (0, 1):
            assert_stats(found["channels"][c], stats_of(data[c], 10))
        assert outputs == VolumeStatsOutputs(volumes=1, channels=2, voxels=data.size)
    np.testing.assert_array_equal(group["0"][...], volume[0])


def test_volume_stats_of_chosen_channels_of_a_named_volume(
    tmp_path: Path, run_analysis: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    volume = two_channel_volume()
    write_volume(lake.as_uri(), "brain", volume, levels=1)
    monkeypatch.setattr(_examples, "BLOCK_BYTES", 500)  # many blocks per channel
    outputs, results = run_analysis(
        VOLUME_STATS, dispatch([f"{lake.as_uri()}/brain.ome.zarr"]), channels=[1]
    )
    [found] = json.loads((results / "stats.json").read_text())["volumes"]
    [channel] = found["channels"]
    assert channel["channel"] == 1
    assert_stats(channel, stats_of(volume[:, 1], 32))
    assert outputs.channels == 1


def test_volume_stats_over_several_volumes_and_assets(tmp_path: Path, run_analysis: Run) -> None:
    volume = two_channel_volume()
    write_volume((tmp_path / "a").as_uri(), "one", volume[:, :1], levels=1)
    write_volume((tmp_path / "a").as_uri(), "lab/two", volume[:, 1:], levels=1)
    write_volume((tmp_path / "b").as_uri(), "three", volume, levels=1, time_axis="always")
    assets = [(tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()]
    outputs, results = run_analysis(VOLUME_STATS, dispatch(assets))
    found = json.loads((results / "stats.json").read_text())["volumes"]
    assert [v["location"].removeprefix(tmp_path.as_uri()) for v in found] == [
        "/a/lab/two.ome.zarr",
        "/a/one.ome.zarr",
        "/b/three.ome.zarr",
    ]
    assert outputs == VolumeStatsOutputs(volumes=3, channels=4, voxels=2 * volume.size)


@pytest.mark.s3
def test_volume_stats_over_s3(s3_env: str, run_analysis: Run) -> None:
    volume = two_channel_volume()
    write_volume(f"{s3_env}/asset", "brain", volume, levels=2)
    outputs, results = run_analysis(VOLUME_STATS, dispatch([f"{s3_env}/asset"]), level=1)
    [found] = json.loads((results / "stats.json").read_text())["volumes"]
    assert found["shape"] == [2, 6, 12, 10]  # (c, z, y, x): a 3-D stack has no time axis
    assert outputs == VolumeStatsOutputs(volumes=1, channels=2, voxels=2 * 6 * 12 * 10)


def test_volume_stats_names_what_is_missing(tmp_path: Path, run_analysis: Run) -> None:
    lake = tmp_path / "lake"
    write_volume(lake.as_uri(), "brain", two_channel_volume(), levels=2)
    where = f"{lake.as_uri()}/brain.ome.zarr"
    with pytest.raises(InvalidInput, match=rf"{where} has 2 levels \(0 to 1\); level 2 does not"):
        run_analysis(VOLUME_STATS, dispatch([lake.as_uri()]), level=2)
    with pytest.raises(InvalidInput, match=rf"{where} has 2 channels \(0 to 1\), not \[2, -1\]"):
        run_analysis(VOLUME_STATS, dispatch([lake.as_uri()]), channels=[0, 2, -1])
    folder = tmp_path / "empty"
    folder.mkdir()
    empty = folder.as_uri()
    (folder / "notes.txt").write_text("no volume\n")
    with pytest.raises(InvalidInput, match=rf"no OME-Zarr volume \(\*\.ome\.zarr\) in {empty}"):
        run_analysis(VOLUME_STATS, dispatch([empty]))


@pytest.mark.parametrize("analysis", [FILE_SUMMARY, VOLUME_STATS])
def test_a_cancel_stops_the_analysis(tmp_path: Path, analysis: Analysis) -> None:
    lake = tmp_path / "lake"
    write_volume(lake.as_uri(), "brain", two_channel_volume(), levels=1)

    def cancelled() -> None:
        raise RuntimeError("job cancelled")

    (tmp_path / "results").mkdir()
    run = AnalysisRun(
        inputs=dispatch([lake.as_uri()]),
        parameters=analysis.parameters(),
        results=tmp_path / "results",
        open_store=open_store,
        log=logging.getLogger("test-cancel"),
        check_cancelled=cancelled,
    )
    with pytest.raises(RuntimeError, match="job cancelled"):
        analysis.run(run)
    assert not any((tmp_path / "results").iterdir())
