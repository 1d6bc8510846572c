"""TOPO (Sat2Graph / RNGDet++ / SAM-Road), rule by rule (spec: shared/spec/sat2graph-metrics.md §B)."""
import json

import pytest
from shapely.affinity import translate
from shapely.geometry import LineString

from roadmap_cli.metrics.apls_sat2graph import fake_latlon
from roadmap_cli.metrics.topo import STEP, Graph, match_seed, seeds, topo, walk


def _graph(*polylines):
    g = Graph()
    for pts in polylines:
        ll = [fake_latlon(*p) for p in pts]
        for a, b in zip(ll[:-1], ll[1:]):
            g.add(a, b)
    return g


def test_seeds_every_55_m_never_at_chain_ends():
    """1 km chain: D = 1000/111111 deg, n = floor(D / 0.0005) = 18 seeds at D k / 19."""
    middle = _graph([(0, 0), (500, 0), (1000, 0)])  # one chain through an interior vertex
    s = seeds(middle)
    assert len(s) == 18
    assert all(0 < p[0][0] and p[3] > 0 and p[4] > 0 for p in s)
    single = _graph([(0, 0), (1000, 0)])  # a chain of one edge is walked from both ends: seeds twice
    assert len(seeds(single)) == 36
    assert seeds(_graph([(0, 0), (25, 0)])) == []  # shorter than 27.8 m: no seeds


def test_seed_matching_needs_11_m_and_the_same_direction():
    gt = _graph([(0, 0), (500, 0), (1000, 0)])
    sd = seeds(gt)[0]

    def matched(prop):
        from scipy.spatial import cKDTree
        edges = prop.edges()
        centres = [((prop.coords[u][0] + prop.coords[w][0]) / 2, (prop.coords[u][1] + prop.coords[w][1]) / 2)
                   for u, w in edges]
        return match_seed(sd, gt, prop, cKDTree(centres), 0.02, edges)

    assert matched(_graph([(0, 10), (1000, 10)])) is not None  # 10 m away, parallel
    assert matched(_graph([(0, 12), (1000, 12)])) is None  # 12 m: beyond 11.1 m
    assert matched(_graph([(-500, -500), (1000, 1000)])) is None  # crossing at 45 deg: direction test fails


def test_walk_lays_points_every_step_out_to_r():
    g2 = _graph([(0, 0), (500, 0), (1000, 0), (1500, 0), (2000, 0)])
    a, b = g2.ids["%.7f_%.7f" % fake_latlon(1000, 0)], g2.ids["%.7f_%.7f" % fake_latlon(1500, 0)]
    pts = walk(g2, a, b, 0.0, 500 / 111111, 0.0015)  # r = 166.7 m from the seed at vertex a
    lats = sorted({round(p[0], 9) for p in pts})
    step_m = STEP * 111111
    assert abs(len(lats) - (500 / step_m + 1 + 166.7 / step_m)) <= 2  # the seed edge whole, 166.7 m beyond a
    twins = walk(g2, a, b, 0.0, 500 / 111111, 0.0015, bidirection=True)
    assert len(twins) == 2 * len(pts)


def test_topo_cases():
    grid = [LineString([(x, 0), (x, 1500)]) for x in range(0, 1501, 300)]
    grid += [LineString([(0, y), (1500, y)]) for y in range(0, 1501, 300)]
    same = topo(grid, grid)
    assert same["topo_precision"] == 1.0 and same["topo_recall"] > 0.99
    shifted = topo(grid, [translate(g, 6, 0) for g in grid])
    assert shifted["topo_f1"] > 0.95  # within the 11.1 m matching: (almost) nothing is lost
    far = topo(grid, [translate(g, 14, 14) for g in grid])
    assert far["topo_f1"] < 0.6  # beyond the 11.1 m snap of most seeds
    doubled = topo(grid, grid + [translate(g, 5, 0) for g in grid])
    assert doubled["topo_precision"] > 0.99  # a road drawn twice is not punished (twin holes)
    half = topo(grid, grid[:6])  # only the north-south streets
    assert half["topo_precision"] > 0.95 and half["topo_recall"] < 0.6
    assert topo(grid, [])["topo_f1"] == 0.0


def test_score_cli_metric_topo(cli, tmp_path):
    import geopandas as gpd
    grid = [LineString([(660000 + x, 4010000), (660000 + x, 4011500)]) for x in range(0, 1501, 300)]
    grid += [LineString([(660000, 4010000 + y), (661500, 4010000 + y)]) for y in range(0, 1501, 300)]
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(tmp_path / "gt.gpkg")
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(tmp_path / "pred.gpkg")
    code, out, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--metric", "apls,topo", "--json",
                         tmp_path / "s.json")
    assert code == 0, err
    agg = json.loads((tmp_path / "s.json").read_text())["aggregate"]
    assert agg["apls"] == 1.0 and agg["topo_precision"] == 1.0 and agg["topo_f1"] == pytest.approx(1.0, abs=1e-3)
    assert "TOPO F1" in out
    code, _, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--metric", "sharpness")
    assert code == 2 and "--metric must be" in err


def test_marble_hole_matching_radius_and_angle():
    from roadmap_cli.metrics.topo import _matching
    m = 1 / 111111  # one metre in degrees of latitude
    holes = [(41.0 + i * 5 * m, -71.0, 1.0, 0.0) for i in range(4)]  # north-south direction
    near = [(h[0], h[1] + 10 * m / 0.7547, 1.0, 0.0) for h in holes]  # ~10 m east, same direction
    far = [(h[0], h[1] + 12 * m / 0.7547, 1.0, 0.0) for h in holes]  # ~12 m east: beyond 11.1 m
    across = [(h[0], h[1], 0.0, 1.0) for h in holes]  # on the holes, perpendicular: angle test fails
    still = [(h[0], h[1], 0.0, 0.0) for h in holes]  # degenerate direction: no angle test
    assert _matching(near, holes) == 4 and _matching(far, holes) == 0
    assert _matching(across, holes) == 0 and _matching(still, holes) == 4
    assert _matching(near[:2] * 2, holes[:1]) == 1  # one-to-one
