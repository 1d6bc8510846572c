"""``roadmap score``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from . import options


def score(
    pred: Path = typer.Argument(..., help="Prediction file or folder (masks or road vectors)."),
    gt: Path = typer.Argument(..., help="Ground-truth file or folder."),
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="Cut probability predictions at this value, 0..1 (8-bit: of 255)."),
    gt_threshold: Optional[float] = typer.Option(None, "--gt-threshold",
                                                 help="Cut soft ground-truth labels at this value, 0..1 of their full "
                                                      "scale (default: the label rule, half of it)."),
    slack: int = typer.Option(0, "--slack", help="Relaxed P/R/F1 tolerance in pixels (0 = off)."),
    apls: bool = typer.Option(True, "--apls/--no-apls", help="Compute APLS (masks are turned into graphs first)."),
    node_spacing_m: float = typer.Option(50.0, "--node-spacing-m", help="APLS control point spacing, metres."),
    snap_m: float = typer.Option(4.0, "--snap-m", help="APLS snapping distance, metres."),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="Ground resolution of masks without georeferencing, "
                                                           "m/px (for APLS)."),
    convention: str = typer.Option("spacenet", "--convention",
                                   help="APLS convention: spacenet (SpaceNet 3: 4 m snap, harmonic mean) or sat2graph "
                                        "(Sat2Graph/RNGDet++/SAM-Road Go APLS: 10 m one-to-one snap, mean)."),
    metric: str = typer.Option("apls", "--metric",
                               help="Graph metrics: apls, topo (the TOPO precision/recall/F1 of Sat2Graph, RNGDet++ "
                                    "and SAM-Road) or apls,topo."),
    weight: str = typer.Option("length", "--weight",
                               help="APLS path cost: length, or time (travel time from the files' speed columns: "
                                    "inferred_speed_mps, speed_m/s or speed_mph; SpaceNet 5's APLS_time)."),
    sat2graph_preset: Optional[str] = typer.Option(None, "--sat2graph-preset",
                                                   help="With --convention sat2graph: default (2048 m region, 100 m "
                                                        "margin and minimum path; CityScale), small or spacenet (352 m "
                                                        "region, 30 m; SpaceNet)."),
    tile_bounds: Optional[str] = typer.Option(None, "--tile-bounds",
                                              help="Road vectors with --convention sat2graph or --metric topo: the "
                                                   "tile they cover, whose top-left corner the Go frame is measured "
                                                   "from: X0,Y0,X1,Y1 in the ground truth's CRS, a raster, or a "
                                                   "folder of rasters matched by name (default: the corner of both "
                                                   "inputs; masks are their own tile)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all scores as JSON to this file."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-file scores and the ALL row as CSV."),
    skip_unmatched: bool = typer.Option(False, "--skip-unmatched",
                                        help="Leave ground-truth files without a prediction out of the aggregate "
                                             "(default: they score 0, as SpaceNet scores them)."),
    overwrite: bool = options.OVERWRITE,
    crs: Optional[str] = typer.Option(None, "--crs", help="CRS of road files that name none and whose coordinates "
                                                          "are not degrees, e.g. EPSG:32611."),
):
    """Pixel metrics and APLS of predictions against ground truth."""
    from ..score import run_score

    print_scores(run_score(pred, gt, threshold=threshold, slack=slack, apls=apls, node_spacing_m=node_spacing_m,
                           snap_m=snap_m, gsd=gsd, convention=convention, json_out=json_out, csv_out=csv_out,
                           skip_unmatched=skip_unmatched, crs=crs, gt_threshold=gt_threshold,
                           sat2graph_preset=sat2graph_preset, weight=weight, metric=metric, tile=tile_bounds,
                           overwrite=overwrite))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def footer(cols: list[str], mean_row: bool) -> str:
    """What the ALL (and MEAN) rows mean, for the columns printed only."""
    parts = []
    if "precision" in cols:
        parts.append("pixel scores from the counts pooled over all files" + (" (relaxed ones too)"
                                                                            if "relaxed_f1" in cols else ""))
    if "apls" in cols:
        parts.append("APLS the mean over the files")
    if "topo_f1" in cols:
        parts.append("TOPO F1 that of the mean P and R (SpaceNet's way)")
    text = "ALL: " + ", ".join(parts) + "." if parts else ""
    if mean_row:
        text += " MEAN: the means of the per-file scores" + (" (TOPO F1: CityScale's way)." if "topo_f1" in cols
                                                            else ".")
    return text


def print_scores(result: dict) -> None:
    """The per-file table with its ALL row, per-image means and unmatched names."""
    from rich.console import Console
    from rich.table import Table

    rows = result["per_image"]
    cols = [c for c in ("precision", "recall", "f1", "iou", "relaxed_f1", "apls", "gt_to_prop", "prop_to_gt",
                        "topo_precision", "topo_recall", "topo_f1", "gt_km", "pred_km") if any(c in r for r in rows)]
    t = Table(title="roadmap score")
    t.add_column("name")
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["name"], *[_fmt(r.get(c, "")) for c in cols])
    agg = result["aggregate"]
    t.add_row("[bold]ALL (pooled)[/bold]", *[_fmt(agg.get(c, "")) for c in cols])
    if any(f"mean_{c}" in agg for c in cols):
        t.add_row("[bold]MEAN (per file)[/bold]", *[_fmt(agg.get(f"mean_{c}", "")) for c in cols])
    con = Console()
    con.print(t)
    con.print(footer(cols, any(f"mean_{c}" in agg for c in cols)))
    if agg.get("apls_nan") and "apls_as_published" in agg:
        con.print(f"APLS ({agg['convention']}, preset {agg['sat2graph_preset']}): {agg['apls_nan']} file(s) scored NaN "
                  "(a direction with no counted pair, e.g. an empty prediction) and are left out of the mean; the "
                  f"papers' own script prints {_fmt(agg['apls_as_published'])} for these files.")
    resampled = [r["name"] for r in rows if "resampled_from" in r]
    if resampled:
        con.print(f"{len(resampled)} prediction(s) on another grid were resampled onto their label's grid: "
                  f"{', '.join(resampled[:10])}")
    for side in ("pred", "gt"):
        names = result[f"unmatched_{side}"]
        if names:
            how = ""
            if side == "gt":
                how = (" (scored 0 in the aggregate; --skip-unmatched leaves them out)"
                       if result["unmatched_gt_scored_zero"] else " (left out: --skip-unmatched)")
            con.print(f"[yellow]{len(names)} {side} file(s) without a partner{how}:[/yellow] {', '.join(names[:10])}")
