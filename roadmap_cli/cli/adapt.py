"""``roadmap adapt``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options
from .render import reporter
from .state import STATE


def adapt(
    ctx: typer.Context,
    scene: list[Path] = typer.Argument(..., help="The GeoTIFF(s) to adapt to (or a folder, a .txt list, STAC items: "
                                                 "read as one mosaic, as extract reads them).", show_default=False),
    roads: Path = typer.Argument(..., help="Road centre lines of (part of) the area: GeoPackage, GeoJSON, Shapefile, "
                                           "any OGR file, any CRS.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="The adapted model, a .pt checkpoint for roadmap extract "
                                                            "--weights."),
    holdout: str = typer.Option("0.2", "--holdout",
                                help="Part of the area never trained on, to measure before/after: [SIDE:]FRACTION "
                                     "(SIDE east, west, north or south; default the far end of the longer side), or "
                                     "none."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this roadmap checkpoint (default: the "
                                                             "bundled model)."),
    model: Optional[str] = typer.Option(None, "--model", help="Start from a variant (anchor-sam-t ...) with "
                                                              "--sam2-checkpoint instead."),
    sam2_checkpoint: Optional[Path] = typer.Option(None, "--sam2-checkpoint",
                                                   help="The variant's SAM2 checkpoint (roadmap models download)."),
    gsd: Optional[float] = typer.Option(None, "--gsd", "--model-gsd",
                                        help="Ground resolution the adapted model works at, m/px (default: the "
                                             "starting model's)."),
    road_width_m: float = typer.Option(7.0, "--road-width-m",
                                       help="Label width: centre lines are buffered to this many metres."),
    bands: Optional[str] = options.BANDS,
    asset: Optional[str] = typer.Option(None, "--asset", help="STAC inputs: the asset to read."),
    steps: int = typer.Option(600, "--steps", help="Fine-tuning steps."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (warm-up, then cosine to 1e-6)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Crops per step."),
    crop: int = typer.Option(256, "--crop", help="Training crop side in working pixels (multiple of 32)."),
    scale_aug: Optional[str] = typer.Option("0.8,1.25", "--scale-aug",
                                            help="MIN,MAX random zoom per crop (none: off)."),
    device: str = options.DEVICE,
    seed: int = typer.Option(6, "--seed", help="Random seed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="The before/after report (default: OUTPUT with "
                                                                 ".json)."),
    overwrite: bool = options.OVERWRITE,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (same command)."),
):
    """Fine-tune the road model on your own imagery and road vectors; report before/after on a hold-out."""
    from ..checks import check_adapt_paths, guard_adapt

    params = dict(ctx.params)  # the first-hour mistakes are answered before torch and GDAL are imported
    guard_adapt(params["scene"], params["roads"], params["output"], params["json_out"], params["init"],
                params["sam2_checkpoint"], params["asset"])
    check_adapt_paths(params["scene"], params["roads"], params["output"], None, params["init"],
                      params["overwrite"], params["resume"])
    from ..adapt import AdaptOptions, run_adapt

    if str(params["scale_aug"]).lower() in ("none", "off", ""):
        params["scale_aug"] = None
    opts = AdaptOptions(**params)
    with reporter(STATE.quiet) as rep:
        result = run_adapt(opts, rep)
    if not STATE.quiet:
        print_result(result)


def _fmt(score: dict | None, key: str) -> str:
    return "-" if score is None else f"{score[key]:.3f}"


def print_result(r) -> None:
    """The before/after table and how to use the model."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    h = r.holdout
    if r.before is not None:
        t = Table(title=f"hold-out: {h['side']} {h['fraction']:.0%} of the area, {h['km2']} km2, "
                        f"{h['road_km']} km of road (never trained on)")
        t.add_column("model")
        for c in ("precision", "recall", "F1", "APLS", "km found"):
            t.add_column(c, justify="right")
        for name, s in (("before", r.before), ("after", r.after)):
            t.add_row(name, _fmt(s, "precision"), _fmt(s, "recall"), _fmt(s, "f1"), _fmt(s, "apls"),
                      f"{s['pred_km']:.2f}")
        con.print(t)
        con.print(f"before: {r.start}; after: adapted ({r.output.name}). F1 against the centre lines buffered to "
                  f"{r.train['road_width_m']:g} m; APLS (SpaceNet) against the centre lines.")
    else:
        con.print("no hold-out (--holdout none): nothing measured")
    con.print(f"adapted model: {r.output} ({r.train['steps']} steps on {r.train['km2']} km2, "
              f"{r.times.get('total_s', 0):.0f} s); report: {r.json_path}")
    con.print(f"use it: roadmap extract SCENE.tif -o roads.gpkg --weights {r.output}")
