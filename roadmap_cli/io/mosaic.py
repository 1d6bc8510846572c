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

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg", ".ntf", ".gti"}
LIST_SUFFIXES = {".txt", ".lst", ".csv"}
STAC_ASSETS = ("visual", "image", "data", "rgb")


OWN_OUTPUT_TAG = "ROADMAP_OUTPUT"  # GeoTIFF metadata / PNG text key on the rasters roadmap writes


def is_own_output(path: Path) -> bool:
    """A raster roadmap wrote (a probability or mask GeoTIFF, a preview PNG): it carries :data:`OWN_OUTPUT_TAG`."""
    try:
        if Path(path).suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                return OWN_OUTPUT_TAG in getattr(im, "text", {})
        import rasterio

        with rasterio.open(path) as ds:
            return OWN_OUTPUT_TAG in ds.tags()
    except Exception:  # unreadable: not ours
        return False


def _stac_items(doc, path: Path) -> list[dict]:
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Feature":
        items = [doc]
    elif kind == "FeatureCollection":
        items = doc.get("features")
        if not isinstance(items, list):
            raise InputError(f"{path}: a STAC item collection needs a list of features")
        if not items:
            raise InputError(f"{path}: the STAC item collection holds no items")
    else:
        raise InputError(f"{path} is not a STAC item or item collection (type {kind!r})")
    for it in items:
        if not isinstance(it, dict):
            raise InputError(f"{path}: a STAC item must be a JSON object, got {type(it).__name__}")
    return items


def _stac_href(item: dict, path: Path, asset: str | None) -> str:
    from urllib.parse import unquote, urlparse

    assets = item.get("assets") or {}
    if not isinstance(assets, dict) or not all(isinstance(v, dict) for v in assets.values()):
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r} has no assets object")
    name = asset
    if name is None:
        name = next((a for a in STAC_ASSETS if a in assets), None)
    if name is None:
        name = next((k for k, v in assets.items() if "image/tiff" in str(v.get("type", ""))), None)
    if name is None or name not in assets:
        have = ", ".join(sorted(map(str, assets))) or "none"
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r} has no asset "
                         f"{name or 'with an image'!r} (assets: {have}); choose one with --asset")
    href = assets[name].get("href")
    if not isinstance(href, str) or not href.strip():
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r}, asset {name!r} has no href")
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith("file:"):  # file:///abs/path (RFC 8089), percent-encoded
        u = urlparse(href)
        if u.netloc not in ("", "localhost"):
            raise InputError(f"{path}: STAC href {href!r} names another host; give a local path or http(s)/s3")
        href = unquote(u.path)
    elif "://" in href:
        raise InputError(f"{path}: STAC href {href!r}: only local paths, file://, http(s):// and s3:// are read")
    p = Path(href)
    return str(p if p.is_absolute() else (path.parent / p))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def expand_inputs(items: list[Path], asset: str | None = None, exclude=(), _lists: tuple = ()) -> list[str]:
    """Scene paths (or GDAL paths) from what the user gave: raster files, folders (their rasters, recursively, in
    name order), text lists (one path per line, blank lines and ``#`` comments skipped, relative paths relative to
    the list; a list that names itself, directly or through others, is refused), STAC item JSON files or item
    collections (the ``asset`` href, by default ``visual``/``image``/``data``/the first GeoTIFF; relative, file://,
    http(s):// and s3:// hrefs).  A folder's files under a ``*.roadmap-work`` folder (a run's scratch) or under a
    folder in ``exclude``, and the files in ``exclude`` that roadmap wrote itself (:func:`is_own_output`), are passed
    over: an ``exclude`` file that roadmap did not write is a scene like any other."""
    skip = {Path(x).resolve() for x in exclude}
    skip_dirs = {x for x in skip if x.is_dir()}
    out: list[str] = []
    for item in items:
        p = Path(item)
        if str(p).startswith("/vsi"):
            out.append(str(p))
            continue
        if not _exists(p):
            raise InputError(f"input {str(p)[:200]} not found")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
                           and not (f.resolve() in skip and is_own_output(f))
                           and not any(d in f.resolve().parents for d in skip_dirs)
                           and not any(part.endswith(".roadmap-work") for part in f.relative_to(p).parts))
            if not found:
                raise InputError(f"folder {p} holds no raster files ({', '.join(sorted(RASTER_SUFFIXES))})")
            out += [str(f) for f in found]
        elif p.suffix.lower() in LIST_SUFFIXES:
            real = p.resolve()
            if real in _lists:
                chain = " -> ".join(str(x) for x in (*_lists, real))
                raise InputError(f"list {p} names itself ({chain}): a scene list must name scenes")
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"list {p} is not UTF-8 text (byte {e.start}); one scene path per line") from e
            lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            paths = [ln for ln in lines if ln]
            if not paths:
                raise InputError(f"list {p} names no scenes")
            if any("\x00" in x for x in paths):
                raise InputError(f"list {p} holds a NUL character; one scene path per line")
            out += expand_inputs([Path(x) if os.path.isabs(x) or x.startswith("/vsi") else p.parent / x
                                  for x in paths], asset, exclude, (*_lists, real))
        elif p.suffix.lower() == ".json":
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"{p} is not JSON ({' '.join(str(e).split())[:80]})") from e
            out += [_stac_href(it, p, asset) for it in _stac_items(doc, p)]
        else:
            out.append(str(p))
    return out


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
