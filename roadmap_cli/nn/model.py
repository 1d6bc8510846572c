"""Anchor-SAM: SAM2 Hiera + FPN encoder, DBCIM on the skips, MDCP at the bottleneck, deformable decoder."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .layers import DMB, DSCN, DCNv3CF, DepthwiseConv2d, DySample, SwinBlock, group_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _NoPosition(nn.Module):
    """Anchor-SAM's neck has no sine position encoding; SAM2's FpnNeck wants a module, this one costs nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(0)


class SAM2Encoder(nn.Module):
    """Hiera trunk + FpnNeck, built directly from the ``sam2`` package's modules (no hydra)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from sam2.modeling.backbones.image_encoder import FpnNeck

        from .hiera import Trunk  # imports sam2, which takes 1.5 s: only when a model is built

        self.trunk = Trunk(
            embed_dim=cfg.embed_dim,
            num_heads=cfg.num_heads,
            stages=tuple(cfg.stages),
            global_att_blocks=tuple(cfg.global_att_blocks) if cfg.global_att_blocks else (),
            window_spec=tuple(cfg.window_spec),
            window_pos_embed_bkg_spatial_size=tuple(cfg.window_pos_embed_bkg_spatial_size),
        )
        if cfg.anchor_transition_heads:
            # Anchor-SAM doubles the head count after building a stage's first block: same weights, half the heads.
            for i in self.trunk.q_pool_blocks:
                blk = self.trunk.blocks[i]
                blk.attn.num_heads = max(1, int(blk.attn.num_heads // 2))
        channels = list(cfg.stage_channels[::-1])
        top_down = None if cfg.neck_top_down_all else [2, 3]
        self.neck = FpnNeck(
            position_encoding=_NoPosition(),
            d_model=cfg.d_model,
            backbone_channel_list=channels,
            fpn_interp_model="nearest",
            fuse_type="sum",
            fpn_top_down_levels=top_down,
        )

    def forward(self, x: torch.Tensor):
        stages = self.trunk(x)
        fpn, _ = self.neck(stages)
        return stages, fpn


# ------------------------------------------------------------------------------------------------------- DBCIM

class BFBAdapter(nn.Module):
    """Bayesian posterior estimator (BPE): post(prior(F_base) * evidence(F_h)) + F_base."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.prior_path = nn.Sequential(DMB(channels, ratio, 1), group_norm(channels), nn.ReLU(inplace=True))
        self.evidence_path = nn.Sequential(
            DMB(channels, ratio, 3), group_norm(channels), nn.ReLU(inplace=True),
            DMB(channels, ratio, 3), group_norm(channels), nn.ReLU(inplace=True),
        )
        self.post_fusion_path = nn.Sequential(DMB(channels, ratio, 1), group_norm(channels), nn.ReLU(inplace=True))

    def forward(self, base: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
        return self.post_fusion_path(self.prior_path(base) * self.evidence_path(evidence)) + base


class DSCNPair(nn.Module):
    def __init__(self, channels: int, kernel: int, groups: int, ratio: int, use_bpe: bool = True):
        super().__init__()
        self.conv0 = DepthwiseConv2d(channels, channels, 5, padding=2, groups=channels)
        self.dscn_x = DSCN(channels, kernel, groups, "x")
        self.dscn_y = DSCN(channels, kernel, groups, "y")
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bfb_adapter = BFBAdapter(channels, ratio) if use_bpe else None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        base = self.conv0(u)
        fh = self.dscn_x(base.permute(0, 2, 3, 1), base)  # (B, H, W, C)
        guide = base
        if self.bfb_adapter is not None:
            guide = self.bfb_adapter(base, fh.permute(0, 3, 1, 2))
        fhv = self.dscn_y(fh, guide).permute(0, 3, 1, 2)
        return u * self.conv(fhv)


class DSA(nn.Module):
    def __init__(self, channels: int, kernel: int, groups: int, ratio: int, use_bpe: bool = True):
        super().__init__()
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = DSCNPair(channels, kernel, groups, ratio, use_bpe)
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class FPNDSAModule(nn.Module):
    """DBCIM: one DSA per FPN level, levels independent."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dsa_layers = nn.ModuleList(
            DSA(cfg.d_model, k, g, cfg.dmb_ratio, cfg.use_bpe) for k, g in zip(cfg.dbcim_kernels, cfg.dbcim_groups)
        )

    def forward(self, feats):
        return [layer(f) for layer, f in zip(self.dsa_layers, feats)]


# -------------------------------------------------------------------------------------------------------- MDCP

class _PlainBranch(nn.Module):
    """Ablation: an MDCP branch as a plain dilated 3x3 conv (no deformable sampling)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x):
        return self.conv(x)


