"""Training on a mix of sources: one grid, one label definition (centre lines of one width), area-weighted draws,
the manifest's checks, per-source validation, and the shared-data manifest's split."""
import collections
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.draw import line
from skimage.morphology import skeletonize

from roadmap_cli.data.dataset import RoadDataset
from roadmap_cli.data.mix import centre_line_label, load_mix, on_grid
from roadmap_cli.data.sources import build_pairs
from roadmap_cli.errors import UserError
from roadmap_cli.train import TrainOptions, run_train

ROOT = Path(__file__).resolve().parents[2]


def road(shape, lines, width):
    """A label with straight roads ``width`` px wide along ``lines`` ((r0, c0, r1, c1), ...)."""
    centre = np.zeros(shape, bool)
    for r0, c0, r1, c1 in lines:
        rr, cc = line(r0, c0, r1, c1)
        centre[rr, cc] = True
    return distance_transform_edt(~centre) <= width / 2


def width_of(mask):
    return mask.sum() / max(1, skeletonize(mask).sum())


@settings(max_examples=60, deadline=None)
@given(st.integers(5, 30), st.floats(3, 12), st.lists(st.tuples(st.integers(20, 140), st.integers(20, 140),
                                                                st.integers(20, 140), st.integers(20, 140)),
                                                      min_size=1, max_size=4))
