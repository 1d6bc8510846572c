"""Every setting read from the environment, in one place (read at call time, so tests may set them).

| variable              | meaning                                                                   |
|-----------------------|---------------------------------------------------------------------------|
| ``ROADMAP_HOME``      | cache folder (downloaded checkpoints), default ``~/.cache/roadmap``       |
| ``ROADMAP_MODELS_DIR``| a folder of variant YAMLs / registry / bundled weights replacing the package's own |
| ``ROADMAP_MIRROR``    | base URL that replaces the registry's checkpoint URLs                     |
| ``ROADMAP_MASS_MIRROR``| base URL of a Massachusetts Roads copy with the ``{split}/{kind}/`` layout |
| ``GDAL_CACHEMAX``     | GDAL block cache in MB; roadmap bounds it to 256 MB when unset            |
| ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` | set by ``torchrun`` for distributed training           |
| ``RAY_ADDRESS``       | the Ray cluster ``--engine ray`` joins (read by Ray itself, and by ``engines``) |
| ``ROADMAP_RAY_TMP``   | where a local Ray instance started for a run keeps its files (default /tmp) |
| ``ROADMAP_DEFORM``    | deformable sampling: ``auto`` (default: fused where it runs), ``fused``, ``reference`` |
| ``ROADMAP_CC``        | C compiler that builds the fused CPU kernel once (default ``cc``)         |
| ``ROADMAP_FAULT_KILL_WORKER_ONCE`` | tests only: the first Ray worker to take a batch creates this file and dies |

This module imports nothing from the package.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GDAL_CACHEMAX_MB = 256


def home() -> Path:
    """The cache folder for downloaded checkpoints."""
    return Path(os.environ.get("ROADMAP_HOME", Path.home() / ".cache" / "roadmap"))


def models_dir_override() -> Path | None:
    """A user folder that replaces the package's bundled ``models`` data, if set."""
    value = os.environ.get("ROADMAP_MODELS_DIR")
    return Path(value) if value else None


def checkpoint_mirror() -> str:
    """Base URL replacing the registry's checkpoint URLs ('' when unset)."""
    return os.environ.get("ROADMAP_MIRROR", "").rstrip("/")


def massachusetts_mirror() -> str:
    """Base URL of a Massachusetts Roads copy ('' when unset)."""
    return os.environ.get("ROADMAP_MASS_MIRROR", "").rstrip("/")


DEFORM_CHOICES = ("auto", "fused", "reference")


def deform_impl() -> str:
    """``ROADMAP_DEFORM``: which deformable sampling the network uses (``auto`` when unset)."""
    return os.environ.get("ROADMAP_DEFORM", "auto").strip().lower() or "auto"


def c_compiler() -> str:
    """``ROADMAP_CC``: the C compiler that builds the fused CPU kernel (``cc`` when unset)."""
    return os.environ.get("ROADMAP_CC", "cc")


def gdal_cachemax() -> str:
    """GDAL block cache size: the user's ``GDAL_CACHEMAX`` or roadmap's bound (MB)."""
    return os.environ.get("GDAL_CACHEMAX", str(DEFAULT_GDAL_CACHEMAX_MB))


def gdal_cachemax_is_default() -> bool:
    """True when the user did not set ``GDAL_CACHEMAX``."""
    return "GDAL_CACHEMAX" not in os.environ


@dataclass(frozen=True)
class DistInfo:
    """Process placement under ``torchrun`` (world 1, rank 0 otherwise)."""

    world: int
    rank: int
    local_rank: int


def dist_info() -> DistInfo:
    """Distributed-training placement from torchrun's variables."""
    return DistInfo(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def ray_temp_root() -> str:
    """``ROADMAP_RAY_TMP``: where a local Ray instance started for a run keeps its files (default /tmp; keep the
    path short, Ray's sockets live there)."""
    return os.environ.get("ROADMAP_RAY_TMP", "/tmp")


def fault_kill_worker_once() -> Path | None:
    """``ROADMAP_FAULT_KILL_WORKER_ONCE``: fault injection for tests: the first Ray worker to take a batch creates
    this file and dies (as a lost node would), so the retry path runs for real."""
    value = os.environ.get("ROADMAP_FAULT_KILL_WORKER_ONCE")
    return Path(value) if value else None


def ray_address() -> str | None:
    """``RAY_ADDRESS``: the Ray cluster to join (None: start a local instance)."""
    return os.environ.get("RAY_ADDRESS") or None
