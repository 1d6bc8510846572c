"""Training step time of roadmap-compact with the reference and the fused deformable sampling (what `roadmap adapt`
and `roadmap train` spend their CPU time on), alternating the two paths in one run.

    python benchmarks/bench_train_step.py [--batch 4] [--crop 256] [--rounds 3]

One step = forward, BCE loss, backward, AdamW update, fp32, train mode, from the bundled weights.  Prints the best
seconds per step of each path (the first round is a warm-up).
"""
import argparse
import json
import os
import time

import torch

from roadmap_cli.weights import load_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    m = load_model("roadmap-compact").train()
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x = torch.randn(a.batch, 3, a.crop, a.crop)
    y = (torch.rand(a.batch, 1, a.crop, a.crop) > 0.9).float()
    res = {}
    for rnd in range(a.rounds):
        for path in ("reference", "auto"):
            os.environ["ROADMAP_DEFORM"] = path
            t = time.perf_counter()
            for _ in range(3):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if rnd:
                res.setdefault(path, []).append((time.perf_counter() - t) / 3)
    out = {f"{k}_s_per_step": round(min(v), 3) for k, v in res.items()}
    out.update({"batch": a.batch, "crop": a.crop, "threads": torch.get_num_threads()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
