"""Downsampling one block of a volume to the next pyramid level.

A block is an array whose last three axes are z, y, x (leading axes, such as channels, are
kept). Each output voxel stands for a block of ``factors`` input voxels; at the far edge of
the volume such a block may hold fewer voxels (a size that the factor does not divide), and
then only the voxels that exist count. Blocks never straddle the edges of the blocks given
here: callers hand in whole shards, whose sizes the factors divide, or the volume's edge.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
PLANES = 2
"""Output planes computed at a time (bounds the memory a level takes beyond its result)."""
Method = Literal["mean", "mode", "stride"]
METHODS: tuple[Method, ...] = ("mean", "mode", "stride")


def downsampled_shape(shape: tuple[int, ...], factors: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape after downsampling the last three axes by ``factors`` (rounded up)."""
    lead, zyx = shape[:-3], shape[-3:]
    return (*lead, *(-(-n // f) for n, f in zip(zyx, factors, strict=True)))


def downsample(block: Array, factors: tuple[int, int, int], method: Method) -> Array:
    """``block`` one level down: ``mean`` (intensity images: the average of each block,
    rounded half up for integers), ``mode`` (label images: the most frequent value, the
    smallest of equally frequent ones) or ``stride`` (the first voxel of each block)."""
    if block.ndim < 3:
        raise ValueError(f"a block needs z, y and x axes, not shape {block.shape}")
    if any(f < 1 for f in factors):
        raise ValueError(f"downsampling factors must be at least 1, not {factors}")
    if method not in METHODS:
        raise ValueError(f"unknown downsampling method {method!r}; allowed: {', '.join(METHODS)}")
    fz, fy, fx = factors
    if method == "stride":
        return np.ascontiguousarray(block[..., ::fz, ::fy, ::fx])
    one = _mean if method == "mean" else _mode
    out = np.empty(downsampled_shape(block.shape, factors), dtype=block.dtype)
    # a few output planes at a time, so that sums and sorts stay small; the pieces start
    # at multiples of the factor, so no block is cut
    step = PLANES * fz
    for z0 in range(0, block.shape[-3], step):
        piece = block[..., z0 : z0 + step, :, :]
        out[..., z0 // fz : z0 // fz + -(-piece.shape[-3] // fz), :, :] = one(piece, factors)
    return out


def _accumulator(dtype: np.dtype[Any]) -> np.dtype[Any]:
    if dtype.kind == "u":
        return np.dtype(np.uint32 if dtype.itemsize <= 2 else np.uint64)
    if dtype.kind in "ib":
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def _sum_axis(data: Array, axis: int, factor: int, acc: np.dtype[Any]) -> Array:
    """Sums over consecutive groups of ``factor`` along ``axis`` (the last group may be
    shorter), in the accumulator type."""
    n = data.shape[axis]
    full = n // factor
    out_shape = list(data.shape)
    out_shape[axis] = -(-n // factor)
    out = np.empty(out_shape, dtype=acc)
    moved = np.moveaxis(out, axis, 0)
    source = np.moveaxis(data, axis, 0)
    if full:
        head = moved[:full]
        stop = full * factor
        np.add(source[0:stop:factor], source[1:stop:factor], out=head, dtype=acc)
        for i in range(2, factor):
            np.add(head, source[i:stop:factor], out=head, dtype=acc)
    if n % factor:
        np.sum(source[full * factor :], axis=0, dtype=acc, out=moved[full])
    return out


def _counts(n: int, factor: int) -> Array:
    counts = np.full(-(-n // factor), factor, dtype=np.int64)
    if n % factor:
        counts[-1] = n % factor
    return counts


def _mean(block: Array, factors: tuple[int, int, int]) -> Array:
    acc = _accumulator(block.dtype)
    total: Array = block
    for axis, factor in zip((-3, -2, -1), factors, strict=True):
        if factor > 1:
            total = _sum_axis(total, block.ndim + axis, factor, acc)
    if total is block:
        return np.array(block, copy=True)
    nz, ny, nx = block.shape[-3:]
    cz, cy, cx = (_counts(n, f) for n, f in zip((nz, ny, nx), factors, strict=True))
    uniform = all(len(set(c.tolist())) == 1 for c in (cz, cy, cx))
    count: Array | int
    if uniform:
        count = int(cz[0] * cy[0] * cx[0])
    else:
        count = (cz[:, None, None] * cy[None, :, None] * cx[None, None, :]).astype(acc)
    if acc.kind == "f":
        return (total / count).astype(block.dtype)
    rounded: Array
    if acc.kind == "u" and isinstance(count, int) and count & (count - 1) == 0:
        total += count // 2
        rounded = total >> (count.bit_length() - 1)
    elif acc.kind == "u":
        rounded = (total + count // 2) // count
    else:  # half up for negative sums too: floor((2 s + n) / 2 n)
        rounded = np.floor_divide(2 * total + count, 2 * count)
    return rounded.astype(block.dtype)


def _mode(block: Array, factors: tuple[int, int, int]) -> Array:
    out = np.empty(downsampled_shape(block.shape, factors), dtype=block.dtype)
    lead = block.shape[:-3]
    # The volume splits into at most 8 regions whose blocks all have one shape: the full
    # blocks and, on each axis the factor does not divide, the shorter blocks at the edge.
    spans = []
    for n, f in zip(block.shape[-3:], factors, strict=True):
        full = n // f
        parts = [(0, full * f, 0, full, f)] if full else []
        if n % f:
            parts.append((full * f, n, full, full + 1, n % f))
        spans.append(parts)
    for z0, z1, oz0, oz1, bz in spans[0]:
        for y0, y1, oy0, oy1, by in spans[1]:
            for x0, x1, ox0, ox1, bx in spans[2]:
                region = block[..., z0:z1, y0:y1, x0:x1]
                nz, ny, nx = oz1 - oz0, oy1 - oy0, ox1 - ox0
                blocks = region.reshape(*lead, nz, bz, ny, by, nx, bx)
                k = len(lead)
                order = (*range(k), k, k + 2, k + 4, k + 1, k + 3, k + 5)
                values = blocks.transpose(order).reshape(-1, bz * by * bx)
                out[..., oz0:oz1, oy0:oy1, ox0:ox1] = _row_modes(values).reshape(*lead, nz, ny, nx)
    return out


def _row_modes(values: Array) -> Array:
    """The most frequent value of each row (the smallest of equally frequent ones)."""
    if values.shape[1] == 1:
        return values[:, 0]
    ordered = np.sort(values, axis=1)
    width = ordered.shape[1]
    position = np.arange(width)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run_start = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    run_length = position - run_start + 1
    # the first place a longest run ends: the smallest value among the most frequent
    best = np.argmax(run_length, axis=1)
    modes: Array = ordered[np.arange(len(ordered)), best]
    return modes
