"""How viewers see an ingested volume: the ``omero`` block (channel names, colours,
windows computed from the data or given), label images inside their intensity image's
``labels/`` group with ``image-label`` colours and properties; both validated with
ome-zarr-models (and read with ome-zarr-py where it is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from _rig import running_rig
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest import load_config
from neuroferry.pipelines.ingest._display import (
    image_label,
    label_color,
    labels_group,
    sample_region,
    window,
)

from ._stacks import write_image_folder

models = pytest.importorskip("ome_zarr_models.v05")
from ome_zarr_models.common.omero import Omero  # noqa: E402

SHAPE = (12, 40, 48)


def config(folder: Path, name: str, dtype: str = "uint16", **extra: Any) -> dict[str, Any]:
    z, y, x = SHAPE
    return {
        "name": name,
        "destination": "lab",
        "source": {
            "plugin": "image-folder",
            "params": {"path": str(folder), "pattern": "slice_{z:04d}.tif"},
        },
        "extent": {"x": [0, x], "y": [0, y], "z": [0, z]},
        "dtype": dtype,
        "voxel_size": {"x": 4, "y": 4, "z": 40, "unit": "nanometer"},
        "chunk": [4, 16, 16],
        "shard": [8, 32, 32],
        "levels": 2,
        **extra,
    }


def intensity() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return (100 + 10 * z + y + x).astype("uint16")


def cells() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype="uint32")
    labels[:, 4:20, 4:20] = 7
    labels[:, 24:36, 28:44] = 9
    return labels


def test_an_image_and_its_labels_validate_with_ome_zarr_models(tmp_path: Path) -> None:
    image, labels = intensity(), cells()
    write_image_folder(tmp_path / "em", image)
    write_image_folder(tmp_path / "cells", labels)
    lake = tmp_path / "lake"
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}", destinations={"lab": lake.as_uri()}
    ) as rig:
        rig.start()
        first = rig.submit("ingest", load_config(config(tmp_path / "em", "lab/em")))
        assert rig.wait(first, timeout=120)["state"] == "succeeded", rig.states(first)
        extra = {
            "image_kind": "label",
            "label_of": "lab/em",
            "label_colors": {"7": "FF0000", "9": "00FF0080"},
            "label_properties": {"7": {"class": "soma"}, "9": {"class": "glia"}},
        }
        second = rig.submit(
            "ingest", load_config(config(tmp_path / "cells", "lab/cells", "uint32", **extra))
        )
        assert rig.wait(second, timeout=120)["state"] == "succeeded", rig.states(second)
        [doc] = rig.catalog.find({"name": "lab:cells"})
        assert doc["location"] == (lake / "lab/em.ome.zarr/labels/cells").as_uri()
        assert doc["image"]["label_of"] == "lab/em"

    root = lake / "lab" / "em.ome.zarr"
    group = zarr.open_group(str(root), mode="r")
    model = models.Image.from_zarr(group)  # validates labels/ and labels/cells too
    assert model.attributes.ome.multiscales[0].name == "lab/em"
    ome = group.attrs["ome"]
    block = Omero.model_validate(ome["omero"])
    [channel] = block.channels
    assert channel.color == "FFFFFF"
    assert ome["omero"]["channels"][0]["label"] == "em"
    win = channel.window
    low = image[::2, ::2, ::2]  # level 1 (mean of 2x2x2 blocks) lies within these bounds
    assert image.min() <= win.min <= win.start < win.end <= win.max <= image.max()
    assert win.max >= np.percentile(low, 99)

    assert group["labels"].attrs["ome"]["labels"] == ["cells"]
    label_group = zarr.open_group(str(root / "labels" / "cells"), mode="r")
    label_model = models.ImageLabel.from_zarr(label_group)
    colors = {c.label_value: list(c.rgba) for c in label_model.attributes.ome.image_label.colors}
    assert colors == {7: [255, 0, 0, 255], 9: [0, 255, 0, 128]}
    props = label_group.attrs["ome"]["image-label"]["properties"]
    assert {p["label-value"]: p["class"] for p in props} == {7: "soma", 9: "glia"}
    assert label_group.attrs["ome"]["image-label"]["source"] == {"image": "../../"}
    np.testing.assert_array_equal(label_group["0"][0], labels)  # (c, z, y, x)
    np.testing.assert_array_equal(group["0"][0], image)

    if importlib.util.find_spec("ome_zarr") is not None:  # ome-zarr-py, where installed
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

        nodes = list(Reader(parse_url(str(root)))())
        assert nodes[0].metadata["channel_names"] == ["em"]


def test_names_colours_and_windows_from_the_config(tmp_path: Path) -> None:
    image = np.stack([intensity(), intensity() // 2]).transpose(1, 0, 2, 3)
    folder = tmp_path / "two"
    for c in range(2):
        write_image_folder(folder / f"c{c}", image[:, c])
    lake = tmp_path / "lake"
    spec = config(
        folder,
        "lab/two",
        channels=2,
        channel_names=["DAPI", "GFP"],
        channel_colors=["0000ff", "00FF00"],
        contrast_limits=[[100, 400], [0, 50]],
    )
    spec["source"]["params"]["pattern"] = "c{c}/slice_{z:04d}.tif"
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}", destinations={"lab": lake.as_uri()}
    ) as rig:
        rig.start()
        job = rig.submit("ingest", load_config(spec))
        assert rig.wait(job, timeout=120)["state"] == "succeeded", rig.states(job)
    group = zarr.open_group(str(lake / "lab" / "two.ome.zarr"), mode="r")
    models.Image.from_zarr(group)
    block = group.attrs["ome"]["omero"]
    Omero.model_validate(block)
    assert [c["label"] for c in block["channels"]] == ["DAPI", "GFP"]
    assert [c["color"] for c in block["channels"]] == ["0000FF", "00FF00"]
    windows = [c["window"] for c in block["channels"]]
    assert [(w["start"], w["end"]) for w in windows] == [(100, 400), (0, 50)]
    assert windows[1]["min"] == 0  # widened to hold the given window
    assert block["rdefs"]["model"] == "color"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"channel_names": ["a", "b"]}, "channel_names"),
        ({"channel_colors": ["green"]}, "channel_colors"),
        ({"contrast_limits": [[5, 1]]}, "contrast_limits"),
        ({"label_of": "lab/em"}, "label_of"),
        ({"image_kind": "label", "label_of": "../em"}, "label_of"),
        ({"image_kind": "label", "label_colors": {"1": "red"}}, "label_colors"),
    ],
)
def test_display_fields_are_checked(tmp_path: Path, extra: dict[str, Any], field: str) -> None:
    spec = config(tmp_path, "lab/x", "uint16", **extra)
    with pytest.raises(InvalidInput) as caught:
        load_config(spec)
    assert any(p["field"].startswith(field) for p in caught.value.problems), caught.value


def test_windows_and_label_colours_from_samples() -> None:
    data = np.arange(1000, dtype="uint16")
    win = window(data, integer=True)
    assert (win["min"], win["max"]) == (0, 999)
    assert 0 <= win["start"] <= 2 and 997 <= win["end"] <= 999
    flat = window(np.full(10, 5, dtype="uint16"), integer=True)
    assert flat["start"] < flat["end"]
    floats = window(np.array([np.nan, 0.5, 1.5]), integer=False)
    assert floats["min"] == 0.5 and floats["max"] == 1.5

    labels = load_config(
        {**config(Path("/"), "lab/l", "uint32"), "image_kind": "label"}, overrides=None
    )
    block = image_label(labels, np.array([0, 3, 3, 5], dtype="uint32"))
    colors = {c["label-value"]: c["rgba"] for c in block["colors"]}
    assert colors[0] == [0, 0, 0, 0]  # background is transparent
    assert set(colors) == {0, 3, 5} and colors[3] != colors[5]
    assert label_color(3) == label_color(3)
    assert "source" not in block

    assert labels_group(None, "a")["attributes"]["ome"]["labels"] == ["a"]
    twice = labels_group(labels_group(None, "a"), "b")
    assert labels_group(twice, "a")["attributes"]["ome"]["labels"] == ["a", "b"]


def test_the_sample_is_bounded() -> None:
    assert sample_region((1, 1, 4, 5, 6), limit=1000) == (slice(0, 4), slice(0, 5), slice(0, 6))
    z, y, x = sample_region((1, 1, 100, 10, 10), limit=250)
    assert (z.stop - z.start, y.stop, x.stop) == (2, 10, 10)
    z, y, x = sample_region((1, 1, 9, 100, 100), limit=400)
    assert (z.stop - z.start, y.stop - y.start, x.stop - x.start) == (1, 20, 20)


def test_ranges_and_keys_of_served_volumes() -> None:
    from neuroferry.errors import UnsafePath
    from neuroferry.pipelines.ingest import RangeNotSatisfiable, volume_key
    from neuroferry.pipelines.ingest._volumes import parse_range

    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=50-500", 100) == (50, 100)
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole object
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=9-2", 100) is None  # malformed: ignored
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)

    assert volume_key("0/c/0/0/1/2/3") == "0/c/0/0/1/2/3"
    assert volume_key("labels%2Fcells%2Fzarr.json") == "labels/cells/zarr.json"
    for bad in ("", "../x", "a//b", "%252e%252e/x", "a/./b", ".ferry/ingest", "a\\b", "a\x00"):
        with pytest.raises(UnsafePath):
            volume_key(bad)


def test_a_partial_volume_with_a_time_axis_is_resumed_only_with_time_axis_always(
    tmp_path: Path,
) -> None:
    """A partial volume of a 3-D stack left by a version that always wrote (t, c, z, y, x)
    is not mixed with a (c, z, y, x) one: the job says to add ``time_axis: always``, and
    with it the volume is finished with a time axis."""
    import dataclasses
    import json

    from neuroferry.pipelines.ingest import Layout
    from neuroferry.pipelines.ingest._tasks import fingerprint_of
    from neuroferry.pipelines.ingest._writer import PLAN_KEY

    write_image_folder(tmp_path / "em", intensity())
    lake = tmp_path / "lake"
    spec = config(tmp_path / "em", "lab/old")
    new = load_config(spec)
    older = dataclasses.replace(Layout.of(new), time_axis=True)
    progress = lake / ".ferry" / "ingest" / "lab" / "old.ome.zarr"
    progress.mkdir(parents=True)
    (progress / PLAN_KEY).write_text(json.dumps({"fingerprint": fingerprint_of(new, older)}))
    with running_rig(
        f"sqlite:///{tmp_path / 'ferry.db'}", destinations={"lab": lake.as_uri()}
    ) as rig:
        rig.start()
        refused = rig.submit("ingest", new)
        assert rig.wait(refused, timeout=120)["state"] == "failed"
        assert "add 'time_axis: always' to the config" in rig.tasks(refused)["plan"]["error"]
        resumed = rig.submit("ingest", load_config({**spec, "time_axis": "always"}))
        assert rig.wait(resumed, timeout=120)["state"] == "succeeded", rig.states(resumed)
    group = zarr.open_group(str(lake / "lab" / "old.ome.zarr"), mode="r")
    models.Image.from_zarr(group)
    np.testing.assert_array_equal(group["0"][0, 0], intensity())
