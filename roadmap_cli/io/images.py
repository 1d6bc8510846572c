"""Image, label and prediction-mask files (PNG / JPEG / TIFF).

ONE label rule for the whole package (training labels and ``roadmap score``'s ground truth alike): a label is
binarised at half its full scale, which is 1 when no value exceeds 1 (0/1 and 0..1 labels) and 255 for 8-bit
labels (0/255, anti-aliased or JPEG-compressed): road = value > full scale / 2.  Labels with values above 255 are
refused.  Prediction masks are read by :func:`read_prediction` (binary, or probabilities with a threshold).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from .raster import check_real_bands, ground_resolution, is_georeferenced

IMAGE_EXT = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def _read_band(path: Path) -> tuple[np.ndarray, float | None]:
    """First band (multi-band files: ITU-R 601 luma, as PIL's ``convert('L')``) with nodata as 0, and the ground
    resolution in metres when the file is georeferenced."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                check_real_bands(ds, path)
                if ds.count >= 3 and ds.dtypes[0] == "uint8":
                    r, g, b = (ds.read(i).astype(np.uint32) for i in (1, 2, 3))
                    a = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.float64)
                else:
                    a = np.ma.filled(ds.read(1, masked=True).astype(np.float64), 0)
                gsd = ground_resolution(ds)  # None without georeferencing
    except RasterioIOError as e:
        raise InputError(f"cannot read {path}: {str(e).splitlines()[0][:120]}") from e
    return a, gsd


def _grid(path: Path):
    """(transform, CRS) of a georeferenced raster file, else None (a header read)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return (ds.transform, ds.crs) if is_georeferenced(ds) else None


def resample_mask(mask: np.ndarray, path: Path, like: np.ndarray, like_path: Path) -> np.ndarray:
    """A boolean mask read from ``path`` on the grid of ``like`` (read from ``like_path``): by georeferencing when
    both files have it (area fraction >= 0.5), else by size (the images cover the same ground)."""
    from PIL import Image

    src, dst = _grid(path), _grid(like_path)
    if src is not None and dst is not None:
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        out = np.zeros(like.shape, np.float32)
        reproject(mask.astype(np.float32), out, src_transform=src[0], src_crs=src[1], dst_transform=dst[0],
                  dst_crs=dst[1], resampling=Resampling.average, dst_nodata=0)
        return out >= 0.5
    frac = Image.fromarray(mask.astype(np.float32)).resize(like.shape[::-1], Image.BILINEAR)
    return np.asarray(frac) >= 0.5


def _distinct(a: np.ndarray) -> np.ndarray:
    return np.unique(a) if a.size <= 4_000_000 else np.unique(a[:: max(1, a.size // 4_000_000)])


def label_mask(a: np.ndarray, name: str | Path = "label") -> np.ndarray:
    """The label rule: road where the value exceeds half the label's full scale (1, or 255 for 8-bit labels)."""
    a = np.asarray(a)
    top = float(a.max()) if a.size else 0.0
    if top > 255:
        raise InputError(f"{name} is not a road label (values up to {top:g}); labels are 0/1 or 0/255 (8-bit)")
    full = 1.0 if top <= 1.0 else 255.0
    return a > full / 2


def read_label(path: Path, threshold: float | None = None) -> tuple[np.ndarray, float | None]:
    """A label file as a boolean road mask (:func:`label_mask`, or ``value >= threshold`` of its full scale for soft
    labels) and its ground resolution (None without georeferencing)."""
    a, gsd = _read_band(Path(path))
    if threshold is not None:
        full = 1.0 if (a.max() if a.size else 0) <= 1.0 else 255.0
        return a >= threshold * full, gsd
    return label_mask(a, path), gsd


def read_prediction(path: Path, threshold: float | None) -> tuple[np.ndarray, float | None]:
    """A predicted mask: probabilities (0..1, or 0..255 for 8-bit) cut at ``threshold``, or without one a binary
    mask (0/1, 0/255; JPEG or anti-aliased 8-bit masks cut at 127)."""
    path = Path(path)
    data, gsd = _read_band(path)
    if threshold is not None:
        if data.max() > 1.0 + 1e-6:  # 8-bit probabilities
            return data >= threshold * 255, gsd
        return data >= threshold, gsd
    values = _distinct(data)
    if set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {0.0, 255.0}:
        return data > 0, gsd
    if path.suffix.lower() in (".jpg", ".jpeg") or (data.max() <= 255 and len(values) <= 8):
        return data > 127, gsd  # JPEG-compressed or anti-aliased binary masks
    raise InputError(f"{path} is not a binary mask ({len(values)} distinct values); pass --threshold")
