"""roadmap extract on synthetic georeferenced scenes with a tiny model."""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import error_lines, interrupted_at_save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from scipy import ndimage
from skimage.draw import line as draw_line

from roadmap_cli.tiling import blend_weights_1d, model_tile, reflect_pad, tile_starts


def make_scene(path, size=300, crs="EPSG:32611", res=1.0, nodata_box=None, dtype="uint8", bands=3,
               origin=(500000.0, 4000000.0), tiled=False):
    m = np.zeros((size, size), bool)
    for r0, c0, r1, c1 in [(size // 2, 0, size // 2, size - 1), (0, size // 3, size - 1, size // 3)]:
        rr, cc = draw_line(r0, c0, r1, c1)
        m[rr, cc] = True
    m = ndimage.binary_dilation(m, iterations=3)
    img = np.where(m, 200, 60).astype(dtype)
    data = np.stack([img] * bands)
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype=dtype, crs=crs,
                   transform=from_origin(origin[0], origin[1], res, res))
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    if nodata_box is not None:
        profile["nodata"] = 0
        r0, r1, c0, c1 = nodata_box
        data[:, r0:r1, c0:c1] = 0
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


class ConstModel(torch.nn.Module):
    """Predicts the same probability everywhere (to test blending)."""

    def __init__(self, cfg, p=0.3):
        super().__init__()
        self.cfg = cfg
        self.logit = float(np.log(p / (1 - p)))
        self.w = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x

    def forward(self, x):
        return torch.full((x.shape[0], 1) + x.shape[2:], self.logit) + 0 * self.w


# ----------------------------------------------------------------------------------------------- tiling math

def test_tile_starts_cover_and_align_to_the_end():
    for size, tile, ov in [(1000, 256, 64), (1024, 1024, 256), (1025, 1024, 256), (300, 128, 32), (5000, 1024, 256)]:
        s = tile_starts(size, tile, ov)
        assert s[0] == 0 and s[-1] == max(0, size - tile)
        covered = np.zeros(size, bool)
        for a in s:
            covered[a:a + tile] = True
        assert covered.all()
        assert all(b - a <= tile - ov for a, b in zip(s, s[1:]))
    assert tile_starts(100, 128, 32) == [0]


def test_model_tile_for_small_scenes_is_multiple_of_32():
    assert model_tile(352, 1000, 512) == (352, 512)
    assert model_tile(100, 33, 1024) == (128, 64)


def test_blend_weights_positive_and_symmetric():
    w = blend_weights_1d(128, 32)
    assert (w > 0).all() and np.allclose(w, w[::-1]) and w[64] == 1


def test_reflect_pad_larger_than_array():
    a = np.arange(6).reshape(2, 3)
    out = reflect_pad(a, 0, 5, 0, 4)
    assert out.shape == (7, 7) and (out[:2, :3] == a).all()


# ------------------------------------------------------------------------------------------------- pipeline

def test_extract_end_to_end(cli, tmp_path, tiny_ckpt):
    scene = make_scene(tmp_path / "s.tif")
    out = tmp_path / "roads.gpkg"
    code, stdout, err = cli("extract", scene, "-o", out, "--model", tiny_ckpt, "--tile", "128", "--overlap", "32",
                            "--prob-out", tmp_path / "p.tif", "--mask-out", tmp_path / "m.tif",
                            "--preview", tmp_path / "v.png", "--min-component-m", "0", "--min-spur-m", "0")
    assert code == 0, err
    import geopandas as gpd
    import pyogrio
    assert {n for n, _ in pyogrio.list_layers(out)} == {"edges", "nodes"}
    edges = gpd.read_file(out, layer="edges")
    assert list(edges.columns[:7]) == ["id", "u", "v", "length_m", "mean_prob", "min_prob", "width_m"]
    assert edges.crs.to_epsg() == 32611
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.crs.to_epsg() == 32611 and ds.width == 300 and ds.profile.get("tiled", True)
    assert (tmp_path / "v.png").stat().st_size > 0
    assert not (tmp_path / "roads.gpkg.roadmap-work").exists()
    assert "road length" in stdout


def test_constant_predictor_gives_constant_mosaic(tmp_path, tiny_cfg, monkeypatch):
    from roadmap_cli import extract as ex
    scene = make_scene(tmp_path / "s.tif", size=333)
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: ConstModel(tiny_cfg, 0.3))
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", tile=128, overlap=48,
                                     prob_out=tmp_path / "p.tif"))
    with rasterio.open(tmp_path / "p.tif") as ds:
        p = ds.read(1)
    assert p.shape == (333, 333)
    assert np.allclose(p, 0.3, atol=1e-3)  # float16 tile cache; no seam, no border effect


