"""sam2's Hiera trunk with two inference changes; same parameters and state-dict keys, the same results up to
bf16 rounding (CPU bf16 inference only).

Imported only when a model is built (``model.SAM2Encoder``): sam2 takes about 1.5 s to import.  The classes live at
module level so that a model pickles (``torch.save(model)``, process pools).
"""
from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleAttention, do_pool

from .layers import attention


class Attention(MultiScaleAttention):
    """sam2's block attention (same parameters, same query pooling) with its scores computed by
    ``layers.attention``: on the CPU in bf16 its windows take matmul-softmax-matmul, 1.4-2.1x faster there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.q_pool:
            q = do_pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class Trunk(Hiera):
    """Hiera whose position embedding (a bicubic resize of a 7 x 7 grid to the token grid plus the tiled window
    embedding: 14 ms per roadmap-compact 1024 px tile on the CPU, 36 ms for anchor-sam-t) is computed once per token
    grid and reused while the parameters are unchanged and no gradient is wanted."""

    def __init__(self, **kw):
        super().__init__(**kw)
        for blk in self.blocks:
            blk.attn.__class__ = Attention  # the subclass adds behaviour only, no state
        self._pos_cache: tuple | None = None

    def __getstate__(self):
        state = super().__getstate__()
        return {**state, "_pos_cache": None}  # a copy or a pickle recomputes it

    def _get_pos_embed(self, hw) -> torch.Tensor:
        big, window = self.pos_embed, self.pos_embed_window
        dev = big.device.type
        if (torch.is_grad_enabled() and (big.requires_grad or window.requires_grad)) or dev not in ("cpu", "cuda"):
            return super()._get_pos_embed(hw)  # ("meta", for FLOP counts, has no autocast state to key on)
        key = (tuple(hw), big.device, big.data_ptr(), big._version, window.data_ptr(), window._version,
               torch.is_inference_mode_enabled(), torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        if self._pos_cache is None or self._pos_cache[0] != key:
            self._pos_cache = (key, super()._get_pos_embed(hw))
        return self._pos_cache[1]
