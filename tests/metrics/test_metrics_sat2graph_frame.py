"""The Go APLS's frame (spec §A.1, §A.3, §A.5, §A.11; issue 35): the in-bounds test on a fixed region per preset,
measured from the tile's corner (else the inputs'), whole-metre vertex keys as SAM-Road pickles them, convert.py's edge
order, CRS invariance, the NaN and aggregation rules."""
import json
import math

import geopandas as gpd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.affinity import translate
from shapely.geometry import LineString

from roadmap_cli.metrics.apls_sat2graph import (
    COS41,
    PRESETS,
    apls_sat2graph,
    control_points,
    convert_edges,
    densify,
    fake_latlon,
    frame_origin,
    sat2graph_pickle,
)
from roadmap_cli.metrics.topo import topo
from roadmap_cli.score import _metric_lines, published_mean

E0, N0 = 660000.0, 4010000.0  # UTM 11N (EPSG:32611), Las Vegas


def _grid(nx, ny, step, keep, x0=0.0, y0=0.0):
    """Block sides of an nx x ny street grid (crossings are vertices), those whose flag in ``keep`` is set."""
    sides = [((x0 + i * step, y0 + j * step), (x0 + (i + 1) * step, y0 + j * step))
             for i in range(nx - 1) for j in range(ny)]
    sides += [((x0 + i * step, y0 + j * step), (x0 + i * step, y0 + (j + 1) * step))
              for i in range(nx) for j in range(ny - 1)]
    return [LineString(s) for s, k in zip(sides, keep) if k]


grids = st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(20, 150),
                  st.lists(st.booleans(), min_size=60, max_size=60))


def _frame_xy(p):
    """A fake (lat, lon) back to metres (row, col) of the Go frame."""
    return (41.0 - p[0]) * 111111.0, (p[1] + 71.0) * 111111.0 * COS41


def test_pickle_keys_are_whole_metres_and_edges_follow_convert_py():
    lines = [LineString([(0.4, 100.0), (10.6, 100.0), (10.6, 89.5)]), LineString([(10.6, 100.0), (20.0, 100.2)])]
    adj = sat2graph_pickle(lines, origin=(0.0, 100.0))
    # rows south of the origin, cols east of it; Python's round: 10.5 -> 10 (half to even), as SAM-Road's keys
    assert adj == {(0, 0): [(0, 11)], (0, 11): [(0, 0), (10, 11), (0, 20)], (10, 11): [(0, 11)], (0, 20): [(0, 11)]}
    assert list(adj) == [(0, 0), (0, 11), (10, 11), (0, 20)]  # first appearance
    edges = convert_edges(adj)  # each key in order, its neighbours in order, an unordered pair once
    assert edges == [(fake_latlon(0, 0), fake_latlon(0, 11)), (fake_latlon(0, 11), fake_latlon(10, 11)),
                     (fake_latlon(0, 11), fake_latlon(0, 20))]
    up = sat2graph_pickle(lines, origin=(0.0, 80.0), rows_up=True)  # SpaceNet: rows north of the bottom edge
    assert list(up) == [(20, 0), (20, 11), (10, 11), (20, 20)]
    assert sat2graph_pickle([LineString([(0.2, 0.1), (0.4, -0.3)])], (0.0, 0.0)) == {(0, 0): []}  # no self-loop


def test_frame_origin_is_the_tile_corner_else_the_inputs():
    a, b = [LineString([(10, 20), (50, 60)])], [LineString([(5, 30), (40, 80)])]
    assert frame_origin(a, b) == (5.0, 80.0)
    assert frame_origin(a, b, rows_up=True) == (5.0, 20.0)
    assert frame_origin(a, b, tile=(0, -100, 400, 300)) == (0.0, 300.0)
    assert frame_origin(a, b, tile=(0, -100, 400, 300), rows_up=True) == (0.0, -100.0)


