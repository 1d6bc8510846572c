"""The training dataset: Massachusetts-style fixed patches or random crops, augmented reproducibly."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..io.images import image_size, read_image, read_label
from ..tiling import tile_starts
from .augment import draw_zoom, flip_rotate, jitter_colour, parse_scale_aug, resize_pair
from .mix import on_grid
from .sources import Pair, check_pairs

# Massachusetts 1500x1500 images are cut into 1024x1024 patches at offsets 0 and 476 per axis (stride 476,
# 4 patches per image, 548 px overlap), so every pixel is seen at native 1 m resolution.
MASS_PATCH, MASS_STRIDE = 1024, 476


def patch_origins(h: int, w: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``patch`` x ``patch`` patches at ``stride`` covering an h x w image."""
    ys = tile_starts(h, patch, patch - stride) if h > patch else [0]
    xs = tile_starts(w, patch, patch - stride) if w > patch else [0]
    return [(y, x) for y in ys for x in xs]


class RoadDataset:
    """Samples = (image index, patch origin).  With ``crop`` set, each draw is a random crop of its image.  Crop
    position and augmentation come from a generator seeded by (seed, epoch, draw position in the epoch, index), so
    every draw differs and the data stream is a pure function of those, which makes ``--resume`` exact.

    Pairs of a mix (their ``gsd`` set) are brought to the ``grid_gsd`` grid with labels redrawn as centre lines
    ``road_width_m`` wide when first read (:func:`~roadmap_cli.data.mix.on_grid`), and are drawn in proportion to
    their ground area times their source's weight (``weights``: source name -> weight); they need ``crop``."""

    def __init__(self, pairs: list[Pair], patch: int = MASS_PATCH, stride: int = MASS_STRIDE,
                 crop: int | None = None, augment: bool = True, seed: int = 0,
                 color_aug: str = "basic", scale_aug: tuple[float, float] | None = None,
                 grid_gsd: float | None = None, road_width_m: float = 7.0, weights: dict | None = None):
        if color_aug not in ("basic", "strong"):
            raise InputError(f"color_aug must be 'basic' or 'strong', got {color_aug!r}")
        self.color_aug = color_aug
        self.scale_aug = parse_scale_aug(scale_aug)
        if not pairs:
            raise InputError("the dataset is empty")
        check_pairs(pairs)
        self.pairs, self.crop, self.augment, self.seed = pairs, crop, augment, seed
        self.grid_gsd, self.road_width_m = grid_gsd, road_width_m
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.samples = []
        mixed = any(p.gsd is not None for p in pairs)
        if mixed and (not crop or not grid_gsd):
            raise InputError("a mix of sources trains on random crops on the model's grid: set --crop")
        for i, p in enumerate(pairs):
            w, h = image_size(p.image)
            if mixed:  # one sample per crop's worth of ground, times the source's weight
                area = w * h * (p.gsd or grid_gsd) ** 2
                n = area * (weights or {}).get(p.source, 1.0) / (crop * grid_gsd) ** 2
                self.samples += [(i, 0, 0)] * max(1, int(round(n)))
            elif crop:
                self.samples.append((i, 0, 0))
            else:
                self.samples += [(i, y, x) for y, x in patch_origins(h, w, patch, stride)]
        self.patch = patch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and boolean label of pair ``i`` (kept in memory once read)."""
        if i in self._cache:
            return self._cache[i]
        p = self.pairs[i]
        img, lab = read_image(p.image), read_label(p.label)[0]
        if p.gsd is not None:
            img, lab = on_grid(img, lab, p.gsd, self.grid_gsd, self.road_width_m)
        self._cache[i] = img, lab
        return self._cache[i]

    def get(self, idx: int, epoch: int, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``idx`` as drawn at position ``draw`` of ``epoch``: (image float32 (S, S, 3), label float32)."""
        i, y, x = self.samples[idx]
        img, lab = self.load(i)
        rng = np.random.default_rng([self.seed, epoch, draw, idx])
        size = self.crop or self.patch
        src = size  # side of the region read from the image, resized to ``size`` when scale augmentation is on
        if self.scale_aug and self.augment:
            src = max(8, int(round(size / draw_zoom(rng, self.scale_aug))))
            if not self.crop:  # a fixed patch keeps its centre
                y, x = y + (size - src) // 2, x + (size - src) // 2
        h, w = lab.shape
        if self.crop and self.pairs[i].gsd is not None:  # a mix's small images are zoomed to fill the crop
            src = min(src, h, w)
        if self.crop:
            y = int(rng.integers(0, max(1, h - src + 1)))
            x = int(rng.integers(0, max(1, w - src + 1)))
        y, x = min(max(0, y), max(0, h - src)), min(max(0, x), max(0, w - src))
        img, lab = img[y:y + src, x:x + src], lab[y:y + src, x:x + src]
        if img.shape[0] < src or img.shape[1] < src:  # small images: pad with zeros
            ph, pw = src - img.shape[0], src - img.shape[1]
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            lab = np.pad(lab, ((0, ph), (0, pw)))
        if src != size:
            img, lab = resize_pair(img, lab, size)
        if self.augment:
            img, lab = flip_rotate(img, lab, rng)
            img = jitter_colour(img, rng, self.color_aug)
        return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab, dtype=np.float32)
