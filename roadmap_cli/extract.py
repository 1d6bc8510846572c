"""``roadmap extract`` as a library: scene -> predicted tiles -> blended probabilities -> road graph -> files.

:func:`run_extract` reads as its four stages (predict tiles, blend, graph, write) and returns an
:class:`ExtractResult`; :func:`plan_extract` returns the :class:`ExtractPlan` that ``--dry-run`` shows.  Nothing
here prints: progress goes to a :class:`~roadmap_cli.progress.Reporter`, the CLI draws it.

Memory is bounded by the tile, not the scene: tiles are read by window, each tile's prediction is cached on disk
(``<output>.roadmap-work/``, which also makes ``--resume`` exact), and blending, skeletonization and graph building
all work block by block through tiled GeoTIFFs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checks import check_crs, check_extract_paths, extract_work_folder, guard_extract
from .engines import RayEngine, TileJob, check_engine
from .errors import InputError, OutputError, OutputExistsError, UserError
from .export import to_geodataframes, write_graph
from .graph import CleanOptions, graph_from_rasters
from .graph.mask import PostOptions, mask_rasters
from .infer.device import resolve_device, resolve_precision
from .infer.predict import Predictor
from .infer.stitch import TileCache, blend_tiles, predict_tiles
from .io.atomic import atomic_path, is_disk_full, run_lock
from .io.mosaic import (
    LIST_SUFFIXES,
    OWN_OUTPUT_TAG,
    SceneViews,
    build_mosaic,
    expand_inputs,
    read_scene_window,
    scenes_identity,
)
from .io.raster import (
    ReadTiff,
    SceneGrid,
    ScratchTiff,
    StretchStats,
    gdal_env,
    ground_scale_variation,
    has_valid_pixels,
    is_georeferenced,
    metric_view,
    open_raster,
    parse_bands,
    read_valid,
    resample_to_grid,
    scratch_readers,
    working_grid,
)
from .progress import SILENT, Reporter
from .tiling import TileLayout, tile_ranges
from .weights import load_model, model_domain

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    """Everything ``roadmap extract`` takes (the CLI's options, by the same names).  ``scene`` is one raster, or a
    list of rasters, folders, text lists and STAC item JSON files read as one mosaic (``io.mosaic``)."""

    scene: Path | list[Path]
    output: Path
    model: str | None = None
    weights: Path | None = None
    bands: str | None = None
    tile: int | None = None
    overlap: int | None = None  # default: tile // 8 (BENCHMARKS.md, "Tile overlap")
    batch_size: int = 2
    device: str = "auto"
    precision: str = "auto"
    tta: bool = False
    gsd: float | None = None  # the model's working resolution (m/px); default: the model's own
    scene_gsd: float | None = None  # the scene's own ground resolution (m/px); default: from its georeferencing
    threshold: float | None = None
    prob_out: Path | None = None
    mask_out: Path | None = None
    preview: Path | None = None
    report: Path | None = None  # self-contained HTML map of the run
    to_crs: str | None = None
    min_spur_m: float = 10.0
    min_component_m: float = 20.0
    simplify_m: float = 1.0
    bridge_m: float = 45.0
    bridge_angle_deg: float = 30.0  # a bridge's target lies within this angle of the dead end's direction
    bridge_to_edges: bool = True  # ... and may be the side of an edge, not only a node
    bridge_detour: float = 2.0  # ... or the dead end's own piece where the way round is this many times the gap
    bridge_follow: bool = True  # bridges follow the probability (else straight)
    junction_m: float = 3.0  # junctions closer than this are merged
    spur_widths: float = 2.0  # spurs shorter than this many road widths are pruned (0 = off)
    low_threshold: float | None = None  # hysteresis: pixels above this are road where they touch the threshold's
    smooth_px: float = 0.0  # Gaussian smoothing (sigma, working pixels) of the probability before thresholding
    raster_grid: str = "input"  # --prob-out / --mask-out / --preview on the scene's grid ("input") or "model"
    allow_pixel_coords: bool = False
    random_weights: bool = False  # a variant without weights runs untrained (benchmarks only)
    overwrite: bool = False
    resume: bool = False
    graph_tile: int = 2048
    threads: int | None = None  # torch CPU threads of the model (default: torch's); the bits depend on it
    engine: str = "local"  # local: in this process; ray: an actor pool on a Ray cluster (roadmap[ray])
    workers: int | None = None  # Ray: model workers (default: one per CPU, or per --gpus-per-worker GPUs)
    gpus_per_worker: float = 0.0
    address: str | None = None  # Ray: the cluster to join (default: RAY_ADDRESS, else a local instance)
    asset: str | None = None  # the STAC asset to read (default: visual / image / data / the first GeoTIFF)
    mosaic_sources: list | None = None  # set internally: a mosaic's scenes (read one by one where they overlap)


@dataclass
class ExtractPlan:
    """What a run would do: the scene, its working grid, the tile layout, the model, memory and scratch needs."""

    scene: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: object
    grid: SceneGrid
    layout: TileLayout
    model: str
    params: int
    device: str
    precision: str
    batch_size: int
    memory_gb: float
    scratch_gb: float
    work: Path
    free_gb: float = float("nan")  # free space where the scratch files go

    @property
    def tiles(self) -> int:
        """Number of model tiles."""
        return self.layout.count


@dataclass
class ExtractResult:
    """What a run wrote: the graph's size and length, the grid it worked on and how long each stage took."""

    scene: Path
    output: Path
    edges: int
    nodes: int
    km: float
    tiles: int
    grid: tuple[int, int]
    gsd: float
    scene_gsd: tuple[float, float] = (1.0, 1.0)
    times: dict[str, float] = field(default_factory=dict)
    model: str = ""
    domain: str = ""  # where the weights come from ("trained on ...", "untrained ...", "weights from FILE")
    valid_km2: float = 0.0  # ground area of the scene's valid pixels
    prob_p99: float = 0.0  # 99th percentile of the road probability over valid pixels
    notes: list[str] = field(default_factory=list)  # doubts about the result, one line each


@dataclass
class _Session:
    """An open scene with its model and tile layout (what both the plan and the run need)."""

    ds: object
    bands: list[int]
    grid: SceneGrid
    layout: TileLayout
    model: object
    device: object
    dtype: object
    threshold: float
    scene: object = None  # the scene's own dataset (``ds`` is its warped view when one scale does not fit it)
    views: object = None  # a mosaic's scenes on its grid (io.mosaic.SceneViews), read one by one where they overlap
    load_s: float = 0.0  # seconds spent loading the model

    @property
    def scene_crs(self):
        return self.scene.crs

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).replace("torch.", "")


