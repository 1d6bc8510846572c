"""The bad-input battery (issue 32): every parser answers a broken input with one line and exit 2, never an internal
error (exit 1) or a traceback, and leaves no output behind.  Named cases first, then hypothesis-made bytes and
structures for each parser: scene lists, STAC JSON, checkpoints, YAML recipes, GeoJSON."""
import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import yaml
from conftest import run_cli_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from shapely.geometry import LineString

from roadmap_cli.weights import FORMAT

E0, N0 = 660000.0, 4010000.0


def _scene(path: Path, size: int = 64, dtype: str = "uint8", count: int = 3):
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count, dtype=dtype,
                       crs="EPSG:32611", transform=from_origin(E0, N0, 1.0, 1.0)) as ds:
        data = np.random.default_rng(0).integers(0, 255, (count, size, size))
        ds.write(data.astype(dtype) if "complex" not in dtype else (data + 1j * data).astype(dtype))


def _roads(path: Path, speed=None):
    lines = [LineString([(E0 + 2, N0 - 32), (E0 + 62, N0 - 32)]), LineString([(E0 + 32, N0 - 2), (E0 + 32, N0 - 62)])]
    cols = {} if speed is None else {"speed_m/s": speed}
    gpd.GeoDataFrame(cols, geometry=lines, crs=32611).to_file(path)


@pytest.fixture
def world(tmp_path, tiny_ckpt):
    _scene(tmp_path / "scene.tif")
    _roads(tmp_path / "gt.geojson")
    (tmp_path / "ck.pt").write_bytes(Path(tiny_ckpt).read_bytes())
    return tmp_path


