"""``roadmap score``: pixel metrics for masks, APLS for road vectors and masks, per file and in aggregate."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .errors import UserError
from .io_utils import atomic_open, check_output_path
from .metrics import PixelCounts

MASK_EXT = {".png", ".tif", ".tiff", ".jpg", ".jpeg"}
VECTOR_EXT = {".geojson", ".json", ".gpkg", ".shp"}


def _kind(p: Path) -> str:
    s = p.suffix.lower()
    if s in MASK_EXT:
        return "mask"
    if s in VECTOR_EXT:
        return "vector"
    raise UserError(f"{p}: unsupported file type {s or '(none)'}; masks: PNG/TIFF, vectors: GeoJSON/GPKG")


def _stem(p: Path) -> str:
    return p.name[: -len(p.suffix)] if p.suffix else p.name


def match_files(pred: Path, gt: Path) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pairs (name, pred, gt); unmatched pred names; unmatched gt names."""
    if not pred.exists():
        raise UserError(f"{pred} not found")
    if not gt.exists():
        raise UserError(f"{gt} not found")
    if pred.is_file() and gt.is_file():
        return [(_stem(gt), pred, gt)], [], []
    if pred.is_dir() != gt.is_dir():
        raise UserError("pred and gt must both be files or both be folders")

    def listing(d: Path) -> dict[str, Path]:
        out = {}
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in MASK_EXT | VECTOR_EXT:
                out.setdefault(_stem(p), p)
        return out

    a, b = listing(pred), listing(gt)
    names = sorted(set(a) & set(b))
    if not names:
        raise UserError(f"no file names in {pred} match those in {gt} (files are matched by name stem)")
    return [(n, a[n], b[n]) for n in names], sorted(set(a) - set(b)), sorted(set(b) - set(a))


def read_mask(path: Path, threshold: float | None) -> tuple[np.ndarray, float | None]:
    """Binary mask and, for a georeferenced raster, its ground resolution in metres."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                a = ds.read(1, masked=True)
                gsd = None
                if ds.crs is not None and not ds.transform.is_identity:
                    from .raster import ground_resolution
                    gsd = ground_resolution(ds)
    except RasterioIOError as e:
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0][:120]}") from e
    data = np.ma.filled(a.astype(np.float64), 0)
    values = np.unique(data) if data.size <= 4_000_000 else np.unique(data[:: max(1, data.size // 4_000_000)])
    if threshold is not None:
        if data.max() > 1.0 + 1e-6:  # 8-bit probabilities
            return data >= threshold * 255, gsd
        return data >= threshold, gsd
    if set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {0.0, 255.0}:
        return data > 0, gsd
    if path.suffix.lower() in (".jpg", ".jpeg") or (a.dtype == np.uint8 and len(values) <= 8):
        return data > 127, gsd  # JPEG-compressed or anti-aliased binary labels
    raise UserError(f"{path} is not a binary mask ({len(values)} distinct values); pass --threshold")


def read_lines(path: Path):
    """The (Multi)LineString features of a vector file as a GeoDataFrame, in the file's CRS."""
    import geopandas as gpd

    try:
        df = gpd.read_file(path, engine="pyogrio")
    except Exception as e:
        raise UserError(f"cannot read {path}: {' '.join(str(e).split())[:160]}") from e
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    return df[df.geom_type.isin(["LineString", "MultiLineString"])]


def _metric_lines(gt_df, pred_df):
    """Project both to the GT's local UTM zone (or keep a projected GT CRS)."""
    crs = gt_df.crs
    if crs.is_geographic:
        crs = gt_df.estimate_utm_crs() if len(gt_df) else pred_df.estimate_utm_crs()
    return list(gt_df.to_crs(crs).geometry), list(pred_df.to_crs(crs).geometry)


