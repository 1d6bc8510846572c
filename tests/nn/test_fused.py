"""The fused deformable sampling paths against the pure-PyTorch reference (values and gradients), for every layer
that uses them, and how the path is chosen.

* ``cpu-kernel``: the compiled C kernel (``fused.sample`` with autograd for training, ``fused.infer`` with the
  positions and the softmax built inside for inference, float32 and bfloat16);
* ``torchvision``: the mapping onto ``torchvision.ops.deform_conv2d`` that CUDA runs; its CPU kernel computes the
  same thing, so the mapping (point order, offsets from its own grid, mask layout) is checked here on the CPU.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadmap_cli.nn import fused, ops
from roadmap_cli.nn.layers import DSCN, DCNv3

pytestmark = pytest.mark.skipif(fused.load_kernel() is None,
                                reason=f"fused CPU kernel unavailable here: {fused.status()}")


class use_path:
    """Force the path ``fused.choose`` returns (``reference``, ``cpu-kernel``, ``torchvision``)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.orig = fused.choose
        fused.choose = lambda device, dtype=torch.float32: self.path if dtype != torch.float64 else "reference"

    def __exit__(self, *exc):
        fused.choose = self.orig


def _inputs(seed, b, h, w, g, cg, k, spread):
    gen = torch.Generator().manual_seed(seed)
    c = g * cg
    x = torch.randn(b, h, w, c, generator=gen)
    off = torch.randn(b, h, w, g * k * k * 2, generator=gen) * spread
    logits = torch.randn(b, h, w, g * k * k, generator=gen) * 2
    strip = torch.randn(b, h, w, g * k, generator=gen) * spread
    weights = torch.randn(b, h, w, c, generator=gen)
    return x, off, logits, strip, weights


def _run_all(path, x, off, logits, strip, weights, k, g, d, scale, grad=True):
    """Outputs of DCNv3 (mask from logits), strip x and strip y, and the gradients of a weighted sum."""
    with use_path(path):
        leaves = [t.clone().requires_grad_(grad) for t in (x, off, logits, strip)]
        xx, oo, ll, ss = leaves
        ys = [ops.dcnv3_sample(xx, oo, ll, k, g, d, scale, mask_logits=True),
              ops.strip_sample(xx, ss, k, g, "x", d, scale),
              ops.strip_sample(xx, ss, k, g, "y", d, scale)]
        if not grad:
            return ys, []
        loss = sum((y * weights * (i + 1)).sum() for i, y in enumerate(ys))
        return ys, list(torch.autograd.grad(loss, leaves))


def _off_kinks(off, strip, k, g, d, scale, eps=1e-4):
    """Masks of the offsets whose sampling coordinate is more than ``eps`` px from an integer (away from the kinks
    of bilinear sampling), for the DCNv3 offsets (each (dx, dy)) and the strip offsets (along the strip's axis):
    position = the operators' own zero-offset base grid + offset * scale."""
    b, h, w = off.shape[:3]
    cpu = torch.device("cpu")
    base = ops._dcnv3_base(h, w, k, d, float(scale), cpu, torch.float64)  # (H, W, 1, K*K, 2)
    pos = base + off.double().reshape(b, h, w, g, k * k, 2) * scale
    along = ops._strip_base(h, w, k, d, float(scale), "x", cpu, torch.float64)[..., 0]  # the x strip's taps
    spos = along + strip.double().reshape(b, h, w, g, k) * scale
    far = lambda t: (t - t.round()).abs() > eps  # noqa: E731
    return {"offset": far(pos).reshape(off.shape), "strip offset": far(spos).reshape(strip.shape)}


shapes = st.tuples(
    st.integers(1, 2),  # batch
    st.integers(1, 11),  # height
    st.integers(1, 11),  # width
    st.integers(1, 3),  # groups
    st.integers(1, 9),  # channels per group
    st.sampled_from([1, 3, 5, 7]),  # kernel
    st.integers(1, 3),  # dilation
    st.sampled_from([1.0, 0.5, 1.7]),  # offset scale
    st.sampled_from([0.0, 0.8, 4.0, 30.0]),  # offset spread, px (30: most points leave the image)
    st.integers(0, 2**16),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes)