def _cases(w: Path) -> dict:
    """name -> (argv, words the one-line message must hold)."""
    (w / "self.txt").write_text("self.txt\n")
    (w / "a.txt").write_text("# a names b\nb.txt\n")
    (w / "b.txt").write_text("\n  a.txt  # and b names a\n")
    (w / "empty_items.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (w / "no_asset.json").write_text(json.dumps({"type": "Feature", "id": "x", "assets": {"thumb": {"href": "t.png"}}}))
    (w / "array.json").write_text("[1, 2]")
    (w / "no_href.json").write_text(json.dumps({"type": "Feature", "assets": {"visual": {"type": "image/tiff"}}}))
    (w / "ftp.json").write_text(json.dumps({"type": "Feature", "assets": {"visual": {"href": "ftp://h/a.tif"}}}))
    ck = (w / "ck.pt").read_bytes()
    (w / "trunc.pt").write_bytes(ck[: len(ck) // 2])
    (w / "zero.pt").write_bytes(b"")
    (w / "tif.pt").write_bytes((w / "scene.tif").read_bytes())
    torch.save({"weights": [1, 2, 3]}, w / "dict.pt")
    torch.save([1, 2, 3], w / "list.pt")
    torch.save({"format": FORMAT, "version": 1, "model_config": {}, "model": 7}, w / "fake.pt")
    _scene(w / "sar.tif", dtype="complex64", count=1)
    _roads(w / "fast.geojson", speed=["fast", "slow"])
    (w / "old.json").write_text("{}")
    ext = ["extract", "scene.tif", "-o", "out.gpkg"]
    return {
        "list names itself": (["extract", "self.txt", "-o", "out.gpkg"], ["names itself"]),
        "two lists name each other": (["extract", "a.txt", "-o", "out.gpkg"], ["names itself", "b.txt"]),
        "STAC collection without items": (["extract", "empty_items.json", "-o", "out.gpkg"], ["no items"]),
        "STAC item without the asset": (["extract", "no_asset.json", "-o", "out.gpkg"], ["has no asset", "--asset"]),
        "STAC JSON that is an array": (["extract", "array.json", "-o", "out.gpkg"], ["not a STAC item"]),
        "STAC asset without href": (["extract", "no_href.json", "-o", "out.gpkg"], ["has no href"]),
        "STAC href of another scheme": (["extract", "ftp.json", "-o", "out.gpkg"], ["only local paths"]),
        "truncated checkpoint": (ext + ["--weights", "trunc.pt"], ["not a readable PyTorch checkpoint"]),
        "zero-length checkpoint": (ext + ["--weights", "zero.pt"], ["is empty"]),
        "a GeoTIFF as checkpoint": (ext + ["--weights", "tif.pt"], ["not a readable PyTorch checkpoint"]),
        "a pickle that is no checkpoint": (ext + ["--weights", "dict.pt"], ["not a roadmap checkpoint"]),
        "a list pickle": (ext + ["--weights", "list.pt"], ["does not hold a dict"]),
        "a checkpoint whose model is no state dict": (ext + ["--weights", "fake.pt"], ["not a state dict"]),
        "adapt --init truncated": (["adapt", "scene.tif", "gt.geojson", "-o", "m.pt", "--init", "trunc.pt",
                                    "--holdout", "none"], ["not a readable PyTorch checkpoint"]),
        "train --sam2-checkpoint garbage": (["train", "--dataset", "folder", "--root", ".", "--out", "run",
                                             "--model", "roadmap-compact", "--sam2-checkpoint", "tif.pt"],
                                            ["not a readable PyTorch checkpoint"]),
        "score --crs that is no CRS": (["score", "gt.geojson", "gt.geojson", "--crs", "EPSG:999999"], ["not a CRS"]),
        "score speed as text": (["score", "fast.geojson", "fast.geojson", "--weight", "time"], ["must hold numbers"]),
        "complex raster to extract": (["extract", "sar.tif", "-o", "out.gpkg"], ["complex-valued"]),
        "complex raster to score": (["score", "sar.tif", "sar.tif", "--no-apls"], ["complex-valued"]),
        "score JSON exists without --overwrite": (["score", "gt.geojson", "gt.geojson", "--json", "old.json"],
                                                  ["exists", "--overwrite"]),
    }


CASE_NAMES = ["list names itself", "two lists name each other", "STAC collection without items",
              "STAC item without the asset", "STAC JSON that is an array", "STAC asset without href",
              "STAC href of another scheme", "truncated checkpoint", "zero-length checkpoint",
              "a GeoTIFF as checkpoint", "a pickle that is no checkpoint", "a list pickle",
              "a checkpoint whose model is no state dict", "adapt --init truncated", "train --sam2-checkpoint garbage",
              "score --crs that is no CRS", "score speed as text", "complex raster to extract",
              "complex raster to score", "score JSON exists without --overwrite"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_and_exit_2(world, monkeypatch, cli, name):
    argv, words = _cases(world)[name]
    monkeypatch.chdir(world)
    before = sorted(p.name for p in world.iterdir())
    code, out, err = cli(*argv)
    assert code == 2, (name, err)
    assert "internal error" not in err and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), (name, err)
    assert out == ""
    assert sorted(p.name for p in world.iterdir()) == before  # nothing written, not even a work folder


def test_lists_and_stac_hrefs_resolve(tmp_path):
    """Blank and comment lines are skipped, relative paths are relative to the list; STAC hrefs relative,
    absolute and file:// (percent-encoded) reach the same scene."""
    from roadmap_cli.io.mosaic import expand_inputs

    (tmp_path / "d").mkdir()
    _scene(tmp_path / "d" / "my scene.tif")
    (tmp_path / "d" / "l.txt").write_text("\n# comment\n   my scene.tif   # trailing\n\n")
    assert expand_inputs([tmp_path / "d" / "l.txt"]) == [str(tmp_path / "d" / "my scene.tif")]
    target = (tmp_path / "d" / "my scene.tif").resolve()
    for href in ("my scene.tif", str(target), "file://" + str(target).replace(" ", "%20"),
                 "file://localhost" + str(target).replace(" ", "%20")):
        (tmp_path / "d" / "i.json").write_text(json.dumps({"type": "Feature", "assets": {"visual": {"href": href}}}))
        assert Path(expand_inputs([tmp_path / "d" / "i.json"])[0]).resolve() == target, href


# ------------------------------------------------------------------------------------------------ fuzzing

json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _run(capsys, folder: Path, *argv) -> int:
    code = run_cli_in(folder, *argv)
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)
    assert "internal error" not in err and "Traceback" not in err, err
    return code


@pytest.fixture
def fuzz_dir(tmp_path, tiny_ckpt):
    _scene(tmp_path / "scene.tif")
    _roads(tmp_path / "gt.geojson")
    (tmp_path / "data").mkdir()
    (tmp_path / "ck.pt").write_bytes(Path(tiny_ckpt).read_bytes())
    return tmp_path


@FUZZ
@given(st.binary(max_size=200) | st.lists(st.text(max_size=30), max_size=5).map(lambda ls: "\n".join(ls).encode()))
def test_fuzz_scene_list(capsys, fuzz_dir, data):
    (fuzz_dir / "f.txt").write_bytes(data)
    _run(capsys, fuzz_dir, "extract", "f.txt", "-o", "o.gpkg", "--dry-run")


stac_docs = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from(["Feature", "FeatureCollection", "Catalog"]),
                           "features": st.lists(json_values, max_size=3),
                           "assets": st.dictionaries(st.sampled_from(["visual", "image", "data", "x"]),
                                                     st.fixed_dictionaries({"href": json_values | st.sampled_from(
                                                         ["scene.tif", "file:///nope.tif", "", "s3://b/k.tif"])}),
                                                     max_size=2)}))


