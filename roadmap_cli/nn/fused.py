"""Fused deformable sampling: one pass over channels-last memory instead of one ``grid_sample`` per tap.

Both DCNv3 and the strip-deformable conv reduce to one operator (:func:`sample`): for every output pixel and
channel group, the mask-weighted sum of bilinear samples at ``P`` absolute positions (pixel-index coordinates,
zero outside the image).  ``ops`` builds the positions from the learned offsets and shape-only base grids, then
calls :func:`sample`, which runs

* on the CPU: ``deform_kernel.c``, compiled once per machine with the system C compiler (``ROADMAP_CC``, default
  ``cc``) into ``$ROADMAP_HOME/kernels/`` and called through ``ctypes`` on torch's thread count: on the OpenMP
  runtime torch already runs when the compiler has OpenMP (so no second thread pool spins against torch's), else
  (and in forked children) on threads of our own, the calls releasing the GIL; either way rows / channel groups are
  split the same way and no two threads write the same memory, hence the same bits whatever the thread count;
* on CUDA: ``torchvision.ops.deform_conv2d`` (its native kernel) with a depthwise all-ones weight, the positions
  as offsets from its own sampling grid and the mask as its modulation mask.

DySample's upsampling has its own inference entry point (:func:`dysample_infer`): the same C file samples at the
positions DySample predicts, built in float32 inside the kernel, without the full-resolution sampling grid that
``ops.dysample`` builds for ``grid_sample``; training (autograd) and CUDA keep ``ops.dysample``.

The pure-PyTorch operators in ``ops`` stay the reference; ``tests/nn/test_fused.py`` checks both fused paths
against them (values and gradients).  ``ROADMAP_DEFORM=reference`` forces the reference, ``fused`` makes a missing
fused path an error instead of a silent fallback.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch

from .. import settings

SOURCE = Path(__file__).with_name("deform_kernel.c")
CFLAGS = ("-O3", "-march=native", "-std=c99", "-shared", "-fPIC")
# Tried in order: with OpenMP the kernel splits its work on the OpenMP runtime torch already runs (no second thread
# pool spinning against it: 13-21 % off roadmap-compact's bf16 forward, BENCHMARKS "Network"); a compiler without OpenMP still
# vectorises ("-fopenmp-simd") and fused.py splits the work on its own threads.
THREAD_FLAGS = (("-fopenmp",), ("-fopenmp-simd",))

_lock = threading.Lock()
_loaded: dict = {}  # kernel path -> (library or None, error or None), one attempt per path and process
build_seconds = 0.0  # time this process spent compiling the kernel (a run's summary names it)
_lib_path: Path | None = None
_lib_error: str | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size: tuple = (0, 0)


@lru_cache(maxsize=1)
def cpu_flags() -> str:
    """The CPU's instruction-set flags line of /proc/cpuinfo (``flags`` on x86, ``Features`` on ARM; '' where
    there is none), read once per process."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return ""


def _cpu_signature() -> str:
    """Machine and instruction-set flags: a kernel built with -march=native runs only where these match."""
    return f"{platform.system()}-{platform.machine()}-{cpu_flags()}"


@lru_cache(maxsize=8)
def _kernel_key(compiler: str) -> str:
    key = hashlib.sha256()
    flags = " ".join(CFLAGS + tuple(f for alt in THREAD_FLAGS for f in alt))
    for part in (SOURCE.read_bytes(), compiler.encode(), flags.encode(), _cpu_signature().encode()):
        key.update(part)
        key.update(b"\0")
    return key.hexdigest()[:16]


def kernel_path() -> Path:
    """Where the compiled kernel for this source, compiler, flags and CPU lives (built there on first use)."""
    return settings.home() / "kernels" / f"deform-{_kernel_key(settings.c_compiler())}.so"