def test_sub_metre_offsets_round_away():
    """SAM-Road's keys are whole metres: moving both graphs (and the tile) by 0.3 m changes nothing."""
    gt = _grid(5, 5, 100, [True] * 60)
    prop = [translate(ln, 4, 0) for ln in _grid(5, 5, 100, [i % 7 != 3 for i in range(60)])]
    for preset in PRESETS:
        ref = apls_sat2graph(gt, prop, preset, tile=(-60, -60, 500, 500))
        moved = apls_sat2graph([translate(ln, 0.3, -0.3) for ln in gt], [translate(ln, 0.3, -0.3) for ln in prop],
                               preset, tile=(-59.7, -60.3, 500.3, 499.7))
        assert moved == ref


def test_tile_moves_the_window():
    """A road 150 m south of the union's top edge but 1000 m south of its tile's: inside the small presets' 352 m
    region in the first frame, outside it in the second (no control point: NaN)."""
    gt = [LineString([(0, -150), (300, -150)]), LineString([(0, 0), (1, 0)])]
    assert apls_sat2graph(gt, gt, "small")["apls"] == 1.0
    assert math.isnan(apls_sat2graph(gt, gt, "small", tile=(-10, -2000, 400, 850))["apls"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids, st.sampled_from(sorted(PRESETS)), st.integers(0, 120), st.integers(0, 120))
def test_control_points_exactly_where_the_go_program_takes_them(grid, preset, dx, dy):
    """Every control point lies strictly inside the preset's window (``margin`` .. ``region - margin`` of the frame,
    the far margins included), and every dead end well inside it is one (dead ends ignore coverage; grid nodes are
    20 m or more apart, so no two share a 2 m cell)."""
    nx, ny, step, keep = grid
    params = PRESETS[preset]
    lines = _grid(nx, ny, step, keep, dx, dy)
    tile = (0.0, 0.0, 2500.0, 2500.0)  # the grid sits 0..120 m off the tile's corner
    origin = frame_origin(lines, [], tile, params.rows_up)
    g = densify(convert_edges(sat2graph_pickle(lines, origin, params.rows_up)))
    cps = set(control_points(g, g, params))
    lo, hi = params.margin, params.region - params.margin
    for c in cps:
        r, q = _frame_xy(g.coords[c])
        assert lo < r < hi and lo < q < hi
    for v in range(g.n):
        r, q = _frame_xy(g.coords[v])
        if g.degree(v) == 1 and lo + 0.01 < r < hi - 0.01 and lo + 0.01 < q < hi - 0.01:
            assert v in cps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 6), st.integers(4, 6), st.integers(60, 150), st.sets(st.integers(0, 59), max_size=8),
       st.sampled_from(sorted(PRESETS)), st.integers(0, 40), st.integers(0, 40))
def test_identical_graphs_score_one(nx, ny, step, dropped, preset, dx, dy):
    """Road-like graphs (blocks of 60 m or more, a few sides missing) against themselves score exactly 1 in both
    directions under every preset, whatever part of them the window holds."""
    lines = _grid(nx, ny, step, [i not in dropped for i in range(60)], dx, dy)
    r = apls_sat2graph(lines, lines, preset, tile=(0, 0, 1000, (ny - 1) * step + dy + 40))
    assert r == {"apls": 1.0, "gt_to_prop": 1.0, "prop_to_gt": 1.0}


def _in_crs(lines, epsg):
    return gpd.GeoDataFrame(geometry=lines, crs=32611).to_crs(epsg)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids, st.lists(st.booleans(), min_size=60, max_size=60), st.integers(-8, 8), st.integers(-8, 8),
       st.sampled_from([32611, 3857, 4326]), st.sampled_from([32611, 3857, 4326]), st.sampled_from(sorted(PRESETS)))