def compute_info(cuda: bool) -> list[tuple[str, str]]:
    """``roadmap info`` rows: the CPU's bfloat16 support, what ``--precision auto`` picks on the CPU and which
    deformable sampling runs on each device."""
    import torch

    from .infer.device import cpu_bf16_support
    from .nn import fused
    native = cpu_bf16_support()
    rows = [("cpu bf16", f"native ({native})" if native else "emulated (no AVX512-BF16 / AMX): slower than fp32"),
            ("cpu --precision auto", "fp32" if resolve_precision("auto", torch.device("cpu")) is None else "bf16"),
            ("deformable sampling (cpu)", fused.status("cpu"))]
    if cuda:
        rows.append(("deformable sampling (cuda)", fused.status("cuda")))
    return rows


def _outputs(opts: ExtractOptions) -> dict:
    return {"-o": opts.output, "--prob-out": opts.prob_out, "--mask-out": opts.mask_out, "--preview": opts.preview,
            "--report": opts.report}


def _validate(opts: ExtractOptions) -> None:
    _check_outputs_are_new(opts)
    check_extract_paths(opts.scene, opts.output, opts.prob_out, opts.mask_out, opts.preview, opts.report,
                        opts.overwrite, opts.resume)
    if opts.tile is not None and (opts.tile < 32 or opts.tile % 32):
        raise InputError(f"--tile must be a positive multiple of 32, got {opts.tile}")
    if opts.overlap is not None and opts.overlap < 0:
        raise InputError("--overlap must be >= 0")
    if opts.overlap is not None and opts.tile is not None and opts.overlap * 2 > opts.tile:
        raise InputError(f"--overlap {opts.overlap} is more than half of --tile {opts.tile}")
    if opts.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {opts.batch_size}")
    check_engine(opts.engine, opts.workers, opts.gpus_per_worker)
    if opts.threads is not None and not 1 <= opts.threads <= 1024:
        raise InputError(f"--threads must be between 1 and 1024, got {opts.threads}")
    check_crs(opts.to_crs, "--to-crs")
    if opts.raster_grid not in ("input", "model"):
        raise InputError(f"--raster-grid must be input or model, got {opts.raster_grid!r}")
    if opts.threshold is not None and not 0 < opts.threshold < 1:
        raise InputError("--threshold must be between 0 and 1")
    if opts.low_threshold is not None and not 0 < opts.low_threshold < 1:
        raise InputError("--low-threshold must be between 0 and 1")
    if not 0 <= opts.smooth_px <= 50:
        raise InputError(f"--smooth-px must be between 0 and 50 working pixels, got {opts.smooth_px}")
    for flag, value in (("--min-spur-m", opts.min_spur_m), ("--min-component-m", opts.min_component_m),
                        ("--simplify-m", opts.simplify_m), ("--bridge-m", opts.bridge_m),
                        ("--junction-m", opts.junction_m)):
        if not (0 <= value < float("inf")):
            raise InputError(f"{flag} must be a number of metres >= 0, got {value}")
    for flag, value in (("--bridge-detour", opts.bridge_detour), ("--spur-widths", opts.spur_widths)):
        if not (0 <= value < float("inf")):
            raise InputError(f"{flag} must be a number >= 0, got {value}")
    if not 0 < opts.bridge_angle_deg <= 180:
        raise InputError(f"--bridge-angle-deg must be in (0, 180], got {opts.bridge_angle_deg}")
    for flag, value in (("--model-gsd", opts.gsd), ("--scene-gsd", opts.scene_gsd)):
        if value is not None and not (0 < value < float("inf")):
            raise InputError(f"{flag} must be a positive number of metres per pixel, got {value}")


