"""``roadmap train`` as a library: BCE + Dice, AdamW, cosine to 1e-6, AMP on CUDA, exact resume, DDP via torchrun.

:func:`run_train` reads as its steps: recipe -> data -> model -> optimiser (and resume) -> epochs of steps, each
epoch validated and checkpointed -> summary.  Nothing here prints: progress and validation lines go to a
:class:`~roadmap_cli.progress.Reporter`.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from . import settings
from .data.augment import parse_scale_aug
from .data.dataset import RoadDataset
from .data.mix import load_mix, on_grid
from .data.sources import Pair, build_pairs, folder_pairs_or_mass
from .errors import InputError
from .infer.device import resolve_device
from .infer.predict import Predictor, predict_array
from .io.atomic import atomic_open, run_lock
from .io.guard import Inputs, guard_outputs
from .io.images import read_image, read_label
from .metrics.apls import apls_from_masks
from .metrics.pixel import PixelCounts
from .nn.model import AnchorSAM, build_model
from .progress import SILENT, Reporter
from .weights import load_sam2_encoder, load_variant, model_from_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

LR = {"massachusetts": 2e-4, "deepglobe": 1e-4, "folder": 1e-4, "mix": 1e-4}
# what evaluate() returns (``sources_f1``: the mean of each mix source's F1, for --dataset mix)
SELECT_METRICS = ("f1", "iou", "precision", "recall", "mean_f1", "mean_iou", "apls", "sources_f1")


def _flag(key: str) -> str:
    """The CLI flag of a recipe key (config keys without a flag are named as keys)."""
    flags = {"epochs", "lr", "batch_size", "crop", "steps_per_epoch", "max_steps", "seed"}
    return "--" + key.replace("_", "-") if key in flags else f"recipe key {key}"


@dataclass
class Recipe:
    """The training recipe; the defaults are the paper's.  Every field can be set by ``--config YAML`` or a flag."""

    epochs: int = 200
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-4
    min_lr: float = 1e-6
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    grad_clip: float = 1.0
    amp: bool = True
    seed: int = 6
    crop: int | None = None
    steps_per_epoch: int | None = None
    select: str = "f1"
    max_steps: int | None = None
    warmup_steps: int = 100
    val_tile: int = 1024
    val_overlap: int = 256
    ckpt_every: int = 50
    color_aug: str = "basic"
    scale_aug: list | None = None

    @classmethod
    def load(cls, dataset: str, config: Path | None = None, overrides: dict | None = None) -> "Recipe":
        """The dataset's default (its learning rate), then the YAML ``config``, then ``overrides``; checked before
        anything is written."""
        values = {"lr": LR.get(dataset.lower(), 1e-4)}
        if config:
            if not Path(config).is_file():
                raise InputError(f"config {config} not found")
            try:
                extra = yaml.safe_load(Path(config).read_text()) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise InputError(f"config {config} is not plain YAML: {' '.join(str(e).split())[:160]}") from e
            if not isinstance(extra, dict):
                raise InputError(f"config {config} must be a mapping of recipe keys to values")
            unknown = set(extra) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise InputError(f"config {config}: unknown keys {sorted(map(str, unknown))}")
            values.update(extra)
        values.update(overrides or {})
        zoom = parse_scale_aug(values.get("scale_aug"))
        values["scale_aug"] = list(zoom) if zoom else None
        recipe = cls(**values)
        recipe.check()
        return recipe

    def check(self) -> None:
        """Refuse values that cannot train (before any file is written)."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "val_tile": self.val_tile,
                    "crop": self.crop, "steps_per_epoch": self.steps_per_epoch, "max_steps": self.max_steps}
        for key, value in positive.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not (0 < value < float("inf"))):
                raise InputError(f"{_flag(key)} must be a positive number, got {value!r}")
        for key in ("epochs", "batch_size", "val_tile", "steps_per_epoch", "max_steps", "warmup_steps", "seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"{_flag(key)} must be a whole number, got {value!r}")
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 32 or self.crop % 32):
            raise InputError(f"--crop must be a multiple of 32 pixels (at least 32), got {self.crop!r}")
        for key in ("weight_decay", "min_lr", "bce_weight", "dice_weight", "grad_clip", "warmup_steps",
                    "val_overlap", "ckpt_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
                raise InputError(f"{_flag(key)} must be a number >= 0, got {value!r}")
        if self.select not in SELECT_METRICS:
            raise InputError(f"--select {self.select}: not a validation metric ({', '.join(SELECT_METRICS)})")

    def to_dict(self) -> dict:
        """The recipe as stored in checkpoints (unset fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class TrainOptions:
    """What ``roadmap train`` takes besides the recipe (``overrides`` holds the recipe flags)."""

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
    validate: bool = True  # False: no validation split; the run's final weights are written as OUT/final.pt


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


def evaluate(model, pairs: list[Pair], device, recipe: Recipe, apls: bool = True, road_width_m: float = 7.0) -> dict:
    """Validation with the ``score`` metrics on whole images (sliding window).  Pairs of a mix are scored on the
    model's grid against their centre-line labels; each source's F1 is reported too (``f1_NAME``), and their mean
    (``sources_f1``), so that a small source counts as much as a large one."""
    model.eval()
    pred = Predictor(model, device, None)
    counts = PixelCounts()
    per_source: dict[str, PixelCounts] = {}
    apls_scores = []
    for p in pairs:
        img, gt = read_image(p.image), read_label(p.label)[0]
        if p.gsd is not None:
            img, gt = on_grid(img, gt, p.gsd, model.cfg.gsd, road_width_m)
        prob = predict_array(pred, img, recipe.val_tile, recipe.val_overlap, 1)
        counts.add(prob >= 0.5, gt)
        if p.source is not None:
            per_source.setdefault(p.source, PixelCounts()).add(prob >= 0.5, gt)
        if apls:
            apls_scores.append(apls_from_masks(gt, prob >= 0.5, gsd=model.cfg.gsd))
    out = counts.summary()
    if per_source:
        f1s = {f"f1_{name}": c.summary()["f1"] for name, c in per_source.items()}
        out.update(f1s)
        out["sources_f1"] = float(np.mean(list(f1s.values())))
    if apls:
        out["apls"] = float(np.mean(apls_scores)) if apls_scores else 0.0
    model.train()
    return out


# --------------------------------------------------------------------------------------------------- steps

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


@dataclass
class _Placement:
    device: torch.device
    world: int
    rank: int

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _place(opts: TrainOptions) -> _Placement:
    """The device, and the process group under torchrun."""
    info = settings.dist_info()
    if info.world <= 1:
        return _Placement(resolve_device(opts.device), 1, 0)
    import torch.distributed as dist
    backend = "nccl" if torch.cuda.is_available() and opts.device != "cpu" else "gloo"
    dist.init_process_group(backend)
    device = torch.device(f"cuda:{info.local_rank}") if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    return _Placement(device, info.world, info.rank)


RUN_FILES = ("last.pt", "best.pt", "final.pt", "metrics.csv", "summary.yaml")  # what a run writes into --out


def _check_run_folder(opts: TrainOptions) -> Path:
    out = Path(opts.out)
    ins = Inputs({"--config {}": opts.config, "--sam2-checkpoint {}": opts.sam2_checkpoint, "--init {}": opts.init})
    if opts.root is not None and Path(opts.root).is_file():  # a mix manifest
        ins.add("--root {}", opts.root)
    guard_outputs({f"--out ({name})": out / name for name in RUN_FILES}, ins)
    last = out / "last.pt"
    if last.exists() and not opts.resume:
        raise InputError(f"{opts.out} already holds a run (last.pt); pass --resume to continue it or choose another "
                         "--out")
    if opts.resume and not last.exists():
        raise InputError(f"--resume: no {last} to resume from")
    return last


def _load_data(opts: TrainOptions, recipe: Recipe, grid_gsd: float) -> tuple[RoadDataset, list[Pair], list[Pair]]:
    mix = None
    if opts.dataset.lower() == "mix":
        if opts.root is None:
            raise InputError("--dataset mix needs --root SOURCES.yaml")
        mix = load_mix(opts.root)
        if recipe.crop is None:
            raise InputError("--dataset mix trains on random crops: set --crop (e.g. 256)")
    elif recipe.select == "sources_f1":
        raise InputError("--select sources_f1 needs --dataset mix (it is the mean of the sources' F1)")
    if not opts.validate:  # every pair trains (roadmap adapt scores a hold-out of its own, outside the run)
        train_pairs, val_pairs = folder_pairs_or_mass(opts.root), []
    elif mix:  # the manifest read once
        train_pairs, val_pairs = mix.split("train"), mix.split("valid")
    else:
        train_pairs = build_pairs(opts.dataset, opts.root, "train", recipe.seed, opts.val_names)
        val_pairs = build_pairs(opts.dataset, opts.root, "valid", recipe.seed, opts.val_names)
    if not val_pairs and opts.validate:
        raise InputError("the validation split is empty")
    overlap_names = {(p.source, p.stem) for p in train_pairs} & {(p.source, p.stem) for p in val_pairs}
    if overlap_names:
        raise InputError(f"validation images also in training: {sorted(n for _, n in overlap_names)[:3]}")
    data = RoadDataset(train_pairs, crop=recipe.crop, seed=recipe.seed, color_aug=recipe.color_aug,
                       scale_aug=recipe.scale_aug, grid_gsd=grid_gsd,
                       road_width_m=mix.road_width_m if mix else 7.0,
                       weights=mix.weights if mix else None)
    return data, train_pairs, val_pairs


def _build_model(opts: TrainOptions, last: Path) -> tuple[AnchorSAM, dict | None]:
    """The model to train: the run's own last checkpoint (resume: its optimiser and counters are returned too), a
    fine-tuning start (``--init``, weights only), or a variant (optionally with SAM2 encoder weights)."""
    if opts.resume:
        return model_from_checkpoint(last)
    if opts.init:
        model, _ = model_from_checkpoint(opts.init)
    else:
        model = build_model(load_variant(opts.model))
    if opts.sam2_checkpoint:
        n = load_sam2_encoder(model, opts.sam2_checkpoint)
        log.info("loaded %d SAM2 encoder tensors from %s", n, opts.sam2_checkpoint)
    return model, None


@dataclass
class _State:
    """Everything a checkpoint must carry to resume exactly."""

    step: int = 0
    epoch: int = 0
    best: float = -1.0
    best_epoch: int = -1
    last_loss: float = float("nan")  # the loss of the last step (logged with the epoch's validation)


def run_train(opts: TrainOptions, reporter: Reporter = SILENT) -> Path:
    """Train (or fine-tune, or resume) and return the path of the best checkpoint (``OUT/best.pt``).  The run holds
    ``OUT.roadmap-lock`` (rank 0): a second run into the same ``--out`` is refused at once, naming this one's pid."""
    if settings.dist_info().rank != 0:
        return _run_train(opts, reporter)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        return _run_train(opts, reporter)


def _run_train(opts: TrainOptions, reporter: Reporter = SILENT) -> Path:
    recipe = Recipe.load(opts.dataset, opts.config, opts.overrides)
    place = _place(opts)
    torch.manual_seed(recipe.seed)
    out = Path(opts.out)
    last = _check_run_folder(opts)
    model, resume_ck = _build_model(opts, last)  # before the data: a mix is brought to the model's grid
    data, train_pairs, val_pairs = _load_data(opts, recipe, model.cfg.gsd)
    if place.rank == 0:  # only once the data checked out, so a bad dataset leaves no empty run folder behind
        out.mkdir(parents=True, exist_ok=True)
    model.to(place.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    use_amp = bool(recipe.amp) and place.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    bs = int(recipe.batch_size)
    per_rank = len(data) // place.world if place.distributed else len(data)
    steps_per_epoch = int(recipe.steps_per_epoch or max(1, math.ceil(per_rank / bs)))
    total = int(recipe.epochs) * steps_per_epoch
    if recipe.max_steps:
        total = min(total, int(recipe.max_steps))
    warmup = min(int(recipe.warmup_steps), total // 10)

    state = _State()
    if resume_ck is not None:
        opt.load_state_dict(resume_ck["optimizer"])
        if use_amp and resume_ck.get("scaler"):
            scaler.load_state_dict(resume_ck["scaler"])
        _set_rng_state(resume_ck["rng"])
        state = _State(resume_ck["step"], resume_ck["epoch"], resume_ck["best"], resume_ck["best_epoch"],
                       float(resume_ck.get("last_loss", float("nan"))))
        log.info("resumed at epoch %d step %d", state.epoch, state.step)

    ddp_model = model
    if place.distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[place.device.index] if place.device.type == "cuda" else None)

    def save_last():
        if place.rank != 0:
            return
        save_checkpoint(last, model, {
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if use_amp else {},
            "rng": _rng_state(), "step": state.step, "epoch": state.epoch, "best": state.best,
            "best_epoch": state.best_epoch, "last_loss": state.last_loss, "recipe": recipe.to_dict(),
        })

    def train_step(items) -> torch.Tensor:
        x = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2).to(place.device)
        y = torch.from_numpy(np.stack([b for _, b in items]))[:, None].to(place.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(state.step, total, recipe.lr, recipe.min_lr, warmup)
        with torch.autocast(place.device.type, dtype=torch.float16 if use_amp else None, enabled=use_amp):
            logits = ddp_model(model.normalize(x))
        loss = bce_dice_loss(logits, y, recipe.bce_weight, recipe.dice_weight)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        scaler.step(opt)
        scaler.update()
        return loss

    def validate() -> None:
        m = {k: float(v) for k, v in evaluate(model, val_pairs, place.device, recipe,
                                              road_width_m=data.road_width_m).items()}
        key = recipe.select
        if key not in m:
            raise InputError(f"--select {key}: not a validation metric ({', '.join(m)})")
        row = {"epoch": state.epoch, "step": state.step, "loss": round(state.last_loss, 6),
               "lr": opt.param_groups[0]["lr"], "time_s": round(time.time() - t0, 1),
               **{k: round(v, 6) for k, v in m.items()}}
        _append_metrics(out / "metrics.csv", row)
        if m[key] > state.best:
            state.best, state.best_epoch = m[key], state.epoch
            save_checkpoint(out / "best.pt", model, {"epoch": state.epoch, "step": state.step, "val_metrics": m,
                                                     "select": key})
        reporter.message(f"epoch {state.epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in m.items()))

    t0 = time.time()
    reporter.start("train", total, state.step)
    while state.step < total and state.epoch < recipe.epochs:
        order = np.random.default_rng([recipe.seed, state.epoch]).permutation(len(data))
        if place.distributed:
            order = order[place.rank::place.world][:per_rank]
        for s in range(state.step - state.epoch * steps_per_epoch, steps_per_epoch):
            if state.step >= total:
                break
            draws = [s * bs + j for j in range(bs)]
            loss = train_step([data.get(int(order[d % len(order)]), state.epoch, d) for d in draws])
            state.step += 1
            state.last_loss = loss.item()
            reporter.advance("train", 1, f"epoch {state.epoch} loss {state.last_loss:.4f}")
            if place.rank == 0 and state.step % 10 == 0:
                log.info("step %d loss %.4f lr %.2e", state.step, state.last_loss, opt.param_groups[0]["lr"])
            if recipe.ckpt_every and state.step % int(recipe.ckpt_every) == 0 and state.step < total:
                save_last()
        if state.step >= (state.epoch + 1) * steps_per_epoch or state.step >= total:
            if place.rank == 0 and opts.validate:
                validate()  # after a resume at the epoch's end too: the step loop may not have run
            state.epoch += 1
            save_last()
    reporter.close()
    if place.distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if place.rank == 0:
        _write_summary(out, recipe, state, time.time() - t0, place.device, train_pairs, val_pairs)
    if not opts.validate:
        final = out / "final.pt"
        if place.rank == 0:
            save_checkpoint(final, model, {"step": state.step, "recipe": recipe.to_dict()})
        return final
    return out / "best.pt"


def _append_metrics(path: Path, row: dict) -> None:
    """Add an epoch's row, replacing any row of that epoch or later (a run killed after writing its row and before
    its checkpoint validates that epoch again on resume); the file is rewritten atomically."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) < row["epoch"]]
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerows(rows + [row])


def _write_summary(out: Path, recipe: Recipe, state: _State, seconds: float, device, train_pairs, val_pairs):
    with atomic_open(out / "summary.yaml") as f:
        yaml.safe_dump({"best_epoch": state.best_epoch, f"best_{recipe.select}": float(state.best),
                        "steps": state.step, "train_time_s": round(seconds, 1), "device": str(device),
                        "train": [p.stem for p in train_pairs], "val": [p.stem for p in val_pairs]}, f)