def test_fused_paths_equal_reference_values_and_gradients(case):
    b, h, w, g, cg, k, d, scale, spread, seed = case
    x, off, logits, strip, weights = _inputs(seed, b, h, w, g, cg, k, spread)
    ref_y, ref_g = _run_all("reference", x, off, logits, strip, weights, k, g, d, scale)
    for path in ("cpu-kernel", "torchvision"):
        ys, gs = _run_all(path, x, off, logits, strip, weights, k, g, d, scale)
        for name, a, r in zip(("dcnv3", "strip x", "strip y"), ys, ref_y):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=2e-5, msg=lambda m: f"{path} {name}: {m}")
        smooth = _off_kinks(off, strip, k, g, d, scale)
        for name, a, r in zip(("x", "offset", "mask logits", "strip offset"), gs, ref_g):
            if "offset" in name:
                # a point exactly on a pixel centre sits on a kink of bilinear sampling: the derivative there is
                # one-sided and which side grid_sample takes depends on the rounding of its normalised coordinates,
                # so offsets whose coordinate is within 1e-4 px of an integer (all of them when spread == 0) are
                # left out of the comparison
                keep = smooth[name]
                a, r = a[keep], r[keep]
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4, msg=lambda m: f"{path} grad {name}: {m}")
        with torch.no_grad():  # inference: the positions and the softmax are built inside the kernel
            ys, _ = _run_all(path, x, off, logits, strip, weights, k, g, d, scale, grad=False)
        for name, a, r in zip(("dcnv3", "strip x", "strip y"), ys, ref_y):
            torch.testing.assert_close(a, r.detach(), rtol=1e-5, atol=2e-5, msg=lambda m: f"{path} {name}: {m}")


@settings(max_examples=80, deadline=None)
@given(shapes)
def test_bf16_kernel_matches_reference_on_the_same_bf16_inputs(case):
    b, h, w, g, cg, k, d, scale, spread, seed = case
    x, off, logits, strip, weights = (t.bfloat16() for t in _inputs(seed, b, h, w, g, cg, k, spread))
    ref, _ = _run_all("reference", x.float(), off.float(), logits.float(), strip.float(), weights, k, g, d, scale,
                      grad=False)
    with torch.no_grad():
        got, _ = _run_all("cpu-kernel", x, off, logits, strip, weights, k, g, d, scale, grad=False)
    for a, r in zip(got, ref):
        assert a.dtype == torch.bfloat16
        # float32 sums, one rounding to bfloat16 at the end: within 1/128 of the output's magnitude
        torch.testing.assert_close(a.float(), r, rtol=2 ** -7, atol=2 ** -7 * max(1.0, r.abs().max().item()))


@settings(max_examples=100, deadline=None)
@given(shapes, st.sampled_from([10.0, 40.0, 150.0]))
def test_inference_softmax_holds_for_extreme_logits(case, logit_spread):
    """The inference kernel's own exp (a polynomial, clamped below -87) against torch's softmax when the logits
    spread far: nearly one-hot weights, many exps that underflow in float32."""
    b, h, w, g, cg, k, d, scale, spread, seed = case
    x, off, logits, strip, weights = _inputs(seed, b, h, w, g, cg, k, spread)
    logits = logits * logit_spread / 2
    with torch.no_grad():
        with use_path("reference"):
            ref = ops.dcnv3_sample(x, off, logits, k, g, d, scale, mask_logits=True)
        with use_path("cpu-kernel"):
            got = ops.dcnv3_sample(x, off, logits, k, g, d, scale, mask_logits=True)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-5)


def test_float64_takes_the_reference():
    assert fused.choose(torch.device("cpu"), torch.float64) == "reference"
    assert fused.choose(torch.device("cpu"), torch.float32) == "cpu-kernel"


