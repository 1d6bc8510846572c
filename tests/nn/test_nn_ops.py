"""Deformable ops against hand-computed cases, and gradcheck in float64."""
import torch
import torch.nn.functional as F

from roadmap_cli.nn.ops import dcnv3_sample, dysample, dysample_init_pos, strip_sample


def _rand(b, h, w, c, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, h, w, c, generator=g, dtype=dtype)


def test_strip_zero_offset_is_box_sum_with_zero_padding():
    x = _rand(1, 5, 9, 4)
    k = 3
    y = strip_sample(x, torch.zeros(1, 5, 9, 2 * k, dtype=x.dtype), k, groups=2, axis="x")
    padded = F.pad(x, (0, 0, 1, 1))  # zero pad along W
    expect = padded[:, :, 0:9] + padded[:, :, 1:10] + padded[:, :, 2:11]
    torch.testing.assert_close(y, expect)
    yv = strip_sample(x, torch.zeros(1, 5, 9, 2 * k, dtype=x.dtype), k, groups=2, axis="y")
    padded = F.pad(x, (0, 0, 0, 0, 1, 1))
    torch.testing.assert_close(yv, padded[:, 0:5] + padded[:, 1:6] + padded[:, 2:7])


def test_strip_integer_shift_and_border():
    x = _rand(1, 3, 8, 2)
    off = torch.full((1, 3, 8, 1), 2.0, dtype=x.dtype)  # one group, k=1: value at x + 2
    y = strip_sample(x, off, 1, 1, "x")
    expect = torch.zeros_like(x)
    expect[:, :, :6] = x[:, :, 2:]
    torch.testing.assert_close(y, expect)


def test_strip_fractional_offset_is_linear_interpolation():
    x = _rand(1, 2, 6, 1)
    off = torch.full((1, 2, 6, 1), 0.25, dtype=x.dtype)
    y = strip_sample(x, off, 1, 1, "y")
    expect = torch.zeros_like(x)
    expect[:, 0] = 0.75 * x[:, 0] + 0.25 * x[:, 1]
    expect[:, 1] = 0.75 * x[:, 1]  # row 2 is outside -> 0
    torch.testing.assert_close(y, expect)


def test_strip_groups_get_their_own_offsets():
    x = _rand(1, 1, 6, 4)
    off = torch.tensor([1.0, 0.0], dtype=x.dtype).view(1, 1, 1, 2).expand(1, 1, 6, 2).contiguous()
    y = strip_sample(x, off, 1, 2, "x")
    torch.testing.assert_close(y[..., 2:], x[..., 2:])
    torch.testing.assert_close(y[:, :, :5, :2], x[:, :, 1:, :2])
    assert torch.all(y[:, :, 5, :2] == 0)


def test_dcnv3_uniform_mask_zero_offset_is_dilated_mean_filter():
    x = _rand(1, 7, 7, 4)
    g, k, d = 2, 3, 2
    off = torch.zeros(1, 7, 7, g * k * k * 2, dtype=x.dtype)
    mask = torch.full((1, 7, 7, g * k * k), 1 / 9, dtype=x.dtype)
    y = dcnv3_sample(x, off, mask, k, g, dilation=d)
    xc = x.permute(0, 3, 1, 2)
    w = torch.full((4, 1, 3, 3), 1 / 9, dtype=x.dtype)
    expect = F.conv2d(xc, w, padding=d, dilation=d, groups=4).permute(0, 2, 3, 1)
    torch.testing.assert_close(y, expect)


def test_dcnv3_point_order_width_outer_and_dx_dy():
    # one group, mask = one-hot on point p; point p = i*3 + j with i the x index: p=5 -> i=1 (dx 0), j=2 (dy +1)
    x = _rand(1, 5, 5, 2)
    mask = torch.zeros(1, 5, 5, 9, dtype=x.dtype)
    mask[..., 5] = 1
    off = torch.zeros(1, 5, 5, 18, dtype=x.dtype)
    y = dcnv3_sample(x, off, mask, 3, 1)
    expect = torch.zeros_like(x)
    expect[:, :4] = x[:, 1:]
    torch.testing.assert_close(y, expect)
    # now an offset of (dx=+1, dy=0) on that point samples one column to the right as well
    off[..., 5 * 2] = 1.0
    y = dcnv3_sample(x, off, mask, 3, 1)
    expect = torch.zeros_like(x)
    expect[:, :4, :4] = x[:, 1:, 1:]
    torch.testing.assert_close(y, expect)


def test_gradcheck_ops_float64():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    off = (torch.rand(1, 4, 5, 2 * 3, dtype=torch.float64) * 3 - 1.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, o: strip_sample(a, o, 3, 2, "x"), (x, off))
    assert torch.autograd.gradcheck(lambda a, o: strip_sample(a, o, 3, 2, "y"), (x, off))
    off3 = (torch.rand(1, 4, 5, 2 * 9 * 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    m = torch.rand(1, 4, 5, 2 * 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, o, mm: dcnv3_sample(a, o, mm, 3, 2), (x, off3, m))
    xd = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    od = (torch.randn(1, 2 * 4 * 4, 3, 3, dtype=torch.float64) * 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, o: dysample(a, o, 2, 4), (xd, od))


def test_dysample_init_pos_is_bilinear_upsampling():
    x = torch.randn(1, 8, 6, 5, dtype=torch.float64)
    pos = dysample_init_pos(2, 4).to(torch.float64).expand(1, -1, 6, 5)
    y = dysample(x, pos, 2, 4)
    expect = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, expect)