def _check_outputs_are_new(opts: ExtractOptions, sources=None) -> None:
    """No output may be an input (even with --overwrite) or another output, and the work folder removed at the end
    may hold no input (:func:`checks.guard_extract`)."""
    guard_extract(opts.scene, _outputs(opts), opts.model, opts.weights, opts.asset, sources)


@contextlib.contextmanager
def _session(opts: ExtractOptions):
    """Open and check the scene, load the model, lay out the tiles."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_env())
        ds = stack.enter_context(open_raster(opts.scene))
        if ds.width == 0 or ds.height == 0 or ds.count == 0:
            raise InputError(f"{opts.scene} is empty ({ds.width}x{ds.height}, {ds.count} bands)")
        if not is_georeferenced(ds) and not opts.allow_pixel_coords:
            raise InputError(f"{opts.scene} has no georeferencing (CRS/geotransform); pass --allow-pixel-coords "
                             "to work in pixel coordinates")
        if opts.report is not None and not is_georeferenced(ds):
            raise InputError(f"--report needs a georeferenced scene; {opts.scene} has no georeferencing")
        bands = parse_bands(opts.bands, ds.count)
        if not has_valid_pixels(ds, bands):
            raise InputError(f"{opts.scene} has no valid pixels (all nodata)")
        device = resolve_device(opts.device)
        dtype = resolve_precision(opts.precision, device)
        t_load = time.perf_counter()
        model = load_model(opts.model, opts.weights, device, opts.random_weights)
        load_s = time.perf_counter() - t_load
        cfg = model.cfg
        scene, variation = ds, ground_scale_variation(ds) if opts.scene_gsd is None else 0.0
        if variation > 0.01:  # one scale factor does not fit the whole scene: work in its local UTM zone
            ds = stack.enter_context(metric_view(ds))
            log.warning("the ground size of %s's pixels varies by %.1f %% across the scene (its CRS's scale "
                        "factor): it is warped block by block to %s for the model; outputs are in the scene's "
                        "CRS", opts.scene, 100 * variation, ds.crs)
        grid = working_grid(ds, opts.gsd or cfg.gsd, opts.scene_gsd)
        if not grid.georeferenced and opts.scene_gsd is None:
            log.warning("%s has no georeferencing and no --scene-gsd: taken to be at the model's %.2f m/px; "
                        "lengths and tolerances are only right if it is", opts.scene, grid.gsd)
        tile = opts.tile or cfg.tile
        if opts.overlap is not None and opts.overlap * 2 > tile:
            raise InputError(f"--overlap {opts.overlap} is more than half of the {tile} px tile")
        layout = TileLayout.plan(grid.height, grid.width, tile, tile // 8 if opts.overlap is None else opts.overlap)
        threshold = opts.threshold if opts.threshold is not None else cfg.threshold
        log.info("scene %s: %d x %d px, %d band(s), CRS %s, %.3f x %.3f m/px; working grid %d x %d at %.2f m/px; "
                 "%d tiles of %d x %d; model %s on %s", opts.scene, scene.width, scene.height, scene.count, scene.crs,
                 *grid.scene_gsd, grid.width, grid.height, grid.gsd, layout.count, layout.th, layout.tw, cfg.name,
                 device)
        views = stack.enter_context(SceneViews(opts.mosaic_sources, ds)) if opts.mosaic_sources else None
        yield _Session(ds, bands, grid, layout, model, device, dtype, threshold, scene, views, load_s)


def _work_folder(opts: ExtractOptions) -> Path:
    return extract_work_folder(opts.output)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (GB): the baseline of imports, GDAL and the loaded model."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e9 if sys.platform == "darwin" else rss * 1024 / 1e9  # bytes on macOS, KiB on Linux


# the run's memory above the baseline the plan measures: the model's activations for one batch, what running adds
# whatever the scene (the first forward's allocations, thread pools, GDAL's bounded cache), then buffers that grow
# with the working grid up to the size where blend blocks and graph tiles bound them.  Fitted on 300 and 6000 px
# scenes at 1 m (peaks 1.170 and 1.358 GB, 2026-12-07); tests/test_extract_memory.py checks other sizes.
RUN_FIXED_GB = 0.21
GRID_GB_PER_MPX = 0.0052
GRID_MPX_CAP = 64.0


def plan_memory_gb(baseline_gb: float, activations_gb: float, grid_px: int) -> float:
    """The expected peak RSS of a run: the measured baseline, one batch's activations, the fixed cost of running,
    the grid's buffers."""
    return baseline_gb + activations_gb + RUN_FIXED_GB + GRID_GB_PER_MPX * min(grid_px / 1e6, GRID_MPX_CAP)


