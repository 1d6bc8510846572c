"""`roadmap adapt`: a road model fine-tuned on the user's scene and road vectors, measured on a hold-out it never saw;
resumable; bad inputs refused in one line with nothing left behind."""
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from conftest import interrupted_when, nth_call
from PIL import Image
from shapely import LineString, Point

from roadmap_cli.adapt import Holdout, work_folder
from roadmap_cli.errors import InputError
from roadmap_cli.io.raster import working_grid

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCENE, ROADS = EXAMPLES / "vegas_img0.tif", EXAMPLES / "vegas_img0_roads_gt.geojson"


def test_holdout_spec():
    assert Holdout.parse("none") is None
    h = Holdout.parse("0.3")
    assert (h.side, h.fraction) == ("", 0.3)
    train, hold = h.split((0, 100, 0, 200))  # wide: the east end
    assert (h.side, train, hold) == ("east", (0, 100, 0, 140), (0, 100, 140, 200))
    h = Holdout.parse("west:0.25")
    assert h.split((10, 110, 20, 120)) == ((10, 110, 45, 120), (10, 110, 20, 45))
    h = Holdout.parse("north")
    assert (h.fraction, h.split((0, 50, 0, 10))) == (0.2, ((10, 50, 0, 10), (0, 10, 0, 10)))
    assert Holdout.parse("0.2").split((0, 300, 0, 100))[1] == (240, 300, 0, 100)  # tall: the south end
    for bad in ("up:0.2", "1.5", "east:x", "0"):
        if bad == "0":
            assert Holdout.parse(bad) is None
            continue
        with pytest.raises(InputError):
            Holdout.parse(bad)


def test_adapt_on_half_the_example_chip_finds_the_roads_of_the_other_half(cli, tmp_path):
    """The bundled model finds nothing on the chip; 40 steps on its west half and the east half's roads appear.
    Training never sees the hold-out: the pairs cover the west window only, and the hold-out is written as a scene
    of its own that extract and score repeat."""
    out = tmp_path / "vegas.pt"
    code, text, err = cli("adapt", SCENE, ROADS, "-o", out, "--holdout", "east:0.5", "--steps", "40")
    assert code == 0, err
    flat = " ".join(text.split())
    assert "hold-out: east 50%" in flat and "before: bundled roadmap-compact; after: adapted (vegas.pt)" in flat
    rep = json.loads(out.with_suffix(".json").read_text())
    before, after = rep["before"], rep["after"]
    assert before["f1"] < 0.05 and before["apls"] < 0.05  # the bundled model does not know this imagery
    assert after["f1"] > 0.35 and after["apls"] > before["apls"] + 0.1, after
    # the hold-out is the east half of the area and no training pixel comes from it
    work = work_folder(out)
    r0, r1, c0, c1 = rep["holdout"]["window_px"]
    t0, t1, s0, s1 = rep["train"]["window_px"]
    assert (t0, t1) == (r0, r1) and s1 == c0 and abs((c1 - c0) - (s1 - s0)) <= 1
    widths = {Image.open(p).size for p in (work / "pairs" / "images").glob("*.png")}
    assert widths == {(s1 - s0, t1 - t0)}
    with rasterio.open(SCENE) as ds, rasterio.open(work / "holdout" / "scene.tif") as hs:
        grid = working_grid(ds, 1.0)
        assert hs.transform.almost_equals(grid.transform * rasterio.Affine.translation(c0, r0))
        assert (hs.width, hs.height) == (c1 - c0, r1 - r0)
    # the checkpoint says where it comes from; extract names it in its summary
    ck = torch.load(out, weights_only=True)
    assert "adapted from bundled roadmap-compact to vegas_img0.tif" in ck["domain"]
    code, text, err = cli("extract", work / "holdout" / "scene.tif", "-o", tmp_path / "east.gpkg", "--weights", out)
    assert code == 0, err
    from roadmap_cli.weights import model_domain
    assert model_domain(None, out).startswith("vegas.pt: adapted from bundled roadmap-compact")
    assert "vegas.pt:" in text
    code, text, err = cli("score", tmp_path / "east.gpkg", work / "holdout" / "roads.gpkg", "--json",
                          tmp_path / "s.json")
    assert code == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["aggregate"]["apls"] == pytest.approx(after["apls"], abs=1e-9)


def _tiny_run(tmp_path, tiny_ckpt, name, **extra):
    from roadmap_cli.adapt import AdaptOptions, run_adapt

    return run_adapt(AdaptOptions(scene=[SCENE], roads=ROADS, output=tmp_path / name, init=tiny_ckpt, steps=30,
                                  crop=64, batch_size=2, holdout="west:0.4", **extra))