@pytest.mark.parametrize("layer", ["dcnv3", "dscn-x", "dscn-y"])
def test_layers_fused_equal_reference_outputs_and_parameter_gradients(layer):
    torch.manual_seed(3)
    if layer == "dcnv3":
        mod = DCNv3(32, kernel=3, dilation=2, groups=4)
    else:
        mod = DSCN(32, kernel=7, groups=4, axis=layer[-1])
    for p in mod.parameters():  # the offsets/mask start at zero: give them weights so the sampling is deformed
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 19, 23, 32)
    guide = torch.randn(2, 32, 19, 23)

    def run(path):
        mod.zero_grad()
        with use_path(path):
            y = mod(x) if layer == "dcnv3" else mod(x, guide)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return y.detach(), {n: p.grad.clone() for n, p in mod.named_parameters()}

    ref_y, ref_g = run("reference")
    for path in ("cpu-kernel", "torchvision"):
        y, g = run(path)
        torch.testing.assert_close(y, ref_y, rtol=1e-5, atol=1e-4)
        for n in ref_g:
            torch.testing.assert_close(g[n], ref_g[n], rtol=1e-4, atol=1e-3, msg=lambda m: f"{path} {n}: {m}")


def test_model_forward_fused_equals_reference(tiny_cfg):
    from roadmap_cli.nn import build_model
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    for p in model.parameters():  # deformed sampling everywhere (offset / mask layers start at zero)
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        with use_path("reference"):
            ref = model(x)
        got = model(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_result_does_not_depend_on_thread_count():
    x, off, logits, strip, weights = _inputs(5, 2, 17, 13, 4, 8, 3, 3.0)
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            ys, gs = _run_all("cpu-kernel", x, off, logits, strip, weights, 3, 4, 1, 1.0)
            with torch.no_grad():
                yi, _ = _run_all("cpu-kernel", x, off, logits, strip, weights, 3, 4, 1, 1.0, grad=False)
            outs.append(ys + gs + yi)
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def test_choice_follows_roadmap_deform(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("ROADMAP_DEFORM", "reference")
    assert fused.choose(cpu) == "reference"
    assert "ROADMAP_DEFORM=reference" in fused.status()
    monkeypatch.setenv("ROADMAP_DEFORM", "fused")
    assert fused.choose(cpu) == "cpu-kernel"
    monkeypatch.setenv("ROADMAP_DEFORM", "fastest")
    with pytest.raises(ValueError, match="ROADMAP_DEFORM must be one of auto, fused, reference"):
        fused.choose(cpu)
    assert fused.status().startswith("error: ROADMAP_DEFORM must be")


def test_without_a_compiler_auto_falls_back_and_fused_refuses(monkeypatch, tmp_path):
    monkeypatch.setenv("ROADMAP_HOME", str(tmp_path))  # no kernel built there yet
    monkeypatch.setenv("ROADMAP_CC", str(tmp_path / "no-such-cc"))
    cpu = torch.device("cpu")
    assert fused.choose(cpu) == "reference"
    assert "cannot run the C compiler" in fused.status()
    x, off, logits, strip, _ = _inputs(1, 1, 6, 7, 2, 3, 3, 2.0)
    with use_path("reference"):
        ref = ops.dcnv3_sample(x, off, logits, 3, 2, mask_logits=True)
    torch.testing.assert_close(ops.dcnv3_sample(x, off, logits, 3, 2, mask_logits=True), ref, rtol=0, atol=0)
    monkeypatch.setenv("ROADMAP_DEFORM", "fused")
    with pytest.raises(RuntimeError, match="ROADMAP_DEFORM=fused but no fused path on cpu: cannot run the C"):
        fused.choose(cpu)
    assert not list((tmp_path / "kernels").glob("*.part"))  # no half-built file left


def test_kernel_is_built_once_per_machine_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("ROADMAP_HOME", str(tmp_path))
    path = fused.kernel_path()
    assert not path.exists()
    assert fused.load_kernel() is not None
    assert path.exists() and path.parent == tmp_path / "kernels"
    stamp = path.stat().st_mtime_ns
    assert fused.load_kernel() is not None and path.stat().st_mtime_ns == stamp
    assert str(path) in fused.status()


def test_a_forked_child_runs_the_kernel(tmp_path):
    """A process forked after the thread pool exists (a DataLoader worker) gets its own pool, not a dead one."""
    import multiprocessing as mp
    x, off, logits, strip, weights = _inputs(2, 2, 9, 9, 2, 4, 3, 2.0)
    with torch.no_grad():
        want = ops.dcnv3_sample(x, off, logits, 3, 2, mask_logits=True)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_child_sample, ((x, off, logits),)).get(timeout=60)
    assert torch.equal(got, want)


def _child_sample(args):
    x, off, logits = args
    torch.set_num_threads(2)  # so the kernel runs on the (inherited) thread pool
    with torch.no_grad():
        return ops.dcnv3_sample(x, off, logits, 3, 2, mask_logits=True)


@pytest.mark.parametrize("env, message", [
    ({"ROADMAP_DEFORM": "fastest"}, "ROADMAP_DEFORM must be one of auto, fused, reference, got 'fastest'"),
    ({"ROADMAP_DEFORM": "fused", "ROADMAP_CC": "/no/such/cc"},
     "ROADMAP_DEFORM=fused but no fused path on cpu: cannot run the C compiler '/no/such/cc'"),
])
def test_extract_refuses_a_bad_sampling_setting_in_one_line(cli, tmp_path, tiny_ckpt, monkeypatch, env, message):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    scene = tmp_path / "s.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32611",
                       transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(np.full((3, 64, 64), 90, np.uint8))
    monkeypatch.setenv("ROADMAP_HOME", str(tmp_path / "home"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert {p.name for p in tmp_path.iterdir()} <= {"home", "s.tif"}  # no output, no work folder


def test_output_head_equals_upsample_then_projection(tiny_cfg):
    """The decoder's output: DySample's groups each project their channels first, then upsample; the same as
    upsampling every channel and projecting (the straightforward form), for random (deformed) offsets."""
    from roadmap_cli.nn import build_model
    torch.manual_seed(1)
    dec = build_model(tiny_cfg).decoder
    torch.nn.init.normal_(dec.final_upsample.offset.weight, std=0.5)
    torch.nn.init.normal_(dec.output_conv.bias, std=1.0)
    x = torch.randn(2, dec.output_conv.in_channels, 24, 40, requires_grad=True)
    want = dec.output_conv(dec.final_upsample(x))
    got = dec.output(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    gw = torch.randn_like(want)
    g_want = torch.autograd.grad((want * gw).sum(), [x, *dec.parameters()], allow_unused=True)
    g_got = torch.autograd.grad((got * gw).sum(), [x, *dec.parameters()], allow_unused=True)
    for a, b in zip(g_got, g_want):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_depthwise_conv_on_channels_last_memory_equals_conv2d():
    from roadmap_cli.nn.layers import DepthwiseConv2d
    torch.manual_seed(2)
    dw = DepthwiseConv2d(12, 12, (1, 7), padding=(0, 3), groups=12)
    ref = torch.nn.Conv2d(12, 12, (1, 7), padding=(0, 3), groups=12)
    ref.load_state_dict(dw.state_dict())
    x = torch.randn(2, 12, 9, 31)
    y = dw(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-6)


dysample_cases = st.tuples(
    st.integers(1, 2),  # batch
    st.integers(1, 9),  # height
    st.integers(1, 9),  # width
    st.sampled_from([1, 2, 4]),  # groups
    st.integers(1, 5),  # channels per group
    st.sampled_from([2, 3]),  # scale
    st.sampled_from([0.0, 0.5, 3.0, 30.0]),  # offset spread (x 0.25 px; 30: most points clamp to the border)
    st.booleans(),  # channels-last memory
    st.booleans(),  # with the output head's channel sum + bias
    st.integers(0, 2**16),
)


def _dysample_case(case, dtype=torch.float32):
    b, h, w, g, cg, s, spread, cl, head, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g * cg, h, w, generator=gen).to(dtype)
    raw = (torch.randn(b, 2 * g * s * s, h, w, generator=gen) * spread).to(dtype)
    if cl:
        x, raw = x.contiguous(memory_format=torch.channels_last), raw.contiguous(memory_format=torch.channels_last)
    bias = float(torch.randn((), generator=gen)) if head else None
    # the reference in float32 on the same (possibly bfloat16-rounded) values
    pos = raw.float() * 0.25 + ops.dysample_init_pos(s, g)
    ref = ops.dysample(x.float(), pos, s, g)
    if head:
        ref = ref.sum(1, keepdim=True) + bias
    return x, raw, s, g, bias, ref


@settings(max_examples=200, deadline=None)
@given(dysample_cases)
def test_dysample_kernel_equals_reference(case):
    """DySample's inference kernel (positions built inside, border clamp) against ``ops.dysample``'s grid_sample,
    plain and as the output head (sum over channels plus bias), on channel-first and channels-last memory."""
    x, raw, s, g, bias, ref = _dysample_case(case)
    got = fused.dysample_infer(x, raw, 0.25, s, g, bias)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last if not x.is_contiguous() else torch.contiguous_format)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-5)


@settings(max_examples=80, deadline=None)
@given(dysample_cases)
def test_dysample_bf16_kernel_matches_reference_on_the_same_bf16_inputs(case):
    x, raw, s, g, bias, ref = _dysample_case(case, torch.bfloat16)
    got = fused.dysample_infer(x, raw, 0.25, s, g, bias)
    assert got.dtype == torch.bfloat16
    # float32 positions and sums, one rounding to bfloat16 at the end
    torch.testing.assert_close(got.float(), ref, rtol=2 ** -7, atol=2 ** -7 * max(1.0, ref.abs().max().item()))


def test_dysample_layer_takes_the_kernel_in_inference_and_the_reference_in_training(monkeypatch):
    """``DySample.sample`` gives the reference's values either way; under autograd it must keep the reference
    (the kernel has no backward), so parameter gradients exist."""
    from roadmap_cli.nn.layers import DySample
    torch.manual_seed(4)
    up = DySample(8, 2, 4)
    torch.nn.init.normal_(up.offset.weight, std=1.0)
    x = torch.randn(2, 8, 7, 11)
    calls = []
    orig = fused.dysample_infer
    with torch.no_grad():
        with use_path("reference"):
            ref = up(x)
        monkeypatch.setattr(fused, "dysample_infer", lambda *a, **k: calls.append(1) or orig(*a, **k))
        got = up(x)
    assert calls, "inference did not take the kernel"
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    y = up(x)
    y.square().sum().backward()
    assert up.offset.weight.grad is not None and up.offset.weight.grad.abs().sum() > 0
    torch.testing.assert_close(y.detach(), ref, rtol=1e-5, atol=1e-5)


def test_dysample_result_does_not_depend_on_thread_count():
    gen = torch.Generator().manual_seed(6)
    x, raw = torch.randn(2, 8, 13, 17, generator=gen), torch.randn(2, 32, 13, 17, generator=gen) * 4
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append((fused.dysample_infer(x, raw, 0.25, 2, 4), fused.dysample_infer(x, raw, 0.25, 2, 4, 0.5)))
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], other))