def _plan(opts: ExtractOptions, s: _Session) -> ExtractPlan:
    from .nn.model import count_parameters

    lay, cfg = s.layout, s.model.cfg
    n = len(lay.ys) * len(lay.xs)
    params = count_parameters(s.model)
    # activations: scaled from the fp32 decoder-block-1 DCNv3 figure of the spec (~0.9 GB per 1024^2 tile at 384
    # channels) by tile area and decoder width
    per_tile_gb = 1.2 * (lay.th * lay.tw) / 1024 ** 2 * (cfg.decoder_channels[-1] + cfg.d_model) / 320
    memory = plan_memory_gb(peak_rss_gb(), opts.batch_size * per_tile_gb, s.grid.width * s.grid.height)
    scratch = (n * lay.th * lay.tw * 2 + s.grid.width * s.grid.height * 10) / 1e9
    sc = s.scene
    work = _work_folder(opts)
    free = shutil.disk_usage(work.parent if str(work.parent) else Path(".")).free / 1e9
    return ExtractPlan(Path(opts.scene), sc.width, sc.height, sc.count, sc.dtypes[0], sc.crs, s.grid, lay, cfg.name,
                       params, str(s.device), s.precision, opts.batch_size, memory, scratch, work, free)


@contextlib.contextmanager
def scene_raster(items: list[Path], asset: str | None = None, exclude=()):
    """One raster for one or many inputs: ``(path, sources)``, the given raster itself, or a GTI mosaic of many in a
    temporary folder that lives as long as the context (``exclude``: the run's own outputs, skipped by folder
    scans)."""
    items = [Path(x) for x in items]
    if not items:
        raise InputError("no scene given")
    plain = len(items) == 1 and not items[0].is_dir() and items[0].suffix.lower() not in (*LIST_SUFFIXES, ".json")
    sources = [str(items[0])] if plain else expand_inputs(items, asset, exclude=exclude)
    if len(sources) == 1:  # a remote one (/vsicurl/, /vsis3/) stays a string: Path would fold its "//"
        yield (sources[0] if str(sources[0]).startswith("/vsi") else Path(sources[0])), sources
        return
    with tempfile.TemporaryDirectory(prefix="roadmap-mosaic-") as tmp, gdal_env():
        m = build_mosaic(sources, Path(tmp) / "mosaic.gti.gpkg")
        log.info("mosaic of %d scenes on %s at %.3f m", len(sources), m.crs, m.resolution)
        yield m.path, sources


@contextlib.contextmanager
def _resolved_scene(opts: ExtractOptions):
    """``opts`` with ``scene`` one raster: the given one, or a GTI mosaic of many (:func:`scene_raster`), and the
    list of source scenes."""
    items = [Path(x) for x in (opts.scene if isinstance(opts.scene, (list, tuple)) else [opts.scene])]
    with scene_raster(items, opts.asset, [p for p in _outputs(opts).values() if p]) as (path, sources):
        _check_outputs_are_new(opts, sources)
        if len(sources) == 1:
            yield dataclasses.replace(opts, scene=path), sources
        else:
            yield dataclasses.replace(opts, scene=path, mosaic_sources=list(sources)), sources


def plan_extract(opts: ExtractOptions) -> ExtractPlan:
    """The tile plan and resource estimate of a run, without running it (``--dry-run``)."""
    _validate(opts)
    with _resolved_scene(opts) as (opts, _), _session(opts) as s:
        return _plan(opts, s)


