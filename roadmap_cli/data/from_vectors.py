"""Training pairs from a georeferenced scene and its road centre lines (``roadmap datasets from-vectors``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.features import rasterize
from shapely import STRtree, affinity, box, intersection, length

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.guard import guard_outputs
from ..io.raster import StretchStats, gdal_env, is_georeferenced, open_raster, parse_bands, read_window, working_grid
from ..io.vectors import read_lines
from ..tiling import tile_ranges
from .sources import Pair


def road_lines(roads: Path):
    """The road centre lines of a vector file, refused with one line when there are none or they have no CRS."""
    lines = read_lines(Path(roads))
    if lines.empty:
        raise InputError(f"{roads} holds no LineString features")
    if lines.crs is None:
        raise InputError(f"{roads} has no CRS")
    return lines


class RoadLabels:
    """Road centre lines on a working grid: labels (roads 255, buffered to ``road_width_m``) and centre-line lengths
    of any window, in working pixels.  One label definition for every source: centre lines of a fixed width."""

    def __init__(self, lines, grid, road_width_m: float):
        inv = ~grid.transform
        self.gsd = grid.gsd
        self.lines = lines.to_crs(grid.crs)  # the centre lines in the grid's CRS
        self.centre = [affinity.affine_transform(g, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])
                       for g in self.lines.geometry]
        half = road_width_m / 2 / grid.gsd  # in working pixels
        self.shapes = [g.buffer(half) for g in self.centre]
        self.tree = STRtree(self.shapes)  # per window, only the roads that reach it are moved and burnt in

    def label(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """uint8 label of working-grid window [r0, r1) x [c0, c1): 255 road, 0 not."""
        shifted = [affinity.translate(self.shapes[k], -c0, -r0) for k in self.tree.query(box(c0, r0, c1, r1))]
        return rasterize(((g, 255) for g in shifted if not g.is_empty), out_shape=(r1 - r0, c1 - c0),
                         dtype="uint8", all_touched=False)

    def length_m(self, r0: int, r1: int, c0: int, c1: int) -> float:
        """Metres of centre line inside the window."""
        if not self.centre:
            return 0.0
        return float(length(intersection(np.array(self.centre, dtype=object), box(c0, r0, c1, r1))).sum()) * self.gsd

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(c0, r0, c1, r1) of the centre lines in working pixels, or None without any."""
        if not self.centre:
            return None
        b = np.array([g.bounds for g in self.centre if not g.is_empty])
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())) if len(b) \
            else None


def labelled_window(ds, grid, bands, stretch, labels: RoadLabels, r0: int, r1: int, c0: int, c1: int):
    """(image, label, valid) of working-grid window [r0, r1) x [c0, c1): the pixels extract would feed the model and
    the road label, 0 where the scene has no data."""
    img, valid = read_window(ds, grid, bands, stretch, r0, r1, c0, c1)
    lab = labels.label(r0, r1, c0, c1)
    lab[~valid] = 0
    return img, lab, valid


def write_pair(out: Path, stem: str, img: np.ndarray, lab: np.ndarray) -> Pair:
    """``OUT/images/STEM.png`` (8-bit RGB) and ``OUT/labels/STEM.png``, each written atomically."""
    ip, lp = out / "images" / f"{stem}.png", out / "labels" / f"{stem}.png"
    ip.parent.mkdir(parents=True, exist_ok=True)
    lp.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(ip, overwrite=True) as tmp:
        Image.fromarray(np.round(img).astype(np.uint8)).save(tmp, format="PNG")
    with atomic_path(lp, overwrite=True) as tmp:
        Image.fromarray(lab).save(tmp, format="PNG")
    return Pair(stem, ip, lp)


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
        labels = RoadLabels(road_lines(roads), grid, road_width_m)
        stretch = StretchStats(ds, b)
        rows, cols = tile_ranges(grid.height, tile), tile_ranges(grid.width, tile)
        multi = len(rows) * len(cols) > 1
        jobs = [(f"{name}_r{i}_c{j}" if multi else name, r0, r1, c0, c1)
                for i, (r0, r1) in enumerate(rows) for j, (c0, c1) in enumerate(cols)]
        out = Path(out)
        guard_outputs({f"--out ({sub}/{stem}.png)": out / sub / f"{stem}.png" for stem, *_ in jobs
                       for sub in ("images", "labels")}, {"the scene {}": scene, "the road vectors {}": roads})
        for stem, *_ in jobs:
            for sub in ("images", "labels"):
                if (out / sub / f"{stem}.png").exists() and not overwrite:
                    raise InputError(f"{out / sub / (stem + '.png')} exists (use --overwrite)")
        pairs = []
        for stem, r0, r1, c0, c1 in jobs:
            img, lab, _ = labelled_window(ds, grid, b, stretch, labels, r0, r1, c0, c1)
            if not lab.any():
                continue  # a tile without roads teaches nothing about them; skip it
            pairs.append(write_pair(out, stem, img, lab))
    if not pairs:
        raise InputError(f"no road of {roads} falls inside {scene}")
    return pairs