def test_nodata_is_honoured(tmp_path, tiny_cfg, monkeypatch):
    from roadmap_cli import extract as ex
    scene = make_scene(tmp_path / "s.tif", nodata_box=(0, 300, 200, 300))
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: ConstModel(tiny_cfg, 0.9))
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", tile=128, overlap=32,
                                     prob_out=tmp_path / "p.tif", mask_out=tmp_path / "m.tif",
                                     min_component_m=0))
    with rasterio.open(tmp_path / "p.tif") as ds:
        p = ds.read(1, masked=True)
    assert p.mask[:, 201:].all() and not p.mask[:, :199].any()
    import geopandas as gpd
    edges = gpd.read_file(tmp_path / "r.gpkg", layer="edges")
    assert edges.total_bounds[2] <= 500000 + 201  # nothing drawn inside the nodata area


def test_geographic_crs_round_trip_and_metric_length(tmp_path, tiny_cfg, monkeypatch):
    """Roads across a EPSG:4326 scene: coordinates stay in the scene, lengths are metric."""
    from roadmap_cli import extract as ex
    res = 9e-6  # ~1 m at this latitude
    scene = make_scene(tmp_path / "g.tif", crs="EPSG:4326", res=res, origin=(-115.17, 36.24))

    class Stripe(ConstModel):
        def forward(self, x):  # road where the image is bright
            return (x[:, :1] > 150).float() * 20 - 10 + 0 * self.w

    monkeypatch.setattr(ex, "load_model", lambda *a, **k: Stripe(tiny_cfg))
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.geojson", tile=128, overlap=32, gsd=1.0))
    import geopandas as gpd
    edges = gpd.read_file(tmp_path / "r.geojson")
    assert edges.crs.to_epsg() == 4326
    minx, miny, maxx, maxy = edges.total_bounds
    with rasterio.open(scene) as ds:
        b = ds.bounds
    assert b.left <= minx and maxx <= b.right and b.bottom <= miny and maxy <= b.top
    from pyproj import Geod
    geod = Geod(ellps="WGS84")
    expected = geod.inv(b.left, 36.2387, b.right, 36.2387)[2] + geod.inv(b.left, b.bottom, b.left, b.top)[2]
    assert 0.93 * expected < edges["length_m"].sum() < 1.03 * expected  # both roads, in metres


def test_resume_after_interruption_equals_uninterrupted(tmp_path, tiny_ckpt, monkeypatch):
    from roadmap_cli import extract as ex
    scene = make_scene(tmp_path / "s.tif", size=400)
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=1)
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "a.gpkg", prob_out=tmp_path / "a.tif", **kw))
    with interrupted_at_save(monkeypatch, 5):  # as if killed mid-run
        ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", prob_out=tmp_path / "b.tif",
                                         **kw))
    work = tmp_path / "b.gpkg.roadmap-work"
    assert len(list((work / "tiles").glob("*.npy"))) == 4 and not (tmp_path / "b.gpkg").exists()
    r = ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", prob_out=tmp_path / "b.tif",
                                         resume=True, **kw))
    assert r.tiles == 16
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read())
    import geopandas as gpd
    ea, eb = gpd.read_file(tmp_path / "a.gpkg", layer="edges"), gpd.read_file(tmp_path / "b.gpkg", layer="edges")
    assert ea.geometry.geom_equals_exact(eb.geometry, 1e-9).all() and len(ea) == len(eb)


def test_interrupted_run_needs_resume_or_overwrite(cli, tmp_path, tiny_ckpt):
    scene = make_scene(tmp_path / "s.tif")
    (tmp_path / "r.gpkg.roadmap-work").mkdir()
    code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and "--resume" in err