def run_extract(opts: ExtractOptions, reporter: Reporter = SILENT) -> ExtractResult:
    """Extract the road graph of ``opts.scene`` into ``opts.output`` (and the optional rasters and preview)."""
    if opts.resume and (_work_folder(opts) / "manifest.json").is_file():
        opts = dataclasses.replace(opts, overwrite=True)  # outputs the interrupted run wrote before it stopped
    _validate(opts)
    with _resolved_scene(opts) as (one, sources):
        result = _run_extract(one, reporter)
    if len(sources) > 1:
        result.scene = Path(f"mosaic of {len(sources)} scenes")
    return result


def _run_extract(opts: ExtractOptions, reporter: Reporter) -> ExtractResult:
    """The run on one (resolved, validated) scene."""
    t_start = time.time()
    times: dict[str, float] = {}
    work = _work_folder(opts)
    from .nn import fused

    built = fused.build_seconds
    with run_lock(opts.output), _session(opts) as s:
        times["model load"] = s.load_s
        _check_free_space(opts, s, work)
        _prepare_work(work, _run_key(opts, s), _manifest_options(opts, s), opts)
        created_here = not opts.resume
        try:
            stretch = StretchStats(s.ds, s.bands)
            cache = TileCache(work / "tiles")
            with _engine(opts, s, stretch, cache) as engine:
                with _timed(times, "infer"):
                    _predict_stage(opts, s, stretch, cache, reporter, engine)
                with _timed(times, "stitch"):
                    prob_r, mask_r, stats = _blend_stage(s, cache, work, reporter, engine)
                    _mask_stage(opts, s, prob_r, mask_r, reporter)
                    prob_r, mask_r = _reopen(prob_r, mask_r, work)
                with _timed(times, "graph"):
                    g = _graph_stage(opts, s, prob_r, mask_r, work, reporter, engine)
            with _timed(times, "write"):
                edges, nodes, notes = _write_stage(opts, s, g, stretch, prob_r, mask_r, work, reporter, stats)
        except UserError:
            if created_here:
                shutil.rmtree(work, ignore_errors=True)
            raise
        except Exception as e:
            # keep what is done: --resume continues once there is room (an output may sit on another, full disk;
            # GDAL's writers often say only "IO error", so the free space of each output's folder is looked at too)
            folders = [(work, "")] + [(Path(q).parent, f" writing {q}") for q in _outputs(opts).values() if q]
            where = next((w for folder, w in folders if is_disk_full(e, folder)), None)
            if where is not None:
                raise OutputError(f"the disk is full{where} ({' '.join(str(e).split())[:120]}); free some space, then "
                                  f"run the same command with --resume: the predicted tiles are kept in {work}") from e
            raise
    shutil.rmtree(work, ignore_errors=True)
    if fused.build_seconds > built:  # the kernel was compiled during the first tiles: not inference
        times["kernel build"] = fused.build_seconds - built
        times["infer"] = max(0.0, times["infer"] - times["kernel build"])
    times["total"] = time.time() - t_start
    reporter.close()
    result = ExtractResult(Path(opts.scene), Path(opts.output), len(edges), len(nodes),
                           float(edges["length_m"].sum() / 1000.0), s.layout.count, (s.grid.height, s.grid.width),
                           s.grid.gsd, s.grid.scene_gsd, times, s.model.cfg.name,
                           model_domain(opts.model, opts.weights), stats["valid_px"] * s.grid.gsd ** 2 / 1e6,
                           _percentile(stats["hist"], 0.99))
    result.notes = notes
    for note in result.notes:
        log.info("note: %s", note)
    return result


def _percentile(hist, q: float) -> float:
    """The ``q`` quantile of a 100-bin histogram of values in [0, 1] (upper bin edge)."""
    total = int(hist.sum())
    if total == 0:
        return 0.0
    return float((np.searchsorted(np.cumsum(hist), q * total) + 1) / 100)


MIN_ROAD_KM_PER_KM2 = 0.5  # far below any inhabited area's road density (rural Europe: ~1-2 km/km2)


def _doubts(km: float, valid_km2: float, prob_p99: float, threshold: float, domain: str) -> list[str]:
    """One line for each sign that the model does not know this imagery (shown on the terminal, in the preview's
    caption and in the report's banner)."""
    advice = ("the model may not know this kind of imagery ({}); adapt it to your area with road vectors of part "
              "of it: roadmap adapt SCENE.tif ROADS.gpkg -o model.pt").format(domain)
    notes = []
    if valid_km2 > 0 and prob_p99 < threshold / 2:
        notes.append(f"road probabilities never approach the threshold (99th percentile {prob_p99:.2f}, "
                     f"threshold {threshold:.2f}): " + advice)
    elif valid_km2 >= 0.05 and km / valid_km2 < MIN_ROAD_KM_PER_KM2:
        notes.append(f"only {km / valid_km2:.2f} km of road per km2 found: " + advice)
    elif km == 0 and valid_km2 > 0:
        notes.append("no road found: " + advice)
    return notes


