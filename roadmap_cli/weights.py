"""Models and weights: variant configs and the registry (package data in ``roadmap_cli/models``), roadmap's own
versioned checkpoint format, the official SAM2 / SAM2.1 encoder checkpoints, and one helper that builds a model
from a checkpoint for both training and inference (:func:`model_from_checkpoint`)."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from . import settings
from .errors import CheckpointError, InputError
from .io.atomic import atomic_path
from .io.download import Ledger, download, sha256_file
from .nn.config import ModelConfig
from .nn.model import AnchorSAM, build_model
from .registry import _registry, list_rows, models_dir, variant_names  # noqa: F401 - re-exported

FORMAT = "roadmap-checkpoint"
VERSION = 1
# fields that decide the tensor shapes; a checkpoint differing in any of them cannot load into a model
_ARCH_FIELDS = ("embed_dim", "num_heads", "stages", "d_model", "mdcp_dilations", "mdcp_group_channels",
                "grr_dim", "grr_heads", "grr_window", "grr_depth", "dbcim_kernels", "dbcim_groups", "dmb_ratio",
                "decoder_channels", "decoder_group_channels", "dysample_groups", "window_pos_embed_bkg_spatial_size",
                "use_dbcim", "use_mdcp", "use_bpe", "use_sca", "use_grr", "mdcp_plain_conv", "in_chans")
_ALIASES = {"t": "anchor-sam-t", "s": "anchor-sam-s", "b": "anchor-sam-b", "l": "anchor-sam-l"}


# ------------------------------------------------------------------------------------------- package data

def config_from_dict(d: dict, source) -> ModelConfig:
    """A :class:`ModelConfig` from a dict (checkpoint or YAML); an invalid one is a :class:`CheckpointError`."""
    try:
        return ModelConfig.from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{source}: not a model configuration ({' '.join(str(e).split())[:120]})") from e


MAX_PARAMETERS = 2_000_000_000  # 8 GB of fp32 weights; Anchor-SAM-L has 0.25 G


def build_checked(cfg: ModelConfig, source) -> AnchorSAM:
    """Build a model, first on the meta device (no memory) to refuse a configuration of absurd size."""
    from .nn.model import count_parameters

    try:
        n = count_parameters(build_model(cfg, device="meta"))
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: the model configuration cannot be built ({' '.join(str(e).split())[:120]})"
                              ) from e
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{source} asks for a model of {n / 1e9:.1f} G parameters ({4 * n / 1e9:.0f} GB); "
                              f"roadmap's largest variant has 0.25 G: refusing to build it")
    return build_model(cfg)


def load_variant(name: str) -> ModelConfig:
    """Load a variant by name (``anchor-sam-t``, ``t``, ``roadmap-compact``...) or from a YAML path."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = models_dir() / f"{_ALIASES.get(name.lower(), name)}.yaml"
    if not path.is_file():
        raise InputError(f"unknown model variant {name!r}; known: {', '.join(variant_names())}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"model config {path} is not plain YAML: {' '.join(str(e).split())[:160]}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"model config {path} must be a mapping of config keys to values")
    return config_from_dict(data, path)


def download_weights(name: str, dest: Path | None = None) -> Path:
    """Download a registered SAM2.1 checkpoint (resumable, sha256 recorded at first download and verified)."""
    reg = _registry()["sam2"]
    if name not in reg:
        raise InputError(f"unknown checkpoint {name!r}; known: {', '.join(reg)}")
    entry = reg[name]
    folder = Path(dest) if dest else settings.home() / "checkpoints"
    created = [p for p in [folder, *folder.parents] if not p.exists()]  # folders this call would create
    ledger = Ledger(folder)  # no sha256 is published for the SAM2.1 files: recorded at the first download
    expected = entry.get("sha256") or ledger.expected(name)
    hint = (f"Without network, download {entry['url']} elsewhere and put it at {folder / name}.")
    mirror = settings.checkpoint_mirror()
    try:
        path = download(f"{mirror}/{name}" if mirror else entry["url"], folder / name, sha256=expected,
                        manual_hint=hint)
    except BaseException:
        for p in created:  # a failed download leaves no new empty folders behind (a partial .part is kept)
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise
    ledger.record(name, path)
    return path


def default_model_path() -> Path:
    """The bundled default road model, verified against its registered sha256."""
    bundled = _registry()["bundled"]
    name = bundled["default"]
    entry = bundled[name]
    path = models_dir() / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"the bundled model {path} is missing; pass --model/--weights")
    if entry.get("sha256"):
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"the bundled model {path} does not match its registered sha256 (corrupt "
                                  "installation?)")
    return path


# ------------------------------------------------------------------------------------------- checkpoints

def _torch_load(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy?")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, garbage or foreign files fail in many ways inside torch.load
        raise CheckpointError(f"checkpoint {path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:80]})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict of tensors")
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
    """A roadmap checkpoint as a dict; anything else is a :class:`CheckpointError` naming what it is."""
    ck = _torch_load(Path(path))
    if ck.get("format") != FORMAT or "model" not in ck or "model_config" not in ck:
        keys = ck.get("model", ck)
        if isinstance(keys, dict) and any(str(k).startswith("image_encoder.") for k in keys):
            raise CheckpointError(f"{path} is a SAM2 checkpoint (encoder only); pass it to `roadmap train "
                                  "--sam2-checkpoint`, not as road-model weights")
        raise CheckpointError(f"{path} is not a roadmap checkpoint (no 'format: {FORMAT}' header)")
    version = ck.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: its checkpoint version {version!r} is not a number")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer roadmap (checkpoint version {ck['version']})")
    state = ck["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict of named tensors")
    if not isinstance(ck["model_config"], dict):
        raise CheckpointError(f"{path}: its 'model_config' entry is not a mapping")
    return ck


