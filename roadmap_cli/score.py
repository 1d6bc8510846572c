"""``roadmap score``: pixel metrics for masks, APLS for road vectors and masks, per file and in aggregate.
Returns the scores; the CLI prints them."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .checks import check_crs
from .errors import InputError
from .io.atomic import atomic_open, check_output_path
from .io.guard import Inputs, guard_outputs
from .io.images import read_label, read_prediction, resample_mask
from .io.vectors import read_lines
from .metrics.apls import apls as apls_score
from .metrics.apls import lines_from_mask
from .metrics.apls_sat2graph import PRESETS as SAT2GRAPH_PRESETS
from .metrics.apls_sat2graph import apls_sat2graph
from .metrics.pixel import PixelCounts
from .metrics.topo import topo

MASK_EXT = {".png", ".tif", ".tiff", ".jpg", ".jpeg"}
VECTOR_EXT = {".geojson", ".json", ".gpkg", ".shp"}


def _kind(p: Path) -> str:
    s = p.suffix.lower()
    if s in MASK_EXT:
        return "mask"
    if s in VECTOR_EXT:
        return "vector"
    raise InputError(f"{p}: unsupported file type {s or '(none)'}; masks: PNG/TIFF, vectors: GeoJSON/GPKG")


def _stem(p: Path) -> str:
    return p.name[: -len(p.suffix)] if p.suffix else p.name


def match_files(pred: Path, gt: Path) -> tuple[list[tuple[str, Path, Path]], list[str], list[tuple[str, Path]]]:
    """Pairs (name, pred, gt); unmatched pred names; unmatched gt (name, path)."""
    if not pred.exists():
        raise InputError(f"{pred} not found")
    if not gt.exists():
        raise InputError(f"{gt} not found")
    if pred.is_file() and gt.is_file():
        return [(_stem(pred), pred, gt)], [], []
    if pred.is_dir() != gt.is_dir():
        raise InputError("pred and gt must both be files or both be folders")

    def listing(d: Path) -> dict[str, Path]:
        out = {}
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in MASK_EXT | VECTOR_EXT:
                out.setdefault(_stem(p), p)
        return out

    a, b = listing(pred), listing(gt)
    names = sorted(set(a) & set(b))
    if not names:
        raise InputError(f"no file names in {pred} match those in {gt} (files are matched by name stem)")
    return [(n, a[n], b[n]) for n in names], sorted(set(a) - set(b)), [(n, b[n]) for n in sorted(set(b) - set(a))]


def _metric_lines(gt_df, pred_df):
    """Both in the UTM zone of the centre of their union, whatever CRS they come in (Web Mercator, feet, degrees),
    so every length is a ground length (within the UTM scale factor, < 0.1 %); and that CRS."""
    import geopandas as gpd
    import pandas as pd

    both = gpd.GeoSeries(pd.concat([gt_df.geometry.to_crs(4326), pred_df.geometry.to_crs(4326)]), crs=4326)
    crs = both.estimate_utm_crs()
    return list(gt_df.to_crs(crs).geometry), list(pred_df.to_crs(crs).geometry), crs


def _raster_bounds(path: Path):
    """(bounds, CRS) of a raster file."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.crs is None:
                    raise InputError(f"--tile-bounds {path}: the raster is not georeferenced")
                return tuple(ds.bounds), ds.crs
    except RasterioIOError as e:
        raise InputError(f"--tile-bounds {path}: cannot read it as a raster: {str(e).splitlines()[0][:120]}") from e


def tile_bounds(spec: str | None):
    """``--tile-bounds``: the tile of each road-vector pair, whose corner the Sat2Graph frame is measured from.
    ``X0,Y0,X1,Y1`` (in the ground truth's CRS, or ``--crs``), a raster (its bounds and CRS), or a folder of
    rasters matched to the files by name stem.  Returns ``f(name) -> (bounds, crs or None)``, or None."""
    if spec is None:
        return None
    parts = str(spec).split(",")
    if len(parts) == 4:
        try:
            b = tuple(float(v) for v in parts)
        except ValueError:
            b = None
        if b is None or not all(np.isfinite(b)) or not (b[0] < b[2] and b[1] < b[3]):
            raise InputError(f"--tile-bounds must be X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1, a raster or a folder of "
                             f"rasters, got {spec!r}")
        return lambda name: (b, None)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"--tile-bounds {spec}: not found (give X0,Y0,X1,Y1, a raster or a folder of rasters)")
    if path.is_file():
        found = _raster_bounds(path)
        return lambda name: found
    rasters = {_stem(p): p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in MASK_EXT}

    def lookup(name: str):
        if name not in rasters:
            raise InputError(f"--tile-bounds {path}: no raster named {name}.* for {name}")
        return _raster_bounds(rasters[name])
    return lookup


