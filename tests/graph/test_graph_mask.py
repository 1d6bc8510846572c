"""Probability -> mask: smoothing and hysteresis by tiles equal the whole-array result (property-based), and do
what they say."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold

from roadmap_cli.graph.mask import PostOptions, mask_rasters, road_mask
from roadmap_cli.tiling import array_reader


def tiled(prob, opts, tile):
    h, w = prob.shape
    out = np.full((h, w), 7, np.uint8)

    def write(r0, c0, a):
        out[r0:r0 + a.shape[0], c0:c0 + a.shape[1]] = a

    stats = mask_rasters(array_reader(prob), h, w, opts, write, tile)
    return out, stats


@st.composite
def probabilities(draw):
    h, w = draw(st.integers(8, 70)), draw(st.integers(8, 70))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(rng.random((h, w)), draw(st.sampled_from([0.5, 1.5, 3.0])))
    p = (p - p.min()) / max(p.max() - p.min(), 1e-6)  # long low-probability snakes crossing many seams
    if draw(st.booleans()):
        p[rng.random((h, w)) < 0.05] = -1.0  # nodata
    return p.astype(np.float32)


@settings(max_examples=120, deadline=None)
@given(probabilities(), st.integers(3, 40), st.sampled_from([0.0, 0.7, 1.5]),
       st.sampled_from([None, 0.2, 0.45]))
def test_tiled_mask_equals_whole_mask(prob, tile, smooth, low):
    opts = PostOptions(threshold=0.6, smooth_px=smooth, low=low)
    whole, ws = tiled(prob, opts, 4096)
    parts, ps = tiled(prob, opts, tile)
    assert np.array_equal(whole, parts) and ws == ps
    assert set(np.unique(whole)) <= {0, 1, 255}
    assert np.array_equal(whole == 255, prob < 0)


@settings(max_examples=60, deadline=None)
@given(probabilities())
def test_hysteresis_equals_whole_array_component_labelling(prob):
    """Tiles of 9 px: low-threshold components (8-connected) that contain a high pixel, as one labelling of the
    whole array finds them; with 4-connectivity it is skimage's apply_hysteresis_threshold."""
    p = np.where(prob < 0, 0, prob)
    mine, _ = road_mask(p, PostOptions(threshold=0.6, low=0.3), tile=9)
    lab, _ = ndimage.label(p >= 0.3, np.ones((3, 3), bool))
    ref = np.isin(lab, np.unique(lab[p >= 0.6])) & (lab > 0)
    assert np.array_equal(mine, ref)
    four = ndimage.label(p >= 0.3)[0]
    sk = apply_hysteresis_threshold(p, 0.3 - 1e-7, 0.6 - 1e-7)  # skimage keeps values strictly above
    assert np.array_equal(sk, np.isin(four, np.unique(four[p >= 0.6])) & (four > 0))
    assert np.all(mine >= sk)  # 8-connectivity keeps at least what 4-connectivity keeps


def test_smoothing_closes_a_one_pixel_dip():
    p = np.zeros((20, 40), np.float32)
    p[8:13, :] = 0.9
    p[8:13, 20] = 0.3  # a faint pixel column across the road
    plain, _ = road_mask(p, PostOptions(threshold=0.5))
    smooth, _ = road_mask(p, PostOptions(threshold=0.5, smooth_px=1.0))
    assert not plain[10, 20] and smooth[10, 20]


def test_bad_options():
    for bad in (PostOptions(threshold=0), PostOptions(smooth_px=-1), PostOptions(threshold=0.5, low=0.6)):
        with pytest.raises(ValueError):
            bad.check()
