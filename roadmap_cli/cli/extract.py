"""``roadmap extract``."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from . import options
from .render import print_table, reporter
from .state import STATE


def extract(
    ctx: typer.Context,
    scene: list[Path] = typer.Argument(..., help="GeoTIFF / COG to process; or several, a folder, a .txt list or "
                                                 "STAC item JSON files, read as one mosaic.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Road graph: .gpkg, .geojson or .graphml."),
    model: str = typer.Option(None, "--model",
                              help="Variant name (roadmap models list) or a .pt checkpoint (default: the bundled "
                                   "roadmap-compact)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="A roadmap .pt checkpoint to load into --model."),
    bands: Optional[str] = options.BANDS,
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU threads per model (default: torch's, one per core). Results "
                                               "are identical across engines for equal thread counts."),
    engine: str = typer.Option("local", "--engine",
                               help="local (this process) or ray (an actor pool on a Ray cluster; pip install "
                                    "'roadmap[ray]'). Results are identical."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Ray: model workers (default: one per CPU, or per "
                                               "--gpus-per-worker GPUs)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="Ray: GPUs per model worker."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="Ray: the cluster to join (default: RAY_ADDRESS, else a local "
                                               "instance for this run). Its nodes must see the output's folder."),
    asset: Optional[str] = typer.Option(None, "--asset",
                                        help="STAC inputs: the asset to read (default: visual, image, data or the "
                                             "first GeoTIFF)."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile side in working pixels, a multiple of 32 "
                                                             "(default: the model's, 512 for the bundled model)."),
    overlap: Optional[int] = typer.Option(None, "--overlap",
                                          help="Overlap of neighbouring tiles in working pixels (default: an eighth "
                                               "of the tile, 64 at 512)."),
    batch_size: int = typer.Option(2, "--batch-size", min=1, help="Tiles per model call."),
    device: str = options.DEVICE,
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA and on CPUs with native bf16, else fp32), fp32, bf16 or fp16 (CUDA only)."),
    tta: bool = typer.Option(False, "--tta", help="Flip test-time augmentation (4x slower)."),
    gsd: Optional[float] = options.MODEL_GSD,
    scene_gsd: Optional[float] = options.SCENE_GSD,
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="Road probability threshold, 0..1 (default: the model's, 0.5)."),
    prob_out: Optional[Path] = typer.Option(None, "--prob-out",
                                            help="Write the road probability raster, a .tif COG (nodata -1)."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out",
                                            help="Write the binary road mask, a .tif COG (1 road, 0 not, 255 nodata)."),
    preview: Optional[Path] = typer.Option(None, "--preview",
                                           help="Write a .png quicklook of the roads over the image (at most 2048 px)."),
    report: Optional[Path] = typer.Option(None, "--report",
                                          help="Self-contained HTML map: imagery, probability, roads coloured by "
                                               "confidence, run summary."),
    to_crs: Optional[str] = typer.Option(None, "--to-crs",
                                         help="CRS of the road graph, e.g. EPSG:4326 (default: the scene's)."),
    raster_grid: str = typer.Option("input", "--raster-grid",
                                    help="Grid of --prob-out, --mask-out and --preview: input (the scene's own "
                                         "pixels, to overlay on the imagery) or model (the working grid)."),
    min_spur_m: float = typer.Option(10.0, "--min-spur-m",
                                     help="Dead-end branches shorter than this many metres are removed."),
    min_component_m: float = typer.Option(20.0, "--min-component-m",
                                          help="Unconnected pieces shorter than this many metres in all are removed."),
    simplify_m: float = typer.Option(1.0, "--simplify-m",
                                     help="Douglas-Peucker tolerance of the edge geometry, metres (0 = off)."),
    bridge_m: float = typer.Option(45.0, "--bridge-m",
                                   help="Largest gap in metres bridged from a dead end to the road within 30 deg "
                                        "ahead, a node or the side of an edge (0 = off); bridges are edges of their "
                                        "own, source=bridge."),
    bridge_angle_deg: float = typer.Option(30.0, "--bridge-angle-deg",
                                           help="A bridge's target lies within this angle of the dead end's "
                                                "direction."),
    bridge_to_edges: bool = typer.Option(True, "--bridge-to-edges/--bridge-to-nodes",
                                         help="Bridges may end on the side of an edge (a new T junction), or only "
                                              "at nodes."),
    bridge_detour: float = typer.Option(2.0, "--bridge-detour",
                                        help="Bridge a dead end to its own piece where the way round is more than "
                                             "this many times the gap (0 = only to other pieces)."),
    bridge_follow: bool = typer.Option(True, "--bridge-follow/--bridge-straight",
                                       help="Bridges follow the road probability, or run straight."),
    junction_m: float = typer.Option(3.0, "--junction-m",
                                     help="Junctions closer than this many metres are merged into one."),
    spur_widths: float = typer.Option(2.0, "--spur-widths",
                                      help="Dead-end branches shorter than this many road widths are removed too "
                                           "(0 = off)."),
    low_threshold: Optional[float] = typer.Option(None, "--low-threshold",
                                                  help="Hysteresis: pixels above this probability are road where "
                                                       "they connect to pixels above --threshold (default: off)."),
    smooth_px: float = typer.Option(0.0, "--smooth-px",
                                    help="Gaussian smoothing (sigma, working pixels) of the probability before "
                                         "thresholding (default: off)."),
    random_weights: bool = typer.Option(False, "--random-weights",
                                        help="Run a variant without trained weights (benchmarks only)."),
    allow_pixel_coords: bool = typer.Option(False, "--allow-pixel-coords",
                                            help="Accept rasters without georeferencing (outputs in source pixel "
                                                 "coordinates; give --scene-gsd)."),
    overwrite: bool = options.OVERWRITE,
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted run (same command); predicted tiles are kept."),
    compare_with: Optional[Path] = typer.Option(None, "--compare",
                                                help="An existing road map (any line layer, .osm, .osm.pbf): at the "
                                                     "end, compare the roads found with it (roadmap compare) into "
                                                     "OUTPUT.compare.gpkg and the missing roads into "
                                                     "OUTPUT.missing.osm."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print the tile plan, resolutions and a memory estimate; run nothing."),
):
    """Extract the road graph of a scene, or of many scenes as one mosaic."""
    from ..checks import check_extract_paths, guard_extract

    p = ctx.params  # the first-hour mistakes are answered before torch and GDAL are imported
    guard_extract(p["scene"], {"-o": p["output"], "--prob-out": p["prob_out"], "--mask-out": p["mask_out"],
                               "--preview": p["preview"], "--report": p["report"]}, p["model"], p["weights"],
                  p["asset"])
    check_extract_paths(p["scene"], p["output"], p["prob_out"], p["mask_out"], p["preview"], p["report"],
                        p["overwrite"], p["resume"])
    comparison = _comparison(p) if p["compare_with"] is not None else None
    if comparison is not None:
        from ..compare import check

        check(comparison, pending=True)
    from ..extract import ExtractOptions, plan_extract, run_extract

    startup = time.monotonic() - STATE.t0  # Python, torch, GDAL and the package: before the run's own clock
    opts = ExtractOptions(**{k: v for k, v in ctx.params.items() if k not in ("dry_run", "compare_with")})
    if dry_run:
        print_plan(plan_extract(opts))
        return
    with reporter(STATE.quiet) as rep:
        result = run_extract(opts, rep)
    result.times = {"start-up": startup, **result.times}
    if not STATE.quiet:
        print_summary(result)
    for note in result.notes:  # --quiet keeps warnings (on stderr): a result the model may not be trusted on is one
        print(f"note: {note}", file=sys.stderr if STATE.quiet else sys.stdout)
    if comparison is not None:
        from ..compare import run_compare
        from .compare import print_compare

        r = run_compare(comparison)
        if not STATE.quiet:
            print_compare(r)


def _comparison(p: dict):
    """``--compare REF``: ``roadmap compare OUTPUT REF`` over the scene's valid pixels (a single scene; a mosaic's
    area is its --prob-out raster's, else the roads' extent), written beside the output."""
    from ..compare import CompareOptions

    out = Path(p["output"])
    scenes = list(p["scene"])
    single = len(scenes) == 1 and scenes[0].suffix.lower() in (".tif", ".tiff", ".vrt", ".jp2", ".img")
    return CompareOptions(out, p["compare_with"], out.with_name(out.stem + ".compare.gpkg"),
                          scene=scenes[0] if single else None, prob=None if single else p["prob_out"],
                          osm_out=out.with_name(out.stem + ".missing.osm"), overwrite=p["overwrite"])


def print_plan(p) -> None:
    """The ``--dry-run`` plan."""
    lay, grid = p.layout, p.grid
    lines = [
        f"tile plan for {p.scene}",
        f"  scene:           {p.width} x {p.height} px, {p.count} band(s), {p.dtype}, CRS {p.crs}, "
        f"{_ground(grid)}",
        f"  working grid:    {grid.width} x {grid.height} px at {grid.gsd:.3f} m/px on the ground (the model's "
        f"resolution; x{1 / grid.scale_x:.3f} x x{1 / grid.scale_y:.3f} of the scene's pixels)",
        f"  tiles:           {p.tiles} = {len(lay.ys)} rows x {len(lay.xs)} cols of {lay.th} x {lay.tw}, "
        f"overlap {lay.overlap}",
        f"  model:           {p.model}, {p.params / 1e6:.2f} M params, device {p.device}, {p.precision}",
        f"  memory estimate: ~{p.memory_gb:.2f} GB peak RSS (batch {p.batch_size}; this process with the model "
        f"loaded, one batch's activations and the grid's buffers)",
        f"  scratch disk:    ~{p.scratch_gb:.2f} GB in {p.work}/ ({p.free_gb:.1f} GB free"
        f"{': NOT ENOUGH' if p.scratch_gb > p.free_gb else ''})",
    ]
    print("\n".join(lines))


TIME_ORDER = ("start-up", "model load", "kernel build", "infer", "stitch", "graph", "write", "total")


def print_summary(r) -> None:
    """The table after a run."""
    print_table(f"roads of {Path(r.scene).name}", [
        ("output", str(r.output)),
        ("model", f"{r.model}, {r.domain}"),
        ("road length", f"{r.km:.2f} km"),
        ("nodes / edges", f"{r.nodes} / {r.edges}"),
        ("resolution", f"scene {r.scene_gsd[0]:.3f} x {r.scene_gsd[1]:.3f} m/px, model {r.gsd:.2f} m/px (ground)"),
        ("tiles", f"{r.tiles} on a {r.grid[1]} x {r.grid[0]} grid at {r.gsd:.2f} m/px"),
        ("time", ", ".join(f"{k} {r.times[k]:.1f} s" for k in TIME_ORDER if k in r.times)),
    ])


def _ground(grid) -> str:
    gx, gy = grid.scene_gsd
    how = "ground, at the centre" if grid.georeferenced else "ground, as given (no georeferencing)"
    return f"{gx:.3f} x {gy:.3f} m/px {how}"