def score_vectors(pred: Path, gt: Path, spacing: float, snap: float) -> dict:
    from .apls import apls

    gt_df = read_lines(gt)
    if gt_df.crs is None:
        raise UserError(f"{gt} has no CRS; APLS needs coordinates in metres")
    pred_df = read_lines(pred)
    if pred_df.crs is None:
        raise UserError(f"{pred} has no CRS; cannot compare it with {gt}")
    if pred_df.crs != gt_df.crs:
        pred_df = pred_df.to_crs(gt_df.crs)  # reproject the proposal onto the ground truth's CRS
    g, p = _metric_lines(gt_df, pred_df)
    res = apls(g, p, spacing, snap)
    res["gt_km"] = sum(x.length for x in g) / 1000
    res["pred_km"] = sum(x.length for x in p) / 1000
    return res


def run_score(pred: Path, gt: Path, threshold=None, slack: int = 0, apls: bool = True, node_spacing_m: float = 50.0,
              snap_m: float = 4.0, gsd=None, convention: str = "spacenet", json_out=None, csv_out=None) -> dict:
    if convention != "spacenet":
        raise UserError(f"--convention {convention!r} is not implemented; only 'spacenet' (SpaceNet 3 APLS) is")
    if threshold is not None and not 0 < threshold < 1:
        raise UserError("--threshold must be between 0 and 1")
    for p in (json_out, csv_out):
        if p is not None:
            check_output_path(p, overwrite=True)
    pairs, only_pred, only_gt = match_files(Path(pred), Path(gt))
    counts = PixelCounts(slack=slack)
    rows = []
    for name, p, g in pairs:
        kp, kg = _kind(p), _kind(g)
        if kp != kg:
            raise UserError(f"{name}: cannot compare a {kp} ({p.name}) with a {kg} ({g.name})")
        row = {"name": name}
        if kp == "mask":
            pm, pgsd = read_mask(p, threshold)
            gm, ggsd = read_mask(g, None)
            row.update(counts.add(pm, gm, name))
            if apls:
                res_gsd = gsd or ggsd or pgsd
                if res_gsd is None:
                    raise UserError(f"{name}: masks without georeferencing need --gsd (m/px) for APLS, "
                                    "or --no-apls")
                from .apls import apls_from_masks
                row["apls"] = apls_from_masks(gm, pm, res_gsd, node_spacing_m, snap_m)
        else:
            row.update(score_vectors(p, g, node_spacing_m, snap_m))
        rows.append(row)
    summary = counts.summary() if counts.per_image else {}
    apls_vals = [r["apls"] for r in rows if "apls" in r]
    if apls_vals:
        summary["apls"] = float(np.mean(apls_vals))
    summary["images"] = len(rows)
    result = {"per_image": rows, "aggregate": summary, "unmatched_pred": only_pred, "unmatched_gt": only_gt}
    _print(result)
    if json_out:
        with atomic_open(json_out, overwrite=True) as f:
            json.dump(result, f, indent=1, default=float)
    if csv_out:
        keys = ["name"] + sorted({k for r in rows for k in r if k != "name"})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        w.writerow({"name": "ALL", **{k: v for k, v in summary.items() if k in keys}})
        with atomic_open(csv_out, overwrite=True, newline="") as f:
            f.write(buf.getvalue())
    return result


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["per_image"]
    cols = [c for c in ("precision", "recall", "f1", "iou", "relaxed_f1", "apls", "gt_to_prop", "prop_to_gt",
                        "gt_km", "pred_km") if any(c in r for r in rows)]
    t = Table(title="roadmap score")
    t.add_column("name")
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["name"], *[_fmt(r.get(c, "")) for c in cols])
    agg = result["aggregate"]
    t.add_row("[bold]ALL[/bold]", *[_fmt(agg.get(c, "")) for c in cols])
    con = Console()
    con.print(t)
    extra = {k: v for k, v in agg.items() if k.startswith("mean_")}
    if extra:
        con.print("per-image means: " + ", ".join(f"{k[5:]} {v:.4f}" for k, v in extra.items()))
    for side in ("pred", "gt"):
        names = result[f"unmatched_{side}"]
        if names:
            con.print(f"[yellow]{len(names)} {side} file(s) without a partner:[/yellow] {', '.join(names[:10])}")
