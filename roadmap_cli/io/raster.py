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

    remote = str(path).startswith("/vsi")  # /vsicurl/ (http, https), /vsis3/: GDAL reads them, nothing to stat
    if not remote and not os.path.exists(path):
        raise InputError(f"input {path} not found")
    if not remote and os.path.isdir(path):
        raise InputError(f"input {path} is a folder, not a raster")
    try:
        ds = rasterio.open(str(path) if remote else path)
    except RasterioIOError as e:
        what = "cannot be read over the network" if remote else "is not a readable raster"
        raise InputError(f"{path} {what} ({str(e).splitlines()[0][:120]})") from e
    check_real_bands(ds, path)
    return ds


def check_real_bands(ds, path) -> None:
    """Refuse (and close) a raster with complex-valued bands (SAR CInt16/CFloat32): roadmap reads optical imagery,
    and casting to real would silently drop the imaginary part."""
    bad = sorted({d for d in ds.dtypes if "complex" in str(d)})
    if bad:
        ds.close()
        raise InputError(f"{path} has complex-valued bands ({', '.join(bad)}): roadmap reads optical imagery; convert "
                         "it first, e.g. its amplitude with gdal_calc.py --calc='abs(A)' --type=Float32")


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


def pixel_ground_size(ds, row: float | None = None, col: float | None = None) -> tuple[float, float] | None:
    """Ground metres covered by one source pixel along a row (x) and along a column (y), at (row, col) (default:
    the scene centre): geodesic distances on the WGS84 ellipsoid between the pixel's edges, whatever the CRS
    (geographic, Web Mercator, feet, any projection and its scale factor).  None without georeferencing."""
    if not is_georeferenced(ds):
        return None
    from pyproj import Geod, Transformer

    row = ds.height / 2 if row is None else row
    col = ds.width / 2 if col is None else col
    t = ds.transform
    pts = [t * (col - 0.5, row), t * (col + 0.5, row), t * (col, row - 0.5), t * (col, row + 0.5)]
    to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform([p[0] for p in pts], [p[1] for p in pts])
    geod = Geod(ellps="WGS84")
    _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = geod.inv(lon[2], lat[2], lon[3], lat[3])
    return float(abs(dx)), float(abs(dy))


def ground_resolution(ds) -> float | None:
    """Mean ground metres per pixel at the scene centre (:func:`pixel_ground_size`); None without
    georeferencing."""
    size = pixel_ground_size(ds)
    return None if size is None else float(sum(size) / 2)


def ground_scale_variation(ds) -> float:
    """Largest relative difference between a corner's and the centre's ground pixel size (0.01 = 1 %): how far
    one scale for the whole scene is from the truth at its edges (Web Mercator at 60 deg N: 1 % per ~37 km)."""
    centre = pixel_ground_size(ds)
    if centre is None:
        return 0.0
    worst = 0.0
    for r, c in ((0.5, 0.5), (0.5, ds.width - 0.5), (ds.height - 0.5, 0.5), (ds.height - 0.5, ds.width - 0.5)):
        gx, gy = pixel_ground_size(ds, r, c)
        worst = max(worst, abs(gx / centre[0] - 1), abs(gy / centre[1] - 1))
    return worst


def metric_view(ds):
    """The scene warped to the UTM zone of its centre, block by block as windows are read (a GDAL warped VRT at
    about the source resolution, bilinear; pixels outside the source footprint are masked): for scenes so large
    that one scale factor does not fit them all.  Use as a context manager."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(ds, crs=local_utm(ds), resampling=Resampling.bilinear, add_alpha=True)


def local_utm(ds):
    """The UTM CRS of the scene's centre (north or south)."""
    from pyproj import CRS, Transformer
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    x, y = ds.transform * (ds.width / 2, ds.height / 2)
    lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    info = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    return CRS.from_epsg(info[0].code)


def is_georeferenced(ds) -> bool:
    """True when the dataset has a CRS and a non-identity geotransform."""
    return ds.crs is not None and not ds.transform.is_identity


@dataclass
class SceneGrid:
    """The working grid: the scene resampled to square pixels of the model's ground resolution."""

    height: int
    width: int
    scale_x: float  # source pixels per working pixel along a row
    scale_y: float  # source pixels per working pixel along a column
    transform: object
    crs: object
    gsd: float  # ground metres per working pixel
    scene_gsd: tuple[float, float] = (1.0, 1.0)  # ground metres per source pixel (x, y)
    georeferenced: bool = True

    @property
    def resampled(self) -> bool:
        """Whether working pixels differ from source pixels."""
        return (self.scale_x, self.scale_y) != (1.0, 1.0)

    @property
    def metres_per_unit(self) -> float | None:
        """Ground metres per coordinate unit for a grid without a CRS (its units are source pixels)."""
        return None if self.georeferenced else float(sum(self.scene_gsd) / 2)


