"""One label rule for training and scoring: 0/1 and 0/255 labels mean the same roads everywhere."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from roadmap_cli.data.dataset import RoadDataset
from roadmap_cli.data.sources import Pair
from roadmap_cli.errors import InputError, UserError
from roadmap_cli.io.images import label_mask, read_label


def _save(path, a):
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def roads():
    m = np.zeros((64, 64), bool)
    m[20:26, :] = True
    m[:, 40:44] = True
    return m


def test_zero_one_and_zero_255_labels_are_the_same_roads(tmp_path, roads):
    a01 = _save(tmp_path / "a01.png", roads.astype(np.uint8))
    a255 = _save(tmp_path / "a255.png", roads.astype(np.uint8) * 255)
    assert np.array_equal(read_label(a01)[0], roads)
    assert np.array_equal(read_label(a255)[0], roads)


def test_training_reads_zero_one_labels_as_roads(tmp_path, roads):
    """The defect this rule fixes: training used > 127, so a 0/1 label was an empty label."""
    img = _save(tmp_path / "i.png", np.zeros((64, 64, 3), np.uint8))
    lab = _save(tmp_path / "l.png", roads.astype(np.uint8))
    ds = RoadDataset([Pair("x", img, lab)], patch=64, stride=64, augment=False)
    _, label = ds.get(0, 0)
    assert np.array_equal(label.astype(bool), roads)


def test_score_reads_zero_one_ground_truth_like_training(cli, tmp_path, roads):
    (tmp_path / "pred").mkdir(), (tmp_path / "gt").mkdir()
    _save(tmp_path / "pred" / "a.png", roads.astype(np.uint8) * 255)
    _save(tmp_path / "gt" / "a.png", roads.astype(np.uint8))
    code, out, err = cli("score", tmp_path / "pred", tmp_path / "gt", "--no-apls", "--json", tmp_path / "s.json")
    assert code == 0, err
    import json
    assert json.loads((tmp_path / "s.json").read_text())["aggregate"]["f1"] == 1.0


def test_soft_8bit_labels_cut_at_half_and_wide_values_refused(tmp_path):
    grey = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
    assert label_mask(grey).tolist() == [[False, False, False, True, True, True]]
    assert label_mask(np.array([[0.0, 0.4, 0.6, 1.0]])).tolist() == [[False, False, True, True]]
    with pytest.raises(InputError, match="not a road label") as e:
        label_mask(np.array([[0, 1000]], np.uint16), "big.tif")
    assert isinstance(e.value, UserError) and e.value.exit_code == 2


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))), st.sampled_from([1, 128, 200, 255]))
def test_label_rule_is_the_same_for_any_road_value(mask, value):
    """Whatever value a label uses for road (1, or any 8-bit value above half scale), the roads are the same."""
    assert np.array_equal(label_mask(mask.astype(np.uint8) * value), mask)
