"""Windowed GeoTIFF reading on the model's working grid (resampled to the model's ground resolution)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import settings
from ..errors import InputError


def gdal_env():
    """A ``rasterio.Env`` that bounds GDAL's block cache (its default grows to 5 % of RAM) to
    ``settings.DEFAULT_GDAL_CACHEMAX_MB`` unless the user set ``GDAL_CACHEMAX`` (then GDAL reads it itself)."""
    import rasterio

    if settings.gdal_cachemax_is_default():
        return rasterio.Env(GDAL_CACHEMAX=settings.DEFAULT_GDAL_CACHEMAX_MB * 2 ** 20)  # rasterio takes bytes
    return rasterio.Env()


def open_raster(path):
    """Open a raster for reading; a missing, folder or unreadable path is an :class:`InputError`."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not os.path.exists(path):
        raise InputError(f"input {path} not found")
    if os.path.isdir(path):
        raise InputError(f"input {path} is a folder, not a raster")
    try:
        return rasterio.open(path)
    except RasterioIOError as e:
        raise InputError(f"{path} is not a readable raster ({str(e).splitlines()[0][:120]})") from e


def parse_bands(spec: str | None, count: int) -> list[int]:
    """``"4,3,2"`` (1-based) or None (1,2,3 / a single band thrice) -> three band indices."""
    if spec:
        try:
            bands = [int(b) for b in spec.replace(" ", "").split(",") if b]
        except ValueError:
            raise InputError(f"--bands must be comma-separated band numbers, got {spec!r}") from None
        bad = [b for b in bands if b < 1 or b > count]
        if bad:
            raise InputError(f"--bands: band {bad[0]} does not exist (the scene has {count} band(s), numbered 1..{count})")
        if len(bands) not in (1, 3):
            raise InputError(f"--bands needs 1 or 3 bands (RGB), got {len(bands)}")
    else:
        if count >= 3:
            bands = [1, 2, 3]
        elif count == 1:
            bands = [1]
        else:
            raise InputError(f"the scene has {count} bands; choose the RGB bands with --bands R,G,B")
    return bands * 3 if len(bands) == 1 else bands