def check_compatible(cfg: ModelConfig, ck_cfg: ModelConfig, path) -> None:
    """Refuse a checkpoint whose architecture fields differ from ``cfg``."""
    diff = [f for f in _ARCH_FIELDS if getattr(cfg, f) != getattr(ck_cfg, f)]
    if diff:
        raise CheckpointError(f"checkpoint {path} is for variant {ck_cfg.name!r}, not {cfg.name!r} "
                              f"(differs in {', '.join(diff[:4])})")


def load_state(model: AnchorSAM, state: dict, path) -> None:
    """Load a state dict (fp16 tensors are widened); any missing or unexpected key is refused."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"checkpoint {path} does not match the model: {len(result.missing_keys)} missing "
                              f"and {len(result.unexpected_keys)} unexpected keys (e.g. "
                              f"{(result.missing_keys or result.unexpected_keys)[0]})")


def model_from_checkpoint(path: str | Path, cfg: ModelConfig | None = None) -> tuple[AnchorSAM, dict]:
    """Build the model a checkpoint describes and load its weights: ``(model on the CPU, checkpoint dict)``.

    With ``cfg`` the checkpoint must fit that configuration (a variant given with ``--weights``).  Used by
    inference (:func:`load_model`) and by training (``--init`` and ``--resume``)."""
    ck = read_checkpoint(path)
    ck_cfg = config_from_dict(ck["model_config"], path)
    if cfg is not None:
        check_compatible(cfg, ck_cfg, path)
    net = build_checked(cfg or ck_cfg, path)
    load_state(net, ck["model"], path)
    return net, ck


def model_domain(model: str | Path | None, weights: str | Path | None) -> str:
    """Where a model's weights come from, for the run summary: "trained on ..." (the registry's words for the
    bundled model), "untrained (random weights)", or the user's checkpoint file."""
    bundled = _registry()["bundled"]
    if weights is None and (model is None or str(model) == bundled["default"]):
        return "trained on " + bundled[bundled["default"]].get("domain", "the bundled data")
    if weights is None and model is not None and Path(model).suffix not in (".pt", ".pth", ".ckpt"):
        return "untrained (random weights)"
    path = Path(weights or model)
    try:  # a checkpoint that says where its weights come from (roadmap adapt writes one) is named by it
        domain = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("domain")
    except Exception:  # noqa: BLE001 - the summary falls back to the file name; loading reports real errors
        domain = None
    return f"{path.name}: {domain}" if isinstance(domain, str) and domain else f"weights from {path.name}"


def load_model(model: str | Path | None = None, weights: str | Path | None = None,
               device: str | torch.device = "cpu", random_weights: bool = False) -> AnchorSAM:
    """Build a model from a variant name, a YAML, or a checkpoint file, and load weights (eval mode).

    * ``model`` is a checkpoint file -> its own config and weights.
    * ``model`` is a variant and ``weights`` a checkpoint -> shapes are checked against the variant first.
    * ``model`` is None, or the bundled model's name -> the bundled default model (or ``weights`` with its own
      config).
    * ``model`` is a variant without ``weights`` -> refused, unless ``random_weights`` (benchmarks).
    """
    if weights is None and (model is None or str(model) == _registry()["bundled"]["default"]):
        model = default_model_path()
    if model is not None and Path(model).suffix in (".pt", ".pth", ".ckpt"):
        net, _ = model_from_checkpoint(model)
    elif model is None:
        net, _ = model_from_checkpoint(weights)
    elif weights is not None:
        net, _ = model_from_checkpoint(weights, load_variant(str(model)))
    else:
        cfg = load_variant(str(model))  # a broken config says so first
        if not random_weights:
            raise CheckpointError(f"--model {model} is a variant without trained weights: pass --weights CHECKPOINT "
                                  f"(a roadmap checkpoint of that variant), train one (roadmap train --model {model} "
                                  "--sam2-checkpoint ...), or adapt the bundled model to your own imagery "
                                  "and road vectors (roadmap adapt SCENE.tif ROADS.gpkg -o model.pt); --random-weights runs "
                                  "untrained weights, for benchmarks only")
        net = build_checked(cfg, model)
    return net.to(device).eval()


def load_sam2_encoder(model: AnchorSAM, path: str | Path) -> int:
    """Load an official SAM2/SAM2.1 checkpoint's ``image_encoder.trunk.*`` / ``image_encoder.neck.*`` weights.

    Fails (:class:`CheckpointError`) on a missing file, a non-SAM2 file, a checkpoint of another Hiera size, or any
    missing trunk/neck key.  Returns the number of tensors loaded.
    """
    ck = _torch_load(Path(path))
    sd = ck.get("model", ck)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict: not a SAM2 checkpoint")
    enc = {k[len("image_encoder."):]: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)
           and (k.startswith("image_encoder.trunk.") or k.startswith("image_encoder.neck."))}
    if not enc:
        raise CheckpointError(f"{path} has no image_encoder.trunk/neck weights: not a SAM2 checkpoint")
    target = model.encoder.state_dict()
    missing = sorted(set(target) - set(enc))
    if missing:
        raise CheckpointError(f"SAM2 checkpoint {path} lacks {len(missing)} encoder keys (e.g. {missing[0]}); "
                              f"is it for variant {model.cfg.name}?")
    bad = [k for k in target if tuple(enc[k].shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"SAM2 checkpoint {path} is for another Hiera size: {k} has shape "
                              f"{tuple(enc[k].shape)}, {model.cfg.name} needs {tuple(target[k].shape)} "
                              f"(expected {model.cfg.sam2_checkpoint_name})")
    model.encoder.load_state_dict({k: enc[k] for k in target}, strict=True)
    return len(target)
