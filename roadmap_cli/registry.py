"""Weights registry (``models/registry.yaml``): SAM2.1 encoder checkpoints and the bundled road model."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .download import Ledger, download, sha256_file
from .errors import UserError
from .nn.config import MODELS_DIR, variant_names


def _registry() -> dict:
    with open(MODELS_DIR / "registry.yaml") as f:
        return yaml.safe_load(f)


def home() -> Path:
    return Path(os.environ.get("ROADMAP_HOME", Path.home() / ".cache" / "roadmap"))


def list_rows() -> list[str]:
    reg = _registry()
    rows = ["variants (configs in models/):"]
    rows += [f"  {v}" for v in variant_names()]
    rows.append("bundled road models:")
    for name, entry in reg["bundled"].items():
        if name == "default":
            continue
        flag = " (default)" if reg["bundled"]["default"] == name else ""
        present = "present" if (MODELS_DIR / entry["file"]).is_file() else "missing"
        rows.append(f"  {name}{flag}: models/{entry['file']} [{present}]")
    rows.append("downloadable SAM2.1 encoder checkpoints (roadmap models download NAME):")
    for name, entry in reg["sam2"].items():
        local = home() / "checkpoints" / name
        rows.append(f"  {name} -> {entry['variant']} [{'downloaded' if local.is_file() else 'not downloaded'}]")
    return rows


def download_weights(name: str, dest: Path | None = None) -> Path:
    reg = _registry()["sam2"]
    if name not in reg:
        raise UserError(f"unknown checkpoint {name!r}; known: {', '.join(reg)}")
    entry = reg[name]
    folder = Path(dest) if dest else home() / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(folder)  # no sha256 is published for the SAM2.1 files: recorded at the first download
    expected = entry.get("sha256") or ledger.expected(name)
    hint = (f"Without network, download {entry['url']} elsewhere and put it at {folder / name}.")
    path = download(os.environ.get("ROADMAP_MIRROR", "").rstrip("/") + "/" + name
                    if os.environ.get("ROADMAP_MIRROR") else entry["url"],
                    folder / name, sha256=expected, manual_hint=hint)
    ledger.record(name, path)
    return path


def default_model_path() -> Path:
    """The bundled default road model, verified against its registered sha256."""
    bundled = _registry()["bundled"]
    name = bundled["default"]
    entry = bundled[name]
    path = MODELS_DIR / entry["file"]
    if not path.is_file():
        raise UserError(f"the bundled model {path} is missing; pass --model/--weights")
    if entry.get("sha256"):
        if sha256_file(path) != entry["sha256"]:
            raise UserError(f"the bundled model {path} does not match its registered sha256 (corrupt checkout?)")
    return path