def test_centre_line_label_redraws_any_road_at_one_width(width, target, lines):
    lines = [ln for ln in lines if max(abs(ln[0] - ln[2]), abs(ln[1] - ln[3])) >= 15]
    if not lines:
        return
    lab = road((160, 160), lines, width)
    out = centre_line_label(lab, 1.0, target)
    assert out.any()
    # the new road lies on the old one's centre: never further out than the target half-width from it
    assert (distance_transform_edt(~lab)[out] <= target / 2 + 1).all()
    # and every old road is still there: each labelled centre pixel is within the target width of the new road
    assert (distance_transform_edt(~out)[skeletonize(lab)] <= target / 2 + 1).all()
    r0, c0, r1, c1 = lines[0]
    if len(lines) == 1 and max(abs(r0 - r1), abs(c0 - c1)) >= 60:  # one long road: the target's width
        half = np.median(distance_transform_edt(out)[skeletonize(out)])  # centre to outside the road
        assert abs(half - (target // 2 + 1)) <= 1  # whole pixels either side of the centre, then the edge


def test_on_grid_brings_each_source_to_the_model_grid():
    img = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    lab = road((400, 400), [(200, 0, 200, 399)], 20)  # a 10 m road at 0.5 m
    g_img, g_lab = on_grid(img, lab, 0.5, 1.0, 7.0)
    assert g_img.shape == (200, 200, 3) and g_lab.shape == (200, 200)
    assert abs(width_of(g_lab) - 7.0) <= 1.0  # 7 m on a 1 m grid
    assert abs(float(g_img.mean()) - float(img.mean())) < 1.0  # area average keeps the mean
    assert not centre_line_label(np.zeros((50, 50), bool), 1.0, 7).any()


def make_source(root, n, size, width, seed):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        r = int(rng.integers(size // 4, 3 * size // 4))
        lab = road((size, size), [(r, 0, r, size - 1)], width)
        img = np.where(lab[..., None], 190, 60).astype(np.uint8).repeat(3, 2)
        Image.fromarray(img).save(root / "images" / f"{root.name}{i}.png")
        Image.fromarray(lab.astype(np.uint8) * 255).save(root / "labels" / f"{root.name}{i}.png")
    return root


def make_mix(tmp_path, **extra_b):
    make_source(tmp_path / "a", 3, 128, 7, 0)   # 1 m, 7 m centre-line labels
    make_source(tmp_path / "b", 4, 96, 20, 1)   # 0.5 m, 10 m full-width labels
    b = {"root": "b", "gsd": 0.5, "val": ["b3"], "test": ["b2"], "weight": 2, **extra_b}
    doc = {"road_width_m": 7, "sources": {"a": {"root": "a", "gsd": 1.0, "val": ["a2"]}, "b": b}}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_manifest_splits_and_area_weighted_draws(tmp_path):
    path = make_mix(tmp_path)
    mix = load_mix(path)
    assert [p.stem for p in mix.split("valid")] == ["a2", "b3"]
    assert [p.stem for p in mix.split("test")] == ["b2"]
    train = build_pairs("mix", path, "train")
    assert [p.stem for p in train] == ["a0", "a1", "b0", "b1"]
    assert {p.gsd for p in train} == {1.0, 0.5}
    d = RoadDataset(train, crop=32, grid_gsd=1.0, road_width_m=7, weights={"a": 1.0, "b": 2.0})
    counts = collections.Counter(train[i].stem for i, _, _ in d.samples)
    # a: 128 m square = 16 crops of 32 m; b: 96 px at 0.5 m = 48 m square = 2.25 crops, x2 weight = 4.5 -> 4 or 5
    assert counts["a0"] == counts["a1"] == 16 and counts["b0"] in (4, 5)
    img, lab = d.load(2)
    assert img.shape == (48, 48, 3) and abs(width_of(lab) - 7) <= 1
    x, y = d.get(len(d.samples) - 1, epoch=0, draw=0)
    assert x.shape == (32, 32, 3) and y.shape == (32, 32)
    x2, _ = d.get(len(d.samples) - 1, epoch=0, draw=0)
    assert np.array_equal(x, x2)


def test_small_images_fill_the_crop_instead_of_zero_padding(tmp_path):
    train = build_pairs("mix", make_mix(tmp_path), "train")
    d = RoadDataset(train, crop=64, grid_gsd=1.0, road_width_m=7, weights={"a": 1.0, "b": 1.0}, augment=False)
    b_index = next(k for k, (i, _, _) in enumerate(d.samples) if train[i].source == "b")
    x, _ = d.get(b_index, 0, 0)  # b's images are 48 px on the grid: zoomed to 64, no black border
    assert x.shape == (64, 64, 3) and x.min() >= 50


@pytest.mark.parametrize("doc, message", [
    ({"sources": {}}, "needs a 'sources' mapping"),
    ({"sources": {"a": {"root": "a"}}}, "needs root and gsd"),
    ({"sources": {"a": {"root": "nope", "gsd": 1}}}, "does not exist"),
    ({"sources": {"a": {"root": "a", "gsd": 0}}}, "gsd must be a number > 0"),
    ({"sources": {"a": {"root": "a", "gsd": 1, "kind": "kaggle"}}}, "kind 'kaggle' is not one of"),
    ({"sources": {"a": {"root": "a", "gsd": 1, "val": ["a0"], "test": ["a0"]}}}, "in both val and test"),
    ({"sources": {"a": {"root": "a", "gsd": 1, "colour": 1}}}, "unknown keys"),
    ({"road_width_m": -1, "sources": {"a": {"root": "a", "gsd": 1}}}, "road_width_m must be a number > 0"),
])
def test_bad_manifests_are_refused_in_one_line(tmp_path, doc, message):
    make_source(tmp_path / "a", 2, 64, 7, 0)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match=message) as e:
        load_mix(path).split("train")
    assert "\n" not in str(e.value)


def test_unknown_val_names_and_missing_manifest_are_refused(tmp_path):
    with pytest.raises(UserError, match="val/test names not in"):
        load_mix(make_mix(tmp_path, val=["zz"])).split("train")
    with pytest.raises(UserError, match="is not a file"):
        load_mix(tmp_path / "none.yaml")


def test_train_on_a_mix_validates_each_source_on_the_grid(tmp_path, tiny_cfg):
    path = make_mix(tmp_path)
    model = tmp_path / "tiny.yaml"
    model.write_text(yaml.safe_dump(tiny_cfg.to_dict()))
    o = dict(epochs=1, batch_size=2, crop=32, steps_per_epoch=2, val_tile=64, val_overlap=16, warmup_steps=0,
             select="sources_f1")
    best = run_train(TrainOptions(dataset="mix", root=path, out=tmp_path / "run", model=str(model), device="cpu",
                                  overrides=o))
    assert best.exists()
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"f1_a", "f1_b", "sources_f1", "apls"} <= set(header)
    summary = yaml.safe_load((tmp_path / "run" / "summary.yaml").read_text())
    assert summary["val"] == ["a2", "b3"] and "b2" not in summary["train"]  # test never trains
    with pytest.raises(UserError, match="set --crop"):
        run_train(TrainOptions(dataset="mix", root=path, out=tmp_path / "run2", model=str(model), device="cpu",
                               overrides={"epochs": 1}))
    assert not (tmp_path / "run2").exists()
    with pytest.raises(UserError, match="needs --dataset mix"):
        run_train(TrainOptions(dataset="folder", root=tmp_path / "a", out=tmp_path / "run3", model=str(model),
                               device="cpu", val_names="a2", overrides={"select": "sources_f1", "crop": 32}))


def test_shared_manifest_keeps_test_apart(shared):
    mix = load_mix(ROOT / "benchmarks" / "mixes" / "shared.yaml")
    train, val, test = ({(p.source, p.stem) for p in mix.split(s)} for s in ("train", "valid", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert {s for s, _ in train} == {"massachusetts", "epfl", "deepglobe"}
    assert ("massachusetts", "5") in val and ("deepglobe", "343") in test and len(test) == 11