def test_dysample_reference_positions_stay_float32_under_bf16_autocast():
    """A sampling grid built in bfloat16 rounds pixel indices above 256 to even numbers: the right half of a 512 px
    wide map would be sampled up to a pixel off.  The reference computes positions in float32 whatever the dtype."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 6, 512, generator=gen).bfloat16()
    raw = (torch.randn(1, 32, 6, 512, generator=gen) * 0.5).bfloat16()
    pos = raw.float() * 0.25 + ops.dysample_init_pos(2, 4)
    want = ops.dysample(x.float(), pos, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.dysample(x, raw * 0.25 + ops.dysample_init_pos(2, 4).bfloat16(), 2, 4)
    assert got.dtype == torch.bfloat16
    # only the bfloat16 rounding of the offsets (about 2**-9 px here) and of the output remain
    torch.testing.assert_close(got.float(), want, rtol=2 ** -6, atol=2 ** -6 * want.abs().max().item())


@pytest.mark.parametrize("op", ["dcnv3", "strip-x", "strip-y"])
def test_deformable_references_build_positions_in_float32_for_bf16_inputs(op):
    """Like DySample's: the pure-PyTorch DCNv3 and strip references sample a 600 px wide bfloat16 map where the
    float32 computation on the same values does (a bfloat16 grid would be up to 2 px off right of column 256)."""
    gen = torch.Generator().manual_seed(8)
    b, h, w, g, cg, k = 1, 3, 600, 2, 4, 3
    x = torch.randn(b, h, w, g * cg, generator=gen).bfloat16()
    if op == "dcnv3":
        off = (torch.randn(b, h, w, g * k * k * 2, generator=gen) * 2).bfloat16()
        mask = torch.rand(b, h, w, g * k * k, generator=gen).bfloat16()
        run = lambda *t: ops.dcnv3_sample_reference(*t, k, g)  # noqa: E731
        args = (x, off, mask)
    else:
        off = (torch.randn(b, h, w, g * k, generator=gen) * 2).bfloat16()
        run = lambda *t: ops.strip_sample_reference(*t, k, g, op[-1])  # noqa: E731
        args = (x, off)
    want = run(*(t.float() for t in args))
    got = run(*args)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=2 ** -6, atol=2 ** -6 * want.abs().max().item())


def _inference_outputs():
    """DCNv3 and strip sampling in inference (float32 and bfloat16) and DySample, on the automatic path (the kernel
    here), without patching anything global, so that several threads may run it at once."""
    assert fused.choose(torch.device("cpu")) == "cpu-kernel"
    x, off, logits, strip, _ = _inputs(8, 2, 19, 14, 4, 8, 3, 3.0)
    outs = []
    with torch.no_grad():
        for dt in (torch.float32, torch.bfloat16):
            xx, oo, ll, ss = (t.to(dt) for t in (x, off, logits, strip))
            outs += [ops.dcnv3_sample(xx, oo, ll, 3, 4, 1, 1.0, mask_logits=True),
                     ops.strip_sample(xx, ss, 3, 4, "x", 1, 1.0), ops.strip_sample(xx, ss, 3, 4, "y", 1, 1.0)]
    gen = torch.Generator().manual_seed(9)
    xd, raw = torch.randn(2, 8, 13, 17, generator=gen), torch.randn(2, 32, 13, 17, generator=gen) * 4
    return outs + [fused.dysample_infer(xd, raw, 0.25, 2, 4), fused.dysample_infer(xd.bfloat16(), raw.bfloat16(),
                                                                                   0.25, 2, 4, 0.5)]


def _all_kernel_outputs():
    """Every kernel entry point on one input set: training forward and backward (values, gradients), then
    :func:`_inference_outputs` (inference in float32 and bfloat16, DySample plain and head)."""
    x, off, logits, strip, weights = _inputs(8, 2, 19, 14, 4, 8, 3, 3.0)
    ys, gs = _run_all("cpu-kernel", x, off, logits, strip, weights, 3, 4, 1, 1.0)
    return ys + gs + _inference_outputs()


def test_openmp_team_and_own_threads_give_the_same_bits(monkeypatch):
    """With OpenMP the kernels split their rows on the runtime's team, in a forked child (or without OpenMP) on
    fused.py's own threads; the split is the same, so are the bits, for every entry point and thread count."""
    lib = fused.load_kernel()
    calls = []
    for name in ("deform_forward", "deform_backward", "deform_infer_f32", "deform_infer_bf16", "dysample_infer_f32",
                 "dysample_infer_bf16"):
        assert getattr(lib, name + "_par").argtypes == getattr(lib, name).argtypes
    before = torch.get_num_threads()
    try:
        for n in (2, 3):
            torch.set_num_threads(n)
            monkeypatch.setattr(fused, "_forked", True)
            monkeypatch.setattr(fused, "ThreadPoolExecutor", _counting_pool(calls))
            monkeypatch.setattr(fused, "_pool", None)
            own = _all_kernel_outputs()
            assert calls, "the forked-child path did not use fused.py's threads"
            monkeypatch.setattr(fused, "_forked", False)
            team = _all_kernel_outputs()
            assert len(own) == len(team) == 15
            for a, b in zip(own, team):
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)


