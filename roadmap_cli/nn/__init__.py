"""The Anchor-SAM network in pure PyTorch."""
from .config import ModelConfig, load_variant, variant_names
from .model import AnchorSAM, build_model, count_parameters

__all__ = ["AnchorSAM", "ModelConfig", "build_model", "count_parameters", "load_variant", "variant_names"]
