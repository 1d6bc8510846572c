"""The ``roadmap`` command line (Typer)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Road networks from georeferenced aerial and satellite images (Anchor-SAM).")
models_app = typer.Typer(no_args_is_help=True, help="Model variants and pretrained weights.")
datasets_app = typer.Typer(no_args_is_help=True, help="Training datasets.")
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")

log = logging.getLogger("roadmap")
_STATE = {"debug": False}


def _version(value: bool):
    if value:
        typer.echo(f"roadmap {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("rasterio", "pyogrio", "fiona", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    import warnings

    # rasters without georeferencing are refused unless --allow-pixel-coords: GDAL's warning adds nothing
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet


# ----------------------------------------------------------------------------------------------------------- info

@app.command()
def info():
    """Versions, torch device, CUDA / bf16 availability and threads."""
    import torch
    from rich.console import Console
    from rich.table import Table

    rows = [("roadmap", __version__), ("python", sys.version.split()[0]), ("torch", torch.__version__)]
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("sam2", "rasterio", "geopandas", "pyogrio", "shapely", "pyproj", "sknw", "networkx",
                 "scikit-image", "numpy"):
        try:
            rows.append((dist, version(dist)))
        except PackageNotFoundError:  # pragma: no cover - reported, not fatal
            rows.append((dist, "not installed"))
    try:
        import rasterio
        rows.append(("GDAL", rasterio.__gdal_version__))
    except Exception:
        pass
    cuda = torch.cuda.is_available()
    rows.append(("cuda available", str(cuda)))
    if cuda:
        for i in range(torch.cuda.device_count()):
            rows.append((f"cuda:{i}", torch.cuda.get_device_name(i)))
        rows.append(("cuda bf16", str(torch.cuda.is_bf16_supported())))
    rows.append(("cpu bf16 autocast", "True"))
    rows.append(("default device", "cuda" if cuda else "cpu"))
    rows.append(("torch threads", str(torch.get_num_threads())))
    rows.append(("cpu cores", str(os.cpu_count())))
    rows.append(("GDAL_CACHEMAX", os.environ.get("GDAL_CACHEMAX", "unset (roadmap extract uses 256 MB)")))
    table = Table(title="roadmap info", show_header=False)
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


# -------------------------------------------------------------------------------------------------------- models

@models_app.command("list")
def models_list():
    """Model variants (configs) and downloadable checkpoints."""
    from .registry import list_rows

    for row in list_rows():
        typer.echo(row)


@models_app.command("download")
def models_download(
    name: str = typer.Argument(..., help="Registry name, e.g. sam2.1_hiera_tiny.pt"),
    dest: Path = typer.Option(None, "--dest", help="Folder (default: $ROADMAP_HOME/checkpoints)."),
):
    """Download a checkpoint (resumable, sha256-verified)."""
    from .registry import download_weights

    path = download_weights(name, dest)
    typer.echo(str(path))


@datasets_app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="massachusetts or deepglobe"),
    root: Path = typer.Option(..., "--root", help="Folder to download and extract into."),
):
    """Download and extract a training dataset (resumable, checksummed, safe extraction)."""
    from .datasets import download_dataset

    path = download_dataset(name, root)
    typer.echo(str(path))


@datasets_app.command("from-vectors")
def datasets_from_vectors(
    scene: Path = typer.Argument(..., help="Georeferenced GeoTIFF."),
    roads: Path = typer.Argument(..., help="Road centre lines (GeoJSON / GPKG / any OGR vector, with a CRS)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder (images/ and labels/ are added to it)."),
    name: Optional[str] = typer.Option(None, "--name", help="File stem (default: the scene's)."),
    gsd: float = typer.Option(1.0, "--gsd", help="Ground resolution of the pairs in m/px (the model's)."),
    road_width_m: float = typer.Option(7.0, "--road-width-m", help="Label width (Massachusetts labels: ~7 m)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="1-based band indices, as for extract."),
    tile: int = typer.Option(1500, "--tile", help="Cut larger scenes into tiles of this many pixels."),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """Make image/label training pairs from a scene and its road vectors (for `train --dataset folder`)."""
    from .datasets import pairs_from_vectors

    pairs = pairs_from_vectors(scene, roads, out, name, gsd, road_width_m, bands, tile, overwrite)
    more = " ..." if len(pairs) > 5 else ""
    typer.echo(f"{len(pairs)} pair(s) in {out}: " + ", ".join(p.stem for p in pairs[:5]) + more)


# ------------------------------------------------------------------------------------------------------- extract

@app.command()
def extract(
    scene: Path = typer.Argument(..., help="GeoTIFF / COG to process."),
    output: Path = typer.Option(..., "-o", "--output", help="Road graph: .gpkg, .geojson or .graphml."),
    model: str = typer.Option(None, "--model", help="Variant name or checkpoint file (default: bundled model)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Checkpoint to load into --model."),
    bands: Optional[str] = typer.Option(None, "--bands", help="1-based band indices, e.g. 1,2,3."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile side in model pixels (multiple of 32)."),
    overlap: Optional[int] = typer.Option(None, "--overlap",
                                          help="Tile overlap in model pixels (default: a quarter of the tile, "
                                               "256 at 1024)."),
    batch_size: int = typer.Option(2, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16 (fp16 CUDA only)."),
    tta: bool = typer.Option(False, "--tta", help="Flip test-time augmentation (4x slower)."),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="Model ground resolution in m/px (default: model's)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Road probability threshold."),
    prob_out: Optional[Path] = typer.Option(None, "--prob-out", help="Write the probability raster (COG)."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out", help="Write the binary road mask (COG)."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="PNG quicklook of roads over the image."),
    to_crs: Optional[str] = typer.Option(None, "--to-crs", help="Output CRS (default: the scene's)."),
    min_spur_m: float = typer.Option(10.0, "--min-spur-m"),
    min_component_m: float = typer.Option(20.0, "--min-component-m"),
    simplify_m: float = typer.Option(1.0, "--simplify-m"),
    bridge_m: float = typer.Option(15.0, "--bridge-m", help="Max gap bridged between dead ends (0 = off)."),
    allow_pixel_coords: bool = typer.Option(False, "--allow-pixel-coords",
                                            help="Accept rasters without georeferencing."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the tile plan and a memory estimate."),
):
    """Extract the road graph of a scene."""
    from .extract import ExtractOptions, run_extract

    opts = ExtractOptions(
        scene=scene, output=output, model=model, weights=weights, bands=bands, tile=tile, overlap=overlap,
        batch_size=batch_size, device=device, precision=precision, tta=tta, gsd=gsd, threshold=threshold,
        prob_out=prob_out, mask_out=mask_out, preview=preview, to_crs=to_crs, min_spur_m=min_spur_m,
        min_component_m=min_component_m, simplify_m=simplify_m, bridge_m=bridge_m,
        allow_pixel_coords=allow_pixel_coords, overwrite=overwrite, resume=resume, dry_run=dry_run,
        quiet=_STATE.get("quiet", False),
    )
    run_extract(opts)


# --------------------------------------------------------------------------------------------------------- score

@app.command()
def score(
    pred: Path = typer.Argument(..., help="Prediction file or folder (masks or road vectors)."),
    gt: Path = typer.Argument(..., help="Ground-truth file or folder."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="For probability masks."),
    slack: int = typer.Option(0, "--slack", help="Relaxed P/R/F1 tolerance in pixels (0 = off)."),
    apls: bool = typer.Option(True, "--apls/--no-apls"),
    node_spacing_m: float = typer.Option(50.0, "--node-spacing-m"),
    snap_m: float = typer.Option(4.0, "--snap-m"),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="m/px for pixel-space inputs."),
    convention: str = typer.Option("spacenet", "--convention", help="spacenet or sat2graph."),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    csv_out: Optional[Path] = typer.Option(None, "--csv"),
):
    """Pixel metrics and APLS of predictions against ground truth."""
    from .score import run_score

    run_score(pred, gt, threshold=threshold, slack=slack, apls=apls, node_spacing_m=node_spacing_m,
              snap_m=snap_m, gsd=gsd, convention=convention, json_out=json_out, csv_out=csv_out)


# --------------------------------------------------------------------------------------------------------- train

@app.command()
def train(
    dataset: str = typer.Option(..., "--dataset", help="massachusetts, deepglobe or folder."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset folder."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Checkpoints and logs."),
    model: str = typer.Option("anchor-sam-t", "--model", help="Variant name or YAML."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with recipe overrides."),
    sam2_checkpoint: Optional[Path] = typer.Option(None, "--sam2-checkpoint"),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune from a roadmap checkpoint (its config)."),
    color_aug: Optional[str] = typer.Option(None, "--color-aug", help="basic (paper) or strong."),
    scale_aug: Optional[str] = typer.Option(None, "--scale-aug",
                                            help="MIN,MAX random zoom per crop, e.g. 1,2.5 (default: off)."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    crop: Optional[int] = typer.Option(None, "--crop", help="Training crop side (default 1024)."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch"),
    val_names: Optional[str] = typer.Option(None, "--val", help="Comma list of stems held out for validation."),
    select_metric: Optional[str] = typer.Option(None, "--select", help="f1, iou or apls (validation)."),
    device: str = typer.Option("auto", "--device"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    resume: bool = typer.Option(False, "--resume"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in total."),
):
    """Train or fine-tune Anchor-SAM (BCE + Dice, AdamW, cosine)."""
    from .train import TrainOptions, run_train

    overrides = {k: v for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size, crop=crop,
                                       steps_per_epoch=steps_per_epoch, select=select_metric, amp=amp, seed=seed,
                                       max_steps=max_steps, color_aug=color_aug,
                                       scale_aug=scale_aug).items()
                 if v is not None}
    run_train(TrainOptions(dataset=dataset, root=root, out=out, model=model, config=config,
                           sam2_checkpoint=sam2_checkpoint, init=init, val_names=val_names, device=device, resume=resume,
                           overrides=overrides))


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point: runs the app under the error convention."""
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="roadmap")
        return rc if isinstance(rc, int) else 0
    except UserError as e:
        if _STATE["debug"]:
            import traceback
            traceback.print_exc()
        print(f"roadmap: error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("roadmap: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("roadmap: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors and bugs
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):  # click usage errors
            e.show()
            return e.exit_code
        if _STATE["debug"]:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"roadmap: internal error: {type(e).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _entry():  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
