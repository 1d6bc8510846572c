"""The Anchor-SAM network in pure PyTorch.  A leaf: imports nothing from the rest of the package."""
from .config import ModelConfig
from .model import AnchorSAM, build_model, count_parameters

__all__ = ["AnchorSAM", "ModelConfig", "build_model", "count_parameters"]
