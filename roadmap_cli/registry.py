"""The model registry and variant configs (package data in ``roadmap_cli/models``), read without torch, so
``roadmap models list`` answers at once.  Imports ``settings`` only."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from . import settings


def models_dir() -> Path:
    """The folder of variant YAMLs, ``registry.yaml`` and bundled weights: the installed package's own data
    (``roadmap_cli/models``, also inside a wheel), or ``$ROADMAP_MODELS_DIR``."""
    override = settings.models_dir_override()
    if override is not None:
        return override
    return Path(str(resources.files("roadmap_cli.models")))


def _registry() -> dict:
    with open(models_dir() / "registry.yaml") as f:
        return yaml.safe_load(f)


def variant_names() -> list[str]:
    """Names of the variant configs shipped with the package."""
    return sorted(p.stem for p in models_dir().glob("*.yaml") if p.stem != "registry")


def list_rows() -> list[str]:
    """Lines for ``roadmap models list``."""
    reg = _registry()
    rows = ["variants (configs in roadmap_cli/models/):"]
    rows += [f"  {v}" for v in variant_names()]
    rows.append("bundled road models:")
    for name, entry in reg["bundled"].items():
        if name == "default":
            continue
        flag = " (default)" if reg["bundled"]["default"] == name else ""
        present = "present" if (models_dir() / entry["file"]).is_file() else "missing"
        rows.append(f"  {name}{flag}: {models_dir() / entry['file']} [{present}]")
    rows.append("downloadable SAM2.1 encoder checkpoints (roadmap models download NAME):")
    for name, entry in reg["sam2"].items():
        local = settings.home() / "checkpoints" / name
        rows.append(f"  {name} -> {entry['variant']} [{'downloaded' if local.is_file() else 'not downloaded'}]")
    return rows
