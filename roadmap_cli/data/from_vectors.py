"""Training pairs from a georeferenced scene and its road centre lines (``roadmap datasets from-vectors``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.features import rasterize
from shapely import STRtree, affinity, box

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.raster import StretchStats, gdal_env, is_georeferenced, open_raster, parse_bands, read_window, working_grid
from ..io.vectors import read_lines
from ..tiling import tile_ranges
from .sources import Pair


def pairs_from_vectors(scene: Path, roads: Path, out: Path, name: str | None = None, gsd: float = 1.0,
                       road_width_m: float = 7.0, bands: str | None = None, tile: int = 1500,
                       overwrite: bool = False) -> list[Pair]:
    """Training pairs from a georeferenced scene and road centre lines: ``OUT/images/NAME[_rI_cJ].png`` (8-bit RGB)
    and ``OUT/labels/...png`` (roads 255, buffered to ``road_width_m``), on the same working grid and with the same
    band choice and stretch that ``roadmap extract`` feeds the model, so the pairs look like inference inputs.
    Scenes larger than ``tile`` working pixels are cut into tiles, read by windows."""
    if not (0 < gsd < float("inf")) or not (0 < road_width_m < float("inf")) or tile < 64:
        raise InputError("--gsd and --road-width-m must be positive and --tile at least 64")
    name = name or Path(scene).stem
    with gdal_env(), open_raster(scene) as ds:
        if not is_georeferenced(ds):
            raise InputError(f"{scene} has no georeferencing; road vectors cannot be placed on it")
        b = parse_bands(bands, ds.count)
        grid = working_grid(ds, gsd)
        lines = read_lines(Path(roads))
        if lines.empty:
            raise InputError(f"{roads} holds no LineString features")
        if lines.crs is None:
            raise InputError(f"{roads} has no CRS")
        inv = ~grid.transform
        half = road_width_m / 2 / grid.gsd  # in working pixels
        px = [affinity.affine_transform(g, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff]).buffer(half)
              for g in lines.to_crs(grid.crs).geometry]
        tree = STRtree(px)  # per tile, only the roads that reach it are moved and burnt in
        stretch = StretchStats(ds, b)
        rows, cols = tile_ranges(grid.height, tile), tile_ranges(grid.width, tile)
        multi = len(rows) * len(cols) > 1
        jobs = [(f"{name}_r{i}_c{j}" if multi else name, r0, r1, c0, c1)
                for i, (r0, r1) in enumerate(rows) for j, (c0, c1) in enumerate(cols)]
        out = Path(out)
        for stem, *_ in jobs:
            for sub in ("images", "labels"):
                if (out / sub / f"{stem}.png").exists() and not overwrite:
                    raise InputError(f"{out / sub / (stem + '.png')} exists (use --overwrite)")
        pairs = []
        for stem, r0, r1, c0, c1 in jobs:
            img, valid = read_window(ds, grid, b, stretch, r0, r1, c0, c1)
            shifted = [affinity.translate(px[k], -c0, -r0) for k in tree.query(box(c0, r0, c1, r1))]
            lab = rasterize(((g, 255) for g in shifted if not g.is_empty), out_shape=(r1 - r0, c1 - c0),
                            dtype="uint8", all_touched=False)
            lab[~valid] = 0
            if not lab.any():
                continue  # a tile without roads teaches nothing about them; skip it
            ip, lp = out / "images" / f"{stem}.png", out / "labels" / f"{stem}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ip, overwrite=True) as tmp:
                Image.fromarray(np.round(img).astype(np.uint8)).save(tmp)
            with atomic_path(lp, overwrite=True) as tmp:
                Image.fromarray(lab).save(tmp)
            pairs.append(Pair(stem, ip, lp))
    if not pairs:
        raise InputError(f"no road of {roads} falls inside {scene}")
    return pairs
