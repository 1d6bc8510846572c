"""Training step time of roadmap-compact with the reference and the fused deformable sampling (what `roadmap adapt`
and `roadmap train` spend their CPU time on), alternating the two paths in one run.

    python benchmarks/bench_train_step.py [--batch 4] [--crop 256] [--rounds 3] [--device cuda --precision fp16]

One step = forward, BCE loss, backward, AdamW update, train mode, from the bundled weights; fp32 by default, or under
autocast as ``roadmap train --amp`` runs it (fp16 with loss scaling, or bf16).  Prints the best seconds per step of
each path (the first round is a warm-up) and, on CUDA, the peak GPU memory.
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
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[a.precision]
    m = load_model("roadmap-compact").to(dev).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    x = torch.randn(a.batch, 3, a.crop, a.crop, device=dev)
    y = (torch.rand(a.batch, 1, a.crop, a.crop, device=dev) > 0.9).float()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    res = {}
    for rnd in range(a.rounds):
        for path in ("reference", "auto"):
            os.environ["ROADMAP_DEFORM"] = path
            sync()
            t = time.perf_counter()
            for _ in range(3):
                with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                    logits = m(x)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            sync()
            if rnd:
                res.setdefault(path, []).append((time.perf_counter() - t) / 3)
    os.environ.pop("ROADMAP_DEFORM", None)
    out = {f"{k}_s_per_step": round(min(v), 4) for k, v in res.items()}
    out.update({"batch": a.batch, "crop": a.crop, "device": str(dev), "precision": a.precision,
                "threads": torch.get_num_threads()})
    if dev.type == "cuda":
        out["peak_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
