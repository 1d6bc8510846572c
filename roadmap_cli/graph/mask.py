"""From road probability to road mask, keeping roads connected: optional Gaussian smoothing of the probability,
then hysteresis thresholding (pixels above ``low`` are road where they connect to pixels above ``threshold``).

Both run by tiles over scenes of any size and give exactly the whole-array result: smoothing reads a halo of
``ceil(4 sigma)`` px; hysteresis labels each tile's low-threshold components, joins them across seams with a
union-find, and keeps a component when any of its tiles saw a high pixel in it (two passes over the probability).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ..tiling import Reader, array_reader, read_padded, tile_ranges
from .union import KeyUnion, keyed_components, seam_links


@dataclass
class PostOptions:
    """Probability -> mask.  ``smooth_px``: Gaussian sigma in pixels (0 = off); ``low``: hysteresis low threshold
    (None = a plain threshold)."""

    threshold: float = 0.5
    smooth_px: float = 0.0
    low: float | None = None

    def check(self) -> None:
        """Raise ValueError on impossible settings."""
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.smooth_px < 0:
            raise ValueError(f"smoothing must be >= 0 px, got {self.smooth_px}")
        if self.low is not None and not 0 < self.low <= self.threshold:
            raise ValueError(f"the low threshold must be in (0, threshold], got {self.low}")


def _halo(opts: PostOptions) -> int:
    return int(math.ceil(4 * opts.smooth_px)) + 1 if opts.smooth_px > 0 else 1


def _smoothed(read_prob: Reader, h: int, w: int, r0: int, r1: int, c0: int, c1: int, opts: PostOptions,
              ring: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability (smoothed) and validity of [r0 - ring, r1 + ring) x [c0 - ring, c1 + ring); outside the scene
    and nodata (negative) count as probability 0 and invalid."""
    pad = _halo(opts) + ring
    p = read_padded(read_prob, h, w, r0 - pad, r1 + pad, c0 - pad, c1 + pad, fill=-1).astype(np.float32)
    valid = p >= 0
    p = np.maximum(p, 0)
    if opts.smooth_px > 0:
        p = ndimage.gaussian_filter(p, opts.smooth_px, mode="constant", truncate=4.0)
    cut = (slice(pad - ring, p.shape[0] - pad + ring), slice(pad - ring, p.shape[1] - pad + ring))
    return p[cut], valid[cut]


def mask_rasters(read_prob: Reader, h: int, w: int, opts: PostOptions,
                 write_mask: Callable[[int, int, np.ndarray], None], tile: int = 2048,
                 tick: Callable[[], None] | None = None) -> dict:
    """Write the road mask (1 road, 0 background, 255 nodata) of an h x w probability raster by tiles.  Returns
    ``{"road_px", "valid_px"}``."""
    opts.check()
    tick = tick or (lambda: None)
    tiles = [(r, c) for r in tile_ranges(h, tile) for c in tile_ranges(w, tile)]
    keep: set[int] | None = None
    uf = KeyUnion()
    if opts.low is not None:  # pass 1: components of the low mask, joined across seams, that touch a high pixel
        high_roots = []
        border: dict[int, int] = {}
        pairs = []
        for (r0, r1), (c0, c1) in tiles:
            p, valid = _smoothed(read_prob, h, w, r0, r1, c0, c1, opts, 1)
            low = (p >= opts.low) & valid
            core = low[1:-1, 1:-1]
            lab, keys, rr, cc, ids = keyed_components(core, r0, c0, w)
            high = core & (p[1:-1, 1:-1] >= opts.threshold)
            high_roots += keys[np.unique(lab[high]) - 1].tolist() if high.any() else []
            tile_border, tile_pairs = seam_links(low, keys, rr, cc, ids, r0, c0, w)
            border.update(tile_border)
            pairs += tile_pairs
            tick()
        for k, lin in pairs:
            uf.union(k, border[lin])
        keep = {uf.find(k) for k in high_roots}
    stats = {"road_px": 0, "valid_px": 0}
    for (r0, r1), (c0, c1) in tiles:
        p, valid = _smoothed(read_prob, h, w, r0, r1, c0, c1, opts, 0)
        if keep is None:
            road = (p >= opts.threshold) & valid
        else:
            low = (p >= opts.low) & valid
            lab, keys = keyed_components(low, r0, c0, w)[:2]
            kept = np.array([uf.find(int(k)) in keep for k in keys], bool)
            road = np.zeros_like(low)
            road[low] = kept[lab[low] - 1]
        out = np.where(valid, road, 255).astype(np.uint8)
        write_mask(r0, c0, out)
        stats["road_px"] += int(road.sum())
        stats["valid_px"] += int(valid.sum())
        tick()
    return stats


def road_mask(prob: np.ndarray, opts: PostOptions, tile: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """In-memory :func:`mask_rasters`: (road mask bool, the probability the mask was cut from)."""
    prob = np.asarray(prob, np.float32)
    h, w = prob.shape
    out = np.zeros((h, w), np.uint8)

    def write(r0, c0, a):
        out[r0:r0 + a.shape[0], c0:c0 + a.shape[1]] = a

    mask_rasters(array_reader(prob), h, w, opts, write, tile)
    p, _ = _smoothed(array_reader(prob), h, w, 0, h, 0, w, opts, 0)
    return out == 1, p
