"""The Sat2Graph-family (Go) APLS, rule by rule, with hand-computed cases (spec: shared/spec/sat2graph-metrics.md §A)."""
import json
import math

import pytest
from shapely.affinity import translate
from shapely.geometry import LineString

from roadmap_cli.metrics.apls import apls
from roadmap_cli.metrics.apls_sat2graph import (
    PRESETS,
    DenseGraph,
    apls_sat2graph,
    control_points,
    densify,
    dist,
    fake_latlon,
    one_way,
    snap,
)


def _edges(*segments):
    """Segments in metres (south, east) -> Go edges in fake lat/lon."""
    return [(fake_latlon(*a), fake_latlon(*b)) for a, b in segments]


def test_fake_coordinates_are_metres():
    a = fake_latlon(100.0, 200.0)
    assert dist(a, fake_latlon(101.0, 200.0)) == pytest.approx(1.0, abs=1e-6)
    assert dist(a, fake_latlon(100.0, 201.0)) == pytest.approx(1.0, abs=1e-3)


def test_densification_counts_hops():
    g = densify(_edges(((0, 0), (11, 0))))  # 11 m: floor(11/2)+1 = 6 pieces
    assert densify(_edges(((0, 0), (10, 0)))).n == 6  # 10 m is 9.9999999997 m in the fake degrees: 5 pieces
    assert g.n == 7 and sum(len(a) for a in g.adj) == 2 * 6
    assert densify(_edges(((0, 0), (2.9, 0)))).n == 2  # not longer than 3 m: one segment
    assert densify(_edges(((0, 0), (3.01, 0)))).n == 3  # floor(3.01/2)+1 = 2 pieces
    shared = densify(_edges(((0, 0), (0, 2)), ((0, 2), (2, 2)), ((0, 2), (0, 0))))  # same key -> one vertex
    assert shared.n == 3 and shared.degree(1) == 2


def test_control_points_on_a_long_chain_inside_the_margin():
    """A 400 m east-west road: 201 hops, 202 vertices; n = floor(202/25)+1 = 9 candidates at floor(202 i/9); only
    those more than 100 m inside the 1000 x 400 m region (east 133..267 m) are kept; the dead ends are outside."""
    g = densify(_edges(((500, 0), (500, 400))))
    assert g.n == 202
    cps = control_points(g, g, PRESETS["default"], region=(1000.0, 400.0))
    assert cps == [67, 89, 112, 134]
    assert all(100 < (g.coords[c][1] + 71) * 111111 * math.cos(math.radians(41)) < 300 for c in cps)


def test_junctions_and_dead_ends_are_control_points():
    g = densify(_edges(((300, 300), (300, 330)), ((300, 330), (330, 330)), ((300, 330), (300, 360))))
    cps = control_points(g, g, PRESETS["default"], region=(700.0, 700.0))
    degrees = sorted(g.degree(c) for c in cps)
    assert degrees == [1, 1, 1, 3]  # three dead ends and the junction (chains too short for interior points)


def test_snapping_is_one_to_one_within_10_m():
    a, b = DenseGraph(), DenseGraph()
    c1, c2, c3 = (a.vertex(fake_latlon(*p)) for p in ((500, 500), (500, 501), (520, 500)))
    near = b.vertex(fake_latlon(505, 500))  # 5 m from c1, 5.1 m from c2
    b.vertex(fake_latlon(529.9, 500))  # 9.9 m from c3
    match = snap([c1, c2, c3], a, b, PRESETS["default"])
    assert match == {c1: near, c2: -1, c3: 1}  # c2 would share c1's vertex: one-to-one leaves it unmatched
    far = DenseGraph()
    far.vertex(fake_latlon(510.1, 500))
    assert snap([c1], a, far, PRESETS["default"]) == {c1: -1}  # 10.1 m: outside the radius


def test_pair_rules_min_path_and_missing_points():
    """Two dead ends 80 m apart (gt path 80 m <= 100 m): a matched pair is not counted, so the direction is NaN;
    the same pair with an unmatched end counts and scores 1."""
    region = (1000.0, 1000.0)
    g = densify(_edges(((500, 400), (500, 480))))
    assert math.isnan(one_way(g, g, PRESETS["default"], region))
    empty = DenseGraph()
    assert one_way(g, empty, PRESETS["default"], region) == 0.0  # one missing pair, score 1
    long = densify(_edges(((500, 300), (500, 700))))  # 400 m: dead ends outside 100 m margin? no: inside
    assert one_way(long, long, PRESETS["default"], region) == 1.0


def test_directions_are_averaged_arithmetically():
    frame = [LineString([(0, 0), (1200, 0)]), LineString([(0, 1000), (1200, 1000)])]  # sets the region
    main = LineString([(0, 300), (1200, 300)])
    gt = frame + [main, LineString([(600, 300), (600, 1000)])]
    prop = frame + [main]  # the side road is missing
    r = apls_sat2graph(gt, prop)
    assert 0 < r["gt_to_prop"] < 1 and r["apls"] == pytest.approx((r["gt_to_prop"] + r["prop_to_gt"]) / 2)
    assert apls_sat2graph(gt, prop) == r  # deterministic (the Go program is not)


def test_six_metre_shift_is_near_one_under_sat2graph_and_near_zero_under_spacenet():
    grid = [LineString([(x, 0), (x, 1200)]) for x in range(0, 1201, 300)]
    grid += [LineString([(0, y), (1200, y)]) for y in range(0, 1201, 300)]
    shifted = [translate(ln, 6, 0) for ln in grid]
    assert apls_sat2graph(grid, grid)["apls"] == 1.0
    assert apls_sat2graph(grid, shifted)["apls"] > 0.97
    assert apls(grid, shifted)["apls"] < 0.5


def test_score_cli_sat2graph_convention(cli, tmp_path):
    import geopandas as gpd
    grid = [LineString([(660000 + x, 4010000), (660000 + x, 4011200)]) for x in range(0, 1201, 300)]
    grid += [LineString([(660000, 4010000 + y), (661200, 4010000 + y)]) for y in range(0, 1201, 300)]
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(tmp_path / "gt.gpkg")
    gpd.GeoDataFrame(geometry=[translate(g, 6, 0) for g in grid], crs=32611).to_file(tmp_path / "pred.gpkg")
    for conv, check in (("sat2graph", lambda v: v > 0.97), ("spacenet", lambda v: v < 0.5)):
        code, _, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--convention", conv, "--json",
                           tmp_path / f"{conv}.json")
        assert code == 0, err
        res = json.loads((tmp_path / f"{conv}.json").read_text())["aggregate"]
        assert check(res["apls"]) and res["convention"] == conv
    code, _, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--convention", "sat2graph",
                       "--sat2graph-preset", "huge")
    assert code == 2 and "--sat2graph-preset must be one of" in err
