"""The bundled default model: registered checksum, size, loads, and finds roads in the bundled example."""
from pathlib import Path

import rasterio
import yaml

from roadmap_cli.io.download import sha256_file
from roadmap_cli.weights import default_model_path, load_model, models_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_bundled_weights_match_registry():
    reg = yaml.safe_load((models_dir() / "registry.yaml").read_text())["bundled"]
    entry = reg[reg["default"]]
    path = default_model_path()
    assert entry["sha256"] and sha256_file(path) == entry["sha256"]
    assert path.stat().st_size <= 25 * 1024 * 1024


def test_bundled_model_loads_as_default():
    m = load_model()
    assert m.cfg.name == "roadmap-compact" and not m.training
    assert all(p.dtype.is_floating_point for p in m.parameters())


def test_readme_first_command_on_the_example(cli, tmp_path):
    """The README's first command end to end.  (How good the graph is on this out-of-domain chip is measured in
    models/roadmap-compact.md, not asserted here: the bundled model finds no road there, and says so.)"""
    out = tmp_path / "roads.gpkg"
    code, stdout, err = cli("extract", EXAMPLES / "vegas_img0.tif", "-o", out, "--preview", tmp_path / "p.png")
    assert code == 0, err
    # an honest console: the model and what it knows, and doubt where the result is implausible (it is: see the card)
    text = " ".join(stdout.split())
    assert "roadmap-compact, trained on aerial RGB at 1 m" in text
    assert "note: road probabilities never approach the threshold" in text and "roadmap adapt" in text
    assert "(trained on aerial RGB at 1 m, Massachusetts + US cities (EPFL) + DeepGlobe, CPU-trained)" in text
    import geopandas as gpd
    import pyogrio
    # a valid GeoPackage whichever way the model goes: typed layers, the scene's CRS, edges inside the scene
    layers = dict(pyogrio.list_layers(out))
    assert layers == {"edges": "LineString", "nodes": "Point"}
    edges = gpd.read_file(out, layer="edges")
    assert (edges["length_m"] > 0).all()
    assert edges.crs.to_epsg() == 4326
    if len(edges):
        with rasterio.open(EXAMPLES / "vegas_img0.tif") as ds:
            b = ds.bounds
        minx, miny, maxx, maxy = edges.total_bounds
        assert b.left <= minx <= maxx <= b.right and b.bottom <= miny <= maxy <= b.top
    code, stdout, err = cli("score", out, EXAMPLES / "vegas_img0_roads_gt.geojson")
    assert code == 0, err
    assert "apls" in stdout


def test_a_variant_without_weights_is_refused(cli, tmp_path):
    code, _, err = cli("extract", EXAMPLES / "vegas_img0.tif", "-o", tmp_path / "r.gpkg", "--model", "anchor-sam-t")
    assert code == 2 and "without trained weights" in err and "--weights" in err and "--sam2-checkpoint" in err
    assert "--random-weights" in err and not (tmp_path / "r.gpkg.roadmap-work").exists()
    code, out, err = cli("extract", EXAMPLES / "vegas_img0.tif", "-o", tmp_path / "b.gpkg", "--model",
                         "roadmap-compact")  # the bundled model's own name: its bundled weights
    assert code == 0 and "trained on aerial RGB" in " ".join(out.split())


def test_random_weights_only_on_request(cli, tmp_path, tiny_cfg):
    import yaml
    v = tmp_path / "tiny.yaml"
    v.write_text(yaml.safe_dump(tiny_cfg.to_dict()))
    code, out, err = cli("extract", EXAMPLES / "vegas_img0.tif", "-o", tmp_path / "r.gpkg", "--model", v,
                         "--random-weights", "--tile", "128")
    assert code == 0, err
    assert "trained on untrained (random weights)" not in out and "untrained (random weights)" in " ".join(out.split())
