"""Downsampling against straightforward references: block by block in Python loops, with
the blocks at odd edges holding fewer voxels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuroferry.pipelines.ingest import downsample
from neuroferry.pipelines.ingest._pyramid import downsampled_shape


def blocks(shape: tuple[int, ...], factors: tuple[int, int, int]):
    """Each output index (z, y, x) with the slices of its input block."""
    ranges = [range(-(-n // f)) for n, f in zip(shape[-3:], factors, strict=True)]
    for index in itertools.product(*ranges):
        yield (
            index,
            tuple(
                slice(i * f, min((i + 1) * f, n))
                for i, f, n in zip(index, factors, shape[-3:], strict=True)
            ),
        )


def reference(volume: np.ndarray, factors: tuple[int, int, int], method: str) -> np.ndarray:
    out = np.zeros(downsampled_shape(volume.shape, factors), dtype=volume.dtype)
    for index, region in blocks(volume.shape, factors):
        block = volume[(..., *region)]
        for lead in np.ndindex(volume.shape[:-3]):
            values = block[lead].ravel()
            if method == "mean":
                mean = values.astype(np.float64).mean()
                value = mean if volume.dtype.kind == "f" else np.floor(mean + 0.5)
            elif method == "mode":
                found, counts = np.unique(values, return_counts=True)
                value = found[np.argmax(counts)]  # unique sorts: the smallest of the most frequent
            else:
                value = values[0]
            out[(*lead, *index)] = value
    return out


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "float32"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (2, 1, 2), (1, 1, 1)])
@pytest.mark.parametrize("shape", [(4, 8, 6), (5, 7, 9), (1, 3, 11), (2, 3, 5, 7), (21, 6, 5)])
def test_mean_matches_the_block_by_block_reference(
    dtype: str, factors: tuple[int, int, int], shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(sum(shape) + sum(factors))
    kind = np.dtype(dtype)
    if kind.kind == "f":
        volume = rng.standard_normal(shape).astype(kind)
    else:
        info = np.iinfo(kind)
        volume = rng.integers(info.min, info.max, size=shape, dtype=kind, endpoint=True)
    got = downsample(volume, factors, "mean")
    want = reference(volume, factors, "mean")
    assert got.dtype == volume.dtype and got.shape == want.shape
    if kind.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_mean_rounds_half_up_and_counts_only_voxels_that_exist() -> None:
    volume = np.zeros((1, 1, 3), dtype=np.uint8)
    volume[0, 0] = [1, 2, 7]  # blocks [1, 2] -> 1.5 -> 2, and the edge block [7] -> 7
    assert downsample(volume, (1, 1, 2), "mean").tolist() == [[[2, 7]]]
    signed = np.array([[[-1, -2, -3]]], dtype=np.int8)  # -1.5 -> -1 (half up), -3 alone
    assert downsample(signed, (1, 1, 2), "mean").tolist() == [[[-1, -3]]]
    top = np.full((3, 3, 3), 255, dtype=np.uint8)  # no overflow of the sum
    assert (downsample(top, (2, 2, 2), "mean") == 255).all()


@pytest.mark.parametrize("shape", [(4, 6, 8), (5, 7, 3), (3, 1, 9), (2, 5, 5, 5)])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2)])
def test_mode_of_labels_matches_the_reference(
    shape: tuple[int, ...], factors: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(len(shape) * 7 + shape[0])
    labels = rng.integers(0, 4, size=shape, dtype=np.uint32) * 1000
    np.testing.assert_array_equal(
        downsample(labels, factors, "mode"), reference(labels, factors, "mode")
    )


def test_mode_breaks_ties_towards_the_smallest_label() -> None:
    labels = np.array([[[5, 3], [3, 5]], [[9, 9], [1, 1]]], dtype=np.uint16)
    # the 2x2x2 block holds 5, 3, 9 and 1 twice each
    assert downsample(labels, (2, 2, 2), "mode").tolist() == [[[1]]]
    assert downsample(labels, (1, 2, 2), "mode").tolist() == [[[3]], [[1]]]


def test_stride_takes_the_first_voxel_of_each_block() -> None:
    volume = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    np.testing.assert_array_equal(downsample(volume, (2, 2, 2), "stride"), volume[::2, ::2, ::2])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="z, y and x"):
        downsample(np.zeros((4, 4), dtype=np.uint8), (2, 2, 2), "mean")
    with pytest.raises(ValueError, match="unknown downsampling method"):
        downsample(np.zeros((4, 4, 4), dtype=np.uint8), (2, 2, 2), "max")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    volume=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32]),
        shape=hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=7),
    ),
    factors=st.tuples(*(st.sampled_from([1, 2]) for _ in range(3))),
    method=st.sampled_from(["mean", "mode", "stride"]),
)
def test_every_method_matches_the_reference_on_any_block(
    volume: np.ndarray, factors: tuple[int, int, int], method: str
) -> None:
    np.testing.assert_array_equal(
        downsample(volume, factors, method),  # type: ignore[arg-type]
        reference(volume, factors, method),
    )
