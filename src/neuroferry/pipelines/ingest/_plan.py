"""Work units of an ingest: sets of full-resolution shards, each read and written whole.

A unit lies in one time point and one z-slab (one shard deep) and covers a rectangle of
shards in y and x: whole rows of shards when a row fits the memory budget (so that 2-D
slices are read once), else a run of shards along a row. For each full-resolution shard a
unit also writes the matching shard of every lower level: a level-k shard is the level-0
shard divided by the factors, so it is computed from the unit's data in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest._zarr import Layout, Triple


@dataclass(frozen=True)
class Unit:
    """The full-resolution shards of time point ``t``, z-slab ``z``, rows ``[y0, y1)`` and
    columns ``[x0, x1)`` (shard indices)."""

    t: int
    z: int
    y: tuple[int, int]
    x: tuple[int, int]

    @property
    def name(self) -> str:
        """The unit's name: a mapped task's item and its progress record's file name."""
        return f"t{self.t}.z{self.z}.y{self.y[0]}-{self.y[1]}.x{self.x[0]}-{self.x[1]}"

    def params(self) -> dict[str, Any]:
        return {"t": self.t, "z": self.z, "y": list(self.y), "x": list(self.x)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Unit:
        """The unit of a ``write`` task's settings."""
        try:
            y0, y1 = (int(v) for v in params["y"])
            x0, x1 = (int(v) for v in params["x"])
            return cls(int(params["t"]), int(params["z"]), (y0, y1), (x0, x1))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"a write task's settings must give t, z, y and x of its unit, not {params!r}"
            ) from exc

    def shards(self) -> Iterator[Triple]:
        """The unit's full-resolution shards (z, y, x), row by row."""
        for y in range(*self.y):
            for x in range(*self.x):
                yield (self.z, y, x)

    def region(self, layout: Layout) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The full-resolution voxels ``[start, stop)`` along z, y and x that the unit holds."""
        _, _, nz, ny, nx = layout.shapes[0]
        sz, sy, sx = layout.shards[0]
        return (
            (self.z * sz, min((self.z + 1) * sz, nz)),
            (self.y[0] * sy, min(self.y[1] * sy, ny)),
            (self.x[0] * sx, min(self.x[1] * sx, nx)),
        )

    def nbytes(self, layout: Layout) -> int:
        """The size of the unit's full-resolution data, uncompressed."""
        (z0, z1), (y0, y1), (x0, x1) = self.region(layout)
        return (z1 - z0) * (y1 - y0) * (x1 - x0) * layout.shapes[0][1] * layout.itemsize

    def keys(self, layout: Layout) -> list[str]:
        """Every shard key the unit writes: all levels and channels."""
        channels = layout.shapes[0][1]
        return [
            layout.shard_key(level, self.t, c, *zyx)
            for zyx in self.shards()
            for level in range(layout.levels)
            for c in range(channels)
        ]


def plan_units(
    layout: Layout, budget: int, checkpoint: Callable[[], None] | None = None
) -> list[Unit]:
    """The units of a volume, each holding at most ``budget`` bytes of full-resolution
    data where a single shard allows (a unit holds at least one shard); ``checkpoint`` is
    called before each row of shards (it may raise to stop, e.g. when the job was
    cancelled)."""
    t_size, channels, nz, ny, nx = layout.shapes[0]
    sz, sy, sx = layout.shards[0]
    gz, gy, gx = layout.shard_grid(0)
    units = []
    for t in range(t_size):
        for z in range(gz):
            if checkpoint is not None:
                checkpoint()
            depth = min(sz, nz - z * sz)
            row = depth * min(sy, ny) * nx * channels * layout.itemsize
            if row <= budget:
                rows = max(1, budget // row)
                for y0 in range(0, gy, rows):
                    units.append(Unit(t, z, (y0, min(y0 + rows, gy)), (0, gx)))
                continue
            shard = depth * min(sy, ny) * min(sx, nx) * channels * layout.itemsize
            per_unit = max(1, budget // shard)
            for y in range(gy):
                for x0 in range(0, gx, per_unit):
                    units.append(Unit(t, z, (y, y + 1), (x0, min(x0 + per_unit, gx))))
    return units


def shard_totals(layout: Layout) -> dict[str, Any]:
    """How many shards and chunks each level has (all time points and channels), and the
    volume's full-resolution size in bytes."""
    t_size, channels, nz, ny, nx = layout.shapes[0]
    levels = []
    for level in range(layout.levels):
        gz, gy, gx = layout.shard_grid(level)
        chunks = 1  # chunks per axis add up shard by shard; the axes multiply
        for n, s, c, g in zip(
            layout.shapes[level][2:],
            layout.shards[level],
            layout.chunks[level],
            (gz, gy, gx),
            strict=True,
        ):
            # every shard but the last is full; the last holds what is left
            chunks *= (g - 1) * -(-s // c) + -(-(n - (g - 1) * s) // c)
        levels.append(
            {
                "level": level,
                "shape": list(layout.shapes[level]),
                "shards": gz * gy * gx * t_size * channels,
                "chunks": chunks * t_size * channels,
            }
        )
    return {
        "levels": levels,
        "shards": sum(v["shards"] for v in levels),
        "chunks": sum(v["chunks"] for v in levels),
        "bytes": t_size * channels * nz * ny * nx * layout.itemsize,
    }
