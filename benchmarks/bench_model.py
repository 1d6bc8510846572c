"""Model benchmark: parameters, FLOPs (thop-style 2xMACs as in the paper, and the true count), forward time per
tile in fp32 / bf16 / fp16 on the current device, and peak memory of the pure-PyTorch DCNv3 in decoder block 1.

    python benchmarks/bench_model.py                       # all variants' counts, timing for T at 1024 on CPU
    python benchmarks/bench_model.py --time t,roadmap-compact --size 1024 --device cuda

Each timed row gives seconds per tile for the reference deformable sampling (``ROADMAP_DEFORM=reference``, the
pure-PyTorch ops) and the automatic fused path, measured alternately in the same run; the model's achieved GFLOP/s
(torch's true FLOP count of convs, linears and attention over the time) and its fraction of the machine's dense
matmul rate in the same precision, also measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from roadmap_cli.infer.device import cpu_bf16_support
from roadmap_cli.nn import build_model, count_parameters, fused
from roadmap_cli.nn.layers import DCNv3CF
from roadmap_cli.weights import load_variant

PAPER = {"anchor-sam-t": (49.94, 432.09), "anchor-sam-s": (57.03, 493.96), "anchor-sam-b": (96.66, 768.44),
         "anchor-sam-l": (251.91, 1879.55)}


def thop_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs with thop's rules: Conv = out_numel*(Cin/groups)*kh*kw, Linear = in_features*out_numel,
    affine BN/LN = 4*numel; attention matmuls, grid_sample, GroupNorm and activations are not counted."""
    total = [0]

    def conv(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin(m, i, o):
        total[0] += m.in_features * o.numel()

    def norm(m, i, o):
        total[0] += 4 * o.numel()

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(lin))
        elif isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm)):
            hooks.append(mod.register_forward_hook(norm))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def counts(name: str, size: int) -> dict:
    cfg = load_variant(name)
    m = build_model(cfg, "meta").eval()  # shapes only: no weights, no compute
    x = torch.empty(1, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(x)
    row = {"variant": cfg.name, "params_M": round(count_parameters(m) / 1e6, 3),
           "thop_GFLOPs": round(2 * thop_macs(m, x) / 1e9, 2), "true_GFLOPs": round(fc.get_total_flops() / 1e9, 2)}
    if cfg.name in PAPER:
        row["paper_params_M"], row["paper_GFLOPs"] = PAPER[cfg.name]
    return row


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """The machine's dense matmul rate in GFLOP/s (n x n by n x n, best of repeated calls)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _precisions(device: torch.device) -> list[tuple[str, torch.dtype | None]]:
    modes = [("fp32", None), ("bf16", torch.bfloat16)]
    if device.type == "cuda":
        modes.append(("fp16", torch.float16))
    return modes


def time_forward(name: str, size: int, device: torch.device, repeat: int, paths: list[str], batch: int = 1,
                 true_gflops: float | None = None, peaks: dict | None = None) -> list[dict]:
    """Seconds per tile for each deformable-sampling path and precision; the paths alternate within each round so
    that their ratio is measured under the same machine load (best of ``repeat`` rounds after a warm-up)."""
    torch.manual_seed(0)
    m = build_model(load_variant(name)).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    rows = []
    for label, dtype in _precisions(device):
        times = {p: [] for p in paths}
        peak = {}
        for i in range(repeat + 1):
            for path in paths:
                os.environ["ROADMAP_DEFORM"] = path
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                     enabled=dtype is not None):
                    _sync(device)
                    t = time.perf_counter()
                    y = m(x)
                    _sync(device)
                    dt = time.perf_counter() - t
                assert torch.isfinite(y.float()).all()
                if i:  # the first round is the warm-up
                    times[path].append(dt)
                peak[path] = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else rss_gb()
        os.environ.pop("ROADMAP_DEFORM", None)
        for path in paths:
            s = min(times[path]) / batch
            row = {"variant": name, "size": size, "batch": batch, "device": str(device), "precision": label,
                   "deform": path, "sampling": fused.choose(device) if path != "reference" else "reference",
                   "s_per_tile": round(s, 3), "peak_GB": round(peak[path], 2),
                   "peak_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS"}
            if true_gflops:
                row["model_GFLOP_s"] = round(true_gflops / s, 1)
                if peaks and label in peaks:
                    row["fraction_of_matmul_peak"] = round(true_gflops / s / peaks[label], 3)
            if path != paths[0]:
                row[f"speedup_vs_{paths[0]}"] = round(min(times[paths[0]]) / min(times[path]), 2)
            rows.append(row)
    return rows


def dcnv3_block1_memory(device: torch.device, path: str) -> dict:
    """Decoder block 1 of T: DCNv3 on (1, 384, 256, 256), fp32, forward only, on one sampling path."""
    os.environ["ROADMAP_DEFORM"] = path
    op = DCNv3CF(384, 3, 1, 24).to(device).eval()
    x = torch.randn(1, 384, 256, 256, device=device)
    base = rss_gb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    with torch.no_grad():
        t = time.perf_counter()
        op(x)
        _sync(device)
        dt = time.perf_counter() - t
    if device.type == "cuda":
        extra = (torch.cuda.max_memory_allocated() - start) / 1e9
    else:
        extra = rss_gb() - base
    os.environ.pop("ROADMAP_DEFORM", None)
    return {"op": "DCNv3 decoder block 1 (384 ch, 256^2, fp32)", "device": str(device), "deform": path,
            "seconds": round(dt, 3), "extra_peak_GB": round(extra, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="anchor-sam-t,anchor-sam-s,anchor-sam-b,anchor-sam-l,roadmap-compact")
    ap.add_argument("--time", default="anchor-sam-t,roadmap-compact", help="variants to time ('' = none)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--paths", default="reference,auto", help="deformable sampling paths to compare (ROADMAP_DEFORM)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    paths = [p for p in a.paths.split(",") if p]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_bf16": cpu_bf16_support(),
           "sampling": fused.status(device.type), "counts": [], "timing": []}
    # first, so the RSS baseline is not inflated (the reference's extra memory, then the fused path's)
    out["dcnv3_memory"] = [dcnv3_block1_memory(device, p) for p in paths]
    for row in out["dcnv3_memory"]:
        print(json.dumps(row))
    out["matmul_peak_GFLOP_s"] = {label: round(matmul_peak(device, dtype or torch.float32), 1)
                                  for label, dtype in _precisions(device)}
    print(json.dumps({"matmul_peak_GFLOP_s": out["matmul_peak_GFLOP_s"]}))
    for v in filter(None, a.variants.split(",")):
        out["counts"].append(counts(v, a.size))
        print(json.dumps(out["counts"][-1]))
    for v in filter(None, a.time.split(",")):
        true = next((c["true_GFLOPs"] for c in out["counts"] if c["variant"] == load_variant(v).name), None)
        if true is None:
            true = counts(v, a.size)["true_GFLOPs"]
        for row in time_forward(v, a.size, device, a.repeat, paths, a.batch, true,
                                out["matmul_peak_GFLOP_s"]):
            out["timing"].append(row)
            print(json.dumps(row))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
