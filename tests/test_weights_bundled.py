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


def test_readme_first_command_gives_a_non_empty_graph_on_the_example(cli, tmp_path):
    """The README's first command end to end.  (How good the graph is on this out-of-domain chip is measured in
    models/roadmap-compact.md, not asserted here.)"""
    out = tmp_path / "roads.gpkg"
    code, stdout, err = cli("extract", EXAMPLES / "vegas_img0.tif", "-o", out, "--preview", tmp_path / "p.png")
    assert code == 0, err
    import geopandas as gpd
    edges = gpd.read_file(out, layer="edges")
    assert len(edges) > 0 and (edges["length_m"] > 0).all()
    assert edges.crs.to_epsg() == 4326
    with rasterio.open(EXAMPLES / "vegas_img0.tif") as ds:
        b = ds.bounds
    minx, miny, maxx, maxy = edges.total_bounds
    assert b.left <= minx <= maxx <= b.right and b.bottom <= miny <= maxy <= b.top
    code, stdout, err = cli("score", out, EXAMPLES / "vegas_img0_roads_gt.geojson")
    assert code == 0, err
    assert "apls" in stdout