def test_dry_run_prints_plan(cli, tmp_path, tiny_ckpt):
    scene = make_scene(tmp_path / "s.tif", size=700)
    code, out, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--tile", "256",
                         "--overlap", "64", "--dry-run")
    assert code == 0, err
    assert "16 = 4 rows x 4 cols of 256 x 256, overlap 64" in out and "memory estimate" in out  # stride 192
    assert not (tmp_path / "r.gpkg").exists()


def test_uint16_multiband_and_band_selection(cli, tmp_path, tiny_ckpt):
    scene = make_scene(tmp_path / "s.tif", dtype="uint16", bands=4, tiled=True)
    code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--bands", "3,2,1",
                       "--tile", "128")
    assert code == 0, err


# ---------------------------------------------------------------------------------------------- bad input

def _no_outputs(tmp_path, keep):
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in keep) == []


def test_bad_inputs_each_give_one_clear_line(cli, tmp_path, tiny_ckpt):
    good = make_scene(tmp_path / "good.tif")
    keep = {"good.tif"}

    def check(args, expect, extra_keep=()):
        code, _, err = cli("extract", *args)
        lines = error_lines(err)  # a refusal mid-run follows the progress lines printed without a terminal
        assert code == 2 and len(lines) == 1 and expect in lines[0], err
        assert "Traceback" not in err
        assert _no_outputs(tmp_path, keep | set(extra_keep)), list(tmp_path.iterdir())

    out = tmp_path / "r.gpkg"
    check([tmp_path / "missing.tif", "-o", out, "--model", tiny_ckpt], "not found")
    (tmp_path / "text.tif").write_text("hello")
    keep.add("text.tif")
    check([tmp_path / "text.tif", "-o", out, "--model", tiny_ckpt], "is not a GeoTIFF")  # caught before torch
    trunc = tmp_path / "trunc.tif"
    make_scene(trunc, size=600, tiled=True)
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    keep.add("trunc.tif")
    check([trunc, "-o", out, "--model", tiny_ckpt, "--tile", "128"], "truncated or corrupt")
    nod = make_scene(tmp_path / "nod.tif", nodata_box=(0, 300, 0, 300))
    keep.add("nod.tif")
    check([nod, "-o", out, "--model", tiny_ckpt], "no valid pixels")
    check([good, "-o", out, "--model", tiny_ckpt, "--bands", "5"], "band 5 does not exist")
    check([good, "-o", tmp_path / "nodir" / "r.gpkg", "--model", tiny_ckpt], "does not exist")
    check([good, "-o", tmp_path / "r.shp", "--model", tiny_ckpt], "unknown format")
    (tmp_path / "exists.gpkg").write_text("old")
    keep.add("exists.gpkg")
    check([good, "-o", tmp_path / "exists.gpkg", "--model", tiny_ckpt], "exists; pass --overwrite")
    assert (tmp_path / "exists.gpkg").read_text() == "old"
    check([good, "-o", out, "--model", "roadmap-compact", "--weights", tiny_ckpt],
          "is for variant 'tiny-test', not 'roadmap-compact'")
    nogeo = tmp_path / "nogeo.tif"
    with rasterio.open(nogeo, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 64, 64), np.uint8) + 100)
    keep.add("nogeo.tif")
    check([nogeo, "-o", out, "--model", tiny_ckpt], "no georeferencing")
    check([good, "-o", out, "--model", tiny_ckpt, "--low-threshold", "1.5"], "--low-threshold must be between")
    check([good, "-o", out, "--model", tiny_ckpt, "--low-threshold", "0.7", "--threshold", "0.5"],
          "--low-threshold 0.7 is above the threshold 0.5")
    check([good, "-o", out, "--model", tiny_ckpt, "--smooth-px", "-1"], "--smooth-px must be between")
    check([good, "-o", out, "--model", tiny_ckpt, "--bridge-angle-deg", "0"], "--bridge-angle-deg must be in")
    check([good, "-o", out, "--model", tiny_ckpt, "--spur-widths", "-2"], "--spur-widths must be a number >= 0")


