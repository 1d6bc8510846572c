"""Every tile, interval, halo and blend helper of the package (pure numpy; imports only ``errors``).

Model tiles overlap and are blended with raised-cosine weights (:class:`TileLayout`, :func:`blend_block`); the
same blend serves ``roadmap extract`` (block by block from an on-disk tile cache) and in-memory prediction
(validation), so both give the same probabilities.  Graph tiles do not overlap (:func:`tile_ranges`) and are read
with a halo (:func:`read_padded`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import InputError

Reader = Callable[[int, int, int, int], np.ndarray]  # read(r0, r1, c0, c1) -> array, window inside the raster


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap`` pixels shared
    between neighbours; the last tile is aligned to the end.  A scene smaller than a tile gets one tile at 0
    (padded by the reader)."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise InputError(f"tile ({tile}) must be positive and overlap ({overlap}) in [0, tile)")
    if size <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(n)]
    return sorted(set(starts))


def model_tile(size_h: int, size_w: int, tile: int) -> tuple[int, int]:
    """Tile shape used for a scene: ``tile`` or, for a smaller scene, its size rounded up to a multiple of 32."""
    def one(s):
        return min(tile, int(math.ceil(s / 32) * 32))
    return one(size_h), one(size_w)


def tile_ranges(size: int, tile: int) -> list[tuple[int, int]]:
    """Non-overlapping ``[start, end)`` ranges of at most ``tile`` covering ``[0, size)``."""
    return [(s, min(s + tile, size)) for s in range(0, size, tile)]


def intervals(starts: list[int], tile: int, size: int) -> list[tuple[int, int, list[int]]]:
    """Split [0, size) at every tile start and end; each piece lists the tiles covering it."""
    cuts = sorted({0, size} | {s for s in starts if s < size} | {min(s + tile, size) for s in starts})
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        cover = [i for i, s in enumerate(starts) if s <= a and b <= s + tile]
        out.append((a, b, cover))
    return out


def blend_weights_1d(n: int, overlap: int) -> np.ndarray:
    """1 in the core, a raised-cosine ramp over ``overlap`` pixels at each end, never exactly 0."""
    w = np.ones(n, dtype=np.float64)
    ramp = min(overlap, n // 2)
    if ramp > 0:
        t = (np.arange(ramp) + 0.5) / ramp
        r = np.sin(0.5 * np.pi * t) ** 2
        w[:ramp] = r
        w[n - ramp:] = r[::-1]
    return np.maximum(w, 1e-3).astype(np.float32)


def blend_weights(th: int, tw: int, overlap: int) -> np.ndarray:
    """2-D blend window of a ``th`` x ``tw`` tile (outer product of the 1-D ramps)."""
    return np.outer(blend_weights_1d(th, overlap), blend_weights_1d(tw, overlap))


def reflect_pad(a: np.ndarray, pad_top: int, pad_bottom: int, pad_left: int, pad_right: int) -> np.ndarray:
    """Reflection padding of (H, W, ...) that also works when the pad exceeds the array (repeats reflections)."""
    while pad_top or pad_bottom or pad_left or pad_right:
        h, w = a.shape[:2]
        t, b = min(pad_top, h - 1), min(pad_bottom, h - 1)
        l_, r = min(pad_left, w - 1), min(pad_right, w - 1)
        if h == 1:
            t = b = 0
        if w == 1:
            l_ = r = 0
        widths = [(t, b), (l_, r)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, widths, mode="reflect" if (t or b or l_ or r) else "edge")
        pad_top, pad_bottom, pad_left, pad_right = pad_top - t, pad_bottom - b, pad_left - l_, pad_right - r
        if (h == 1 or w == 1) and (pad_top or pad_bottom or pad_left or pad_right):
            widths = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (a.ndim - 2)
            return np.pad(a, widths, mode="edge")
    return a


def read_padded(read: Reader, h: int, w: int, r0: int, r1: int, c0: int, c1: int, fill=0) -> np.ndarray:
    """Read [r0, r1) x [c0, c1), which may extend outside the h x w raster (filled with ``fill``): a halo read."""
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    data = read(rr0, rr1, cc0, cc1)
    if (rr0, rr1, cc0, cc1) == (r0, r1, c0, c1):
        return data
    out = np.full((r1 - r0, c1 - c0), fill, dtype=data.dtype)
    out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = data
    return out


def array_reader(a: np.ndarray) -> Reader:
    """A :data:`Reader` over an in-memory array."""
    return lambda r0, r1, c0, c1: a[r0:r1, c0:c1]


@dataclass
class TileLayout:
    """Overlapping model tiles over a ``height`` x ``width`` grid: starts per axis, tile shape, overlap, and the
    blend window (computed once per layout)."""

    height: int
    width: int
    th: int
    tw: int
    overlap: int
    ys: list[int]
    xs: list[int]
    weight: np.ndarray = field(repr=False)

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: int) -> "TileLayout":
        """Tiles of ``tile`` (smaller scenes: their size rounded up to 32) with ``overlap`` capped at half a tile."""
        th, tw = model_tile(height, width, tile)
        ov = min(overlap, th // 2, tw // 2)
        ys, xs = tile_starts(height, th, ov), tile_starts(width, tw, ov)
        return cls(height, width, th, tw, ov, ys, xs, blend_weights(th, tw, ov))

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.ys) * len(self.xs)

    def tiles(self):
        """Tile indices (i, j) in row-major order, one at a time (memory does not grow with the scene)."""
        return ((i, j) for i in range(len(self.ys)) for j in range(len(self.xs)))

    def window(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Tile (i, j)'s window inside the grid: (r0, r1, c0, c1); the rest of the tile is padding."""
        r0, c0 = self.ys[i], self.xs[j]
        return r0, min(r0 + self.th, self.height), c0, min(c0 + self.tw, self.width)

    def blocks(self):
        """Blend blocks, one at a time: row interval x column interval, each with the tiles covering it."""
        rows, cols = intervals(self.ys, self.th, self.height), intervals(self.xs, self.tw, self.width)
        return ((r, c) for r in rows for c in cols)

    def block_count(self) -> int:
        """Number of blend blocks."""
        return len(intervals(self.ys, self.th, self.height)) * len(intervals(self.xs, self.tw, self.width))


def blend_block(layout: TileLayout, row: tuple[int, int, list[int]], col: tuple[int, int, list[int]],
                get_tile: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Weighted mean of the tiles covering one block (tiles summed in row-major order): the one blend."""
    a, b, ri = row
    c, d, ci = col
    acc = np.zeros((b - a, d - c), np.float32)
    wsum = np.zeros_like(acc)
    for i in ri:
        for j in ci:
            t = get_tile(i, j)
            sl = (slice(a - layout.ys[i], b - layout.ys[i]), slice(c - layout.xs[j], d - layout.xs[j]))
            acc += t[sl] * layout.weight[sl]
            wsum += layout.weight[sl]
    return acc / wsum