def test_scores_do_not_depend_on_the_inputs_crs(grid, keep2, sx, sy, crs_gt, crs_pred, preset):
    """Grid-aligned roads given in UTM, Web Mercator or degrees (each input its own) score the same, to 1e-6, under
    the Go APLS and TOPO: both are measured in one UTM zone and rounded to whole metres in the frame."""
    nx, ny, step, keep = grid
    gt = _grid(nx, ny, step, keep, E0, N0)
    pred = [translate(ln, sx, sy) for ln in _grid(nx, ny, step, keep2, E0, N0)]
    if not gt:
        gt = [LineString([(E0, N0), (E0 + 200, N0)])]
    ref_g, ref_p, _ = _metric_lines(_in_crs(gt, 32611), _in_crs(pred, 32611))
    g, p, crs = _metric_lines(_in_crs(gt, crs_gt), _in_crs(pred, crs_pred))
    assert crs.to_epsg() == 32611
    a, b = apls_sat2graph(ref_g, ref_p, preset), apls_sat2graph(g, p, preset)
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], abs=1e-6)
    assert topo(ref_g, ref_p)["topo_f1"] == pytest.approx(topo(g, p)["topo_f1"], abs=1e-6)


def test_published_aggregates_per_preset():
    rows = [{"name": "a", "apls": 0.9123456}, {"name": "c", "apls": 0.5}, {"name": "b", "apls": float("nan")},
            {"name": "d", "apls": 0.0, "missing_prediction": True}]
    # CityScale's script: name order a, b (NaN: the list ends), each value cut to 5 decimals of its %f print
    assert published_mean(rows, "sat2graph", "default") == 0.91234
    # SpaceNet's script: NaN lines skipped; files without a prediction are not run
    assert published_mean(rows, "sat2graph", "spacenet") == pytest.approx((0.9123456 + 0.5) / 2)
    assert published_mean(rows, "sat2graph", "small") == pytest.approx((0.9123456 + 0.5) / 2)
    assert math.isnan(published_mean([{"name": "a", "apls": float("nan")}], "sat2graph", "default"))


