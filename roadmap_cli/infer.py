"""Tiling, blending and batched model inference (device / mixed-precision handling lives here)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32).  auto: bf16 on CUDA when supported else fp16; fp32 on CPU."""
    p = (precision or "auto").lower()
    if p == "fp32":
        return None
    if p == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if p == "bf16":
        return torch.bfloat16
    if p == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs CUDA; use bf16 on the CPU")
        return torch.float16
    raise UserError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap`` pixels shared
    between neighbours; the last tile is aligned to the end.  A scene smaller than a tile gets one tile at 0
    (padded by the reader)."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise UserError(f"tile ({tile}) must be positive and overlap ({overlap}) in [0, tile)")
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


def predict_array(predictor: Predictor, image: np.ndarray, tile: int = 1024, overlap: int = 256,
                  batch_size: int = 2, valid: np.ndarray | None = None) -> np.ndarray:
    """Sliding-window prediction of an in-memory image (H, W, 3), blended; used for validation and small scenes."""
    h, w = image.shape[:2]
    th, tw = model_tile(h, w, tile)
    ov = min(overlap, th // 2, tw // 2)
    ys, xs = tile_starts(h, th, ov), tile_starts(w, tw, ov)
    weight = blend_weights(th, tw, ov)
    acc = np.zeros((h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    boxes = [(y, x) for y in ys for x in xs]
    for i in range(0, len(boxes), batch_size):
        batch, cuts = [], []
        for y, x in boxes[i:i + batch_size]:
            patch = image[y:y + th, x:x + tw]
            ph, pw = patch.shape[:2]
            batch.append(reflect_pad(patch, 0, th - ph, 0, tw - pw))
            cuts.append((y, x, ph, pw))
        probs = predictor(np.stack(batch))
        for p, (y, x, ph, pw) in zip(probs, cuts):
            acc[y:y + ph, x:x + pw] += p[:ph, :pw] * weight[:ph, :pw]
            wsum[y:y + ph, x:x + pw] += weight[:ph, :pw]
    out = acc / wsum
    if valid is not None:
        out[~valid] = 0
    return out
