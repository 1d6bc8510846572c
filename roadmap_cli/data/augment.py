"""Training augmentation: random zoom (scale), flips and 90-degree rotations, brightness/contrast jitter and the
optional strong colour changes.  Every function draws from the generator it is given, in a fixed order, so a
sample is a pure function of its seed."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError


def parse_scale_aug(value) -> tuple[float, float] | None:
    """``"1,3"`` / ``[1, 3]`` / ``None`` -> (min zoom, max zoom).  Each draw zooms by a factor drawn log-uniformly
    from that range: above 1 roads look wider (finer imagery, wide urban roads), below 1 narrower."""
    if value is None or value == "":
        return None
    try:
        lo, hi = (float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise InputError(f"scale augmentation must be two numbers MIN,MAX, got {value!r}") from None
    if not (0 < lo <= hi <= 8):
        raise InputError(f"scale augmentation needs 0 < MIN <= MAX <= 8, got {lo:g},{hi:g}")
    return (lo, hi)


def draw_zoom(rng: np.random.Generator, scale_aug: tuple[float, float]) -> float:
    """A zoom factor drawn log-uniformly from ``scale_aug`` (MIN, MAX)."""
    lo, hi = scale_aug
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def resize_pair(img: np.ndarray, lab: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (bilinear) and its boolean label (bilinear, cut at half) to ``size`` x ``size``."""
    img = np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((size, size), Image.BILINEAR))
    lab8 = Image.fromarray(np.asarray(lab, np.uint8) * 255).resize((size, size), Image.BILINEAR)
    return img, np.asarray(lab8) > 127


def flip_rotate(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal and vertical flips and a random multiple of 90 degrees, image and label together."""
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    if rng.random() < 0.5:
        img, lab = img[::-1], lab[::-1]
    k = int(rng.integers(0, 4))
    return np.rot90(img, k), np.rot90(lab, k)


def jitter_colour(img: np.ndarray, rng: np.random.Generator, mode: str = "basic") -> np.ndarray:
    """Brightness/contrast jitter (the paper's); ``strong`` adds inversion, grayscale, per-channel gain and gamma
    (appearance far from the training region: other climates, sensors)."""
    if rng.random() < 0.5:  # brightness / contrast jitter
        a, b = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        img = np.clip(img.astype(np.float32) * a + b, 0, 255)
    if mode == "strong":
        img = img.astype(np.float32)
        if rng.random() < 0.3:  # dark roads on bright ground and the reverse
            img = 255.0 - img
        if rng.random() < 0.2:
            img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
        if rng.random() < 0.5:
            img = img * rng.uniform(0.6, 1.4, size=3).astype(np.float32)
        if rng.random() < 0.5:
            img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.5, 2.0)
        img = np.clip(img, 0, 255)
    return img
