"""Pure-PyTorch deformable sampling operators (no compiled extension).

Three operators, each written from the semantics in ``shared/spec/anchor-sam.md`` §6-§8:

* :func:`dcnv3_sample` - the DCNv3 core (InternImage): per group, ``K*K`` bilinear taps around every output pixel,
  shifted by learned offsets and weighted by a softmax mask; zero outside the image.
* :func:`strip_sample` - the DSCN core (DSAN "strip deformable conv"): ``k`` taps along one axis, linear
  interpolation along that axis only, an unweighted sum, zero outside.
* :func:`dysample` - DySample (lp style) point-sampling upsampler.

All of them are built on ``F.grid_sample`` with ``align_corners=False``: a pixel index ``u`` maps to the normalised
coordinate ``(2u + 1) / size - 1``.  When the coordinate across the strip lands exactly on a pixel centre, bilinear
sampling degenerates to the linear interpolation of the strip op, and ``padding_mode='zeros'`` reproduces the
"valid when -1 < u < size" rule of the CUDA kernels.

Memory: the taps are accumulated one at a time, so the extra memory in inference is about two copies of the input
(one sampled tap plus the accumulator) instead of ``K*K`` copies.

:func:`dcnv3_sample` and :func:`strip_sample` run the fused path of ``fused`` where one runs (the compiled CPU
kernel, torchvision's CUDA kernel; ``fused.choose``) and these pure-PyTorch operators, kept as
:func:`dcnv3_sample_reference` and :func:`strip_sample_reference`, elsewhere.  The fused path samples at absolute
positions = a shape-only base grid (cached per shape) + the learned offsets.  :func:`dysample` is the reference
of ``layers.DySample``, which in CPU inference runs ``fused.dysample_infer`` instead.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from . import fused


def _norm_coord(u: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel-index coordinate -> grid_sample coordinate (align_corners=False)."""
    return (2.0 * u + 1.0) / size - 1.0


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32, or float64 when an input is: sampling positions are never built in a half-precision dtype (in
    bfloat16 a pixel index above 256 is rounded to an even number, in float16 one above 1024)."""
    dt = torch.float32
    for t in tensors:
        dt = torch.promote_types(dt, t.dtype)
    return dt


def _per_group(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H, W, C) channels-last -> (B*G, C/G, H, W)."""
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).permute(0, 3, 4, 1, 2).reshape(b * groups, c // groups, h, w)


def _from_groups(y: torch.Tensor, b: int, groups: int) -> torch.Tensor:
    """(B*G, C/G, H, W) -> (B, H, W, C) channels-last."""
    _, cg, h, w = y.shape
    return y.reshape(b, groups, cg, h, w).permute(0, 3, 4, 1, 2).reshape(b, h, w, groups * cg)


@lru_cache(maxsize=128)
def _dcnv3_base(h: int, w: int, kernel: int, dilation: int, scale: float, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 1, K*K, 2): pixel (j, i) + (k*dilation - pad) * scale for each point, DCNv3 point order."""
    pad = dilation * (kernel - 1) // 2
    tap = (torch.arange(kernel, device=device, dtype=torch.float64) * dilation - pad) * scale
    tx = tap.repeat_interleave(kernel)  # kernel-width index outer
    ty = tap.repeat(kernel)  # kernel-height index inner
    xs = torch.arange(w, device=device, dtype=torch.float64).view(1, w, 1)
    ys = torch.arange(h, device=device, dtype=torch.float64).view(h, 1, 1)
    bx = (xs + tx).expand(h, w, kernel * kernel)
    by = (ys + ty).expand(h, w, kernel * kernel)
    return torch.stack((bx, by), -1).unsqueeze(2).to(dtype)


@lru_cache(maxsize=128)
def _strip_base(h: int, w: int, kernel: int, dilation: int, scale: float, axis: str, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 1, k, 2): pixel (j, i) moved by i*dilation*scale - pad along ``axis`` for each tap."""
    pad = dilation * (kernel - 1) // 2
    tap = torch.arange(kernel, device=device, dtype=torch.float64) * dilation * scale - pad
    xs = torch.arange(w, device=device, dtype=torch.float64).view(1, w, 1).expand(h, w, kernel)
    ys = torch.arange(h, device=device, dtype=torch.float64).view(h, 1, 1).expand(h, w, kernel)
    if axis == "x":
        xs = xs + tap
    else:
        ys = ys + tap
    return torch.stack((xs, ys), -1).unsqueeze(2).to(dtype)


@lru_cache(maxsize=16)
def _dcnv3_tv_order(kernel: int) -> tuple[int, ...]:
    """DCNv3 point p = x_index * K + y_index -> torchvision's row-major (row = y, col = x) order."""
    return tuple(xi * kernel + yi for yi in range(kernel) for xi in range(kernel))


def dcnv3_sample(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel: int,
    groups: int,
    dilation: int = 1,
    offset_scale: float = 1.0,
    *,
    mask_logits: bool = False,
) -> torch.Tensor:
    """DCNv3 core (see :func:`dcnv3_sample_reference` for the arguments), on the fused path where one runs.

    With ``mask_logits=True``, ``mask`` holds the logits and the softmax over each group's K*K points is part of
    the operator (computed in float32; in CPU inference inside the kernel, so the mask is never materialised).
    """
    path = fused.choose(x.device, x.dtype)
    b, h, w, _ = x.shape
    pts = kernel * kernel
    if path == "reference":
        if mask_logits:
            mask = mask.reshape(b, h, w, groups, pts).float().softmax(-1).reshape(b, h, w, -1).to(x.dtype)
        return dcnv3_sample_reference(x, offset, mask, kernel, groups, dilation, offset_scale)
    base = _dcnv3_base(h, w, kernel, dilation, float(offset_scale), x.device, torch.float32)
    off = offset.reshape(b, h, w, groups, pts, 2)
    msk = mask.reshape(b, h, w, groups, pts)
    if path == "cpu-kernel" and mask_logits and not fused.needs_grad(x, offset, mask):
        return fused.infer(x, off, base, offset_scale, "dcnv3", msk)
    if mask_logits:
        msk = msk.float().softmax(-1)
    pos = base + off.float() * offset_scale
    return fused.sample(x, pos, msk, path, (kernel, kernel), _dcnv3_tv_order(kernel))


def strip_sample(
    x: torch.Tensor,
    offset: torch.Tensor,
    kernel: int,
    groups: int,
    axis: str,
    dilation: int = 1,
    offset_scale: float = 1.0,
) -> torch.Tensor:
    """DSCN strip sampling (see :func:`strip_sample_reference` for the arguments), on the fused path where one
    runs."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    path = fused.choose(x.device, x.dtype)
    if path == "reference":
        return strip_sample_reference(x, offset.to(x.dtype), kernel, groups, axis, dilation, offset_scale)
    b, h, w, _ = x.shape
    base = _strip_base(h, w, kernel, dilation, float(offset_scale), axis, x.device, torch.float32)
    off = offset.reshape(b, h, w, groups, kernel)
    if path == "cpu-kernel" and not fused.needs_grad(x, offset):
        return fused.infer(x, off, base, offset_scale, axis, None)
    off = off.float() * offset_scale
    zero = torch.zeros((), device=x.device, dtype=off.dtype).expand_as(off)
    pos = base + (torch.stack((off, zero), -1) if axis == "x" else torch.stack((zero, off), -1))
    return fused.sample(x, pos, None, path, (1, kernel) if axis == "x" else (kernel, 1))


def dcnv3_sample_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel: int,
    groups: int,
    dilation: int = 1,
    offset_scale: float = 1.0,
) -> torch.Tensor:
    """DCNv3 core with stride 1 and "same" padding ``pad = dilation * (kernel - 1) / 2``.

    Args:
        x: (B, H, W, C) channels-last values to sample.
        offset: (B, H, W, G * K*K * 2); per group, points in order (kernel-width index outer, kernel-height index
            inner), each point (dx, dy) in pixels.
        mask: (B, H, W, G * K*K), already normalised (softmax over the K*K points of each group).
    Returns:
        (B, H, W, C).
    """
    b, h, w, c = x.shape
    pts = kernel * kernel
    pad = dilation * (kernel - 1) // 2
    ct = _compute_dtype(x, offset, mask)
    xg = _per_group(x.to(ct), groups)
    off = offset.to(ct).reshape(b, h, w, groups, pts, 2).permute(0, 3, 1, 2, 4, 5).reshape(b * groups, h, w, pts, 2)
    msk = mask.to(ct).reshape(b, h, w, groups, pts).permute(0, 3, 1, 2, 4).reshape(b * groups, 1, h, w, pts)
    ys = torch.arange(h, device=x.device, dtype=ct).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=ct).view(1, 1, w)
    out = None
    p = 0
    for i in range(kernel):  # kernel-width index (x) outer
        for j in range(kernel):  # kernel-height index (y) inner
            gx = (i * dilation - pad + off[..., p, 0]) * offset_scale + xs
            gy = (j * dilation - pad + off[..., p, 1]) * offset_scale + ys
            grid = torch.stack((_norm_coord(gx, w), _norm_coord(gy, h)), dim=-1)
            tap = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            tap = tap * msk[..., p]
            out = tap if out is None else out + tap
            p += 1
    return _from_groups(out, b, groups).to(x.dtype)


def strip_sample_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    kernel: int,
    groups: int,
    axis: str,
    dilation: int = 1,
    offset_scale: float = 1.0,
) -> torch.Tensor:
    """DSCN strip-deformable sampling with stride 1 and ``pad = dilation * (kernel - 1) / 2``.

    Args:
        x: (B, H, W, C) channels-last.
        offset: (B, H, W, G * k), laid out [group][tap], one scalar per tap along ``axis``.
        axis: ``"x"`` (horizontal strip, DSCN_x) or ``"y"`` (vertical strip, DSCN_y).
    Returns:
        (B, H, W, C): for each tap ``i`` the value at ``pos - pad + (i*d + o_i)*scale`` along ``axis``, linearly
        interpolated, zero outside, summed over the taps without weights.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    b, h, w, c = x.shape
    pad = dilation * (kernel - 1) // 2
    ct = _compute_dtype(x, offset)
    xg = _per_group(x.to(ct), groups)
    off = offset.to(ct).reshape(b, h, w, groups, kernel).permute(0, 3, 1, 2, 4).reshape(b * groups, h, w, kernel)
    ys = torch.arange(h, device=x.device, dtype=ct).view(1, h, 1).expand(b * groups, h, w)
    xs = torch.arange(w, device=x.device, dtype=ct).view(1, 1, w).expand(b * groups, h, w)
    out = None
    for i in range(kernel):
        shift = (i * dilation + off[..., i]) * offset_scale - pad
        if axis == "x":
            grid = torch.stack((_norm_coord(xs + shift, w), _norm_coord(ys, h)), dim=-1)
        else:
            grid = torch.stack((_norm_coord(xs, w), _norm_coord(ys + shift, h)), dim=-1)
        tap = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = tap if out is None else out + tap
    return _from_groups(out, b, groups).to(x.dtype)


def dysample_init_pos(scale: int, groups: int) -> torch.Tensor:
    """Initial sub-pixel positions, shape (1, 2*G*s*s, 1, 1): x block then y block, each [group][row][col]."""
    h = (torch.arange(scale, dtype=torch.float32) - (scale - 1) / 2) / scale
    col = h.view(1, scale).expand(scale, scale)  # x offset depends on the column
    row = h.view(scale, 1).expand(scale, scale)  # y offset depends on the row
    pos = torch.stack((col, row)).reshape(2, 1, scale * scale).expand(2, groups, scale * scale)
    return pos.reshape(1, 2 * groups * scale * scale, 1, 1).clone()


def dysample(x: torch.Tensor, offset: torch.Tensor, scale: int, groups: int) -> torch.Tensor:
    """Upsample ``x`` (B, C, H, W) by ``scale`` at positions ``offset`` (B, 2*G*s*s, H, W) (pixels, relative to
    each input pixel centre; x block first).  Border padding, bilinear.

    Positions and sampling are computed in float32 whatever the inputs' dtype (see :func:`_compute_dtype`; the
    result is returned in ``x``'s): a grid built in bfloat16 would misplace half of a 512 px feature map by up to a
    pixel."""
    b, c, h, w = x.shape
    ct = _compute_dtype(x, offset)
    off = offset.to(ct).reshape(b, 2, groups * scale * scale, h, w)
    base_x = torch.arange(w, device=x.device, dtype=ct).view(1, 1, w) + 0.5
    base_y = torch.arange(h, device=x.device, dtype=ct).view(1, h, 1) + 0.5
    gx = 2.0 * (off[:, 0] + base_x) / w - 1.0  # (B, G*s*s, H, W)
    gy = 2.0 * (off[:, 1] + base_y) / h - 1.0
    # pixel-shuffle each coordinate field: (B, G*s*s, H, W) -> (B, G, sH, sW)
    gx = F.pixel_shuffle(gx, scale)
    gy = F.pixel_shuffle(gy, scale)
    grid = torch.stack((gx, gy), dim=-1).reshape(b * groups, h * scale, w * scale, 2)
    xs = x.reshape(b * groups, c // groups, h, w).to(ct)
    out = F.grid_sample(xs, grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)
    return out.reshape(b, c, h * scale, w * scale)