def _counting_pool(calls):
    from concurrent.futures import ThreadPoolExecutor

    def make(*a, **k):
        calls.append(1)
        return ThreadPoolExecutor(*a, **k)
    return make


def test_a_kernel_built_without_openmp_splits_on_its_own_threads(monkeypatch, tmp_path):
    """A compiler without OpenMP: the build falls back to -fopenmp-simd and the same results come from fused.py's
    own thread pool."""
    want = _all_kernel_outputs()
    monkeypatch.setenv("ROADMAP_HOME", str(tmp_path))
    monkeypatch.setattr(fused, "THREAD_FLAGS", (("-fno-such-openmp-flag",), ("-fopenmp-simd",)))
    fused._kernel_key.cache_clear()
    monkeypatch.setattr(fused, "_pool", None)
    try:
        lib = fused.load_kernel()
        assert lib is not None and lib.kernel_has_openmp() == 0
        assert fused.kernel_path().parent == tmp_path / "kernels"
        assert fused.status().startswith("fused C kernel, own threads, built without OpenMP")
        got = _all_kernel_outputs()
    finally:
        fused._kernel_key.cache_clear()
    for a, b in zip(want, got):
        assert torch.equal(a, b)


def test_kernels_called_from_other_python_threads_agree():
    """A Python API user may run inference on worker threads: each native thread that calls a kernel leads its own
    OpenMP team; two at once give the same bits as the main thread."""
    from concurrent.futures import ThreadPoolExecutor
    want = _inference_outputs()
    with ThreadPoolExecutor(2) as ex:
        got = [f.result(timeout=120) for f in [ex.submit(_inference_outputs) for _ in range(2)]]
    for outs in got:
        assert len(outs) == len(want) == 8
        for a, b in zip(want, outs):
            assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("device", ["cuda"])