@FUZZ
@given(st.binary(max_size=120) | stac_docs.map(lambda d: json.dumps(d).encode()))
def test_fuzz_stac_json(capsys, fuzz_dir, data):
    (fuzz_dir / "f.json").write_bytes(data)
    _run(capsys, fuzz_dir, "extract", "f.json", "-o", "o.gpkg", "--dry-run")


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.floats(0, 1).map(lambda f: ("cut", f)),
                 json_values.map(_pickled),
                 st.dictionaries(st.sampled_from(["format", "version", "model_config", "model"]), json_values)
                 .map(_pickled)))
def test_fuzz_checkpoint(capsys, fuzz_dir, data):
    if isinstance(data, tuple):  # a real checkpoint cut short
        ck = (fuzz_dir / "ck.pt").read_bytes()
        data = ck[: int(len(ck) * data[1])]
    (fuzz_dir / "f.pt").write_bytes(data)
    _run(capsys, fuzz_dir, "extract", "scene.tif", "-o", "o.gpkg", "--weights", "f.pt", "--dry-run")


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: yaml.safe_dump(v).encode())
       | st.dictionaries(st.sampled_from(["epochs", "lr", "batch_size", "crop", "seed", "scale_aug", "select", 1]),
                         json_values).map(lambda v: yaml.safe_dump(v).encode()))
def test_fuzz_recipe_yaml(capsys, fuzz_dir, data):
    (fuzz_dir / "r.yaml").write_bytes(data)
    code = _run(capsys, fuzz_dir, "train", "--dataset", "folder", "--root", "data", "--out", "run",
                "--model", "roadmap-compact", "--config", "r.yaml")
    assert code == 2  # the data folder is empty: never a run


geometries = st.fixed_dictionaries({"type": st.sampled_from(["LineString", "Point", "Polygon", "MultiLineString", "x"]),
                                    "coordinates": json_values | st.lists(st.lists(st.floats(-200, 200), max_size=3),
                                                                          max_size=4)})


@FUZZ
@given(st.binary(max_size=150) | json_values.map(lambda v: json.dumps(v).encode())
       | st.lists(st.fixed_dictionaries({"type": st.just("Feature"), "properties": json_values | st.just({}),
                                         "geometry": geometries | st.none()}), max_size=3)
       .map(lambda fs: json.dumps({"type": "FeatureCollection", "features": fs}).encode()))
def test_fuzz_geojson(capsys, fuzz_dir, data):
    (fuzz_dir / "f.geojson").write_bytes(data)
    _run(capsys, fuzz_dir, "score", "f.geojson", "gt.geojson")


# ------------------------------------------------------------------------------------------ degenerate shapes

@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(1, 1200), (1200, 1), (40, 40)])
def test_degenerate_scenes_run_as_a_few_tiles(tmp_path, cli, h, w):
    """A 1 x N, an N x 1 and a sub-tile scene: planned as a handful of thin tiles, run, written (a graph, possibly
    empty); their time against one tile is in benchmarks/bench_degenerate.py."""
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(E0, N0, 0.5, 0.5)) as ds:
        ds.write(np.random.default_rng(1).integers(0, 255, (3, h, w), dtype=np.uint8))
    from roadmap_cli.extract import ExtractOptions, plan_extract

    plan = plan_extract(ExtractOptions(scene=tmp_path / "s.tif", output=tmp_path / "o.gpkg"))
    assert plan.tiles <= 3 and min(plan.layout.th, plan.layout.tw) <= 32
    code, _, err = cli("-q", "extract", tmp_path / "s.tif", "-o", tmp_path / "o.gpkg")
    assert code == 0, err
    assert (tmp_path / "o.gpkg").is_file()
