"""Building blocks of Anchor-SAM: DCNv3, DSCN_x / DSCN_y, DySample, Swin blocks, DMB.

Module nesting (attribute names and ``nn.Sequential`` indices) follows the state-dict layout in the spec §18 so that
weights trained with the original CUDA ops would load.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused
from .ops import dcnv3_sample, dysample, dysample_init_pos, strip_sample

# Longest key sequence for which ``attention`` takes matmul-softmax-matmul on the CPU in bf16.  Measured in one
# process, 2 threads, best of 5 (BENCHMARKS "Network", 2026-11-29 later): windows of 49-256 keys 1.4-2.1x faster
# than PyTorch's flash kernel, 1024 keys 1.3-1.7x, 4096 keys 0.54x (the 4096 x 4096 scores no longer fit the caches).
SHORT_KEYS = 1024


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for (..., L, d) tensors and an additive float ``bias`` broadcastable to
    the scores, as ``F.scaled_dot_product_attention`` with that ``attn_mask``.

    CPU inference in bfloat16 with at most ``SHORT_KEYS`` keys (Hiera's and Swin's windows, roadmap-compact's global
    block at 512 px) runs it as two batched matmuls around a softmax; everything else, autograd included, takes
    SDPA.  The two differ only by bf16 rounding of the probabilities before the second matmul."""
    if (q.device.type == "cpu" and q.dtype == torch.bfloat16 and k.shape[-2] <= SHORT_KEYS
            and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))):
        scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
        if bias is not None:
            scores = scores + bias
        return torch.matmul(torch.softmax(scores, -1), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters and state-dict keys) that runs on channels-last memory: oneDNN's
    depthwise kernels are 5-20x faster there than on channels-first tensors on the CPU (measured at 64 channels,
    256 x 256: 1x7 20.6 -> 1.1 ms, 5x5 22.3 -> 2.9 ms fp32).  The output keeps the channels-last strides, so a
    following ``permute(0, 2, 3, 1)`` is free."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def _ln_channels_last(channels: int) -> nn.Sequential:
    """channels-first in, channels-last LayerNorm (eps 1e-6) out; index 1 holds the LN weights."""
    return nn.Sequential(ToChannelsLast(), nn.LayerNorm(channels, eps=1e-6))


class DCNv3(nn.Module):
    """DCNv3 (InternImage) on channels-last input (B, H, W, C), stride 1, same padding."""

    def __init__(self, channels: int, kernel: int = 3, dilation: int = 1, groups: int = 4, dw_kernel: int = 3,
                 offset_scale: float = 1.0):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.channels, self.kernel, self.dilation, self.groups = channels, kernel, dilation, groups
        self.offset_scale = offset_scale
        self.dw_conv = nn.Sequential(
            DepthwiseConv2d(channels, channels, dw_kernel, padding=(dw_kernel - 1) // 2, groups=channels),
            _ln_channels_last(channels),
            nn.GELU(),
        )
        pts = kernel * kernel
        self.offset = nn.Linear(channels, groups * pts * 2)
        self.mask = nn.Linear(channels, groups * pts)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.offset, self.mask):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        values = self.input_proj(x)
        guide = self.dw_conv(x.permute(0, 3, 1, 2))
        offset = self.offset(guide)
        logits = self.mask(guide)  # softmax over each group's K*K points inside the operator
        out = dcnv3_sample(values, offset, logits, self.kernel, self.groups, self.dilation, self.offset_scale,
                           mask_logits=True)
        return self.output_proj(out)


