"""``roadmap adapt`` as a library: fine-tune a road model on the user's own scene(s) and road vectors, and measure
what it gained on a hold-out part of the area that training never sees.

:func:`run_adapt` reads as its steps:

1. the area: the scene(s) (one raster, or a mosaic of many) on the model's working grid, cut to where the road
   vectors are;
2. the hold-out: a contiguous strip of that area (by default the last 20 % along its longer side), written as a
   GeoTIFF on the working grid with its road centre lines beside it, so ``roadmap extract`` + ``roadmap score``
   can repeat the numbers;
3. training pairs from the rest (``datasets from-vectors``'s labels: centre lines buffered to ``--road-width-m``);
4. the starting model scored on the hold-out (``roadmap extract`` of the hold-out scene, then pixel F1 against the
   buffered centre lines and APLS against the centre lines);
5. fine-tuning with ``roadmap train`` (no validation split: nothing is chosen on the hold-out; the last weights
   are the result), resumable after a kill;
6. the adapted model scored the same way; the checkpoint and a JSON report are written.

Every stage leaves its result in the work folder (``OUT.adapt/``), so ``--resume`` continues where a run
stopped.  Nothing here prints: progress goes to a :class:`~roadmap_cli.progress.Reporter`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from shapely import clip_by_rect

from .checks import adapt_json_path, adapt_work_folder, check_adapt_paths, guard_adapt
from .data.from_vectors import RoadLabels, labelled_window, road_lines, write_pair
from .errors import InputError
from .io.atomic import atomic_open, atomic_path, check_output_path, run_lock
from .io.images import read_label
from .io.raster import StretchStats, gdal_env, is_georeferenced, open_raster, parse_bands, working_grid
from .metrics.pixel import PixelCounts
from .progress import SILENT, Reporter
from .tiling import tile_ranges

log = logging.getLogger(__name__)

SIDES = ("east", "west", "north", "south")
MIN_ROAD_M = 150.0  # road centre line a part needs: three of APLS's 50 m control-point spacings
PAIR_TILE = 1500  # training pairs are cut into tiles of at most this many working pixels (as from-vectors does)


@dataclass
class AdaptOptions:
    """What ``roadmap adapt`` takes (the CLI's options, by the same names)."""

    scene: list[Path]
    roads: Path
    output: Path  # the adapted checkpoint (.pt); the work folder is OUTPUT with suffix .adapt
    holdout: str = "0.2"  # [SIDE:]FRACTION, SIDE, or none
    init: Path | None = None  # start from this roadmap checkpoint (default: the bundled model)
    model: str | None = None  # ... or from a variant (with --sam2-checkpoint for its encoder)
    sam2_checkpoint: Path | None = None
    gsd: float | None = None  # working resolution of the adapted model (default: the starting model's)
    road_width_m: float = 7.0
    bands: str | None = None
    asset: str | None = None
    steps: int = 600
    lr: float = 5e-4
    batch_size: int = 4
    crop: int = 256
    scale_aug: str | None = "0.8,1.25"
    device: str = "auto"
    seed: int = 6
    json_out: Path | None = None
    overwrite: bool = False
    resume: bool = False


@dataclass
class Holdout:
    """The hold-out strip of the area, in working pixels (``side`` of the area, ``fraction`` of its extent)."""

    side: str
    fraction: float

    @classmethod
    def parse(cls, spec: str) -> "Holdout | None":
        """``0.2``, ``east``, ``west:0.3`` or ``none``."""
        text = str(spec).strip().lower()
        if text in ("none", "0", "off"):
            return None
        side, frac = text.split(":", 1) if ":" in text else ((text, "") if text in SIDES else ("", text))
        if side and side not in SIDES:
            raise InputError(f"--holdout {spec}: the side must be one of {', '.join(SIDES)}")
        try:
            fraction = float(frac) if frac else 0.2
        except ValueError:
            raise InputError(f"--holdout {spec}: expected [SIDE:]FRACTION, e.g. 0.2 or west:0.3, or none") from None
        if not (0 < fraction < 1):
            raise InputError(f"--holdout {spec}: the fraction must lie between 0 and 1")
        return cls(side, fraction)

    def split(self, area: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """(train window, hold-out window) of ``area`` = (r0, r1, c0, c1); the side defaults to the east end of a
        wide area and the south end of a tall one."""
        r0, r1, c0, c1 = area
        side = self.side or ("east" if c1 - c0 >= r1 - r0 else "south")
        self.side = side
        if side in ("east", "west"):
            n = max(1, round((c1 - c0) * self.fraction))
            cut = c1 - n if side == "east" else c0 + n
            a, b = (r0, r1, c0, cut), (r0, r1, cut, c1)
        else:
            n = max(1, round((r1 - r0) * self.fraction))
            cut = r1 - n if side == "south" else r0 + n
            a, b = (r0, cut, c0, c1), (cut, r1, c0, c1)
        return (a, b) if side in ("east", "south") else (b, a)


@dataclass
class AdaptResult:
    """What a run wrote and measured."""

    output: Path
    work: Path
    json_path: Path
    before: dict | None
    after: dict | None
    holdout: dict
    train: dict
    start: str
    times: dict = field(default_factory=dict)


def work_folder(output: Path) -> Path:
    """The run's work folder beside its checkpoint: ``roads.pt`` -> ``roads.adapt/``."""
    return adapt_work_folder(output)


def _json_path(opts: AdaptOptions) -> Path:
    return adapt_json_path(opts.output, opts.json_out)


def _guard(opts: AdaptOptions, sources=None) -> None:
    guard_adapt(opts.scene, opts.roads, opts.output, opts.json_out, opts.init, opts.sam2_checkpoint, opts.asset,
                sources)


def _check(opts: AdaptOptions) -> None:
    """Refuse options that cannot work, before anything is read or written."""
    _guard(opts)
    check_adapt_paths(opts.scene, opts.roads, opts.output, None, opts.init, opts.overwrite, opts.resume)
    for key in ("steps", "batch_size", "crop", "lr", "road_width_m"):
        v = getattr(opts, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")):
            raise InputError(f"--{key.replace('_', '-')} must be a positive number, got {v!r}")
    if opts.gsd is not None and not (0 < opts.gsd < float("inf")):
        raise InputError(f"--gsd must be a positive number of metres, got {opts.gsd!r}")
    if opts.crop % 32 or opts.crop < 64:
        raise InputError(f"--crop must be a multiple of 32 pixels (at least 64), got {opts.crop}")
    if opts.init is not None and opts.model is not None:
        raise InputError("give either --init (a roadmap checkpoint) or --model (a variant), not both")
    if opts.model is not None and opts.sam2_checkpoint is None:
        raise InputError(f"--model {opts.model} without --sam2-checkpoint would start from random weights; give its "
                         "SAM2 checkpoint (roadmap models download), or --init a trained roadmap checkpoint")
    Holdout.parse(opts.holdout)
    work = work_folder(opts.output)
    if (work / "run.json").is_file() and not opts.resume and not opts.overwrite:
        raise InputError(f"{work} holds an adapt run; pass --resume to continue it, or --overwrite to start again")


def _key(opts: AdaptOptions, sources: list[str]) -> str:
    """What a resumed run must share with the run it continues: inputs (name, size, time) and every option that
    changes the result."""
    parts = []
    for p in [*sources, str(opts.roads), *([str(opts.init)] if opts.init else [])]:
        st = Path(p).stat() if Path(p).exists() else None
        parts.append([str(Path(p).resolve()) if st else p, st.st_size if st else 0, int(st.st_mtime) if st else 0])
    fields = {k: str(v) for k, v in dataclasses.asdict(opts).items()
              if k not in ("scene", "roads", "output", "json_out", "overwrite", "resume", "device")}
    return hashlib.sha256(json.dumps([parts, fields], sort_keys=True).encode()).hexdigest()[:16]


def _start_model(opts: AdaptOptions, work: Path):
    """The starting model (CPU), its name for the report, and the argument that gives it to ``extract``."""
    from .nn.model import build_model
    from .weights import default_model_path, load_sam2_encoder, load_variant, model_from_checkpoint

    if opts.model is not None:
        model = build_model(load_variant(opts.model))
        load_sam2_encoder(model, opts.sam2_checkpoint)
        return model, f"{model.cfg.name} with SAM2 encoder {Path(opts.sam2_checkpoint).name}", work / "start.pt"
    path = Path(opts.init) if opts.init else default_model_path()
    model, _ = model_from_checkpoint(path)
    name = Path(opts.init).name if opts.init else f"bundled {model.cfg.name}"
    return model, name, path


def _area(labels: RoadLabels, grid, roads: Path, scene_names: str, pad: float) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the working grid cut to the bounding box of the road vectors (padded by a road width)."""
    b = labels.bounds()
    c0, r0, c1, r1 = (b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad) if b else (1, 1, 0, 0)
    r0, c0 = max(0, int(math.floor(r0))), max(0, int(math.floor(c0)))
    r1, c1 = min(grid.height, int(math.ceil(r1))), min(grid.width, int(math.ceil(c1)))
    if r1 - r0 < 32 or c1 - c0 < 32:
        raise InputError(f"the roads of {roads} do not overlap {scene_names} (no road within the scene's extent)")
    return r0, r1, c0, c1


def _write_holdout(ds, grid, bands, stretch, labels: RoadLabels, win, folder: Path) -> dict:
    """The hold-out as ``scene.tif`` (8-bit RGB on the working grid, nodata masked), the pair
    ``images/holdout.png`` + ``labels/holdout.png`` (buffered centre lines) and ``roads.gpkg`` (the centre lines cut
    to it, in the grid's CRS)."""
    import geopandas as gpd

    r0, r1, c0, c1 = win
    folder.mkdir(parents=True, exist_ok=True)
    img, lab, valid = labelled_window(ds, grid, bands, stretch, labels, r0, r1, c0, c1)
    transform = grid.transform * rasterio.Affine.translation(c0, r0)
    profile = dict(driver="GTiff", width=c1 - c0, height=r1 - r0, count=3, dtype="uint8", crs=grid.crs,
                   transform=transform, compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(folder / "scene.tif") as tmp:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.round(img).astype(np.uint8).transpose(2, 0, 1))
            dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    write_pair(folder, "holdout", img, lab)
    left, top = transform * (0, 0)
    right, bottom = transform * (c1 - c0, r1 - r0)
    cut = clip_by_rect(np.array(labels.lines.geometry, dtype=object), min(left, right),
                       min(top, bottom), max(left, right), max(top, bottom))
    gdf = gpd.GeoDataFrame(geometry=[g for g in cut if not g.is_empty], crs=grid.crs).explode(index_parts=False)
    gdf = gdf[gdf.geom_type.isin(["LineString", "MultiLineString"])]
    with atomic_path(folder / "roads.gpkg") as tmp:
        gdf.to_file(tmp, driver="GPKG", layer="roads", engine="pyogrio")
    return {"valid_px": int(valid.sum())}


def _write_train_pairs(ds, grid, bands, stretch, labels: RoadLabels, win, folder: Path) -> int:
    """Training pairs of the train window, in tiles of at most PAIR_TILE px (tiles without valid pixels left out)."""
    r0, r1, c0, c1 = win
    n = 0
    shutil.rmtree(folder, ignore_errors=True)
    for i, (a, b) in enumerate(tile_ranges(r1 - r0, PAIR_TILE)):
        for j, (c, d) in enumerate(tile_ranges(c1 - c0, PAIR_TILE)):
            img, lab, valid = labelled_window(ds, grid, bands, stretch, labels, r0 + a, r0 + b, c0 + c, c0 + d)
            if not valid.any():
                continue
            write_pair(folder, f"train_r{i}_c{j}", img, lab)
            n += 1
    return n


def score_holdout(model_arg, folder: Path, out: Path, device: str, reporter: Reporter = SILENT) -> dict:
    """A model on the hold-out, as a user would run it: ``roadmap extract`` of ``scene.tif`` (mask on the scene's
    grid), pixel precision / recall / F1 against the buffered centre lines, APLS (SpaceNet) and km against the
    centre lines."""
    from .extract import ExtractOptions, run_extract
    from .score import score_vectors

    out.mkdir(parents=True, exist_ok=True)
    gpkg, mask = out / "roads.gpkg", out / "mask.tif"
    # overwrite: a run killed while scoring left outputs or extract's work folder; extract replaces both
    res = run_extract(ExtractOptions(scene=folder / "scene.tif", output=gpkg, model=str(model_arg), mask_out=mask,
                                     device=device, overwrite=True), reporter)
    with rasterio.open(mask) as m:
        pred = m.read(1)
    gt = read_label(folder / "labels" / "holdout.png")[0]
    valid = pred != 255
    counts = PixelCounts()
    counts.add((pred == 1) & valid, gt & valid)
    px = counts.summary()
    vec = score_vectors(gpkg, folder / "roads.gpkg", 50.0, 4.0)
    return {"precision": px["precision"], "recall": px["recall"], "f1": px["f1"], "apls": vec["apls"],
            "pred_km": vec["pred_km"], "gt_km": vec["gt_km"], "edges": res.edges}


def run_adapt(opts: AdaptOptions, reporter: Reporter = SILENT) -> AdaptResult:
    """Adapt a road model to ``opts.scene`` with ``opts.roads``; write ``opts.output`` and its JSON report.  The run
    holds ``OUTPUT.roadmap-lock``: a second run onto the same checkpoint is refused at once, naming this one's pid."""
    _check(opts)
    with run_lock(opts.output):
        return _run_adapt(opts, reporter)


def _run_adapt(opts: AdaptOptions, reporter: Reporter = SILENT) -> AdaptResult:
    from .extract import scene_raster
    from .train import TrainOptions, run_train
    from .weights import save_checkpoint

    _check(opts)
    holdout = Holdout.parse(opts.holdout)
    work = work_folder(opts.output)
    json_path = _json_path(opts)
    check_output_path(json_path, overwrite=True)
    times: dict[str, float] = {}
    t0 = time.time()
    with scene_raster(opts.scene, opts.asset, exclude=[opts.output, json_path, work]) as (path, sources):
        _guard(opts, sources)
        key = _key(opts, sources)
        run_file = work / "run.json"
        resuming = opts.resume and run_file.is_file()
        if resuming and json.loads(run_file.read_text()).get("key") != key:
            raise InputError(f"--resume: {work} holds a run with other inputs or options; run without --resume "
                             "(--overwrite) to start again")
        start_model, start_name, start_arg = _start_model(opts, work)
        gsd = float(opts.gsd or start_model.cfg.gsd)
        names = ", ".join(Path(s).name for s in sources[:3]) + (" ..." if len(sources) > 3 else "")
        lines = road_lines(opts.roads)
        with gdal_env(), open_raster(path) as ds:
            if not is_georeferenced(ds):
                raise InputError(f"{names} has no georeferencing; road vectors cannot be placed on it")
            bands = parse_bands(opts.bands, ds.count)
            grid = working_grid(ds, gsd)
            labels = RoadLabels(lines, grid, opts.road_width_m)
            area = _area(labels, grid, opts.roads, names, opts.road_width_m / gsd)
            train_win, hold_win = holdout.split(area) if holdout else (area, None)
            train_m = labels.length_m(*train_win)
            hold_m = labels.length_m(*hold_win) if hold_win else 0.0
            if hold_win and hold_m < MIN_ROAD_M:
                raise InputError(f"the hold-out ({holdout.side} {holdout.fraction:.0%} of the area) holds "
                                 f"{hold_m:.0f} m of road, too little to score (at least {MIN_ROAD_M:.0f} m); choose "
                                 "another with --holdout (e.g. west:0.3), or --holdout none")
            if train_m < MIN_ROAD_M:
                raise InputError(f"the training part holds {train_m:.0f} m of road of {opts.roads}, too little to "
                                 f"learn from (at least {MIN_ROAD_M:.0f} m)")
            if not resuming:  # everything checked out: only now is the work folder (re)made
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                stretch = StretchStats(ds, bands)
                t = time.time()
                n_pairs = _write_train_pairs(ds, grid, bands, stretch, labels, train_win, work / "pairs")
                hold_info = (_write_holdout(ds, grid, bands, stretch, labels, hold_win, work / "holdout")
                             if hold_win else {})
                times["pairs_s"] = round(time.time() - t, 1)
                with atomic_open(run_file) as f:  # last: a run killed before this starts again from nothing
                    json.dump({"key": key, "pairs": n_pairs, "holdout_valid_px": hold_info.get("valid_px", 0),
                               "times": times}, f)
            run = json.loads(run_file.read_text())
            times.update(run.get("times", {}))
        if opts.model is not None and not (work / "start.pt").is_file():
            save_checkpoint(work / "start.pt", start_model)  # the variant with its SAM2 encoder: what "before" measures
        hold = {}
        if hold_win:
            r0, r1, c0, c1 = hold_win
            hold = {"side": holdout.side, "fraction": holdout.fraction, "window_px": [r0, r1, c0, c1],
                    "km2": round(run["holdout_valid_px"] * gsd * gsd / 1e6, 4), "road_km": round(hold_m / 1000, 3),
                    "scene": str(work / "holdout" / "scene.tif"), "roads": str(work / "holdout" / "roads.gpkg")}
        train_info = {"window_px": list(train_win), "road_km": round(train_m / 1000, 3), "pairs": run["pairs"],
                      "km2": round((train_win[1] - train_win[0]) * (train_win[3] - train_win[2]) * gsd * gsd / 1e6, 4),
                      "gsd": gsd, "steps": opts.steps, "lr": opts.lr, "batch_size": opts.batch_size,
                      "crop": opts.crop, "road_width_m": opts.road_width_m}

        before = None
        if hold_win:
            bpath = work / "score_before.json"
            if not bpath.is_file():
                reporter.message(f"scoring {start_name} on the hold-out")
                t = time.time()
                before = score_holdout(start_arg, work / "holdout", work / "before", opts.device)
                times["score_before_s"] = round(time.time() - t, 1)
                with atomic_open(bpath) as f:
                    json.dump({"score": before, "time_s": times["score_before_s"]}, f)
            saved = json.loads(bpath.read_text())
            before, times["score_before_s"] = saved["score"], saved["time_s"]

        # training starts from the starting weights on the adapted grid
        init = work / "init.pt"
        if not init.is_file():
            start_model.cfg = dataclasses.replace(start_model.cfg, gsd=gsd)
            save_checkpoint(init, start_model)
        tdir = work / "train"
        overrides = {"epochs": 1, "steps_per_epoch": opts.steps, "max_steps": opts.steps, "lr": opts.lr,
                     "batch_size": opts.batch_size, "crop": opts.crop, "seed": opts.seed,
                     "scale_aug": opts.scale_aug, "ckpt_every": 25, "warmup_steps": min(50, opts.steps // 10)}
        t = time.time()
        final = run_train(TrainOptions(dataset="folder", root=work / "pairs", out=tdir, init=init,
                                       device=opts.device, resume=(tdir / "last.pt").is_file(), validate=False,
                                       overrides={k: v for k, v in overrides.items() if v is not None}), reporter)
        times["train_s"] = round(time.time() - t, 1)

        from .weights import model_from_checkpoint
        model, _ = model_from_checkpoint(final)
        domain = (f"adapted from {start_name} to {names} with the roads of {Path(opts.roads).name} "
                  f"({train_info['km2']} km2, {train_info['road_km']} km of road, {opts.steps} steps)")
        adapted = work / "adapted.pt"
        save_checkpoint(adapted, model, {"domain": domain, "adapt": {"holdout": hold, "train": train_info}})

        after = None
        if hold_win:
            reporter.message("scoring the adapted model on the hold-out")
            t = time.time()
            after = score_holdout(adapted, work / "holdout", work / "after", opts.device)
            times["score_after_s"] = round(time.time() - t, 1)
        times["total_s"] = round(time.time() - t0, 1)
        report = {"output": str(opts.output), "start": start_name, "domain": domain, "scenes": sources,
                  "roads": str(opts.roads), "holdout": hold, "train": train_info, "before": before, "after": after,
                  "times": times}
        with atomic_open(json_path) as f:
            json.dump(report, f, indent=1)
        with atomic_path(opts.output, overwrite=True) as tmp:
            shutil.copyfile(adapted, tmp)
    return AdaptResult(Path(opts.output), work, json_path, before, after, hold, train_info, start_name, times)