def ground_resolution(ds) -> float:
    """Metres per pixel (mean of x and y) at the scene centre; degrees are converted on the WGS84 ellipsoid."""
    t = ds.transform
    rx, ry = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    crs = ds.crs
    if crs is None:
        return float((rx + ry) / 2)
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        cx, cy = ds.xy(ds.height // 2, ds.width // 2)
        _, _, dx = geod.inv(cx, cy, cx + rx, cy)
        _, _, dy = geod.inv(cx, cy, cx, cy + ry)
        return float((abs(dx) + abs(dy)) / 2)
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return float((rx + ry) / 2 * factor)


def is_georeferenced(ds) -> bool:
    """True when the dataset has a CRS and a non-identity geotransform."""
    return ds.crs is not None and not ds.transform.is_identity


@dataclass
class SceneGrid:
    """The working grid: the scene resampled to the model's ground resolution."""

    height: int
    width: int
    scale: float  # source pixels per working pixel
    transform: object
    crs: object
    gsd: float  # metres per working pixel


def working_grid(ds, model_gsd: float) -> SceneGrid:
    """The scene resampled to ``model_gsd`` metres per pixel (kept as is within 1 %)."""
    scene_gsd = ground_resolution(ds)
    scale = model_gsd / scene_gsd
    if abs(scale - 1) < 0.01:
        scale = 1.0
    h = max(1, int(round(ds.height / scale)))
    w = max(1, int(round(ds.width / scale)))
    from rasterio.transform import Affine

    transform = ds.transform @ Affine.scale(ds.width / w, ds.height / h)
    return SceneGrid(h, w, scale, transform, ds.crs, scene_gsd * scale)


class StretchStats:
    """Per-band linear stretch to 0..255 (uint8 passes through; others use 2-98 % percentiles of a decimated read)."""

    def __init__(self, ds, bands: list[int]):
        self.lo = np.zeros(3, np.float32)
        self.hi = np.full(3, 255.0, np.float32)
        if ds.dtypes[bands[0] - 1] == "uint8":
            return
        f = max(1, int(math.ceil(max(ds.width, ds.height) / 1024)))
        shape = (3, max(1, ds.height // f), max(1, ds.width // f))
        data = ds.read(bands, out_shape=shape, masked=True).astype(np.float32)
        for i in range(3):
            v = data[i].compressed()
            v = v[np.isfinite(v)]
            if v.size:
                self.lo[i], self.hi[i] = np.percentile(v, 2), np.percentile(v, 98)
                if self.hi[i] <= self.lo[i]:
                    self.hi[i] = self.lo[i] + 1

    def apply(self, a: np.ndarray) -> np.ndarray:
        """(3, h, w) raw -> (h, w, 3) float32 in 0..255."""
        out = (a.astype(np.float32) - self.lo[:, None, None]) / (self.hi - self.lo)[:, None, None] * 255.0
        return np.clip(np.nan_to_num(out), 0, 255).transpose(1, 2, 0)


def _source_window(grid: SceneGrid, r0: int, r1: int, c0: int, c1: int):
    from rasterio.windows import Window

    s = grid.scale
    return Window(c0 * s, r0 * s, (c1 - c0) * s, (r1 - r0) * s), (r1 - r0, c1 - c0)


def _read_error(ds, e) -> InputError:
    return InputError(f"cannot read {ds.name}: {str(e).splitlines()[0][:160]} (truncated or corrupt file?)")


def read_valid(ds, grid: SceneGrid, bands: list[int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Validity (not nodata / masked) of working-grid window [r0, r1) x [c0, c1)."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError

    win, shape = _source_window(grid, r0, r1, c0, c1)
    try:
        return ds.read_masks(bands[0], window=win, out_shape=shape, resampling=Resampling.nearest) > 0
    except RasterioIOError as e:
        raise _read_error(ds, e) from e


def read_window(ds, grid: SceneGrid, bands: list[int], stretch: StretchStats, r0: int, r1: int, c0: int, c1: int):
    """Read working-grid window [r0, r1) x [c0, c1) (inside the grid) -> (image (h, w, 3) 0..255, valid (h, w))."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError

    win, shape = _source_window(grid, r0, r1, c0, c1)
    try:
        data = ds.read(bands, window=win, out_shape=(len(bands),) + shape,
                       resampling=Resampling.bilinear if grid.scale != 1 else Resampling.nearest)
    except RasterioIOError as e:
        raise _read_error(ds, e) from e
    valid = read_valid(ds, grid, bands, r0, r1, c0, c1)
    img = stretch.apply(data)
    img[~valid] = 0
    return img, valid


def has_valid_pixels(ds, bands: list[int]) -> bool:
    """Whether a decimated read of the first band's mask finds any valid pixel."""
    from rasterio.errors import RasterioIOError

    f = max(1, int(math.ceil(max(ds.width, ds.height) / 2048)))
    try:
        m = ds.read_masks(bands[0], out_shape=(max(1, ds.height // f), max(1, ds.width // f)))
    except RasterioIOError as e:
        raise _read_error(ds, e) from e
    return bool(m.any())


class ScratchTiff:
    """A tiled GeoTIFF on the working grid used as scratch space (prob, mask, skeleton, distance)."""

    def __init__(self, path: Path, grid, dtype: str, nodata=None, mode: str = "w+"):
        import rasterio

        self.ds = rasterio.open(path, mode, driver="GTiff", width=grid.width, height=grid.height, count=1,
                                dtype=dtype, crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=256,
                                blockysize=256, compress="deflate", nodata=nodata, BIGTIFF="IF_SAFER")

    def read(self, r0, r1, c0, c1):
        """Window [r0, r1) x [c0, c1) of band 1."""
        from rasterio.windows import Window
        return self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))

    def write(self, r0, c0, a):
        """Write ``a`` with its top-left corner at (r0, c0)."""
        from rasterio.windows import Window
        self.ds.write(a.astype(self.ds.dtypes[0]), 1, window=Window(c0, r0, a.shape[1], a.shape[0]))

    def close(self):
        """Close the file."""
        self.ds.close()


def identity_grid(ds) -> SceneGrid:
    """The scene's own pixel grid, 1 unit per pixel (rasters without georeferencing)."""
    return SceneGrid(ds.height, ds.width, 1.0, ds.transform, ds.crs, 1.0)
