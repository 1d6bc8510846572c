"""The first two stages of ``roadmap extract``: predict every model tile into an on-disk :class:`TileCache` (which
makes ``--resume`` exact), then blend the cached tiles block by block into probability and mask rasters.  Memory
is bounded by the tile, not the scene."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..progress import SILENT, Reporter
from ..tiling import TileLayout, blend_block, reflect_pad
from .predict import Predictor


class TileCache:
    """Per-tile float16 predictions in ``folder`` (one ``.npy`` per tile, written atomically), read back through a
    small in-memory LRU whose size does not depend on the scene."""

    def __init__(self, folder: Path, keep: int = 8):
        self.folder = Path(folder)
        self.keep = keep
        self._mem: dict[tuple[int, int], np.ndarray] = {}

    def path(self, i: int, j: int) -> Path:
        """The file of tile (i, j)."""
        return self.folder / f"{i:05d}_{j:05d}.npy"

    def count(self) -> int:
        """Number of cached tiles."""
        return sum(1 for e in os.scandir(self.folder) if e.name.endswith(".npy") and not e.name.endswith(".tmp.npy"))

    def has(self, i: int, j: int) -> bool:
        """Whether tile (i, j) was predicted (by this run or the interrupted one it resumes)."""
        return self.path(i, j).exists()

    def put(self, i: int, j: int, prob: np.ndarray) -> None:
        """Store tile (i, j) as float16; a kill leaves either the whole file or none."""
        tmp = self.path(i, j).with_suffix(".tmp.npy")
        np.save(tmp, prob.astype(np.float16))
        os.replace(tmp, self.path(i, j))

    def get(self, i: int, j: int) -> np.ndarray:
        """Tile (i, j) as float32 (the oldest of ``keep`` remembered tiles is forgotten first)."""
        if (i, j) not in self._mem:
            if len(self._mem) >= self.keep:  # constant, not per column: memory must not grow with the scene
                self._mem.pop(next(iter(self._mem)))
            self._mem[(i, j)] = np.load(self.path(i, j)).astype(np.float32)
        return self._mem[(i, j)]

    def clear(self) -> None:
        """Forget the in-memory tiles."""
        self._mem.clear()


def pending_batches(layout: TileLayout, cache: TileCache, batch_size: int):
    """The batches still to predict: the full row-major tile order cut into fixed batches of ``batch_size`` (the
    last may be shorter), those not wholly in ``cache``.  The batches are the same whatever an interrupted run
    left, so every tile is predicted beside the same batch mates as in an uninterrupted run (batched kernels may
    round a tile differently in other company): a resume is bit-exact whatever the kill point.  A batch that was
    partly saved is predicted again whole (the same bits).  Nothing grows with the scene."""
    cached = cache.count()

    def todo(batch) -> bool:
        return not cached or not all(cache.has(*t) for t in batch)

    batch = []
    for ij in layout.tiles():
        batch.append(ij)
        if len(batch) == batch_size:
            if todo(batch):
                yield batch
            batch = []
    if batch and todo(batch):
        yield batch


def scene_feather(valid: np.ndarray, ramp: int) -> np.ndarray:
    """A scene's blend weight in a tile where scenes overlap: a raised cosine of the distance to the scene's edge
    (its invalid pixels) over ``ramp`` px, 0 outside the scene, 1 where the scene has no edge in the tile."""
    from scipy import ndimage

    if valid.all():
        return np.ones(valid.shape, np.float32)
    d = ndimage.distance_transform_edt(valid)
    return (0.5 - 0.5 * np.cos(np.pi * np.clip(d / max(ramp, 1), 0, 1))).astype(np.float32)


def predict_batch(layout: TileLayout, batch: list[tuple[int, int]], read_tile, predictor: Predictor,
                  cache: TileCache) -> int:
    """Read, predict and cache one batch of tiles.  ``read_tile(r0, r1, c0, c1)`` reads one tile window of the
    working grid: ``(image (h, w, 3), valid (h, w))``, or a list of them where several scenes of a mosaic overlap
    there, each predicted on its own and blended with :func:`scene_feather` weights (ramp: the tile overlap), as
    tiles are blended.  Tiles are reflection-padded to the model tile and invalid pixels get probability 0.
    Idempotent (a retried batch writes the same files)."""
    imgs, cuts = [], []
    for i, j in batch:
        r0, r1, c0, c1 = layout.window(i, j)
        got = read_tile(r0, r1, c0, c1)
        parts = got if isinstance(got, list) else [got]
        for img, _ in parts:
            imgs.append(reflect_pad(img, 0, layout.th - (r1 - r0), 0, layout.tw - (c1 - c0)))
        cuts.append((r1 - r0, c1 - c0, [v for _, v in parts]))
    probs = iter(predictor(np.stack(imgs)))
    for (i, j), (h, w, valids) in zip(batch, cuts):
        ps = [next(probs)[:h, :w] for _ in valids]
        if len(ps) == 1:
            p, valid = ps[0].copy(), valids[0]
        else:
            ws = [scene_feather(v, layout.overlap) for v in valids]
            num = sum(wk * pk for wk, pk in zip(ws, ps))
            den = sum(ws)
            valid = np.logical_or.reduce(valids)
            p = np.where(den > 0, num / np.maximum(den, 1e-12), 0).astype(np.float32)
        p[~valid] = 0
        cache.put(i, j, p)
    return len(batch)


def predict_tiles(layout: TileLayout, read_tile, predictor: Predictor, cache: TileCache, batch_size: int,
                  reporter: Reporter = SILENT) -> int:
    """Predict every tile not yet in ``cache`` in this process (:func:`predict_batch` per batch).  Returns the
    number of tiles predicted now."""
    batches = list(pending_batches(layout, cache, batch_size))  # tile ids: small
    reporter.start("infer", layout.count, layout.count - sum(len(b) for b in batches))
    t0, done = time.time(), 0
    for batch in batches:
        done += predict_batch(layout, batch, read_tile, predictor, cache)
        reporter.advance("infer", len(batch), f"{done / max(1e-9, time.time() - t0):.2f} tiles/s")
    return done


def blended_blocks(layout: TileLayout, cache: TileCache, read_valid, blocks):
    """(row, col, probability, validity) of each block in ``blocks`` (the in-process way; an engine may compute
    the same on workers)."""
    for row, col in blocks:
        (a, b, _), (c, d, _) = row, col
        yield row, col, blend_block(layout, row, col, cache.get), read_valid(a, b, c, d)


def blend_tiles(layout: TileLayout, cache: TileCache, read_valid, threshold: float, prob_out, mask_out,
                reporter: Reporter = SILENT, compute=None) -> dict:
    """Blend the cached tiles block by block; write probabilities (-1 = nodata) to ``prob_out`` and the mask
    (``>= threshold``, 255 = nodata) to ``mask_out`` (both ``write(r0, c0, array)``).  ``read_valid(r0, r1, c0,
    c1)`` gives the validity of a working-grid window.  ``compute(blocks)`` yields (row, col, probability,
    validity) per block in order (default :func:`blended_blocks` in this process).  Returns ``valid_px`` and
    ``hist``, the histogram of the valid pixels' probabilities in 100 bins of 0.01 (the plausibility check)."""
    hist = np.zeros(100, np.int64)
    valid_px = 0
    reporter.start("stitch", layout.block_count())
    if compute is None:
        def compute(blocks):
            return blended_blocks(layout, cache, read_valid, blocks)
    for row, col, p, valid in compute(list(layout.blocks())):
        a, c = row[0], col[0]
        if not p.flags.writeable:  # from a worker's shared memory
            p = p.copy()
        hist += np.bincount(np.clip((p[valid] * 100).astype(np.int64), 0, 99), minlength=100)
        valid_px += int(valid.sum())
        m = (p >= threshold).astype(np.uint8)
        p[~valid] = -1.0
        m[~valid] = 255
        prob_out.write(a, c, p)
        mask_out.write(a, c, m)
        reporter.advance("stitch")
    cache.clear()
    return {"valid_px": valid_px, "hist": hist}
