"""A volume on its asset page and over HTTP: a user ingests a stack; its asset page shows
a slice of every level and a slice viewer; its OME-Zarr is served to its owner with byte
ranges and CORS headers, and to nobody else; paths that would leave it are refused."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from playwright.sync_api import expect

from pipelines.ingest._stacks import write_image_folder

SHAPE = (10, 60, 80)


def ingest(portal, tmp_path: Path, who: str) -> str:
    """Ingest a small stack as ``who``; the asset's catalog name."""
    z, y, x = np.indices(SHAPE)
    write_image_folder(tmp_path / "slices", (z * 20 + y + x).astype("uint16"))
    name = f"lab/look{secrets.randbelow(10**6)}"
    config = {
        "name": name,
        "source": {
            "plugin": "image-folder",
            "params": {"path": str(tmp_path / "slices"), "pattern": "slice_{z:04d}.tif"},
        },
        "extent": {"x": [0, SHAPE[2]], "y": [0, SHAPE[1]], "z": [0, SHAPE[0]]},
        "dtype": "uint16",
        "voxel_size": {"x": 4, "y": 4, "z": 40, "unit": "nanometer"},
        "chunk": [4, 16, 16],
        "shard": [8, 64, 64],
        "levels": 3,
        "channel_names": ["EM"],
    }
    created = portal.api("POST", "/ingest", who=who, json=config)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (state := portal.api("GET", f"/ingest/{job_id}", who=who).json()["state"]) not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    assert state == "succeeded"
    return name.replace("/", ":")


@pytest.fixture(scope="module")
def volume(portal, tmp_path_factory: pytest.TempPathFactory) -> str:
    return ingest(portal, tmp_path_factory.mktemp("volume-stack"), "bob")


