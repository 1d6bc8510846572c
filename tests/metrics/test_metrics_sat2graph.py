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
    """A 400 m east-west road 500 m south of the frame's top edge: 201 hops, 202 vertices; n = floor(202/25)+1 = 9
    candidates at floor(202 i/9).  The region is the default preset's fixed 2048 m square, so only the west margin
    (100 m) bites: candidates east of 100 m are kept (ids 67..179), the west dead end (east 0) is out and the east
    dead end (east 400 m, far inside 2048 - 100) is a control point: Go never applies the far margins on a small tile."""
    g = densify(_edges(((500, 0), (500, 400))))
    assert g.n == 202
    cps = control_points(g, g, PRESETS["default"])
    assert cps == [67, 89, 112, 134, 157, 179, 201]
    assert all(100 < (g.coords[c][1] + 71) * 111111 * math.cos(math.radians(41)) <= 400 + 1e-6 for c in cps)
    assert control_points(g, g, PRESETS["small"]) == []  # 500 m south: outside the small presets' 352 m region
    near = densify(_edges(((200, 0), (200, 400))))
    small = control_points(near, near, PRESETS["small"])  # 30 m margin: east 30..322 m only
    east = [(near.coords[c][1] + 71) * 111111 * math.cos(math.radians(41)) for c in small]
    assert len(small) == 10 and all(30 < e < 322 for e in east) and max(east) > 300  # 13 candidates, 10 inside


def test_junctions_and_dead_ends_are_control_points():
    g = densify(_edges(((300, 300), (300, 330)), ((300, 330), (330, 330)), ((300, 330), (300, 360))))
    cps = control_points(g, g, PRESETS["default"])
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
    g = densify(_edges(((500, 400), (500, 480))))
    assert math.isnan(one_way(g, g, PRESETS["default"]))
    empty = DenseGraph()
    assert one_way(g, empty, PRESETS["default"]) == 0.0  # one missing pair, score 1
    long = densify(_edges(((500, 300), (500, 700))))  # 400 m, both dead ends inside the 100 m margin
    assert one_way(long, long, PRESETS["default"]) == 1.0


def test_directions_are_averaged_arithmetically():
    frame = [LineString([(0, 0), (1200, 0)]), LineString([(0, 1000), (1200, 1000)])]  # sets the region
    main = LineString([(0, 300), (1200, 300)])
    gt = frame + [main, LineString([(600, 300), (600, 1000)])]
    prop = frame + [main]  # the side road is missing
    r = apls_sat2graph(gt, prop)
    assert 0 < r["gt_to_prop"] < 1 and r["apls"] == pytest.approx((r["gt_to_prop"] + r["prop_to_gt"]) / 2)
    assert apls_sat2graph(gt, prop) == r  # deterministic (the Go program is not)


def _noded_grid(x0=0.0, y0=0.0, n=5, step=300.0):
    """A street grid whose crossings are vertices: one LineString per block side."""
    s = [i * step for i in range(n)]
    lines = [LineString([(x0 + x, y0 + y), (x0 + x, y0 + y + step)]) for x in s for y in s[:-1]]
    return lines + [LineString([(x0 + y, y0 + x), (x0 + y + step, y0 + x)]) for x in s for y in s[:-1]]


def test_six_metre_shift_is_near_one_under_sat2graph_and_near_zero_under_spacenet():
    grid = _noded_grid()
    shifted = [translate(ln, 6, 0) for ln in grid]
    assert apls_sat2graph(grid, grid)["apls"] == 1.0
    assert apls_sat2graph(grid, shifted)["apls"] > 0.98  # 0.9936 (spec §C: 0.98-0.99 in Go)
    assert apls(grid, shifted)["apls"] < 0.5
    both = [translate(ln, 6, 6) for ln in grid]
    assert apls_sat2graph(grid, both)["apls"] > 0.98 and apls(grid, both)["apls"] == 0.0


def test_score_cli_sat2graph_convention(cli, tmp_path):
    import geopandas as gpd
    grid = _noded_grid(660000, 4010000)
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(tmp_path / "gt.gpkg")
    gpd.GeoDataFrame(geometry=[translate(g, 6, 0) for g in grid], crs=32611).to_file(tmp_path / "pred.gpkg")
    for conv, check in (("sat2graph", lambda v: v > 0.98), ("spacenet", lambda v: v < 0.5)):
        code, _, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--convention", conv, "--json",
                           tmp_path / f"{conv}.json")
        assert code == 0, err
        res = json.loads((tmp_path / f"{conv}.json").read_text())["aggregate"]
        assert check(res["apls"]) and res["convention"] == conv
    code, _, err = cli("score", tmp_path / "pred.gpkg", tmp_path / "gt.gpkg", "--convention", "sat2graph",
                       "--sat2graph-preset", "huge")
    assert code == 2 and "--sat2graph-preset must be one of" in err
