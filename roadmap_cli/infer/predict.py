"""Batched model inference on tiles, and sliding-window prediction of an in-memory image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..tiling import TileLayout, blend_block, reflect_pad
from .device import autocast


@dataclass
class Predictor:
    """Runs the model on batches of uint8-range tiles (N, H, W, 3) -> probabilities (N, H, W) float32."""

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype | None = None
    tta: bool = False

    @torch.no_grad()
    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device).permute(0, 3, 1, 2).float()
        x = self.model.normalize(x)
        flips = [(), (-1,), (-2,), (-2, -1)] if self.tta else [()]
        acc = None
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            with autocast(self.device, self.dtype):
                logits = self.model(xi)
            p = torch.sigmoid(logits.float())
            p = torch.flip(p, dims) if dims else p
            acc = p if acc is None else acc + p
        return (acc / len(flips))[:, 0].cpu().numpy()


def predict_array_tiles(predictor: Predictor, image: np.ndarray, layout: TileLayout,
                        batch_size: int = 2) -> dict[tuple[int, int], np.ndarray]:
    """Each tile of ``layout`` over an in-memory image (H, W, 3), predicted unblended: (i, j) -> (th, tw)
    probabilities (edge tiles reflect-padded to the full tile, as extract pads them)."""
    tiles: dict[tuple[int, int], np.ndarray] = {}
    order = list(layout.tiles())
    for b in range(0, len(order), batch_size):
        batch = order[b:b + batch_size]
        imgs = []
        for i, j in batch:
            r0, r1, c0, c1 = layout.window(i, j)
            imgs.append(reflect_pad(image[r0:r1, c0:c1], 0, layout.th - (r1 - r0), 0, layout.tw - (c1 - c0)))
        for (i, j), p in zip(batch, predictor(np.stack(imgs))):
            tiles[(i, j)] = p
    return tiles


def blend_array(layout: TileLayout, tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """The layout's tiles blended into one (height, width) probability map, as ``roadmap extract`` blends them."""
    out = np.zeros((layout.height, layout.width), np.float32)
    for row, col in layout.blocks():
        out[row[0]:row[1], col[0]:col[1]] = blend_block(layout, row, col, lambda i, j: tiles[(i, j)])
    return out


def predict_array(predictor: Predictor, image: np.ndarray, tile: int = 1024, overlap: int = 256,
                  batch_size: int = 2, valid: np.ndarray | None = None) -> np.ndarray:
    """Sliding-window prediction of an in-memory image (H, W, 3), blended exactly as ``roadmap extract`` blends
    (:func:`roadmap_cli.tiling.blend_block`); used for validation and small scenes."""
    h, w = image.shape[:2]
    layout = TileLayout.plan(h, w, tile, overlap)
    out = blend_array(layout, predict_array_tiles(predictor, image, layout, batch_size))
    if valid is not None:
        out[~valid] = 0
    return out
