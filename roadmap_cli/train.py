"""``roadmap train``: BCE + Dice, AdamW, cosine to 1e-6, AMP on CUDA, exact resume, DDP via torchrun."""
from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .errors import UserError
from .io_utils import atomic_open
from .nn.checkpoint import load_sam2_encoder, load_state, read_checkpoint, save_checkpoint
from .nn.config import ModelConfig, load_variant
from .nn.model import build_model

log = logging.getLogger(__name__)

RECIPE = {  # the paper's recipe; every key can be overridden by --config YAML or a flag
    "epochs": 200, "batch_size": 2, "weight_decay": 1e-4, "min_lr": 1e-6, "bce_weight": 1.0, "dice_weight": 1.0,
    "grad_clip": 1.0, "amp": True, "seed": 6, "crop": None, "steps_per_epoch": None, "select": "f1",
    "max_steps": None, "warmup_steps": 100, "val_tile": 1024, "val_overlap": 256,
    "ckpt_every": 50, "color_aug": "basic", "scale_aug": None,
}
LR = {"massachusetts": 2e-4, "deepglobe": 1e-4, "folder": 1e-4}


@dataclass
class TrainOptions:
    dataset: str
    root: Path | None
    out: Path
    model: str = "anchor-sam-t"
    config: Path | None = None
    sam2_checkpoint: Path | None = None
    init: Path | None = None
    val_names: str | None = None
    device: str = "auto"
    resume: bool = False
    overrides: dict = field(default_factory=dict)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, bce_w: float = 1.0, dice_w: float = 1.0,
                  smooth: float = 1e-5) -> torch.Tensor:
    """BCE-with-logits (mean) + soft Dice over the whole batch as one volume (the paper's loss)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)
    return bce_w * bce + dice_w * dice


def lr_at(step: int, total: int, base: float, min_lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine from ``base`` to ``min_lr`` at ``total`` steps (per-step schedule)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t))


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _rng_state() -> dict:
    # the data stream is a pure function of (seed, epoch, index); only torch's generators carry state
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _load_recipe(opts: TrainOptions) -> dict:
    recipe = dict(RECIPE)
    recipe["lr"] = LR.get(opts.dataset.lower(), 1e-4)
    if opts.config:
        if not Path(opts.config).is_file():
            raise UserError(f"config {opts.config} not found")
        extra = yaml.safe_load(Path(opts.config).read_text()) or {}
        unknown = set(extra) - set(recipe)
        if unknown:
            raise UserError(f"config {opts.config}: unknown keys {sorted(unknown)}")
        recipe.update(extra)
    recipe.update(opts.overrides)
    from .datasets import parse_scale_aug

    zoom = parse_scale_aug(recipe["scale_aug"])  # checked before anything is written
    recipe["scale_aug"] = list(zoom) if zoom else None
    return recipe


def evaluate(model, pairs, device, recipe, apls: bool = True) -> dict:
    """Validation with the ``score`` metrics on whole images (sliding window)."""
    from .datasets import read_image, read_label
    from .infer import Predictor, predict_array
    from .metrics import PixelCounts

    model.eval()
    pred = Predictor(model, device, None)
    counts = PixelCounts()
    apls_scores = []
    for p in pairs:
        img, gt = read_image(p.image), read_label(p.label)
        prob = predict_array(pred, img, recipe["val_tile"], recipe["val_overlap"], 1)
        counts.add(prob >= 0.5, gt)
        if apls:
            from .apls import apls_from_masks
            apls_scores.append(apls_from_masks(gt, prob >= 0.5, gsd=model.cfg.gsd))
    out = counts.summary()
    if apls:
        out["apls"] = float(np.mean(apls_scores)) if apls_scores else 0.0
    model.train()
    return out


def run_train(opts: TrainOptions) -> Path:
    from .datasets import RoadDataset, build_pairs
    from .infer import resolve_device

    recipe = _load_recipe(opts)
    world, rank, local = _dist_info()
    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        backend = "nccl" if torch.cuda.is_available() and opts.device != "cpu" else "gloo"
        dist.init_process_group(backend)
        device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
        if backend == "nccl":
            torch.cuda.set_device(device)
    else:
        device = resolve_device(opts.device)
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    out = Path(opts.out)
    last = out / "last.pt"
    if last.exists() and not opts.resume:
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    if opts.resume and not last.exists():
        raise UserError(f"--resume: no {last} to resume from")

    train_pairs = build_pairs(opts.dataset, opts.root, "train", seed, opts.val_names)
    val_pairs = build_pairs(opts.dataset, opts.root, "valid", seed, opts.val_names)
    if not val_pairs:
        raise UserError("the validation split is empty")
    overlap_names = {p.stem for p in train_pairs} & {p.stem for p in val_pairs}
    if overlap_names:
        raise UserError(f"validation images also in training: {sorted(overlap_names)[:3]}")
    data = RoadDataset(train_pairs, crop=recipe["crop"], seed=seed, color_aug=recipe["color_aug"],
                       scale_aug=recipe["scale_aug"])
    if rank == 0:  # only once the data checked out, so a bad dataset leaves no empty run folder behind
        out.mkdir(parents=True, exist_ok=True)

    if opts.resume:
        ck = read_checkpoint(last)
        cfg = ModelConfig.from_dict(ck["model_config"])
    elif opts.init:
        init_ck = read_checkpoint(opts.init)
        cfg = ModelConfig.from_dict(init_ck["model_config"])
    else:
        cfg = load_variant(opts.model)
    model = build_model(cfg)
    if opts.init and not opts.resume:  # fine-tune a roadmap checkpoint (weights only, fresh optimizer)
        load_state(model, init_ck["model"], opts.init)
    if opts.sam2_checkpoint and not opts.resume:
        n = load_sam2_encoder(model, opts.sam2_checkpoint)
        log.info("loaded %d SAM2 encoder tensors from %s", n, opts.sam2_checkpoint)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    use_amp = bool(recipe["amp"]) and device.type == "cuda"
    amp_dtype = torch.float16 if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    bs = int(recipe["batch_size"])
    per_rank = len(data) // world if distributed else len(data)
    steps_per_epoch = int(recipe["steps_per_epoch"] or max(1, math.ceil(per_rank / bs)))
    epochs = int(recipe["epochs"])
    total = epochs * steps_per_epoch
    if recipe["max_steps"]:
        total = min(total, int(recipe["max_steps"]))
    warmup = min(int(recipe["warmup_steps"]), total // 10)

    step, epoch, best, best_epoch = 0, 0, -1.0, -1
    if opts.resume:
        load_state(model, ck["model"], last)
        opt.load_state_dict(ck["optimizer"])
        if use_amp and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        step, epoch, best, best_epoch = ck["step"], ck["epoch"], ck["best"], ck["best_epoch"]
        log.info("resumed at epoch %d step %d", epoch, step)

    ddp_model = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    metrics_csv = out / "metrics.csv"

    def save_last():
        if rank != 0:
            return
        save_checkpoint(last, model, {
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if use_amp else {},
            "rng": _rng_state(), "step": step, "epoch": epoch, "best": best, "best_epoch": best_epoch,
            "recipe": {k: v for k, v in recipe.items() if v is not None},
        })

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=rank != 0,
                        transient=False)
    t0 = time.time()
    with progress:
        task = progress.add_task("train", total=total, completed=step, info="")
        while step < total and epoch < epochs:
            order = np.random.default_rng([seed, epoch]).permutation(len(data))
            if distributed:
                order = order[rank::world][:per_rank]
            start = step - epoch * steps_per_epoch
            for s in range(start, steps_per_epoch):
                if step >= total:
                    break
                draws = [s * bs + j for j in range(bs)]
                items = [data.get(int(order[d % len(order)]), epoch, d) for d in draws]
                x = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2).to(device)
                y = torch.from_numpy(np.stack([b for _, b in items]))[:, None].to(device)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, recipe["lr"], recipe["min_lr"], warmup)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = ddp_model(model.normalize(x))
                loss = bce_dice_loss(logits, y, recipe["bce_weight"], recipe["dice_weight"])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
                scaler.step(opt)
                scaler.update()
                step += 1
                progress.update(task, advance=1, info=f"epoch {epoch} loss {loss.item():.4f}")
                if rank == 0 and step % 10 == 0:
                    log.info("step %d loss %.4f lr %.2e", step, loss.item(), opt.param_groups[0]["lr"])
                if recipe["ckpt_every"] and step % int(recipe["ckpt_every"]) == 0 and step < total:
                    save_last()
            if step >= (epoch + 1) * steps_per_epoch or step >= total:
                if rank == 0:
                    m = {k: float(v) for k, v in evaluate(model, val_pairs, device, recipe).items()}
                    key = recipe["select"]
                    if key not in m:
                        raise UserError(f"--select {key}: not a validation metric ({', '.join(m)})")
                    row = {"epoch": epoch, "step": step, "loss": round(loss.item(), 6),
                           "lr": opt.param_groups[0]["lr"], "time_s": round(time.time() - t0, 1),
                           **{k: round(v, 6) for k, v in m.items()}}
                    new = not metrics_csv.exists()
                    with open(metrics_csv, "a", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(row))
                        if new:
                            w.writeheader()
                        w.writerow(row)
                    if m[key] > best:
                        best, best_epoch = m[key], epoch
                        save_checkpoint(out / "best.pt", model, {"epoch": epoch, "step": step,
                                                                 "val_metrics": m, "select": key})
                    progress.console.print(f"epoch {epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in m.items()))
                epoch += 1
                save_last()
    if distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        with atomic_open(out / "summary.yaml") as f:
            yaml.safe_dump({"best_epoch": best_epoch, f"best_{recipe['select']}": float(best), "steps": step,
                            "train_time_s": round(time.time() - t0, 1), "device": str(device),
                            "train": [p.stem for p in train_pairs], "val": [p.stem for p in val_pairs]}, f)
    return out / "best.pt"