def _build(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".so.part", dir=path.parent)
    os.close(fd)
    try:
        for threads in THREAD_FLAGS:
            cmd = [settings.c_compiler(), *CFLAGS, *threads, "-o", tmp, str(SOURCE), "-lm"]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise RuntimeError(f"cannot run the C compiler {settings.c_compiler()!r}: {e}") from None
            if not res.returncode:
                break
        if res.returncode:
            first = (res.stderr.strip().splitlines() or ["(no message)"])[0]
            raise RuntimeError(f"{settings.c_compiler()} failed building {SOURCE.name}: {first}")
        os.replace(tmp, path)  # atomic: concurrent builders (Ray workers) each leave a whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_kernel() -> ctypes.CDLL | None:
    """The compiled CPU kernel (built on first use), or None when it cannot be built here (see :func:`status`)."""
    global _lib_path, _lib_error, build_seconds
    path = kernel_path()
    with _lock:
        _lib_path = path
        if path in _loaded:
            lib, _lib_error = _loaded[path]
            return lib
        lib, _lib_error = None, None
        try:
            if not path.exists():
                t0 = time.perf_counter()
                try:
                    _build(path)
                finally:
                    build_seconds += time.perf_counter() - t0
            lib = ctypes.CDLL(str(path))
        except (RuntimeError, OSError) as e:
            _lib_error = str(e).splitlines()[0] if str(e) else type(e).__name__
        if lib is not None:
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            signatures = {
                "deform_forward": [p, p, p, p] + [i64] * 7,
                "deform_backward": [p] * 7 + [i64] * 8,
                "deform_infer_f32": [p, p, p, ctypes.c_float, i64, p, p] + [i64] * 7,
                "deform_infer_bf16": [p, p, p, ctypes.c_float, i64, p, p] + [i64] * 7,
                "dysample_infer_f32": [p, p, ctypes.c_float, p, ctypes.c_float] + [i64] * 20,
                "dysample_infer_bf16": [p, p, ctypes.c_float, p, ctypes.c_float] + [i64] * 20,
            }
            # each NAME(..., start, stop) has NAME_par(..., total, nthreads): the same argument types
            for name, argtypes in signatures.items():
                for fn in (getattr(lib, name), getattr(lib, name + "_par")):
                    fn.argtypes, fn.restype = argtypes, None
            lib.kernel_has_openmp.argtypes, lib.kernel_has_openmp.restype = [], ctypes.c_int
        _loaded[path] = (lib, _lib_error)
        return lib


@lru_cache(maxsize=1)
def _torchvision_ok() -> bool:
    try:
        from torchvision.ops import deform_conv2d  # noqa: F401
    except Exception:  # an import error, or torchvision built against another torch
        return False
    return True


FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def choose(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The sampling path for tensors of ``dtype`` on ``device``: ``"cpu-kernel"``, ``"torchvision"`` or
    ``"reference"``.  float64 always takes the reference (the fused kernels compute in float32)."""
    want = settings.deform_impl()
    if want not in settings.DEFORM_CHOICES:
        raise ValueError(f"ROADMAP_DEFORM must be one of {', '.join(settings.DEFORM_CHOICES)}, got {want!r}")
    if want == "reference" or device.type not in ("cpu", "cuda") or dtype not in FUSED_DTYPES:
        return "reference"
    if device.type == "cuda":
        if _torchvision_ok():
            return "torchvision"
        reason = "torchvision.ops.deform_conv2d does not import"
    else:
        if load_kernel() is not None:
            return "cpu-kernel"
        reason = _lib_error or "the CPU kernel did not load"
    if want == "fused":
        raise RuntimeError(f"ROADMAP_DEFORM=fused but no fused path on {device.type}: {reason}")
    return "reference"


def status(device: str = "cpu") -> str:
    """One line for ``roadmap info``: which deformable sampling runs on ``device`` and why."""
    try:
        path = choose(torch.device(device))
    except (ValueError, RuntimeError) as e:
        return f"error: {e}"
    if path == "cpu-kernel":
        threads = "OpenMP" if load_kernel().kernel_has_openmp() else "own threads, built without OpenMP"
        return f"fused C kernel, {threads} ({_lib_path})"
    if path == "torchvision":
        return "fused: torchvision.ops.deform_conv2d (native CUDA kernel)"
    why = "ROADMAP_DEFORM=reference" if settings.deform_impl() == "reference" else (
        _lib_error if device == "cpu" else "torchvision.ops.deform_conv2d does not import")
    return f"reference pure-PyTorch ({why})"


def _in_forked_child() -> None:
    global _forked
    _forked = True


_forked = False  # set in a forked child: its copy of the OpenMP runtime may hold threads that do not exist there
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)


def _run(fn, total: int, args: tuple) -> None:
    """Call ``fn(*args, start, stop)`` over ``range(total)`` split across torch's thread count: on the kernel's
    OpenMP team (``fn``'s ``_par`` twin) when it has one and this is not a forked child, else on our own threads."""
    global _pool, _pool_size
    n = max(1, min(torch.get_num_threads(), total))
    if n == 1:
        fn(*args, 0, total)
        return
    lib = load_kernel()
    if not _forked and lib is not None and lib.kernel_has_openmp():
        getattr(lib, fn.__name__ + "_par")(*args, total, n)
        return
    with _lock:
        if _pool is None or _pool_size != (n, os.getpid()):  # a forked child has the pool but not its threads
            if _pool is not None and _pool_size[1] == os.getpid():
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="roadmap-deform"), (n, os.getpid())
        pool = _pool
    cuts = [total * k // n for k in range(n + 1)]
    for f in [pool.submit(fn, *args, cuts[k], cuts[k + 1]) for k in range(n)]:
        f.result()


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """True when autograd will want gradients of any of ``tensors`` (None entries are skipped)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _cpu_forward(x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    lib = load_kernel()
    b, h, w, c = x.shape
    g, p = pos.shape[3], pos.shape[4]
    out = torch.empty_like(x)
    _run(lib.deform_forward, b * h, (_ptr(x), _ptr(pos), _ptr(mask), _ptr(out), h, w, c, g, p))
    return out


class _CpuSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pos, mask):
        ctx.save_for_backward(x, pos, mask)
        return _cpu_forward(x, pos, mask)

    @staticmethod
    def backward(ctx, grad_out):
        x, pos, mask = ctx.saved_tensors
        need_x, need_pos, need_mask = ctx.needs_input_grad
        grad_out = grad_out.float().contiguous()
        gx = torch.zeros_like(x) if need_x else None
        gpos = torch.zeros_like(pos) if need_pos else None
        gmask = torch.zeros_like(mask) if (need_mask and mask is not None) else None
        b, h, w, c = x.shape
        g, p = pos.shape[3], pos.shape[4]
        _run(load_kernel().deform_backward, b * g,
             (_ptr(x), _ptr(pos), _ptr(mask), _ptr(grad_out), _ptr(gx), _ptr(gpos), _ptr(gmask), b, h, w, c, g, p))
        return gx, gpos, gmask


MODES = {"dcnv3": 0, "x": 1, "y": 2}


def _kernel_dtype(x: torch.Tensor) -> torch.dtype:
    """The storage dtype the inference kernels run in for ``x``: bfloat16 as is, anything else as float32."""
    return torch.bfloat16 if x.dtype == torch.bfloat16 else torch.float32


def infer(x: torch.Tensor, offset: torch.Tensor, base: torch.Tensor, scale: float, mode: str,
          logits: torch.Tensor | None) -> torch.Tensor:
    """Inference-only CPU kernel: positions ``base + scale * offset`` and weights ``softmax(logits)`` built inside it.

    Args:
        x: (B, H, W, C) channels-last; float32 or bfloat16 (the kernel reads and writes that dtype), other dtypes
            run in float32.
        offset: (B, H, W, G, P, 2) for ``mode="dcnv3"``, (B, H, W, G, P) for the strip modes ``"x"`` / ``"y"``.
        base: (H, W, [1,] P, 2) float32 positions for zero offsets (shape-only, cached by ``ops``).
        logits: (B, H, W, G, P) mask logits (softmax over P), or None for an unweighted sum.
    """
    lib = load_kernel()
    b, h, w, c = x.shape
    g, p = offset.shape[3], offset.shape[4]
    if base.dtype != torch.float32 or base.numel() != h * w * p * 2:
        raise ValueError(f"base grid must be float32 with {h * w * p * 2} values")
    dt = _kernel_dtype(x)
    xs = x.to(dt).contiguous()
    off = offset.to(dt).contiguous()
    lg = None if logits is None else logits.to(dt).contiguous()
    out = torch.empty_like(xs)
    fn = lib.deform_infer_bf16 if dt == torch.bfloat16 else lib.deform_infer_f32
    _run(fn, b * h, (_ptr(xs), _ptr(off), _ptr(base.contiguous()), float(scale), MODES[mode], _ptr(lg), _ptr(out),
                     h, w, c, g, p))
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when it is contiguous in channel-first or channels-last memory, else a contiguous copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


def dysample_infer(x: torch.Tensor, offset: torch.Tensor, offset_scale: float, scale: int, groups: int,
                   bias: float | None = None) -> torch.Tensor:
    """Inference-only DySample on the CPU kernel: the upsampled ``x`` (B, C, sH, sW), or with ``bias`` given the sum
    over its C channels plus ``bias`` (B, 1, sH, sW), without building a sampling grid.  The output has ``x``'s
    memory format.

    Args:
        x: (B, C, H, W), channel-first or channels-last memory (so may ``offset`` be); float32 or bfloat16 (read
            and written in that dtype, float32 arithmetic), other dtypes run in float32.
        offset: the raw offset-conv output (B, 2*G*s*s, H, W); positions are ``offset_scale * offset`` plus
            DySample's initial sub-pixel positions, relative to each input pixel (see ``ops.dysample``).
    """
    lib = load_kernel()
    b, c, h, w = x.shape
    dt = _kernel_dtype(x)
    xs, off = _dense(x.to(dt)), _dense(offset.to(dt))
    if off.shape != (b, 2 * groups * scale * scale, h, w):
        raise ValueError(f"offset must have shape {(b, 2 * groups * scale * scale, h, w)}, got {tuple(off.shape)}")
    fmt = torch.contiguous_format if xs.is_contiguous() else torch.channels_last
    out = torch.empty(b, 1 if bias is not None else c, scale * h, scale * w, dtype=dt, memory_format=fmt)
    fn = lib.dysample_infer_bf16 if dt == torch.bfloat16 else lib.dysample_infer_f32
    _run(fn, b * scale * h, (_ptr(xs), _ptr(off), float(offset_scale), _ptr(out), float(bias or 0.0),
                             int(bias is not None), *xs.stride(), *off.stride(), *out.stride(), h, w, c, groups, scale))
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _tv_sample(x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, kh: int, kw: int) -> torch.Tensor:
    """The operator through ``torchvision.ops.deform_conv2d``; ``pos``'s points are in row-major (kh, kw) order."""
    from torchvision.ops import deform_conv2d

    b, h, w, c = x.shape
    g = pos.shape[3]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    base = _tv_base(h, w, kh, kw, x.device, pos.dtype)  # (H, W, 1, kh*kw, 2) as (dy, dx) of its own grid
    off = pos.flip(-1) - base  # (B, H, W, G, P, 2) as (dy, dx)
    off = off.permute(0, 3, 4, 5, 1, 2).reshape(b, g * kh * kw * 2, h, w)
    msk = None if mask is None else mask.permute(0, 3, 4, 1, 2).reshape(b, g * kh * kw, h, w)
    weight = torch.ones(c, 1, kh, kw, device=x.device, dtype=x.dtype)
    y = deform_conv2d(x.permute(0, 3, 1, 2), off.to(x.dtype), weight, padding=(ph, pw),
                      mask=None if msk is None else msk.to(x.dtype))
    return y.permute(0, 2, 3, 1)


@lru_cache(maxsize=128)
def _tv_base(h: int, w: int, kh: int, kw: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 1, kh*kw, 2): torchvision's own sampling grid as (dy, dx), shape-only, cached like ``ops``' bases."""
    a = torch.arange(kh, device=device, dtype=dtype).view(kh, 1).expand(kh, kw) - (kh - 1) // 2
    cc = torch.arange(kw, device=device, dtype=dtype).view(1, kw).expand(kh, kw) - (kw - 1) // 2
    i = torch.arange(h, device=device, dtype=dtype).view(h, 1, 1, 1)
    j = torch.arange(w, device=device, dtype=dtype).view(1, w, 1, 1)
    dy = (i + a.reshape(1, 1, 1, kh * kw)).expand(h, w, 1, kh * kw)
    dx = (j + cc.reshape(1, 1, 1, kh * kw)).expand(h, w, 1, kh * kw)
    return torch.stack((dy, dx), -1)


def sample(x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, path: str, tv_shape: tuple[int, int],
           tv_order: tuple[int, ...] | None = None) -> torch.Tensor:
    """The fused operator.

    Args:
        x: (B, H, W, C) channels-last values.
        pos: (B, H, W, G, P, 2) absolute sampling positions (u along W, v along H) in pixel-index coordinates.
        mask: (B, H, W, G, P) weights, or None for an unweighted sum.
        path: ``"cpu-kernel"`` or ``"torchvision"`` (from :func:`choose`).
        tv_shape: (kh, kw) of the equivalent convolution kernel, for torchvision.
        tv_order: permutation of the P points into torchvision's row-major (kh, kw) order (None: already in it).
    Returns:
        (B, H, W, C) in ``x``'s dtype.
    """
    if path == "cpu-kernel":
        dtype = x.dtype
        xs, ps = x.float().contiguous(), pos.float().contiguous()
        ms = None if mask is None else mask.float().contiguous()
        if needs_grad(xs, ps, ms):
            out = _CpuSample.apply(xs, ps, ms)
        else:
            out = _cpu_forward(xs, ps, ms)
        return out.to(dtype)
    if path == "torchvision":
        if tv_order is not None:
            pos = pos[..., list(tv_order), :]
            mask = None if mask is None else mask[..., list(tv_order)]
        return _tv_sample(x, pos, mask, *tv_shape)
    raise ValueError(f"unknown fused path {path!r}")
