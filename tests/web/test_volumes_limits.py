"""The limits of serving a volume: only the catalog documents the ingest job writes are
volumes; only the OME-Zarr's own objects are served, at most ``MAX_RESPONSE`` bytes at once
(HEAD reads nothing); a slice is rendered by the real array's shape and dtype, within a byte
budget, never by the shape a document claims; a malformed shape is no readable volume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from neuroferry.config import Settings
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.pipelines.ingest import (
    TooLarge,
    VolumeAsset,
    _volumes,
    is_volume,
    read_object,
    render_slice,
)


def document(location: Path, shape: list[Any]) -> dict[str, Any]:
    """A catalog document as the ingest job's register step writes it."""
    return {
        "name": "lab:vol",
        "location": str(location),
        "type": "ome-zarr",
        "ingest": {"job_id": 1},
        "image": {
            "format": "ome-zarr",
            "axes": ["t", "c", "z", "y", "x"],
            "levels": [{"path": "0", "shape": shape}],
        },
    }


def asset(doc: dict[str, Any]) -> VolumeAsset:
    assert is_volume(doc)
    return VolumeAsset(doc["name"], doc["location"], doc["image"])


@pytest.fixture
def settings() -> Settings:
    return Settings()


def volume_folder(root: Path, shape: tuple[int, ...], dtype: str, data: bool = False) -> Path:
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    group.attrs["ome"] = {"version": "0.5"}
    array = group.create_array("0", shape=shape, chunks=(1, 1, 1, 1024, 1024), dtype=dtype)
    if data:
        array[...] = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    return root


def test_a_document_an_upload_could_write_is_no_volume(tmp_path: Path) -> None:
    doc = document(tmp_path, [1, 1, 1, 16, 16])
    assert is_volume(doc)
    # an upload's metadata/image.json sets only ``image``: not enough
    assert not is_volume({k: v for k, v in doc.items() if k not in ("type", "ingest")})
    assert not is_volume({**doc, "type": "upload"})
    assert not is_volume({**doc, "ingest": "yes"})


def test_only_the_ome_zarr_objects_are_served(tmp_path: Path, settings: Settings) -> None:
    root = volume_folder(tmp_path / "vol", (1, 1, 2, 16, 16), "uint8", data=True)
    (root / "secret.bin").write_bytes(b"not part of the volume")
    (root / "other").mkdir()
    (root / "other" / "notes.txt").write_bytes(b"neither")
    volume = asset(document(root, [1, 1, 2, 16, 16]))
    assert json.loads(read_object(volume, "zarr.json", settings).data)["node_type"] == "group"
    assert read_object(volume, "0/zarr.json", settings).data
    assert read_object(volume, "0/c/0/0/0/0/0", settings).data
    for key in ("secret.bin", "other/notes.txt", "0", "labels"):
        with pytest.raises(NotFound) as info:
            read_object(volume, key, settings)
        assert f"no object {key!r}" in str(info.value)
        assert "zarr.json files and the keys under its levels (0) or labels" in str(info.value)


def test_more_than_one_response_carries_is_refused_and_head_reads_nothing(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = volume_folder(tmp_path / "vol", (1, 1, 1, 16, 16), "uint8", data=True)
    (root / "0" / "c").mkdir(exist_ok=True)
    (root / "0" / "big").write_bytes(bytes(range(256)) * 4)
    volume = asset(document(root, [1, 1, 1, 16, 16]))
    monkeypatch.setattr(_volumes, "MAX_RESPONSE", 100)
    for header in (None, "bytes=0-", "bytes=0-100", "bytes=-101"):
        with pytest.raises(TooLarge) as info:
            read_object(volume, "0/big", settings, header)
        assert info.value.status_code == 413
        assert "at most 100 are sent at once; ask for parts with a Range header" in str(info.value)
    part = read_object(volume, "0/big", settings, "bytes=100-199")
    assert part.data == (bytes(range(256)) * 4)[100:200] and part.partial

    def no_read(*args: Any) -> bytes:
        raise AssertionError("HEAD read the object")

    monkeypatch.setattr(type(_volumes._store(volume, settings)), "get", no_read)
    monkeypatch.setattr(type(_volumes._store(volume, settings)), "get_range", no_read)
    head = read_object(volume, "0/big", settings, body=False)
    assert (head.data, head.start, head.end, head.size) == (b"", 0, 1024, 1024)


def test_a_slice_is_bounded_by_the_real_array_not_the_document(
    tmp_path: Path, settings: Settings
) -> None:
    # the document claims 16 x 16; the array is 60000 x 60000 float64 (26.8 GiB a plane)
    root = volume_folder(tmp_path / "vol", (1, 1, 1, 60000, 60000), "float64")
    volume = asset(document(root, [1, 1, 1, 16, 16]))
    with pytest.raises(InvalidInput) as info:
        render_slice(volume, 0, settings)
    assert "too large to render a slice of (60000 x 60000 voxels)" in str(info.value)


def test_a_slice_within_the_plane_limit_is_bounded_in_bytes(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = volume_folder(tmp_path / "vol", (1, 3, 1, 64, 64), "float64", data=True)
    volume = asset(document(root, [1, 1, 1, 16, 16]))
    monkeypatch.setattr(_volumes, "MAX_SLICE_BYTES", 3 * 32 * 32 * 8 - 1)
    with pytest.raises(InvalidInput) as info:
        render_slice(volume, 0, settings, side=32)
    assert "(3 channels of 64 x 64 float64: 24576 bytes, at most 24575)" in str(info.value)
    monkeypatch.setattr(_volumes, "MAX_SLICE_BYTES", 3 * 32 * 32 * 8)
    png, _tag = render_slice(volume, 0, settings, side=32)
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (32, 32)  # the real shape, not the claimed one


@pytest.mark.parametrize(
    "shape", [["x", 1, 1, 1, 1], [1, 1, 1, -16, 16], [1, 1, 0, 16, 16], [1, 1, 1, 1.5, 2], [], None]
)
def test_a_malformed_shape_is_no_readable_volume(
    tmp_path: Path, settings: Settings, shape: Any
) -> None:
    root = volume_folder(tmp_path / "vol", (1, 1, 1, 16, 16), "uint8", data=True)
    volume = asset(document(root, shape))
    assert volume.shape(0) == [] and not volume.renderable(0)
    with pytest.raises(InvalidInput, match="not a readable volume"):
        render_slice(volume, 0, settings)
