"""Deformable sampling on the CPU: the reference DCNv3 core (``ops.dcnv3_sample``, one ``grid_sample`` per tap)
against two candidate "fused" forms, on the layer shapes of roadmap-compact at 512 px tiles (batch 2).

    python benchmarks/bench_deform.py [--repeat 3] [--threads 2]

* ``torchvision``: ``torchvision.ops.deform_conv2d`` with a depthwise all-ones weight (groups = channels), the
  DCNv3 offsets as offset groups and the softmax mask as its modulation mask - the DCNv3 core exactly;
* ``batched``: all K*K taps in one ``grid_sample`` call, then the mask-weighted sum;
* ``c_kernel``: roadmap's fused CPU kernel (``nn/deform_kernel.c``) as inference calls it.

Prints the largest difference from the reference (fp32) and the time of each, one JSON line per shape.  Used to
decide whether a fused path is worth selecting automatically (it is only if it is faster).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from roadmap_cli.nn.ops import dcnv3_sample, dcnv3_sample_reference


def dcnv3_torchvision(x, offset, mask, kernel, groups, dilation=1):
    """DCNv3 core through torchvision's deformable convolution (offset_scale 1)."""
    b, h, w, c = x.shape
    k2 = kernel * kernel
    pad = dilation * (kernel - 1) // 2
    # DCNv3 points are [group][x index][y index](dx, dy); torchvision wants [group][row][col](dy, dx)
    off = offset.reshape(b, h, w, groups, kernel, kernel, 2).permute(0, 3, 5, 4, 6, 1, 2).flip(4)
    msk = mask.reshape(b, h, w, groups, kernel, kernel).permute(0, 3, 5, 4, 1, 2)
    weight = torch.ones(c, 1, kernel, kernel, dtype=x.dtype)
    y = deform_conv2d(x.permute(0, 3, 1, 2), off.reshape(b, groups * k2 * 2, h, w).contiguous(), weight,
                      padding=(pad, pad), dilation=(dilation, dilation),
                      mask=msk.reshape(b, groups * k2, h, w).contiguous())
    return y.permute(0, 2, 3, 1)


def dcnv3_batched(x, offset, mask, kernel, groups, dilation=1):
    """DCNv3 core with every tap in one grid_sample call (offset_scale 1)."""
    b, h, w, c = x.shape
    pts, pad = kernel * kernel, dilation * (kernel - 1) // 2
    xg = x.reshape(b, h, w, groups, c // groups).permute(0, 3, 4, 1, 2).reshape(b * groups, c // groups, h, w)
    off = offset.reshape(b, h, w, groups, pts, 2).permute(0, 3, 1, 2, 4, 5).reshape(b * groups, h, w, pts, 2)
    msk = mask.reshape(b, h, w, groups, pts).permute(0, 3, 1, 2, 4).reshape(b * groups, 1, h, w, pts)
    ii = torch.arange(kernel, dtype=x.dtype).repeat_interleave(kernel) * dilation - pad
    jj = torch.arange(kernel, dtype=x.dtype).repeat(kernel) * dilation - pad
    gx = ii + off[..., 0] + torch.arange(w, dtype=x.dtype).view(1, 1, w, 1)
    gy = jj + off[..., 1] + torch.arange(h, dtype=x.dtype).view(1, h, 1, 1)
    grid = torch.stack(((2 * gx + 1) / w - 1, (2 * gy + 1) / h - 1), -1).reshape(b * groups, h, w * pts, 2)
    taps = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = (taps.reshape(b * groups, c // groups, h, w, pts) * msk).sum(-1)
    return out.reshape(b, groups, c // groups, h, w).permute(0, 3, 4, 1, 2).reshape(b, h, w, c)


def timed(fn, repeat):
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    # (batch, channels, side, kernel, groups): MDCP at stride 32, decoder blocks at strides 16 / 8 / 4 of 512 px
    # and decoder block 1 of anchor-sam-t at a 1024 px tile
    for b, c, side, k, g in [(2, 256, 16, 3, 16), (2, 256, 32, 3, 16), (2, 64, 64, 3, 4), (2, 32, 128, 3, 2),
                             (1, 384, 256, 3, 24)]:
        x = torch.randn(b, side, side, c)
        off = torch.randn(b, side, side, g * k * k * 2) * 2
        m = torch.softmax(torch.randn(b, side, side, g, k * k), -1).reshape(b, side, side, g * k * k)
        ref = dcnv3_sample_reference(x, off, m, k, g)
        row = {"shape": [b, c, side, side], "kernel": k, "groups": g,
               "reference_ms": round(1e3 * timed(lambda: dcnv3_sample_reference(x, off, m, k, g), a.repeat), 1)}
        def kernel(x, off, m, k, g):  # the fused C kernel as inference runs it (mask from logits inside it)
            with torch.no_grad():
                return dcnv3_sample(x, off, m.log(), k, g, mask_logits=True)

        for name, fn in (("torchvision", dcnv3_torchvision), ("batched", dcnv3_batched), ("c_kernel", kernel)):
            row[f"{name}_max_diff"] = float(f"{(fn(x, off, m, k, g) - ref).abs().max().item():.1e}")
            row[f"{name}_ms"] = round(1e3 * timed(lambda: fn(x, off, m, k, g), a.repeat), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
