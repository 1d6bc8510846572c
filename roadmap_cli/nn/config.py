"""Model configuration: one dataclass (variants are stored as YAML in ``roadmap_cli/models``, read by
``roadmap_cli.weights``).  Invalid configurations raise ``ValueError``; ``nn`` imports nothing from the package."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ModelConfig:
    name: str = "anchor-sam-t"
    # --- Hiera trunk (SAM2) ---
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple = (1, 2, 7, 2)
    global_att_blocks: tuple | None = (5, 7, 9)
    window_spec: tuple = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple = (7, 7)
    sam2_checkpoint_name: str | None = "sam2.1_hiera_tiny.pt"
    # --- FPN neck ---
    d_model: int = 256
    # --- MDCP ---
    mdcp_dilations: tuple = (1, 3, 5, 7)
    mdcp_group_channels: int = 16
    mdcp_spatial_reduction: int = 16
    grr_dim: int = 256
    grr_heads: int = 8
    grr_window: int = 8
    grr_depth: int = 2
    # --- DBCIM (per FPN level, stride 4, 8, 16, 32) ---
    dbcim_kernels: tuple = (7, 7, 5, 5)
    dbcim_groups: tuple = (4, 4, 8, 8)
    dmb_ratio: int = 8
    # --- decoder ---
    decoder_channels: tuple = (512, 256, 128, 64)
    decoder_group_channels: int = 16
    dysample_groups: int = 4
    # --- switches for the known paper / upstream differences (defaults = Anchor-SAM behaviour) ---
    anchor_transition_heads: bool = True   # transition blocks run with the previous stage's head count
    neck_top_down_all: bool = True         # nearest top-down sum into every FPN level (SAM2.1: levels 2-3 only)
    normalization: str = "anchor"          # "anchor": x/255*3.2-1.6 ; "imagenet": SAM2 pre-training stats
    # --- ablations (paper Tables III-V) ---
    use_dbcim: bool = True
    use_mdcp: bool = True
    use_bpe: bool = True
    use_sca: bool = True
    use_grr: bool = True
    mdcp_plain_conv: bool = False
    # --- data / inference defaults ---
    in_chans: int = 3
    gsd: float = 1.0          # metres per pixel of the training data
    threshold: float = 0.5
    tile: int = 1024

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        pool_blocks = [sum(self.stages[:i]) for i in range(1, len(self.stages))]
        bad = [b for b in (self.global_att_blocks or ()) if b in pool_blocks]
        if bad:
            raise ValueError(f"model config: global_att_blocks {bad} are stage-transition (q-pool) blocks, "
                            "which need a window")
        if self.normalization not in ("anchor", "imagenet"):
            raise ValueError(f"model config: normalization must be 'anchor' or 'imagenet', got {self.normalization!r}")

    @property
    def stage_channels(self) -> tuple:
        """Hiera channels per stage."""
        return tuple(self.embed_dim * 2 ** i for i in range(4))

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists), as stored in checkpoints and YAML."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config: unknown keys {sorted(map(str, unknown))}")
        return cls(**d)

    def replace(self, **kw) -> "ModelConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **kw)


__all__ = ["ModelConfig"]
