"""Device and mixed-precision selection."""
from __future__ import annotations

import contextlib

import torch

from ..errors import InputError
from ..nn import fused


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device, whose deformable
    sampling path is checked too (``ROADMAP_DEFORM``: a bad value, or ``fused`` where none runs, is a clear error
    before any work)."""
    dev = _device(spec)
    try:
        fused.choose(dev)
    except (ValueError, RuntimeError) as e:
        raise InputError(str(e)) from None
    return dev


def _device(spec: str) -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def cpu_bf16_support() -> str | None:
    """The CPU's native bfloat16 instructions (``"amx_bf16"`` or ``"avx512_bf16"``), or None (read from
    /proc/cpuinfo's flags, once per process, by ``fused.cpu_flags``; None where there is no such file)."""
    flags = set(fused.cpu_flags().partition(":")[2].split())
    return next((name for name in ("amx_bf16", "avx512_bf16") if name in flags), None)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32).  auto: bf16 on CUDA when supported else fp16; on the CPU bf16 where it has
    native bfloat16 instructions (AVX512-BF16 or AMX, :func:`cpu_bf16_support`), else fp32 (emulated bf16 is
    slower than fp32).  bf16 on the CPU was checked against fp32 on the validation tiles (BENCHMARKS.md)."""
    p = (precision or "auto").lower()
    if p == "fp32":
        return None
    if p == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_bf16_support() else None
    if p == "bf16":
        return torch.bfloat16
    if p == "fp16":
        if device.type != "cuda":
            raise InputError("--precision fp16 needs CUDA; use bf16 on the CPU")
        return torch.float16
    raise InputError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
