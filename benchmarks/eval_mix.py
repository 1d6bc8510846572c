"""Score a road model on every split of a mix manifest, per source, and on the Massachusetts test tiles.

Validation and test pairs are brought to the model's grid with centre-line labels exactly as training sees them
(`roadmap_cli.data.mix.on_grid`) and predicted with extract's sliding window (tile and overlap of the model's
defaults, blending), then scored like `roadmap train`'s validation: pooled pixel precision/recall/F1 per source and
the mean APLS of the mask graphs (SpaceNet rules, 1 m). Massachusetts test = the movehack copies of Mnih's
10378780_15 (official test) and 10078660_15 (official train; not a cskanani tile), 1024 px images enlarged to their
1500 px labels (1 m). The example chip is scored through the CLI by `eval_model.py`.

    python benchmarks/eval_mix.py --model runs/mix1/best.pt --json eval_mix.json
    python benchmarks/eval_mix.py --model roadmap_cli/models/roadmap-compact.pt --splits valid
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roadmap_cli.data.mix import centre_line_label, load_mix, on_grid  # noqa: E402
from roadmap_cli.infer.predict import Predictor, predict_array  # noqa: E402
from roadmap_cli.io.images import read_image, read_label  # noqa: E402
from roadmap_cli.metrics.apls import apls_from_masks  # noqa: E402
from roadmap_cli.metrics.pixel import PixelCounts  # noqa: E402
from roadmap_cli.weights import load_model  # noqa: E402

MOVEHACK = ROOT.parent / "shared" / "data" / "massachusetts-roads-movehack"
MASS_TEST = ("10378780_15", "10078660_15")


def movehack_pairs():
    for name in MASS_TEST:
        img = Image.open(MOVEHACK / "sat_1024" / f"{name}.png").convert("RGB").resize((1500, 1500), Image.BILINEAR)
        lab = np.asarray(Image.open(MOVEHACK / "map_1500" / f"{name}.tif")) > 127
        yield name, np.asarray(img), lab


def score(items, pred, tile, overlap, gsd):
    counts, apls, t = PixelCounts(), [], time.perf_counter()
    for _, img, lab in items:
        prob = predict_array(pred, img, tile, overlap, 2)
        counts.add(prob >= 0.5, lab)
        apls.append(apls_from_masks(lab, prob >= 0.5, gsd=gsd))
    s = counts.summary()
    return {"n": len(apls), "precision": round(s["precision"], 4), "recall": round(s["recall"], 4),
            "f1": round(s["f1"], 4), "apls": round(float(np.mean(apls)), 4), "s": round(time.perf_counter() - t, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "roadmap_cli" / "models" / "roadmap-compact.pt"))
    ap.add_argument("--mix", default=str(ROOT / "benchmarks" / "mixes" / "shared.yaml"))
    ap.add_argument("--splits", default="valid,test")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not MOVEHACK.is_dir():
        raise SystemExit(f"{MOVEHACK} not found (needs ../shared/data)")
    torch.manual_seed(0)
    model = load_model(a.model, device="cpu")
    cfg = model.cfg
    tile = cfg.tile
    overlap = tile // 8  # extract's default
    pred = Predictor(model, torch.device("cpu"), None)
    mix = load_mix(Path(a.mix))
    res = {"model": a.model, "tile": tile, "overlap": overlap}
    for split in a.splits.split(","):
        rows = {}
        for src in mix.sources:
            pairs = src.split(split)
            if not pairs:
                continue

            def items(pairs=pairs):
                for p in pairs:
                    img, lab = on_grid(read_image(p.image), read_label(p.label)[0], p.gsd, cfg.gsd,
                                       mix.road_width_m)
                    yield p.stem, img, lab
            rows[src.name] = score(items(), pred, tile, overlap, cfg.gsd)
        if split == "test":
            mh = ((n, i, centre_line_label(lab, 1.0, mix.road_width_m / cfg.gsd)) for n, i, lab in movehack_pairs())
            rows["massachusetts"] = score(mh, pred, tile, overlap, cfg.gsd)
        rows["mean_f1"] = round(float(np.mean([r["f1"] for r in rows.values()])), 4)
        res[split] = rows
        print(split, json.dumps(rows), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