@contextlib.contextmanager
def _timed(times: dict, stage: str):
    t0 = time.time()
    yield
    times[stage] = time.time() - t0
    log.info("%s: %.1f s", stage, times[stage])


# ------------------------------------------------------------------------------------------------ stages

@contextlib.contextmanager
def _engine(opts, s: _Session, stretch, cache: TileCache):
    """None for the local engine; a started :class:`engines.RayEngine` for ``--engine ray``."""
    import torch
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    if opts.engine != "ray":
        yield None
        return
    layout = dataclasses.replace(s.layout, weight=np.zeros(0, np.float32))  # workers recompute it if they blend
    job = TileJob(str(opts.scene), s.ds is not s.scene, s.bands, s.grid, stretch, layout, str(cache.folder),
                  opts.model, None if opts.weights is None else str(opts.weights), opts.random_weights,
                  s.device.type if opts.gpus_per_worker == 0 else "cuda", opts.precision, opts.tta,
                  torch.get_num_threads(), opts.mosaic_sources)
    with RayEngine(job, opts.workers, opts.gpus_per_worker, opts.address) as engine:
        yield engine


def _predict_stage(opts, s: _Session, stretch, cache: TileCache, reporter: Reporter, engine=None) -> None:
    if engine is not None:
        r = engine.predict(opts.batch_size, reporter)
        log.info("predicted %d of %d tiles on %d Ray worker(s) (peak RSS per worker %s GB)", r["predicted"],
                 s.layout.count, r["workers"], ", ".join(f"{x:.2f}" for x in r["worker_rss_gb"]))
        return

    def read_tile(r0, r1, c0, c1):
        return read_scene_window(s.ds, s.views, s.grid, s.bands, stretch, r0, r1, c0, c1)

    predictor = Predictor(s.model, s.device, s.dtype, opts.tta)
    n = predict_tiles(s.layout, read_tile, predictor, cache, opts.batch_size, reporter)
    log.info("predicted %d of %d tiles of %d x %d px", n, s.layout.count, s.layout.th, s.layout.tw)


def _blend_stage(s: _Session, cache: TileCache, work: Path, reporter: Reporter, engine=None):
    prob_r = ScratchTiff(work / "prob.tif", s.grid, "float32", nodata=-1.0)
    mask_r = ScratchTiff(work / "mask.tif", s.grid, "uint8", nodata=255)

    def valid(r0, r1, c0, c1):
        return read_valid(s.ds, s.grid, s.bands, r0, r1, c0, c1)

    compute = engine.blend_compute() if engine is not None else None
    stats = blend_tiles(s.layout, cache, valid, s.threshold, prob_r, mask_r, reporter, compute)
    return prob_r, mask_r, stats


def _reopen(prob_r, mask_r, work: Path):
    """Close the written scratch rasters (flushed to disk, where workers can read them) and open them read-only."""
    prob_r.close()
    mask_r.close()
    return ReadTiff(work / "prob.tif"), ReadTiff(work / "mask.tif")


def _mask_stage(opts, s: _Session, prob_r, mask_r, reporter: Reporter) -> None:
    """Rewrite the blended mask with smoothing and/or hysteresis (``--smooth-px``, ``--low-threshold``)."""
    if opts.low_threshold is None and not opts.smooth_px:
        return
    if opts.low_threshold is not None and opts.low_threshold > s.threshold:
        raise InputError(f"--low-threshold {opts.low_threshold} is above the threshold {s.threshold}")
    post = PostOptions(threshold=s.threshold, smooth_px=opts.smooth_px, low=opts.low_threshold)
    h, w, t = s.grid.height, s.grid.width, opts.graph_tile
    n = len(tile_ranges(h, t)) * len(tile_ranges(w, t))
    reporter.start("mask", n * (2 if post.low is not None else 1))
    mask_rasters(prob_r.read, h, w, post, mask_r.write, t, tick=lambda: reporter.advance("mask"))


def _graph_stage(opts, s: _Session, prob_r, mask_r, work: Path, reporter: Reporter, engine=None):
    h, w, gt_ = s.grid.height, s.grid.width, opts.graph_tile
    reporter.start("graph", len(tile_ranges(h, gt_)) * len(tile_ranges(w, gt_)))
    clean = CleanOptions(gsd=s.grid.gsd, min_spur_m=opts.min_spur_m, min_component_m=opts.min_component_m,
                         junction_m=opts.junction_m, bridge_m=opts.bridge_m, bridge_angle_deg=opts.bridge_angle_deg,
                         join_edges=opts.bridge_to_edges, bridge_detour=opts.bridge_detour,
                         bridge_follow=opts.bridge_follow, spur_width_ratio=opts.spur_widths)
    read_mask, read_prob = scratch_readers(mask_r, prob_r)
    parts = (engine.graph_parts(str(work / "mask.tif"), str(work / "prob.tif"), h, w) if engine is not None
             else None)
    g = graph_from_rasters(read_mask, h, w, clean, read_prob, gt_, halo=64, tick=lambda: reporter.advance("graph"),
                           parts=parts)
    log.info("graph: %d nodes, %d edges", g.number_of_nodes(), g.number_of_edges())
    return g