class DCNv3CF(nn.Module):
    """Channels-first wrapper around :class:`DCNv3` (state-dict prefix ``dcnv3.``)."""

    def __init__(self, channels: int, kernel: int = 3, dilation: int = 1, groups: int = 4):
        super().__init__()
        self.dcnv3 = DCNv3(channels, kernel, dilation, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last memory in and out: the permutes are free, and the projections, the depthwise conv and what
        # follows (BatchNorm, 1x1 conv, DySample) all read it without a copy
        x = x.contiguous(memory_format=torch.channels_last)
        return self.dcnv3(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DSCN(nn.Module):
    """Strip-deformable sampling (DSCN_x when ``axis='x'``, DSCN_y when ``axis='y'``).

    ``forward(values, guide)``: ``values`` (B, H, W, C) channels-last is sampled; ``guide`` (B, C, H, W) only
    produces the offsets (depthwise 1xk / kx1 conv -> LN -> GELU -> Linear).  DSCN_x projects ``values`` with
    ``input_proj`` first; DSCN_y has no projection.  No output projection, no weights on the taps.
    """

    def __init__(self, channels: int, kernel: int, groups: int, axis: str, dilation: int = 1,
                 offset_scale: float = 1.0):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.kernel, self.groups, self.axis, self.dilation = kernel, groups, axis, dilation
        self.offset_scale = offset_scale
        ksize = (1, kernel) if axis == "x" else (kernel, 1)
        pad = (0, (kernel - 1) // 2) if axis == "x" else ((kernel - 1) // 2, 0)
        self.dw_conv = nn.Sequential(
            DepthwiseConv2d(channels, channels, ksize, padding=pad, groups=channels),
            _ln_channels_last(channels),
            nn.GELU(),
        )
        self.offset = nn.Linear(channels, groups * kernel)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        if axis == "x":
            self.input_proj = nn.Linear(channels, channels)
            nn.init.xavier_uniform_(self.input_proj.weight)
            nn.init.zeros_(self.input_proj.bias)
        else:
            self.input_proj = None

    def forward(self, values: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        if self.input_proj is not None:
            values = self.input_proj(values)
        offset = self.offset(self.dw_conv(guide))
        return strip_sample(values, offset, self.kernel, self.groups, self.axis, self.dilation,
                            self.offset_scale)


class DySample(nn.Module):
    """DySample upsampler, lp style, static scope (offset x 0.25), groups 4, scale 2."""

    def __init__(self, channels: int, scale: int = 2, groups: int = 4):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.scale, self.groups = scale, groups
        self.offset = nn.Conv2d(channels, 2 * groups * scale * scale, 1)
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        self.register_buffer("init_pos", dysample_init_pos(scale, groups), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sample(x, x)

    def sample(self, values: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Upsample ``values`` (B, C', H, W; C' divisible by the groups) at the positions predicted from ``x``;
        with ``bias`` (one value), the sum over the upsampled channels plus ``bias`` (B, 1, sH, sW).

        In CPU inference the compiled kernel builds the positions on the fly (``fused.dysample_infer``, float32
        coordinates); elsewhere :func:`ops.dysample` samples a grid."""
        raw = self.offset(x)
        if fused.choose(values.device, values.dtype) == "cpu-kernel" and not fused.needs_grad(values, raw):
            return fused.dysample_infer(values, raw, 0.25, self.scale, self.groups,
                                        None if bias is None else float(bias))
        pos = raw * 0.25 + self.init_pos.to(x.dtype)  # (B, 2*G*s*s, H, W) relative to each input pixel centre
        y = dysample(values, pos, self.scale, self.groups)
        return y if bias is None else (y.sum(1, keepdim=True) + bias.view(1, 1, 1, 1)).to(y.dtype)


class DMB(nn.Sequential):
    """Depthwise bottleneck (``BottConv``): 1x1 reduce (bias) -> depthwise kxk (no bias) -> 1x1 expand (no bias)."""

    def __init__(self, channels: int, ratio: int = 8, kernel: int = 1):
        mid = max(1, channels // ratio)
        super().__init__(
            nn.Conv2d(channels, mid, 1),
            DepthwiseConv2d(mid, mid, kernel, padding=(kernel - 1) // 2, groups=mid, bias=False),
            nn.Conv2d(mid, channels, 1, bias=False),
        )


def group_norm(channels: int, groups: int = 16) -> nn.GroupNorm:
    """GroupNorm with the largest power-of-two group count up to ``groups`` that divides ``channels``."""
    while groups > 1 and channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


# ---------------------------------------------------------------------------------------------------- Swin (GRR)

def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, ws*ws, C)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def swin_attention_mask(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor | None:
    """Additive mask (nW, ws*ws, ws*ws) for a (h, w) token grid zero-padded to multiples of ``ws``.

    Tokens may attend only to tokens of the same region: the usual 3x3 shifted-window regions (in the rolled frame)
    and, separately, padding tokens.  Returns None when no masking is needed (no shift, no padding).
    """
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    if shift == 0 and hp == h and wp == w:
        return None
    region = torch.zeros(hp, wp, dtype=torch.long, device=device)
    if shift > 0:
        cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        rid = 0
        for hs in cuts:
            for wsl in cuts:
                region[hs, wsl] = rid
                rid += 1
    pad = torch.zeros(hp, wp, dtype=torch.long, device=device)
    pad[h:, :] = 1
    pad[:, w:] = 1
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
    ids = (region * 2 + pad).view(1, hp, wp, 1).float()
    win = _windows(ids, ws).squeeze(-1)  # (nW, ws*ws)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).unsqueeze(0)  # (1, heads, n, n)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).repeat(bw // nw, 1, 1, 1)
        out = attention(q, k, v, bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    """Pre-norm Swin-v1 block on (B, H, W, C) tokens; any H, W (padded to the window internally)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._mask_cache: dict = {}

    def _mask(self, h: int, w: int, device) -> torch.Tensor | None:
        key = (h, w, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = swin_attention_mask(h, w, self.window, self.shift, device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        y = self.norm1(x)
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        if hp != h or wp != w:
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(_windows(y, ws), self._mask(h, w, x.device))
        y = _unwindows(y, ws, b, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :h, :w, :]
        return x + self.mlp(self.norm2(x))
