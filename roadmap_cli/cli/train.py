"""``roadmap train``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options
from .render import reporter
from .state import STATE

# flags that override a recipe field of the same name (``select`` comes from ``--select``)
_RECIPE_FLAGS = ("epochs", "lr", "batch_size", "crop", "steps_per_epoch", "select", "amp", "seed", "max_steps",
                 "color_aug", "scale_aug")


def train(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="massachusetts, deepglobe, folder or mix (--root SOURCES.yaml)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset folder (mix: its sources YAML)."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Checkpoints and logs."),
    model: str = typer.Option("anchor-sam-t", "--model", help="Variant name or YAML."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with recipe overrides."),
    sam2_checkpoint: Optional[Path] = typer.Option(None, "--sam2-checkpoint",
                                                   help="Official SAM2/SAM2.1 checkpoint for the encoder (see roadmap "
                                                        "models download)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune from a roadmap checkpoint (its config)."),
    color_aug: Optional[str] = typer.Option(None, "--color-aug", help="basic (paper) or strong."),
    scale_aug: Optional[str] = typer.Option(None, "--scale-aug",
                                            help="MIN,MAX random zoom per crop, e.g. 1,2.5 (default: off)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default 200)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 2e-4 Massachusetts, 1e-4 "
                                                           "otherwise)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (default 2)."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Random training crop side in pixels (default: fixed "
                                                             "1024 px patches)."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch",
                                                  help="Steps per epoch (default: one pass over the samples)."),
    val_names: Optional[str] = typer.Option(None, "--val", help="Comma list of stems held out for validation."),
    select: Optional[str] = typer.Option(None, "--select", help="f1, iou, apls or sources_f1 (validation)."),
    device: str = options.DEVICE,
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="fp16 autocast on CUDA (default: on)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 6)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in total."),
):
    """Train or fine-tune Anchor-SAM (BCE + Dice, AdamW, cosine)."""
    from ..checks import check_train_paths

    check_train_paths(root, config, init, sam2_checkpoint)  # before torch is imported
    from ..settings import dist_info
    from ..train import TrainOptions, run_train

    params = ctx.params
    overrides = {k: params[k] for k in _RECIPE_FLAGS if params[k] is not None}
    opts = TrainOptions(**{k: v for k, v in params.items() if k not in _RECIPE_FLAGS}, overrides=overrides)
    with reporter(STATE.quiet, enabled=dist_info().rank == 0) as rep:
        run_train(opts, rep)