def test_cuda_takes_torchvision_and_it_equals_the_reference_on_the_gpu(device):
    """On CUDA the automatic path is torchvision's deform_conv2d kernel; on the GPU's own arithmetic it gives the
    reference's values and gradients (DCNv3 and both strips) on random shapes.  Skipped without a GPU; the same
    comparison runs on the CPU in ``test_fused_paths_equal_reference_values_and_gradients``."""
    assert fused.choose(torch.device(device)) == "torchvision"
    for seed in range(12):
        gen = torch.Generator().manual_seed(seed)
        b, h, w = 1 + seed % 2, int(torch.randint(1, 12, (1,), generator=gen)), int(torch.randint(1, 12, (1,),
                                                                                                   generator=gen))
        g, cg, k, d = 1 + seed % 3, 1 + seed % 5, (3, 5, 7)[seed % 3], 1 + seed % 2
        x, off, logits, strip, weights = (t.to(device) for t in _inputs(seed, b, h, w, g, cg, k, (0.8, 4.0)[seed % 2]))
        ref_y, ref_g = _run_all("reference", x, off, logits, strip, weights, k, g, d, 1.0)
        ys, gs = _run_all("torchvision", x, off, logits, strip, weights, k, g, d, 1.0)
        for a, r in zip(ys, ref_y):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)
        smooth = _off_kinks(off.cpu(), strip.cpu(), k, g, d, 1.0)
        for name, a, r in zip(("x", "offset", "mask logits", "strip offset"), gs, ref_g):
            if "offset" in name:
                keep = smooth[name].to(device)
                a, r = a[keep], r[keep]
            torch.testing.assert_close(a, r, rtol=1e-3, atol=1e-3, msg=lambda m: f"grad {name}: {m}")