def _tile_in(tile, gt_crs, crs):
    """A tile's bounds (in its own CRS, else the ground truth's) as the bounds of its outline in ``crs``."""
    from pyproj import Transformer
    from pyproj.exceptions import ProjError

    bounds, own = tile
    try:
        return Transformer.from_crs(own or gt_crs, crs, always_xy=True).transform_bounds(*bounds, densify_pts=21)
    except ProjError as e:
        raise InputError(f"--tile-bounds: cannot place {bounds} in {crs}: {e}") from e


def _fits_degrees(df) -> bool:
    if df.empty:
        return True
    x0, y0, x1, y1 = df.total_bounds
    return -180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90


def with_crs(df, path: Path, crs=None):
    """The CRS of a road file: its own; for a file without one (GeoJSON without a ``crs`` member is read as
    EPSG:4326), EPSG:4326 per RFC 7946 when its coordinates fit degrees, else ``crs`` (``--crs``) or an error."""
    lacks = df.crs is None or (df.crs.to_epsg() == 4326 and not _fits_degrees(df))
    if not lacks:
        return df
    if crs is not None:
        return df.set_crs(crs, allow_override=True)
    if df.crs is None and _fits_degrees(df):
        return df.set_crs(4326)
    raise InputError(f"{path}: the coordinates do not fit degrees and the file names no CRS; pass --crs "
                     "EPSG:xxxx (the CRS of its coordinates)")


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


SPEED_COLUMNS = (("inferred_speed_mps", 1.0), ("speed_m/s", 1.0), ("speed_mph", 0.44704))  # SpaceNet 5 / 3 names


def seconds_per_metre(df, path: Path) -> np.ndarray:
    """1 / speed of each road feature, from the first speed column present (m/s, or mph converted)."""
    for col, to_mps in SPEED_COLUMNS:
        if col in df.columns:
            try:
                speed = np.asarray(df[col].to_numpy(), dtype=float) * to_mps
            except (TypeError, ValueError) as e:
                bad = next((v for v in df[col] if not _is_number(v)), None)
                raise InputError(f"{path}: {col} must hold numbers (a speed on every road), got {bad!r}") from e
            if not np.all(np.isfinite(speed) & (speed > 0)):
                raise InputError(f"{path}: {col} must be a positive speed on every road")
            return 1.0 / speed
    raise InputError(f"{path}: --weight time needs a speed column ({', '.join(c for c, _ in SPEED_COLUMNS)})")


def apls_function(convention: str = "spacenet", spacing: float = 50.0, snap: float = 4.0, preset: str = "default"):
    """``f(gt_lines, prop_lines, tile=None) -> {apls, gt_to_prop, prop_to_gt}`` of a convention: ``spacenet``
    (SpaceNet 3: control points every ``spacing`` m, ``snap`` m snapping, harmonic mean; ``tile`` unused) or
    ``sat2graph`` (the Go APLS of Sat2Graph / RNGDet++ / SAM-Road with its ``preset``: 2 m hops, 10 m one-to-one
    snapping, 100 m (30 m) minimum path, the in-bounds test in the frame of ``tile``'s corner, arithmetic mean)."""
    if convention == "spacenet":
        return lambda g, p, tile=None: apls_score(g, p, spacing, snap)
    if convention == "sat2graph":
        if preset not in SAT2GRAPH_PRESETS:
            raise InputError(f"--sat2graph-preset must be one of {', '.join(SAT2GRAPH_PRESETS)}, got {preset!r}")
        return lambda g, p, tile=None: apls_sat2graph(g, p, preset, tile=tile)
    raise InputError(f"--convention must be spacenet or sat2graph, got {convention!r}")