def test_cli_empty_prediction_is_nan_and_left_out_missing_scores_zero(cli, tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    grid = _grid(5, 5, 100, [True] * 60, E0, N0)
    for name in ("a", "b", "c"):
        gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(gt_dir / f"{name}.gpkg")
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(pred_dir / "a.gpkg")
    gpd.GeoDataFrame(geometry=[], crs=32611).to_file(pred_dir / "b.gpkg")  # empty: Go's prop->gt is 0/0
    code, out, err = cli("score", pred_dir, gt_dir, "--convention", "sat2graph", "--json", tmp_path / "s.json")
    assert code == 0, err
    res = json.loads((tmp_path / "s.json").read_text())
    rows = {r["name"]: r for r in res["per_image"]}
    assert rows["a"]["apls"] == 1.0 and math.isnan(rows["b"]["apls"]) and rows["c"]["apls"] == 0.0
    agg = res["aggregate"]
    assert agg["apls"] == 0.5 and agg["apls_nan"] == 1 and agg["sat2graph_preset"] == "default"
    assert agg["apls_as_published"] == 1.0  # CityScale: a, then b is NaN and ends the list; c was never run
    assert "1 file(s) scored NaN" in " ".join(out.split())


def test_cli_preset_and_tile_need_their_convention(cli, tmp_path):
    gt = tmp_path / "gt.gpkg"
    gpd.GeoDataFrame(geometry=_grid(4, 4, 100, [True] * 60, E0, N0), crs=32611).to_file(gt)
    code, out, err = cli("score", gt, gt, "--sat2graph-preset", "small")
    assert code == 2 and "--sat2graph-preset" in err and "--convention sat2graph" in err and out == ""
    code, _, err = cli("score", gt, gt, "--tile-bounds", f"{E0},{N0},{E0 + 400},{N0 + 400}")
    assert code == 2 and "--tile-bounds" in err
    for bad in ("1,2,3", "5,0,1,9", "a,b,c,d", str(tmp_path / "nope.tif")):
        code, _, err = cli("score", gt, gt, "--convention", "sat2graph", "--tile-bounds", bad)
        assert code == 2 and "--tile-bounds" in err, bad


def test_cli_tile_bounds_set_the_frame(cli, tmp_path):
    """A road 150 m south of the inputs' top edge, 1000 m south of the given tile's: under the small preset it has
    control points in the first frame and none in the second."""
    gt = tmp_path / "gt.gpkg"
    gpd.GeoDataFrame(geometry=[LineString([(E0, N0 - 150), (E0 + 300, N0 - 150)]),
                               LineString([(E0, N0), (E0 + 1, N0)])], crs=32611).to_file(gt)
    for tile, ok in ((None, True), (f"{E0 - 10},{N0 - 2000},{E0 + 400},{N0 + 850}", False)):
        extra = ["--tile-bounds", tile] if tile else []
        code, _, err = cli("score", gt, gt, "--convention", "sat2graph", "--sat2graph-preset", "small",
                           "--json", tmp_path / "s.json", "--overwrite", *extra)
        assert code == 0, err
        v = json.loads((tmp_path / "s.json").read_text())["per_image"][0]["apls"]
        assert (v == 1.0) if ok else math.isnan(v)


def test_masks_are_their_own_tile(tmp_path):
    """A mask's frame starts at its pixel (0, 0): an east-west road 40 px below the top edge keeps its control points
    under the small preset (30 < 40), one 20 px below loses them (NaN).  A second road ~396 px down, outside the
    352 m region either way, fixes the inputs' own bounds: a frame at their corner would score both NaN."""
    from PIL import Image

    from roadmap_cli.score import run_score

    for row, finite in ((40, True), (20, False)):
        m = np.zeros((400, 300), np.uint8)
        m[row - 2:row + 3, 10:290] = 255
        m[394:399, 10:290] = 255
        for d in ("p", "g"):
            (tmp_path / d).mkdir(exist_ok=True)
            Image.fromarray(m).save(tmp_path / d / "t.png")
        res = run_score(tmp_path / "p", tmp_path / "g", gsd=1.0, convention="sat2graph", sat2graph_preset="small")
        v = res["per_image"][0]["apls"]
        assert v == 1.0 if finite else math.isnan(v)


def test_spacenet_chip_each_preset(shared):
    """The shared SpaceNet chip (ground truth vs the albu sample proposal; BENCHMARKS / README table).  With the
    frame at the inputs' corner, the default preset gives 0.9271: the Go program's 0.927 on this chip (issue 35)."""
    import csv

    import rasterio
    from pyproj import Transformer
    from shapely import wkt

    d = shared / "spacenet3-vegas-apls"
    with rasterio.open(d / "RGB-PanSharpen_AOI_2_Vegas_img0.tif") as ds:
        t, bounds = ds.transform, tuple(ds.bounds)
    prop = []
    for row in csv.DictReader(open(d / "sn3_sample_submission_albu.csv")):
        g = wkt.loads(row["WKT_Pix"])
        if not g.is_empty:
            c = np.asarray(g.coords)
            prop.append(LineString(np.c_[t * (c[:, 0], c[:, 1])]))
    gt_df = gpd.read_file(d / "AOI_2_Vegas_img0_roads_gt.geojson")
    gt, pr, crs = _metric_lines(gt_df, gpd.GeoDataFrame(geometry=prop, crs=4326))
    tile = Transformer.from_crs(4326, crs, always_xy=True).transform_bounds(*bounds, densify_pts=21)
    measured = {("default", False): 0.9271, ("default", True): 0.9035, ("small", False): 0.9177,
                ("small", True): 0.9061, ("spacenet", False): 0.9113, ("spacenet", True): 0.9191}
    for (preset, with_tile), want in measured.items():
        assert apls_sat2graph(gt, pr, preset, tile=tile if with_tile else None)["apls"] == pytest.approx(want, abs=1e-4)