def _write_stage(opts, s: _Session, g, stretch, prob_r, mask_r, work: Path, reporter: Reporter, stats: dict):
    reporter.start("write", 1 + bool(opts.prob_out) + bool(opts.mask_out) + bool(opts.preview) + bool(opts.report))
    grid = s.grid
    out_crs = opts.to_crs or (s.scene_crs if s.scene_crs != grid.crs else None)
    edges, nodes = to_geodataframes(g, grid.transform, grid.crs, grid.gsd, opts.simplify_m / grid.gsd, out_crs,
                                    grid.metres_per_unit)
    write_graph(opts.output, edges, nodes, overwrite=opts.overwrite)
    reporter.advance("write")
    notes = _doubts(float(edges["length_m"].sum() / 1000.0), stats["valid_px"] * grid.gsd ** 2 / 1e6,
                    _percentile(stats["hist"], 0.99), s.threshold, model_domain(opts.model, opts.weights))
    prob_r.close()
    mask_r.close()
    on_input = opts.raster_grid == "input" and (grid.resampled or s.scene is not s.ds)
    for src, dst, kernel, nodata in ((work / "prob.tif", opts.prob_out, "bilinear", -1.0),
                                     (work / "mask.tif", opts.mask_out, "nearest", 255)):
        if dst:
            if on_input:  # onto the scene's own pixels, block by block, so it overlays the imagery
                resample_to_grid(src, src.with_name(f"input_{src.name}"), s.scene, kernel, nodata)
                src = src.with_name(f"input_{src.name}")
            _to_cog(src, dst, opts.overwrite)
            reporter.advance("write")
    if opts.preview:
        if opts.raster_grid == "input":
            _preview(s.scene, s.bands, stretch, edges.to_crs(s.scene.crs) if s.scene.crs else edges,
                     s.scene.transform, s.scene.width, s.scene.height, opts.preview, opts.overwrite, notes)
        else:
            _preview(s.ds, s.bands, stretch, edges if out_crs is None else edges.to_crs(grid.crs), grid.transform,
                     grid.width, grid.height, opts.preview, opts.overwrite, notes)
        reporter.advance("write")
    if opts.report:
        _report(opts, s, stretch, work / "prob.tif", edges, nodes, notes)
        reporter.advance("write")
    return edges, nodes, notes


# ------------------------------------------------------------------------------------ work folder / resume

def _run_key(opts: ExtractOptions, s: _Session) -> str:
    lay = s.layout
    h = hashlib.sha256()
    if opts.mosaic_sources:  # the mosaic index is rebuilt on every run; its scenes are what counts
        ident = ["mosaic", scenes_identity(opts.mosaic_sources)]
    elif str(opts.scene).startswith("/vsi"):  # a remote scene: its address
        ident = ["remote", scenes_identity([str(opts.scene)])]
    else:
        st = os.stat(opts.scene)
        ident = [str(Path(opts.scene).resolve()), st.st_size, int(st.st_mtime)]
    h.update(json.dumps([*ident, s.grid.height,
                         s.grid.width, lay.th, lay.tw, lay.overlap, opts.bands, opts.tta, opts.gsd, opts.scene_gsd,
                         opts.threads,
                         s.model.cfg.to_dict(), opts.precision, opts.batch_size, s.device.type]).encode())
    for f in (opts.model, opts.weights):  # the checkpoint files' identity ...
        if f is not None and Path(f).is_file():
            fs = os.stat(f)
            h.update(json.dumps([str(Path(f).resolve()), fs.st_size, fs.st_mtime_ns]).encode())
    for v in list(s.model.state_dict().values())[:4]:  # ... and a fingerprint of the weights themselves
        h.update(v.detach().cpu().float().numpy().tobytes()[:4096])
    return h.hexdigest()


def _manifest_options(opts: ExtractOptions, s: _Session) -> dict:
    """The options a resumed run must share with the interrupted one, as the user wrote them."""
    return {"--batch-size": opts.batch_size, "--tile": s.layout.th, "--overlap": s.layout.overlap,
            "--bands": opts.bands, "--tta": opts.tta, "--model-gsd": opts.gsd, "--scene-gsd": opts.scene_gsd,
            "--precision": opts.precision, "--device": s.device.type, "--model": opts.model,
            "--threads": opts.threads,
            "--weights": None if opts.weights is None else str(opts.weights)}