def working_grid(ds, model_gsd: float, scene_gsd: float | None = None) -> SceneGrid:
    """The scene resampled to square working pixels of ``model_gsd`` ground metres, each axis on its own (so
    geographic and Web Mercator scenes get square ground pixels); an axis within 1 % of it is kept as is.

    ``scene_gsd`` states the scene's own ground resolution (m/px): required knowledge for a scene without
    georeferencing (without it the scene is taken to be at ``model_gsd``), an override for a georeferenced one."""
    from rasterio.transform import Affine

    if scene_gsd is not None:
        gx = gy = float(scene_gsd)
    else:
        size = pixel_ground_size(ds)
        gx, gy = size if size is not None else (model_gsd, model_gsd)

    def axis(n: int, ground: float) -> tuple[int, float]:
        s = model_gsd / ground
        if abs(s - 1) < 0.01:
            return n, 1.0
        m = max(1, int(round(n / s)))
        return m, n / m

    w, sx = axis(ds.width, gx)
    h, sy = axis(ds.height, gy)
    transform = ds.transform @ Affine.scale(sx, sy)
    return SceneGrid(h, w, sx, sy, transform, ds.crs, (gx * sx + gy * sy) / 2, (gx, gy), is_georeferenced(ds))


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

    sx, sy = grid.scale_x, grid.scale_y
    return Window(c0 * sx, r0 * sy, (c1 - c0) * sx, (r1 - r0) * sy), (r1 - r0, c1 - c0)


def _read_error(ds, e) -> InputError:
    return InputError(f"cannot read {ds.name}: {str(e).splitlines()[0][:160]} (truncated or corrupt file?)")


def read_valid(ds, grid: SceneGrid, bands: list[int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Validity (not nodata / masked) of working-grid window [r0, r1) x [c0, c1)."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError

    win, shape = _source_window(grid, r0, r1, c0, c1)
    try:
        valid = ds.read_masks(bands[0], window=win, out_shape=shape, resampling=Resampling.nearest) > 0
        if np.dtype(ds.dtypes[bands[0] - 1]).kind == "f":  # NaN and inf are never data, tagged or not
            values = ds.read(bands[0], window=win, out_shape=shape, resampling=Resampling.nearest)
            valid &= np.isfinite(values)
        return valid
    except RasterioIOError as e:
        raise _read_error(ds, e) from e


def _read_resampled(ds, bands: list[int], win, shape: tuple[int, int], grid: SceneGrid) -> np.ndarray:
    """The working-grid pixels of source window ``win``, from the full-resolution source pixels: read at native
    resolution (so no overview, e.g. a JPEG's DCT-scaled internal ones, can stand in for them), then resampled in
    memory with an explicit kernel: area average when downsampling, bilinear when upsampling."""
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.warp import reproject
    from rasterio.windows import Window

    if not grid.resampled:  # whole source pixels
        return ds.read(bands, window=Window(round(win.col_off), round(win.row_off), shape[1], shape[0]))
    c0, r0 = max(0, math.floor(win.col_off)), max(0, math.floor(win.row_off))
    c1 = min(ds.width, math.ceil(win.col_off + win.width - 1e-9))
    r1 = min(ds.height, math.ceil(win.row_off + win.height - 1e-9))
    src = ds.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0))
    dst = np.zeros((len(bands),) + tuple(shape), src.dtype)
    kernel = Resampling.average if max(grid.scale_x, grid.scale_y) > 1 else Resampling.bilinear
    local = "EPSG:3857"  # any CRS, the same on both sides: only the two pixel grids differ
    reproject(src, dst, src_transform=Affine.translation(c0, r0), src_crs=local,
              dst_transform=Affine.translation(win.col_off, win.row_off) * Affine.scale(win.width / shape[1],
                                                                                         win.height / shape[0]),
              dst_crs=local, resampling=kernel)
    return dst


def read_window(ds, grid: SceneGrid, bands: list[int], stretch: StretchStats, r0: int, r1: int, c0: int, c1: int):
    """Read working-grid window [r0, r1) x [c0, c1) (inside the grid) -> (image (h, w, 3) 0..255, valid (h, w)).
    Downsampling averages the full-resolution pixels (area kernel), upsampling is bilinear."""
    from rasterio.errors import RasterioIOError

    win, shape = _source_window(grid, r0, r1, c0, c1)
    try:
        data = _read_resampled(ds, bands, win, shape, grid)
    except RasterioIOError as e:
        raise _read_error(ds, e) from e
    valid = read_valid(ds, grid, bands, r0, r1, c0, c1)
    img = stretch.apply(data)
    img[~valid] = 0
    return img, valid