def test_the_asset_page_shows_a_slice_of_every_level_and_a_viewer(portal, page_as, volume, shot):
    page = page_as("bob")
    page.goto(f"/catalog/{quote(volume)}")
    expect(page.get_by_role("heading", name="A look at the volume")).to_be_visible()
    thumbnails = page.locator("img.thumbnail")
    expect(thumbnails).to_have_count(3)
    for i in range(3):
        image = thumbnails.nth(i)
        image.scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert image.get_attribute("alt") == f"Level {i}: middle slice"
    assert "Level 2: 3 x 15 x 20" in page.locator("#volume").inner_text()

    viewer = page.locator("#viewer-image")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=viewer.element_handle()
    )
    page.get_by_label("Level").select_option("0")
    expect(page.locator("#viewer-z")).to_have_attribute("max", str(SHAPE[0] - 1))
    page.locator("#viewer-z").fill("2")
    expect(viewer).to_have_attribute(
        "src", f"/catalog/{quote(volume)}/slice.png?level=0&z=2&side=1024"
    )
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 80", arg=viewer.element_handle()
    )
    assert "(ingest, by bob): succeeded" in page.locator("#jobs-title + ul").inner_text()
    url = page.locator("#zarr-url").inner_text()
    assert url == f"{portal.url}/api/v2/volumes/{volume}/zarr/"
    shot(page, "asset-volume")

    # slices render the data: level 0, slice 2 is brighter to the bottom right
    png = page.request.get(f"/catalog/{quote(volume)}/slice.png?level=0&z=2")
    assert png.status == 200 and png.headers["content-type"] == "image/png"
    assert png.body()[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    from PIL import Image

    pixels = np.asarray(Image.open(BytesIO(png.body())).convert("L"))
    assert pixels.shape == (60, 80)
    assert pixels[-1, -1] > pixels[0, 0]
    assert page.request.get(f"/catalog/{quote(volume)}/slice.png?level=0&z=99").status == 422
    assert page.request.get(f"/catalog/{quote(volume)}/slice.png?level=7").status == 404

    # another user sees neither the page's volume nor its slices
    other = page_as("alice")
    assert other.goto(f"/catalog/{quote(volume)}").status == 404
    assert other.request.get(f"/catalog/{quote(volume)}/slice.png").status == 404


def test_the_zarr_is_served_with_ranges_and_cors_to_its_owner_only(portal, volume):
    base = f"/volumes/{quote(volume)}/zarr"
    group = portal.api("GET", f"{base}/zarr.json", who="bob")
    assert group.status_code == 200, group.text
    assert group.headers["access-control-allow-origin"] == "*"
    assert group.headers["accept-ranges"] == "bytes"
    ome = group.json()["attributes"]["ome"]
    assert ome["omero"]["channels"][0]["label"] == "EM"

    shard = "0/c/0/0/0/0"  # level 0, c 0, shard z 0, y 0, x 0: a 3-D stack has no t axis
    whole = portal.api("GET", f"{base}/{shard}", who="bob")
    assert whole.status_code == 200 and len(whole.content) > 100
    part = portal.api("GET", f"{base}/{shard}", who="bob", headers={"Range": "bytes=10-41"})
    assert part.status_code == 206
    assert part.content == whole.content[10:42]
    assert part.headers["content-range"] == f"bytes 10-41/{len(whole.content)}"
    tail = portal.api("GET", f"{base}/{shard}", who="bob", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole.content[-16:]
    beyond = portal.api("GET", f"{base}/{shard}", who="bob", headers={"Range": "bytes=999999-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(whole.content)}"
    head = portal.api("HEAD", f"{base}/zarr.json", who="bob")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(group.content))

    preflight = portal.api(
        "OPTIONS",
        f"{base}/zarr.json",
        who=None,
        headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert "Range" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers

    assert portal.api("GET", f"{base}/zarr.json", who=None).status_code == 401
    assert portal.api("GET", f"{base}/zarr.json", who="alice").status_code == 404
    assert portal.api("GET", f"{base}/no-such-key", who="bob").status_code == 404
    assert portal.api("GET", f"{base}/{shard}/0", who="bob").status_code == 404  # below a file
    assert portal.api("GET", f"{base}/0/c", who="bob").status_code == 404  # a folder
    for escape in (
        "..%2F..%2Fferry.db",
        "%252e%252e/%252e%252e/ferry.db",
        "0/%2e%2e/%2e%2e/zarr.json",
        ".ferry/ingest/x",
        "0/c/0/0/0/0/0%00",
        "0\\..\\zarr.json",
    ):
        refused = portal.api("GET", f"{base}/{escape}", who="bob")
        assert refused.status_code in (404, 422), (escape, refused.status_code)
        assert refused.json()["error"] in ("UnsafePath", "NotFound"), escape


def test_only_documents_of_the_ingest_job_are_volumes_and_bad_shapes_are_told(
    portal, page_as, volume
):
    made = portal.api("GET", f"/volumes/{quote(volume)}/zarr/zarr.json", who="bob")
    assert made.status_code == 200
    found = portal.api("POST", "/catalog/find", json={"filter": {"name": volume}})
    location = found.json()["documents"][0]["location"]  # real OME-Zarr data
    image = {"format": "ome-zarr", "levels": [{"path": "0", "shape": [1, 1, 1, 16, 16]}]}
    uploaded = f"upload{secrets.randbelow(10**6)}"  # what an upload's image.json could write
    malformed = f"malformed{secrets.randbelow(10**6)}"
    bad_image = {**image, "levels": [{"path": "0", "shape": ["x", 1, 1, 1, 1]}]}
    docs = [
        {"name": uploaded, "location": location, "image": image},
        {
            "name": malformed,
            "location": location,
            "type": "ome-zarr",
            "ingest": {"job_id": 1},
            "image": bad_image,
        },
    ]
    answer = portal.api("PUT", "/catalog", json=docs, params={"owner": "bob"})
    assert answer.status_code == 200, answer.text

    for key in ("zarr.json", "0/zarr.json"):
        refused = portal.api("GET", f"/volumes/{uploaded}/zarr/{key}", who="bob")
        assert refused.status_code == 404 and "no OME-Zarr volume" in refused.json()["detail"]
    page = page_as("bob")
    assert page.goto(f"/catalog/{uploaded}").status == 200
    assert page.locator("#volume").count() == 0
    assert page.request.get(f"/catalog/{uploaded}/slice.png").status == 404

    assert page.goto(f"/catalog/{malformed}").status == 200
    expect(page.get_by_role("heading", name="Not a readable volume")).to_be_visible()
    assert "level 0: those levels are not a readable volume" in page.content()
    bad = page.request.get(f"/catalog/{malformed}/slice.png")
    assert bad.status == 422 and "not a readable volume" in bad.text()