def test_unwritable_output_folder(cli, tmp_path, tiny_ckpt, monkeypatch):
    import os
    good = make_scene(tmp_path / "good.tif")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real(p, m))
    code, _, err = cli("extract", good, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and "not writable" in err


def test_pixel_coords_allowed_with_flag(cli, tmp_path, tiny_ckpt):
    nogeo = tmp_path / "nogeo.tif"
    with rasterio.open(nogeo, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 96, 96), np.uint8) + 100)
    code, _, err = cli("extract", nogeo, "-o", tmp_path / "r.geojson", "--model", tiny_ckpt, "--allow-pixel-coords")
    assert code == 0, err
    assert json.loads((tmp_path / "r.geojson").read_text())["type"] == "FeatureCollection"


def test_to_crs_and_graphml_export(tmp_path, tiny_cfg, monkeypatch):
    from roadmap_cli import extract as ex

    class Bright(ConstModel):
        def forward(self, x):
            return (x[:, :1] > 150).float() * 20 - 10 + 0 * self.w

    monkeypatch.setattr(ex, "load_model", lambda *a, **k: Bright(tiny_cfg))
    scene = make_scene(tmp_path / "s.tif")
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "a.gpkg", tile=128))
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", tile=128,
                                     to_crs="EPSG:4326"))
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "c.graphml", tile=128))
    import geopandas as gpd
    import networkx as nx
    a = gpd.read_file(tmp_path / "a.gpkg", layer="edges")
    b = gpd.read_file(tmp_path / "b.gpkg", layer="edges")
    assert b.crs.to_epsg() == 4326 and a.crs.to_epsg() == 32611
    assert np.allclose(b.to_crs(32611).total_bounds, a.total_bounds, atol=0.01)
    assert np.allclose(a["length_m"], b["length_m"])  # metric lengths do not depend on the output CRS
    g = nx.read_graphml(tmp_path / "c.graphml", force_multigraph=True)
    loops = int((a["u"] == a["v"]).sum())
    # osmnx's schema: a directed graph with both directions of each two-way road
    assert g.number_of_edges() == 2 * len(a) - loops and g.number_of_nodes() == len(gpd.read_file(
        tmp_path / "a.gpkg", layer="nodes"))
    assert all("length" in d and "geometry" in d for _, _, d in g.edges(data=True))
    ox = pytest.importorskip("osmnx")
    G = ox.load_graphml(tmp_path / "c.graphml")
    assert G.is_directed() and G.number_of_edges() == g.number_of_edges()
    lengths = sorted(d["length"] for _, _, d in G.edges(data=True) if not d["reversed"])
    assert np.allclose(lengths, sorted(a["length_m"]))  # floats again, in metres
    u, v, d = next(iter(G.edges(data=True)))
    assert d["geometry"].geom_type == "LineString" and {"x", "y", "street_count"} <= set(G.nodes[u])
    nodes, edges = ox.graph_to_gdfs(G)
    assert edges.crs.to_epsg() == 32611 and len(nodes) == G.number_of_nodes()


def test_resume_after_kill_9_equals_uninterrupted(tmp_path, tiny_ckpt):
    import os
    import signal
    import subprocess
    import sys
    import time

    scene = make_scene(tmp_path / "s.tif", size=900)
    args = ["extract", str(scene), "--model", str(tiny_ckpt), "--tile", "128", "--overlap", "32", "--batch-size",
            "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli_proc(out, *extra):
        return subprocess.Popen([sys.executable, "-m", "roadmap_cli", "-q", *args, "-o", str(out), *extra],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ref = cli_proc(tmp_path / "a.gpkg", "--prob-out", str(tmp_path / "a.tif"))
    assert ref.wait(timeout=300) == 0
    p = cli_proc(tmp_path / "b.gpkg", "--prob-out", str(tmp_path / "b.tif"))
    tiles = tmp_path / "b.gpkg.roadmap-work" / "tiles"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tiles.glob("*.npy")) if tiles.exists() else []) < 5:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list(tiles.glob("*.npy")))
    assert 5 <= done < 100 and not (tmp_path / "b.gpkg").exists()  # 10 x 10 = 100 tiles in all
    r = cli_proc(tmp_path / "b.gpkg", "--prob-out", str(tmp_path / "b.tif"), "--resume")
    assert r.wait(timeout=300) == 0, r.stderr.read()
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read())
    import geopandas as gpd
    ea, eb = gpd.read_file(tmp_path / "a.gpkg", layer="edges"), gpd.read_file(tmp_path / "b.gpkg", layer="edges")
    assert len(ea) == len(eb) and ea.geometry.geom_equals_exact(eb.geometry, 1e-9).all()