class ParallelMultiScaleConv(nn.Module):
    def __init__(self, channels: int, dilations, group_channels: int, plain: bool):
        super().__init__()
        self.branches = nn.ModuleList(
            _PlainBranch(channels, d) if plain else DCNv3CF(channels, 3, d, channels // group_channels)
            for d in dilations
        )

    def forward(self, x):
        return [b(x) for b in self.branches]


class SpatialFusion(nn.Module):
    """Spatial cue activator (SCA): per-branch sigmoid gates from the concatenated branches."""

    def __init__(self, channels: int, n: int, reduction: int):
        super().__init__()
        mid = max(1, channels * n // reduction)  # 4*C4/16 = C4/4 in the paper's setting
        self.attention_generator = nn.Sequential(
            nn.Conv2d(channels * n, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, n, 1), nn.Sigmoid(),
        )

    def forward(self, cat, feats):
        gates = self.attention_generator(cat)
        return sum(gates[:, i:i + 1] * f for i, f in enumerate(feats))


class ChannelFusion(nn.Module):
    """Global relation reasoner (GRR): Swin blocks over the concatenated branches -> per-branch channel gates."""

    def __init__(self, channels: int, n: int, dim: int, heads: int, window: int, depth: int):
        super().__init__()
        self.n, self.channels = n, channels
        self.embedding = nn.Sequential(nn.Conv2d(channels * n, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.GELU())
        self.swin_blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)
        )
        self.weight_decoder = nn.Sequential(nn.Linear(dim, channels * n), nn.Sigmoid())

    def forward(self, cat, feats):
        t = self.embedding(cat).permute(0, 2, 3, 1)
        for blk in self.swin_blocks:
            t = blk(t)
        w = self.weight_decoder(t.mean(dim=(1, 2)))  # (B, n*C), branch-major
        w = w.view(w.shape[0], self.n, self.channels, 1, 1)
        return sum(w[:, i] * f for i, f in enumerate(feats))


class MSDAFusionModule(nn.Module):
    """MDCP: four deformable branches (dilations 1/3/5/7) fused by SCA (spatial) + GRR (channel)."""

    def __init__(self, cfg: ModelConfig, channels: int):
        super().__init__()
        n = len(cfg.mdcp_dilations)
        self.parallel_conv = ParallelMultiScaleConv(channels, cfg.mdcp_dilations, cfg.mdcp_group_channels,
                                                    cfg.mdcp_plain_conv)
        self.spatial_fusion = SpatialFusion(channels, n, cfg.mdcp_spatial_reduction) if cfg.use_sca else None
        self.channel_fusion = (ChannelFusion(channels, n, cfg.grr_dim, cfg.grr_heads, cfg.grr_window, cfg.grr_depth)
                               if cfg.use_grr else None)

    def forward(self, x):
        feats = self.parallel_conv(x)
        cat = torch.cat(feats, dim=1)
        out = None
        if self.spatial_fusion is not None:
            out = self.spatial_fusion(cat, feats)
        if self.channel_fusion is not None:
            c = self.channel_fusion(cat, feats)
            out = c if out is None else out + c
        if out is None:  # both fusions ablated: plain mean of the branches
            out = sum(feats) / len(feats)
        return out


# ----------------------------------------------------------------------------------------------------- decoder

class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, group_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            DCNv3CF(cin, 3, 1, max(1, cin // group_channels)),
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.block(x)


class SAM2Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c4 = cfg.stage_channels[3]
        d = cfg.d_model
        c = cfg.decoder_channels
        g, gc = cfg.dysample_groups, cfg.decoder_group_channels
        self.msda_fusion = MSDAFusionModule(cfg, c4) if cfg.use_mdcp else None
        self.decoder_block4 = DecoderBlock(c4 + d, c[0], gc)
        self.decoder_block3 = DecoderBlock(c[0] + d, c[1], gc)
        self.decoder_block2 = DecoderBlock(c[1] + d, c[2], gc)
        self.decoder_block1 = DecoderBlock(c[2] + d, c[3], gc)
        self.upsample4 = DySample(c[0], 2, g)
        self.upsample3 = DySample(c[1], 2, g)
        self.upsample2 = DySample(c[2], 2, g)
        self.upsample1 = DySample(c[3], 2, g)
        self.final_upsample = DySample(c[3], 2, g)
        self.output_conv = nn.Conv2d(c[3], 1, 1)

    def forward(self, s4, fpn):
        m = self.msda_fusion(s4) if self.msda_fusion is not None else s4
        x = self.upsample4(self.decoder_block4(torch.cat([m, fpn[3]], 1)))
        x = self.upsample3(self.decoder_block3(torch.cat([x, fpn[2]], 1)))
        x = self.upsample2(self.decoder_block2(torch.cat([x, fpn[1]], 1)))
        x = self.upsample1(self.decoder_block1(torch.cat([x, fpn[0]], 1)))
        return self.output(x)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """``output_conv(final_upsample(x))``, computed as the sum over DySample's groups of each group's share of
        the 1x1 output projection, upsampled.  DySample samples all channels of a group with the same bilinear
        weights, so it commutes with any per-pixel linear map of those channels: the same result up to rounding,
        with G maps sampled at full resolution instead of C channels."""
        up, conv = self.final_upsample, self.output_conv
        b, c, h, w = x.shape
        g = up.groups
        proj = nn.functional.conv2d(x, conv.weight.reshape(g, c // g, 1, 1), groups=g)  # (B, G, H, W)
        return up.sample(proj, x, bias=conv.bias)  # sum over the G upsampled maps, plus the bias


class AnchorSAM(nn.Module):
    """Input: images (B, C, H, W) already normalised (see :meth:`normalize`); H, W multiples of 32.
    Output: road logits (B, 1, H, W)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SAM2Encoder(cfg)
        self.fpn_dsa_attention = FPNDSAModule(cfg) if cfg.use_dbcim else None
        self.decoder = SAM2Decoder(cfg)
        if cfg.normalization == "imagenet":
            mean, std = torch.tensor(IMAGENET_MEAN) * 255, torch.tensor(IMAGENET_STD) * 255
        else:  # x / 255 * 3.2 - 1.6  ==  (x - 127.5) / (255 / 3.2)
            mean, std = torch.full((3,), 127.5), torch.full((3,), 255 / 3.2)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8-range RGB (0..255) -> model input."""
        return (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {h}x{w}")
        stages, fpn = self.encoder(x)
        if self.fpn_dsa_attention is not None:
            fpn = self.fpn_dsa_attention(fpn)
        return self.decoder(stages[-1], fpn)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> AnchorSAM:
    """Build the network; ``device='meta'`` builds it without allocating weights (for counting)."""
    if device is not None and str(device) == "meta":
        # sam2's Hiera calls .item() on a linspace while building; keep that one scalar tensor on the CPU.
        linspace = torch.linspace

        def cpu_linspace(*args, **kw):
            kw["device"] = "cpu"
            return linspace(*args, **kw)

        torch.linspace = cpu_linspace
        try:
            with torch.device("meta"):
                return AnchorSAM(cfg)
        finally:
            torch.linspace = linspace
    model = AnchorSAM(cfg)
    return model.to(device) if device is not None else model


__all__ = ["AnchorSAM", "build_model", "count_parameters"]
