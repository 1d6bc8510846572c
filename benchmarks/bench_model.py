"""Model benchmark: parameters, FLOPs (thop-style 2xMACs as in the paper, and the true count), forward time per
tile in fp32 / bf16 / fp16 on the current device, and peak memory of the pure-PyTorch DCNv3 in decoder block 1.

    python benchmarks/bench_model.py                       # all variants' counts, timing for T at 1024 on CPU
    python benchmarks/bench_model.py --time t,roadmap-compact --size 1024 --device cuda
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from roadmap_cli.nn import build_model, count_parameters
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


def time_forward(name: str, size: int, device: torch.device, repeat: int) -> list[dict]:
    torch.manual_seed(0)
    m = build_model(load_variant(name)).to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    modes = [("fp32", None), ("bf16", torch.bfloat16)]
    if device.type == "cuda":
        modes.append(("fp16", torch.float16))
    rows = []
    for label, dtype in modes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        with torch.no_grad():
            for i in range(repeat + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                if dtype is None:
                    y = m(x)
                else:
                    with torch.autocast(device.type, dtype=dtype):
                        y = m(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:  # first call is warm-up
                    times.append(time.perf_counter() - t)
        assert torch.isfinite(y.float()).all()
        peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else rss_gb()
        rows.append({"variant": name, "size": size, "device": str(device), "precision": label,
                     "s_per_tile": round(min(times), 3), "peak_GB": round(peak, 2),
                     "peak_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS"})
    return rows


def dcnv3_block1_memory(device: torch.device) -> dict:
    """Decoder block 1 of T: DCNv3 on (1, 384, 256, 256), fp32, forward only."""
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
        dt = time.perf_counter() - t
    if device.type == "cuda":
        extra = (torch.cuda.max_memory_allocated() - start) / 1e9
    else:
        extra = rss_gb() - base
    return {"op": "DCNv3 decoder block 1 (384 ch, 256^2, fp32)", "device": str(device), "seconds": round(dt, 3),
            "extra_peak_GB": round(extra, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="anchor-sam-t,anchor-sam-s,anchor-sam-b,anchor-sam-l,roadmap-compact")
    ap.add_argument("--time", default="anchor-sam-t,roadmap-compact", help="variants to time ('' = none)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "counts": [], "timing": []}
    out["dcnv3_memory"] = dcnv3_block1_memory(device)  # first, so the RSS baseline is not inflated
    print(json.dumps(out["dcnv3_memory"]))
    for v in filter(None, a.variants.split(",")):
        out["counts"].append(counts(v, 1024))
        print(json.dumps(out["counts"][-1]))
    for v in filter(None, a.time.split(",")):
        for row in time_forward(v, a.size, device, a.repeat):
            out["timing"].append(row)
            print(json.dumps(row))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
