"""``roadmap info``."""
from __future__ import annotations

import os
import sys

from .. import __version__, settings
from .render import print_table


def info():
    """Versions, torch device, CUDA / bf16 availability and threads."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    rows = [("roadmap", __version__), ("python", sys.version.split()[0]), ("torch", torch.__version__)]
    for dist in ("sam2", "rasterio", "geopandas", "pyogrio", "shapely", "pyproj", "sknw", "networkx",
                 "scikit-image", "numpy"):
        try:
            rows.append((dist, version(dist)))
        except PackageNotFoundError:  # pragma: no cover - reported, not fatal
            rows.append((dist, "not installed"))
    import rasterio
    rows.append(("GDAL", rasterio.__gdal_version__))
    cuda = torch.cuda.is_available()
    rows.append(("cuda available", str(cuda)))
    if cuda:
        for i in range(torch.cuda.device_count()):
            rows.append((f"cuda:{i}", torch.cuda.get_device_name(i)))
        rows.append(("cuda bf16", str(torch.cuda.is_bf16_supported())))
    from ..extract import compute_info
    rows.extend(compute_info(cuda))
    rows.append(("default device", "cuda" if cuda else "cpu"))
    rows.append(("torch threads", str(torch.get_num_threads())))
    rows.append(("cpu cores", str(os.cpu_count())))
    rows.append(("GDAL_CACHEMAX", f"{settings.DEFAULT_GDAL_CACHEMAX_MB} MB (roadmap's bound)"
                 if settings.gdal_cachemax_is_default() else settings.gdal_cachemax()))
    rows.append(("models", str(_models_dir())))
    print_table("roadmap info", rows)


def _models_dir():
    from ..registry import models_dir
    return models_dir()