def _check_free_space(opts: ExtractOptions, s: _Session, work: Path) -> None:
    """Refuse a run whose scratch space (tile cache and scratch rasters, the plan's estimate) does not fit."""
    need = _plan(opts, s).scratch_gb * 1e9
    if work.is_dir():  # resuming: what is there already counts
        need -= sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    folder = work.parent if str(work.parent) else Path(".")
    free = shutil.disk_usage(folder).free
    if need > free:
        raise OutputError(f"{opts.output} needs about {need / 1e9:.1f} GB of scratch space in {folder}, only "
                          f"{free / 1e9:.1f} GB are free")


def _prepare_work(work: Path, key: str, options: dict, opts: ExtractOptions) -> None:
    manifest = work / "manifest.json"
    if work.exists():
        if opts.resume:
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("key") != key:
                was = old.get("options", {})
                diff = [f"{k} {was[k]} (now {v})" for k, v in options.items() if k in was and was[k] != v]
                what = ("the interrupted run used " + ", ".join(diff) + "; resume with the same options (the "
                        "tiles' predictions depend on them)") if diff else "it belongs to a run with other inputs"
                raise InputError(f"--resume: {work}: {what}, or start over with --overwrite instead of --resume")
            return
        if not opts.overwrite:
            raise OutputExistsError(f"an interrupted run left {work}; pass --resume to continue it or --overwrite "
                                    "to start over")
        shutil.rmtree(work)
    elif opts.resume:
        log.info("--resume: nothing to resume, starting fresh")
    (work / "tiles").mkdir(parents=True)
    manifest.write_text(json.dumps({"key": key, "scene": str(opts.scene), "options": options}))


# ------------------------------------------------------------------------------------------ extra outputs

def _to_cog(src: Path, dst: Path, overwrite: bool) -> None:
    import rasterio
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(src, "r+") as ds:  # marks it as roadmap's output: a folder scan passes over it
        ds.update_tags(**{OWN_OUTPUT_TAG: Path(dst).name})
    with atomic_path(dst, overwrite=overwrite) as tmp:
        rio_copy(src, tmp, driver="COG", compress="deflate")


def _report(opts, s: _Session, stretch, prob_path: Path, edges, nodes, notes=()) -> None:
    import rasterio

    from .report import build_report

    gx, gy = s.grid.scene_gsd
    summary = [("scene", Path(opts.scene).name), ("road length", f"{edges['length_m'].sum() / 1000:.2f} km"),
               ("nodes / edges", f"{len(nodes)} / {len(edges)}"),
               ("resolution", f"scene {gx:.2f} x {gy:.2f} m/px, model {s.grid.gsd:.2f} m/px"),
               ("model", f"{s.model.cfg.name}, {model_domain(opts.model, opts.weights)}")]
    with rasterio.open(prob_path) as prob:
        page = build_report(s.scene, s.bands, stretch, prob, edges, summary, banner=list(notes))
    with atomic_path(opts.report, overwrite=opts.overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")


def _preview(ds, bands, stretch, edges, transform, width, height, path, overwrite, notes=()) -> None:
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo
    from rasterio.enums import Resampling

    f = max(1.0, max(width, height) / 2048)
    w, h = max(1, int(width / f)), max(1, int(height / f))
    data = ds.read(bands, out_shape=(3, h, w), resampling=Resampling.average)
    img = Image.fromarray(stretch.apply(data).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(img)
    inv = ~transform
    for geom in edges.geometry:
        pts = [inv @ xy for xy in geom.coords]
        draw.line([(c / f, r / f) for c, r in pts], fill=(255, 40, 40), width=max(2, int(3 / f) + 1))
    if notes:
        from .report import caption

        img = caption(img, notes)
    with atomic_path(path, overwrite=overwrite) as tmp:
        # zlib level 3: on the example's 1300 px preview 0.19 s and 2.41 MB against 0.59 s and 2.44 MB at PIL's
        # default 6 (aerial imagery barely compresses; level 1: 0.11 s, 2.48 MB)
        info = PngInfo()
        info.add_text(OWN_OUTPUT_TAG, Path(path).name)  # roadmap's output: a folder scan passes over it
        for note in notes:
            info.add_text("Comment", note)
        img.save(tmp, format="PNG", compress_level=3, pnginfo=info)


__all__ = ["ExtractOptions", "ExtractPlan", "ExtractResult", "plan_extract", "run_extract"]