def published_mean(rows: list[dict], convention: str, preset: str) -> float:
    """The mean APLS the papers' own scripts print for these rows (files without a prediction are not run there).
    SpaceNet 3 and ``sat2graph`` small / spacenet (SAM-Road's SpaceNet script): NaN tiles skipped.  ``sat2graph``
    default (SAM-Road's and RNGDet++'s CityScale script): tiles in name order, each value cut to five decimals of its
    ``%f`` print, and the list ends at the first NaN tile."""
    vals = [(r["name"], r["apls"]) for r in rows if "apls" in r and not r.get("missing_prediction")]
    if convention == "sat2graph" and preset == "default":
        kept = []
        for _, v in sorted(vals):
            if np.isnan(v):
                break
            kept.append(float(("%f" % v)[:-1]))
    else:
        kept = [v for _, v in vals if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def score_vectors(pred: Path | None, gt: Path, spacing: float, snap: float, crs=None, apls_fn=None,
                  weight: str = "length", apls_on: bool = True, topo_on: bool = False, tile=None) -> dict:
    """APLS of two road-vector files (``pred`` None: no prediction, scored 0), both projected to a local metric
    CRS; also the km of each.  ``tile``: (bounds, CRS or None for the ground truth's) of the tile they cover."""
    gt_df = read_lines(gt)
    if gt_df.empty:
        raise InputError(f"{gt} holds no LineString features: it cannot be road ground truth")
    gt_df = with_crs(gt_df, gt, crs)
    pred_df = with_crs(read_lines(pred), pred, crs) if pred is not None else gt_df.iloc[:0]
    g, p, metric_crs = _metric_lines(gt_df, pred_df)
    if tile is not None:
        tile = _tile_in(tile, gt_df.crs, metric_crs)
    res = {}
    if apls_on and weight == "time":  # SpaceNet 5's APLS_time: paths are travel times
        res = apls_score(g, p, spacing, snap, seconds_per_metre(gt_df, gt),
                         seconds_per_metre(pred_df, pred) if pred is not None else [])
    elif apls_on:
        res = (apls_fn or apls_function("spacenet", spacing, snap))(g, p, tile=tile)
    if topo_on:
        res.update(topo(g, p, tile=tile))
    res["gt_km"] = sum(x.length for x in g) / 1000
    res["pred_km"] = sum(x.length for x in p) / 1000
    return res


def run_score(pred: Path, gt: Path, threshold=None, slack: int = 0, apls: bool = True, node_spacing_m: float = 50.0,
              snap_m: float = 4.0, gsd=None, convention: str = "spacenet", json_out=None, csv_out=None,
              skip_unmatched: bool = False, crs=None, gt_threshold: float | None = None,
              sat2graph_preset: str | None = None, weight: str = "length", metric: str = "apls",
              tile: str | None = None, overwrite: bool = False) -> dict:
    """Score predictions against ground truth (files or folders matched by stem): per-file rows, aggregate,
    unmatched names; optionally written as JSON / CSV.  ``tile``: ``--tile-bounds`` (:func:`tile_bounds`)."""
    if sat2graph_preset is not None and convention != "sat2graph":
        raise InputError("--sat2graph-preset chooses among the Go APLS's presets: use it with --convention sat2graph")
    preset = sat2graph_preset or "default"
    apls_fn = apls_function(convention, node_spacing_m, snap_m, preset)
    metrics = {m.strip() for m in metric.split(",") if m.strip()}
    if not metrics or metrics - {"apls", "topo"}:
        raise InputError(f"--metric must be apls, topo or apls,topo, got {metric!r}")
    apls = apls and "apls" in metrics
    topo_on = "topo" in metrics
    if tile is not None and not (topo_on or (apls and convention == "sat2graph")):
        raise InputError("--tile-bounds places the Sat2Graph frame: use it with --convention sat2graph or "
                         "--metric topo")
    tile_of = tile_bounds(tile)
    if weight not in ("length", "time"):
        raise InputError(f"--weight must be length or time, got {weight!r}")
    if weight == "time" and convention != "spacenet":
        raise InputError("--weight time is SpaceNet 5's travel-time APLS: use it with --convention spacenet")
    for flag, value in (("--threshold", threshold), ("--gt-threshold", gt_threshold)):
        if value is not None and not 0 < value < 1:
            raise InputError(f"{flag} must be between 0 and 1")
    for flag, value in (("--node-spacing-m", node_spacing_m), ("--snap-m", snap_m), ("--gsd", gsd)):
        if value is not None and not (0 < value < float("inf")):
            raise InputError(f"{flag} must be a positive number, got {value}")
    if slack < 0:
        raise InputError(f"--slack must be >= 0 pixels, got {slack}")
    crs = check_crs(crs)
    pairs, only_pred, only_gt = match_files(Path(pred), Path(gt))
    ins = Inputs()
    for what, given in (("the prediction {}", Path(pred)), ("the ground truth {}", Path(gt))):
        ins.add(what, [given, *([f for f in given.iterdir() if f.is_file()] if given.is_dir() else [])])
    if tile is not None and Path(tile).exists():
        ins.add("--tile-bounds {}", tile)
        if Path(tile).is_dir():
            ins.add("--tile-bounds {}", [p for p in Path(tile).iterdir() if p.is_file()])
    guard_outputs({"--json": json_out, "--csv": csv_out}, ins)
    for p in (json_out, csv_out):
        if p is not None:
            check_output_path(p, overwrite=overwrite)
    counts = PixelCounts(slack=slack)
    rows = []
    for name, p, g in pairs:
        kp, kg = _kind(p), _kind(g)
        if kp != kg:
            raise InputError(f"{name}: cannot compare a {kp} ({p.name}) with a {kg} ({g.name})")
        row = {"name": name}
        if kp == "mask":
            if weight == "time":
                raise InputError(f"{name}: --weight time needs road vectors with speeds, not masks")
            pm, pgsd = read_prediction(p, threshold)
            gm, ggsd = read_label(g, gt_threshold)
            if pm.shape != gm.shape:  # onto the label's grid: by georeferencing, or by size for plain images
                row["resampled_from"] = f"{pm.shape[1]}x{pm.shape[0]}"
                pm = resample_mask(pm, p, gm, g)
                pgsd = ggsd
            row.update(counts.add(pm, gm, name))
            if apls or topo_on:
                res_gsd = gsd or ggsd or pgsd
                if res_gsd is None:
                    raise InputError(f"{name}: masks without georeferencing need --gsd (m/px) for APLS, "
                                    "or --no-apls")
                gl, pl = lines_from_mask(gm, res_gsd), lines_from_mask(pm, res_gsd)
                # the label is the tile: pixel (row, col) at (col, -row) x gsd, so its corner is pixel (0, 0)
                mask_tile = (0.0, -gm.shape[0] * res_gsd, gm.shape[1] * res_gsd, 0.0)
                if apls:
                    row.update(apls_fn(gl, pl, tile=mask_tile))
                if topo_on:
                    row.update(topo(gl, pl, tile=mask_tile))
        else:
            row.update(score_vectors(p, g, node_spacing_m, snap_m, crs, apls_fn, weight, apls, topo_on,
                                     tile_of(name) if tile_of else None))
        rows.append(row)
    if not skip_unmatched:  # the SpaceNet convention: a ground truth without a prediction scores 0
        for name, g in only_gt:
            row = {"name": name, "missing_prediction": True}
            if _kind(g) == "mask":
                gm, ggsd = read_label(g, gt_threshold)
                row.update(counts.add(np.zeros_like(gm), gm, name))
                if apls:
                    row["apls"] = 0.0
            else:
                row.update(score_vectors(None, g, node_spacing_m, snap_m, crs, apls_fn, weight, apls, topo_on,
                                         tile_of(name) if tile_of else None))
                if apls:
                    row["apls"] = 0.0  # scored 0, whatever the convention says of an empty prediction
            if topo_on:
                row.update({"topo_precision": 0.0, "topo_recall": 0.0, "topo_f1": 0.0})
            rows.append(row)
    summary = counts.summary() if counts.per_image else {}
    apls_vals = [r["apls"] for r in rows if "apls" in r]
    if apls_vals:  # NaN (sat2graph: a direction with no counted pair) is left out, as SAM-Road's SpaceNet script does
        finite = [v for v in apls_vals if not np.isnan(v)]
        summary["apls"] = float(np.mean(finite)) if finite else float("nan")
        summary["apls_nan"] = len(apls_vals) - len(finite)
        if convention == "sat2graph":
            summary["apls_as_published"] = published_mean(rows, convention, preset)
    summary["convention"] = convention
    if convention == "sat2graph":
        summary["sat2graph_preset"] = preset
    topo_rows = [r for r in rows if "topo_f1" in r]
    if topo_rows:  # SpaceNet's way (F1 of the mean P and R) and CityScale's (mean of the per-tile F1)
        mp = float(np.mean([r["topo_precision"] for r in topo_rows]))
        mr = float(np.mean([r["topo_recall"] for r in topo_rows]))
        summary.update({"topo_precision": mp, "topo_recall": mr, "topo_f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
                        "mean_topo_f1": float(np.mean([r["topo_f1"] for r in topo_rows]))})
    summary["images"] = len(rows)
    result = {"per_image": rows, "aggregate": summary, "unmatched_pred": only_pred,
              "unmatched_gt": [n for n, _ in only_gt], "unmatched_gt_scored_zero": not skip_unmatched}
    if json_out:
        with atomic_open(json_out, overwrite=overwrite) as f:
            json.dump(result, f, indent=1, default=float)
    if csv_out:
        keys = ["name"] + sorted({k for r in rows for k in r if k != "name"})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        w.writerow({"name": "ALL", **{k: v for k, v in summary.items() if k in keys}})  # pooled over the files
        w.writerow({"name": "MEAN", **{k: summary[f"mean_{k}"] for k in keys if f"mean_{k}" in summary}})
        with atomic_open(csv_out, overwrite=overwrite, newline="") as f:
            f.write(buf.getvalue())
    return result
