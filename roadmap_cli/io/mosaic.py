"""Many scenes as one: files, folders, text lists and STAC items become one GDAL GTI mosaic (a GeoPackage tile
index that GDAL reads as a single raster, reprojecting each scene on the fly), so the whole extract pipeline runs
on one working grid and the road network is one graph across scene borders.

The mosaic's CRS is the scenes' common projected CRS, or else the UTM zone of their centre; its pixel size is the
finest ground resolution among the scenes.  In the GTI mosaic the finer scene lies on top where scenes overlap
(ties: the later in the list, as with ``gdalbuildvrt``) and a mask band marks the pixels that some scene covers;
extract reads the tiles of overlaps from each scene too (:class:`SceneViews`) and blends the predictions.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .scenes import LIST_SUFFIXES, OWN_OUTPUT_TAG, RASTER_SUFFIXES, STAC_ASSETS, expand_inputs, is_own_output  # noqa: F401 - re-exported: where the pipeline has always found them


@dataclass
class Mosaic:
    """A GTI index over ``sources`` (``path`` opens as one raster)."""

    path: Path
    sources: list[str]
    crs: str
    resolution: float


def scenes_identity(sources: list[str]) -> str:
    """A digest of the scenes' paths, sizes and times: changes when any scene file changes (the run key of a
    mosaic, whose index is rebuilt on every run)."""
    h = hashlib.sha256()
    for s in sources:
        try:
            st = os.stat(s)
            h.update(json.dumps([str(Path(s).resolve()), st.st_size, st.st_mtime_ns]).encode())
        except OSError:  # a remote (/vsi...) source: its name
            h.update(s.encode())
    return h.hexdigest()


def build_mosaic(sources: list[str], index: Path) -> Mosaic:
    """Write the GTI index of ``sources`` to ``index`` (``*.gti.gpkg``); one-line errors for unreadable scenes,
    scenes without georeferencing, and scenes whose band count or data type differ from the first."""
    import geopandas as gpd
    import pyogrio
    import rasterio
    from pyproj import CRS
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    from .raster import is_georeferenced, open_raster, pixel_ground_size

    info = []
    for s in sources:
        with open_raster(s) as ds:
            if not is_georeferenced(ds):
                raise InputError(f"{s} has no georeferencing: a mosaic needs every scene's place on the ground")
            ground = pixel_ground_size(ds)
            info.append((s, ds.crs, ds.bounds, ds.count, ds.dtypes[0], min(ground) if ground else None,
                         min(abs(ds.res[0]), abs(ds.res[1]))))
    first = info[0]
    for s, _, _, count, dtype, _, _ in info[1:]:
        if (count, dtype) != (first[3], first[4]):
            raise InputError(f"{s} has {count} band(s) of {dtype}, {first[0]} has {first[3]} of {first[4]}: "
                             "the scenes of one run must match")
    crss = {CRS.from_user_input(c.to_wkt()) for _, c, *_ in info}
    if len(crss) == 1 and next(iter(crss)).is_projected:
        target = next(iter(crss))
    else:  # the UTM zone of the scenes' centre
        lon, lat = [], []
        for _, c, b, *_ in info:
            w, s_, e, n = transform_bounds(c, "EPSG:4326", *b, densify_pts=21)
            lon += [w, e]
            lat += [s_, n]
        cx, cy = (min(lon) + max(lon)) / 2, (min(lat) + max(lat)) / 2
        target = CRS.from_epsg((32600 if cy >= 0 else 32700) + min(60, int((cx + 180) // 6) + 1))
    # pixel size in the target's units: a scene already in the target CRS brings its own; any other its ground
    # size (metres, which UTM units are to within its 0.04 % scale factor)
    sizes = [own if CRS.from_user_input(c.to_wkt()) == target else g for _, c, _, _, _, g, own in info]
    res = min(x for x in sizes if x is not None)
    rows = []
    for order, ((s, c, b, *_), g) in enumerate(zip(info, sizes)):
        footprint = box(*transform_bounds(c, target, *b, densify_pts=21))
        # finer scenes on top, then later ones: GTI composites in ascending priority
        rows.append({"location": str(Path(s).resolve()) if not s.startswith("/vsi") else s,
                     "priority": -round((g or res) * 1000) * 100000 + order, "geometry": footprint})
    index = Path(index)
    if index.exists():
        index.unlink()
    gdf = gpd.GeoDataFrame(rows, crs=target.to_wkt())
    pyogrio.write_dataframe(gdf, index, layer="scenes", driver="GPKG",
                            layer_metadata={"RESX": repr(res), "RESY": repr(res), "MASK_BAND": "YES",
                                            "SORT_FIELD": "priority", "SORT_FIELD_ASC": "YES"})
    with rasterio.open(index) as ds:  # GDAL reads it back as one raster
        if ds.driver != "GTI":
            raise InputError(f"GDAL did not read the mosaic index {index} as a GTI raster (driver {ds.driver})")
    return Mosaic(index, sources, target.to_string(), res)


class SceneViews:
    """Each scene of a mosaic warped onto the mosaic's own pixel grid (a GDAL warped VRT per scene, nearest
    neighbour like the mosaic itself), with its footprint in mosaic pixels: where scenes overlap, a tile is read
    from each of them and the predictions are blended (``infer.stitch.predict_batch``).  Use as a context manager."""

    def __init__(self, sources: list[str], like):
        import contextlib

        import rasterio
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import transform_bounds
        from rasterio.windows import from_bounds

        self._stack = contextlib.ExitStack()
        self.views, self.boxes = [], []
        for s in sources:
            src = self._stack.enter_context(rasterio.open(s))
            self.views.append(self._stack.enter_context(
                WarpedVRT(src, crs=like.crs, transform=like.transform, width=like.width, height=like.height,
                          add_alpha=src.nodata is None and not any(f.name == "alpha" for f in
                                                                    src.mask_flag_enums[0]))))
            win = from_bounds(*transform_bounds(src.crs, like.crs, *src.bounds, densify_pts=21), like.transform)
            self.boxes.append((win.row_off, win.row_off + win.height, win.col_off, win.col_off + win.width))

    def __enter__(self) -> "SceneViews":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def read(self, mosaic, grid, bands, stretch, r0: int, r1: int, c0: int, c1: int):
        """Working-grid window [r0, r1) x [c0, c1): ``(image, valid)`` from the mosaic where at most one scene covers
        it, else a list of ``(image, valid)``, one per covering scene, in mosaic order: each scene's pixels where it
        has data and the mosaic's around them (so the model sees the same context in every version, and scenes that
        agree give the mosaic's own prediction), with that scene's validity for its blend weight."""
        from .raster import read_window

        sr0, sr1, sc0, sc1 = r0 * grid.scale_y, r1 * grid.scale_y, c0 * grid.scale_x, c1 * grid.scale_x
        found = []
        for view, (br0, br1, bc0, bc1) in zip(self.views, self.boxes):
            if br1 <= sr0 or sr1 <= br0 or bc1 <= sc0 or sc1 <= bc0:
                continue
            img, valid = read_window(view, grid, bands, stretch, r0, r1, c0, c1)
            if valid.any():
                found.append((img, valid))
        img_m, valid_m = read_window(mosaic, grid, bands, stretch, r0, r1, c0, c1)
        if len(found) <= 1:
            return img_m, valid_m
        versions = [(np.where(valid[..., None], img, img_m), valid) for img, valid in found]
        if all(np.array_equal(img, img_m) for img, _ in versions):  # the scenes agree here: one prediction does
            return img_m, valid_m
        return versions


def read_scene_window(ds, views: SceneViews | None, grid, bands, stretch, r0: int, r1: int, c0: int, c1: int):
    """A tile window of the working grid as ``infer.stitch.predict_batch`` takes it: from the scene, or where a
    mosaic's scenes overlap, one version per scene (:meth:`SceneViews.read`)."""
    from .raster import read_window

    if views is not None:
        return views.read(ds, grid, bands, stretch, r0, r1, c0, c1)
    return read_window(ds, grid, bands, stretch, r0, r1, c0, c1)