def has_valid_pixels(ds, bands: list[int]) -> bool:
    """Whether the scene has any valid pixel: at once when it declares no nodata, mask or alpha (every pixel is
    valid, whatever its header claims about its size), else from a decimated read of the first band's mask (at most
    1024 x 1024 samples)."""
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioIOError

    floating = np.dtype(ds.dtypes[bands[0] - 1]).kind == "f"  # NaN pixels are invalid too
    if all(MaskFlags.all_valid in flags for flags in ds.mask_flag_enums) and not floating:
        return True
    if ds.width * ds.height > 4e9:  # a decimated read would touch millions of blocks: the tiles will tell
        return True
    f = max(1, int(math.ceil(max(ds.width, ds.height) / 1024)))
    shape = (max(1, ds.height // f), max(1, ds.width // f))
    try:
        m = ds.read_masks(bands[0], out_shape=shape) > 0
        if floating:
            m &= np.isfinite(ds.read(bands[0], out_shape=shape))
    except RasterioIOError as e:
        raise _read_error(ds, e) from e
    return bool(m.any())


class ScratchTiff:
    """A tiled GeoTIFF on the working grid used as scratch space (prob, mask, skeleton, distance).

    DEFLATE at level 1: a 3000 x 3000 float32 probability raster of extract's writes in 0.20 s instead of 0.84 s at
    the default level 6, for 21 instead of 20 MB (the outputs a user keeps stay at level 6; BENCHMARKS "Extract
    memory")."""

    def __init__(self, path: Path, grid, dtype: str, nodata=None, mode: str = "w+"):
        import rasterio

        self.ds = rasterio.open(path, mode, driver="GTiff", width=grid.width, height=grid.height, count=1,
                                dtype=dtype, crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=256,
                                blockysize=256, compress="deflate", zlevel=1, nodata=nodata, BIGTIFF="IF_SAFER")

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


class ReadTiff:
    """A finished scratch raster opened read-only, read by windows like :class:`ScratchTiff`."""

    def __init__(self, path: Path):
        import rasterio
        self.ds = rasterio.open(path)

    def read(self, r0, r1, c0, c1):
        """Window [r0, r1) x [c0, c1) of band 1."""
        from rasterio.windows import Window
        return self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))

    def close(self):
        """Close the file."""
        self.ds.close()


def scratch_readers(mask_r, prob_r):
    """``(read_mask, read_prob)`` window readers over extract's scratch mask (1 = road; 0 and 255 nodata are not)
    and probability (-1 nodata read as 0), as the graph stage takes them."""
    def read_mask(r0, r1, c0, c1):
        return mask_r.read(r0, r1, c0, c1) == 1

    def read_prob(r0, r1, c0, c1):
        return np.maximum(prob_r.read(r0, r1, c0, c1), 0)

    return read_mask, read_prob


def resample_to_grid(src_path: Path, dst_path: Path, like, resampling: str, nodata: float,
                     block: int = 1024) -> None:
    """Write raster ``src_path`` (one band) onto the grid of dataset ``like`` (its CRS, transform and size) as a
    tiled GeoTIFF at ``dst_path``, one ``block`` x ``block`` window at a time: memory is bounded by the block."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    kernel = getattr(Resampling, resampling)
    with rasterio.open(src_path) as src:
        stand_in = "EPSG:3857"  # rasters without a CRS: the same stand-in on both sides, only the grids differ
        src_crs, dst_crs = src.crs or stand_in, like.crs or stand_in
        profile = dict(driver="GTiff", width=like.width, height=like.height, count=1, dtype=src.dtypes[0],
                       crs=like.crs, transform=like.transform, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", nodata=nodata, BIGTIFF="IF_SAFER")
        with rasterio.open(dst_path, "w", **profile) as dst:
            for r0 in range(0, like.height, block):
                for c0 in range(0, like.width, block):
                    win = Window(c0, r0, min(block, like.width - c0), min(block, like.height - r0))
                    out = np.full((win.height, win.width), nodata, src.dtypes[0])
                    reproject(rasterio.band(src, 1), out, src_crs=src_crs, src_nodata=nodata,
                              dst_transform=window_transform(win, like.transform), dst_crs=dst_crs,
                              dst_nodata=nodata, resampling=kernel)
                    dst.write(out, 1, window=win)