def test_hysteresis_and_bridges_in_extract(tmp_path, tiny_cfg, monkeypatch):
    """A road whose middle is faint (probability 0.35): plain thresholding breaks it and the default cleanup bridges
    the 30 m gap as an edge of its own (source=bridge); --low-threshold 0.3 keeps the faint part as road, one edge."""
    import geopandas as gpd

    from roadmap_cli import extract as ex
    scene = make_scene(tmp_path / "s.tif", size=300)
    with rasterio.open(scene, "r+") as ds:  # the horizontal road only, its middle 30 px dimmer
        a = ds.read()
        a[:, :, 300 // 3 - 5:300 // 3 + 5] = 60
        a[:, :, 300 // 3 - 5:300 // 3 + 5][:, 300 // 2 - 3:300 // 2 + 4] = 200
        a[:, 300 // 2 - 3:300 // 2 + 4, 150:180] = 120
        ds.write(a)

    class Levels(ConstModel):
        def forward(self, x):  # 0.95 on bright road, 0.35 on the dim part, 0.02 elsewhere
            v = x[:, :1]
            p = torch.where(v > 150, 0.95, torch.where(v > 100, 0.35, 0.02))
            return torch.log(p / (1 - p)) + 0 * self.w

    monkeypatch.setattr(ex, "load_model", lambda *a, **k: Levels(tiny_cfg))
    kw = dict(tile=128, overlap=32, gsd=1.0, min_component_m=0)
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "a.gpkg", **kw))
    a = gpd.read_file(tmp_path / "a.gpkg", layer="edges")
    assert list(a["source"]).count("bridge") == 1 and a["bridged"].sum() == 1
    assert 30 <= a.loc[a["source"] == "bridge", "length_m"].iloc[0] <= 40  # gap + the skeleton ends pulled back
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "c.gpkg", bridge_m=25, **kw))
    c = gpd.read_file(tmp_path / "c.gpkg", layer="edges")  # the gap is longer than 25 m: no bridge
    assert len(c) == 2 and not c["bridged"].any()
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", low_threshold=0.3, **kw))
    b = gpd.read_file(tmp_path / "b.gpkg", layer="edges")
    assert len(b) == 1 and b["source"].iloc[0] == "skeleton" and b["length_m"].iloc[0] > 290


@pytest.fixture(scope="module")
def resume_reference(tmp_path_factory):
    """An uninterrupted run (batches of 3 tiles) to compare resumed runs with: the bundled model in the default
    precision (bf16 on CPUs with it), whose output for a tile changes in the last bits with its batch mates."""
    from roadmap_cli import extract as ex

    d = tmp_path_factory.mktemp("resume")
    scene = make_scene(d / "s.tif", size=400)
    kw = dict(tile=128, overlap=32, batch_size=3)
    ex.run_extract(ex.ExtractOptions(scene=scene, output=d / "a.gpkg", prob_out=d / "a.tif", **kw))
    with rasterio.open(d / "a.tif") as a:
        return scene, kw, a.read()


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(st.integers(1, 15))
def test_resume_is_bit_exact_whatever_the_kill_point(tmp_path, monkeypatch, resume_reference, kill_at):
    """Issue 37: killed after any number of the 16 tiles was saved (odd ones included, mid-batch too), the resumed
    run's probabilities equal the uninterrupted run's to the bit."""
    import tempfile

    from roadmap_cli import extract as ex

    scene, kw, want = resume_reference
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        out = Path(d)
        with monkeypatch.context() as m, interrupted_at_save(m, kill_at + 1):
            ex.run_extract(ex.ExtractOptions(scene=scene, output=out / "b.gpkg", prob_out=out / "b.tif", **kw))
        assert len(list((out / "b.gpkg.roadmap-work" / "tiles").glob("*.npy"))) == kill_at
        ex.run_extract(ex.ExtractOptions(scene=scene, output=out / "b.gpkg", prob_out=out / "b.tif", resume=True,
                                         **kw))
        with rasterio.open(out / "b.tif") as b:
            assert np.array_equal(b.read(), want)
