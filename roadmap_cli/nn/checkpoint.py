"""Checkpoints: roadmap's own versioned format and the official SAM2 / SAM2.1 encoder checkpoints."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import UserError
from ..io_utils import atomic_path
from .config import ModelConfig, load_variant
from .model import AnchorSAM, build_model

FORMAT = "roadmap-checkpoint"
VERSION = 1
# fields that decide the tensor shapes; a checkpoint differing in any of them cannot load into a model
_ARCH_FIELDS = ("embed_dim", "num_heads", "stages", "d_model", "mdcp_dilations", "mdcp_group_channels",
                "grr_dim", "grr_heads", "grr_window", "grr_depth", "dbcim_kernels", "dbcim_groups", "dmb_ratio",
                "decoder_channels", "decoder_group_channels", "dysample_groups", "window_pos_embed_bkg_spatial_size",
                "use_dbcim", "use_mdcp", "use_bpe", "use_sca", "use_grr", "mdcp_plain_conv", "in_chans")


def _torch_load(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise UserError(f"checkpoint {path} is not a readable PyTorch checkpoint ({type(e).__name__})") from e
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} does not hold a dict of tensors")
    return obj


def save_checkpoint(path: str | Path, model: AnchorSAM, extra: dict | None = None, half: bool = False) -> Path:
    """Write ``{format, version, model_config, model, **extra}`` atomically."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model_config": model.cfg.to_dict(), "model": state}
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict:
    ck = _torch_load(Path(path))
    if ck.get("format") != FORMAT or "model" not in ck or "model_config" not in ck:
        if any(k.startswith("image_encoder.") for k in ck.get("model", ck)):
            raise UserError(f"{path} is a SAM2 checkpoint (encoder only); pass it to `roadmap train "
                            "--sam2-checkpoint`, not as road-model weights")
        raise UserError(f"{path} is not a roadmap checkpoint (no 'format: {FORMAT}' header)")
    if int(ck.get("version", 0)) > VERSION:
        raise UserError(f"{path} was written by a newer roadmap (checkpoint version {ck['version']})")
    return ck


def check_compatible(cfg: ModelConfig, ck_cfg: ModelConfig, path) -> None:
    diff = [f for f in _ARCH_FIELDS if getattr(cfg, f) != getattr(ck_cfg, f)]
    if diff:
        raise UserError(f"checkpoint {path} is for variant {ck_cfg.name!r}, not {cfg.name!r} "
                        f"(differs in {', '.join(diff[:4])})")


def load_state(model: AnchorSAM, state: dict, path) -> None:
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"checkpoint {path} does not match the model: {len(result.missing_keys)} missing and "
                        f"{len(result.unexpected_keys)} unexpected keys (e.g. "
                        f"{(result.missing_keys or result.unexpected_keys)[0]})")


def load_model(model: str | Path | None = None, weights: str | Path | None = None,
               device: str | torch.device = "cpu") -> AnchorSAM:
    """Build a model from a variant name, a YAML, or a checkpoint file, and load weights.

    * ``model`` is a checkpoint file -> its own config and weights.
    * ``model`` is a variant and ``weights`` a checkpoint -> shapes are checked against the variant first.
    * ``model`` is None -> the bundled default model.
    """
    if model is None and weights is None:
        from ..registry import default_model_path
        model = default_model_path()
    if model is not None and Path(model).suffix in (".pt", ".pth", ".ckpt"):
        ck = read_checkpoint(model)
        cfg = ModelConfig.from_dict(ck["model_config"])
        net = build_model(cfg)
        load_state(net, ck["model"], model)
        return net.to(device).eval()
    if model is None:
        ck = read_checkpoint(weights)
        cfg = ModelConfig.from_dict(ck["model_config"])
    else:
        cfg = load_variant(str(model))
    net = build_model(cfg)
    if weights is not None:
        ck = read_checkpoint(weights)
        check_compatible(cfg, ModelConfig.from_dict(ck["model_config"]), weights)
        load_state(net, ck["model"], weights)
    return net.to(device).eval()


def load_sam2_encoder(model: AnchorSAM, path: str | Path) -> int:
    """Load an official SAM2/SAM2.1 checkpoint's ``image_encoder.trunk.*`` / ``image_encoder.neck.*`` weights.

    Fails (UserError) on a missing file, a non-SAM2 file, a checkpoint of another Hiera size, or any missing
    trunk/neck key.  Returns the number of tensors loaded.
    """
    ck = _torch_load(Path(path))
    sd = ck.get("model", ck)
    enc = {k[len("image_encoder."):]: v for k, v in sd.items()
           if k.startswith("image_encoder.trunk.") or k.startswith("image_encoder.neck.")}
    if not enc:
        raise UserError(f"{path} has no image_encoder.trunk/neck weights: not a SAM2 checkpoint")
    target = model.encoder.state_dict()
    missing = sorted(set(target) - set(enc))
    if missing:
        raise UserError(f"SAM2 checkpoint {path} lacks {len(missing)} encoder keys (e.g. {missing[0]}); "
                        f"is it for variant {model.cfg.name}?")
    bad = [k for k in target if tuple(enc[k].shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise UserError(f"SAM2 checkpoint {path} is for another Hiera size: {k} has shape {tuple(enc[k].shape)}, "
                        f"{model.cfg.name} needs {tuple(target[k].shape)} (expected {model.cfg.sam2_checkpoint_name})")
    model.encoder.load_state_dict({k: enc[k] for k in target}, strict=True)
    return len(target)