def test_adapt_resumes_after_a_kill_to_the_same_model(cli, tmp_path, tiny_ckpt, monkeypatch):
    """Killed while scoring the starting model, then during training after its first checkpoint (step 25): each
    --resume continues, and the result equals the uninterrupted run's weights and scores."""
    import roadmap_cli.adapt as adapt_mod
    import roadmap_cli.train as train_mod

    _tiny_run(tmp_path, tiny_ckpt, "full.pt")
    with interrupted_when(monkeypatch, adapt_mod, "score_holdout", nth_call(1)):
        _tiny_run(tmp_path, tiny_ckpt, "killed.pt")
    assert not (tmp_path / "killed.pt").exists()
    with interrupted_when(monkeypatch, train_mod, "bce_dice_loss", nth_call(28)):
        _tiny_run(tmp_path, tiny_ckpt, "killed.pt", resume=True)
    assert (work_folder(tmp_path / "killed.pt") / "train" / "last.pt").is_file()
    assert not (tmp_path / "killed.pt").exists()
    _tiny_run(tmp_path, tiny_ckpt, "killed.pt", resume=True)
    a, b = torch.load(tmp_path / "full.pt", weights_only=True), torch.load(tmp_path / "killed.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra = json.loads((tmp_path / "full.json").read_text())
    rb = json.loads((tmp_path / "killed.json").read_text())
    assert ra["before"] == rb["before"] and ra["after"] == rb["after"]
    # a resumed run with other options is refused, on the command line in one line
    code, _, err = cli("adapt", SCENE, ROADS, "-o", tmp_path / "killed.pt", "--init", tiny_ckpt, "--steps", "30",
                       "--crop", "64", "--batch-size", "2", "--holdout", "west:0.4", "--resume", "--lr", "1e-3")
    assert code == 2 and "other inputs or options" in err


def _shifted_roads(tmp_path) -> Path:
    df = gpd.read_file(ROADS)
    df["geometry"] = df.translate(1.0, 0.0)  # a degree east: another city
    path = tmp_path / "far.geojson"
    df.to_file(path, driver="GeoJSON")
    return path


@pytest.mark.parametrize("case", ["far", "points", "garbage", "scene", "tiny_holdout", "suffix", "variant"])
def test_bad_inputs_one_line_nothing_left(cli, tmp_path, case):
    out = tmp_path / "m.pt"
    scene, roads, extra = SCENE, ROADS, []
    if case == "far":
        roads, expect = _shifted_roads(tmp_path), "do not overlap"
    elif case == "points":
        roads = tmp_path / "pts.geojson"
        gpd.GeoDataFrame(geometry=[Point(-115.169, 36.238)], crs="EPSG:4326").to_file(roads, driver="GeoJSON")
        expect = "no LineString features"
    elif case == "garbage":
        roads = tmp_path / "roads.gpkg"
        roads.write_bytes(b"not a geopackage at all")
        expect = "cannot read"
    elif case == "scene":
        scene = tmp_path / "scene.tif"
        scene.write_bytes(b"II*\x00 broken")
        expect = "scene.tif"
    elif case == "tiny_holdout":
        # a road down the west edge and one across the middle: the east 5 % holds only 17 m of road
        roads = tmp_path / "one.geojson"
        gpd.GeoDataFrame(geometry=[LineString([(-115.1705, 36.2374), (-115.1705, 36.2404)]),
                                   LineString([(-115.1706, 36.2389), (-115.1672, 36.2389)])],
                         crs="EPSG:4326").to_file(roads, driver="GeoJSON")
        extra, expect = ["--holdout", "east:0.05", "--steps", "1"], "too little to score"
    elif case == "suffix":
        out, expect = tmp_path / "m.gpkg", "name it .pt"
    else:
        extra, expect = ["--model", "anchor-sam-t"], "--sam2-checkpoint"
    code, _, err = cli("adapt", scene, roads, "-o", out, *extra)
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in err, err
    assert not out.exists() and not work_folder(out).exists() and not out.with_suffix(".json").exists()


def test_adapt_grid_and_steps_recorded(tmp_path, tiny_ckpt):
    """--gsd sets the adapted model's working resolution (extract then reads the scene at it); the report records
    the recipe."""
    from roadmap_cli.adapt import AdaptOptions, run_adapt
    from roadmap_cli.weights import model_from_checkpoint

    r = run_adapt(AdaptOptions(scene=[SCENE], roads=ROADS, output=tmp_path / "half.pt", init=tiny_ckpt, gsd=2.0,
                               steps=3, crop=64, batch_size=2, holdout="none"))
    assert r.before is None and r.after is None and r.holdout == {}
    model, ck = model_from_checkpoint(r.output)
    assert model.cfg.gsd == 2.0 and ck["adapt"]["train"]["gsd"] == 2.0 and ck["adapt"]["train"]["steps"] == 3
    with rasterio.open(SCENE) as ds:
        grid = working_grid(ds, 2.0)
    img = np.asarray(Image.open(next((r.work / "pairs" / "images").glob("*.png"))))
    r0, r1, c0, c1 = r.train["window_px"]  # the area: the grid cut to the roads' extent (they miss the north)
    assert img.shape[:2] == (r1 - r0, c1 - c0) and 0 < r1 - r0 <= grid.height and c1 - c0 == grid.width


def test_many_scenes_adapt_as_one_mosaic(tmp_path, tiny_ckpt):
    """The chip cut into a west and an east file adapts as one mosaic, like the whole chip: the same ground and roads in
    the hold-out and in training."""
    from roadmap_cli.adapt import AdaptOptions, run_adapt

    with rasterio.open(SCENE) as ds:
        prof = ds.profile
        for name, win in (("w", rasterio.windows.Window(0, 0, 700, 1300)),
                          ("e", rasterio.windows.Window(700, 0, 600, 1300))):
            p = dict(prof, width=int(win.width), height=int(win.height), transform=ds.window_transform(win),
                     blockysize=16)
            with rasterio.open(tmp_path / f"{name}.tif", "w", **p) as dst:
                dst.write(ds.read(window=win))
    common = dict(roads=ROADS, init=tiny_ckpt, steps=2, crop=64, batch_size=2, holdout="east:0.5")
    one = run_adapt(AdaptOptions(scene=[SCENE], output=tmp_path / "one.pt", **common))
    two = run_adapt(AdaptOptions(scene=[tmp_path / "w.tif", tmp_path / "e.tif"], output=tmp_path / "two.pt",
                                 **common))
    # the mosaic of two lon/lat scenes lies on a UTM grid, the single scene on its own: the same ground either way
    for key in ("road_km", "km2"):
        assert two.holdout[key] == pytest.approx(one.holdout[key], rel=0.05), key
        assert two.train[key] == pytest.approx(one.train[key], rel=0.05), key
    with rasterio.open(two.work / "holdout" / "scene.tif") as hs:
        assert hs.crs.is_projected
    assert json.loads((tmp_path / "two.json").read_text())["scenes"] == [str(tmp_path / "w.tif"),
                                                                         str(tmp_path / "e.tif")]


def test_adapt_from_a_variant_with_its_sam2_checkpoint(tmp_path, tiny_cfg):
    """--model VARIANT --sam2-checkpoint: the encoder starts from the SAM2 weights (the "before" is that model), and
    the adapted checkpoint is of that variant."""
    import yaml

    from roadmap_cli.adapt import AdaptOptions, run_adapt
    from roadmap_cli.nn import build_model
    from roadmap_cli.weights import model_from_checkpoint

    variant = tmp_path / "tiny.yaml"
    variant.write_text(yaml.safe_dump(tiny_cfg.to_dict()))
    torch.manual_seed(1)
    enc = build_model(tiny_cfg).encoder.state_dict()
    sam2 = {f"image_encoder.{k}": torch.randn_like(v) * 0.02 for k, v in enc.items()}
    torch.save({"model": sam2}, tmp_path / "sam2_tiny.pt")
    r = run_adapt(AdaptOptions(scene=[SCENE], roads=ROADS, output=tmp_path / "v.pt", model=str(variant),
                               sam2_checkpoint=tmp_path / "sam2_tiny.pt", steps=2, crop=64, batch_size=2,
                               holdout="east:0.5"))
    assert r.start == "tiny-test with SAM2 encoder sam2_tiny.pt" and r.before is not None and r.after is not None
    start, _ = model_from_checkpoint(r.work / "start.pt")
    assert torch.equal(start.encoder.trunk.pos_embed, sam2["image_encoder.trunk.pos_embed"])
    adapted, _ = model_from_checkpoint(r.output)
    assert adapted.cfg.name == "tiny-test"
    assert not torch.equal(adapted.encoder.trunk.pos_embed, sam2["image_encoder.trunk.pos_embed"])  # trained
