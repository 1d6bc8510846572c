"""``roadmap compare`` (issue 34): removed roads come back as missing and nothing else, whatever the CRS or input
order; a shift under the tolerance changes nothing; the OSM XML loads in osmnx with shared nodes; bad input is one
line and exit 2 with no file written; the SpaceNet / OpenStreetMap chips of ../shared."""
import json
import math
import random

import geopandas as gpd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.affinity import translate
from shapely.geometry import LineString, Point

from roadmap_cli.compare import compare_lines

E0, N0 = 660000.0, 4010000.0


def _sides(n: int, step: float, x0=E0, y0=N0):
    """The block sides of an n x n street grid (crossings are vertices), each its own LineString."""
    out = []
    for i in range(n):
        for j in range(n - 1):
            out.append(LineString([(x0 + i * step, y0 + j * step), (x0 + i * step, y0 + (j + 1) * step)]))
            out.append(LineString([(x0 + j * step, y0 + i * step), (x0 + (j + 1) * step, y0 + i * step)]))
    return out


def _km(items):
    return sum(LineString(xy).length for xy, _ in items) / 1000


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 6), st.integers(40, 120), st.data())
def test_removed_roads_come_back_as_missing_and_nothing_else(n, step, data):
    """Compare a grid with itself less some roads (as the reference): exactly those come back as missing."""
    grid = _sides(n, step)
    removed = sorted(data.draw(st.sets(st.integers(0, len(grid) - 1), min_size=1, max_size=len(grid) // 2)))
    ref = [g for i, g in enumerate(grid) if i not in removed]
    tol = 10.0
    res = compare_lines(grid, ref, None, tol=tol)
    gone = [grid[i] for i in removed]
    for xy, _ in res["missing"]:  # nothing that stayed in the map is missing: each piece lies on a removed road
        assert any(g.buffer(1e-6).covers(LineString(xy)) for g in gone)
    for g in gone:  # each removed road is missing but for at most the tolerance at each end
        covered = sum(LineString(xy).length for xy, _ in res["missing"] if g.buffer(1e-6).covers(LineString(xy)))
        assert covered >= g.length - 2 * tol - 1e-6, (g, covered)
    assert _km(res["unconfirmed"]) == 0  # the reference is a part of the prediction
    # the input order changes nothing, nor the CRS either network comes in (both are measured in one UTM zone)
    from roadmap_cli.score import _metric_lines

    pred_df = gpd.GeoDataFrame(geometry=data.draw(st.permutations(grid)), crs=32611)
    ref_df = gpd.GeoDataFrame(geometry=data.draw(st.permutations(ref)), crs=32611)
    pl, rl, _ = _metric_lines(pred_df.to_crs(data.draw(st.sampled_from([32611, 3857, 4326]))),
                              ref_df.to_crs(data.draw(st.sampled_from([32611, 3857, 4326]))))
    other = compare_lines(pl, rl, None, tol=tol)
    for k in ("missing", "mapped", "unconfirmed", "confirmed"):
        assert _km(other[k]) == pytest.approx(_km(res[k]), abs=1e-6), k


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 5), st.integers(50, 120), st.floats(0, 2 * math.pi), st.floats(0, 8.5))
def test_a_shift_under_the_tolerance_changes_nothing(n, step, theta, r):
    grid = _sides(n, step)
    ref = [translate(g, r * math.cos(theta), r * math.sin(theta)) for g in grid]
    res = compare_lines(grid, ref, None, tol=10.0)
    assert _km(res["missing"]) == 0 and _km(res["unconfirmed"]) == 0


@pytest.fixture
def grid_files(tmp_path):
    grid = _sides(5, 100)
    removed = {3, 4, 17}
    gpd.GeoDataFrame(geometry=grid, crs=32611).to_file(tmp_path / "pred.gpkg")
    ref = gpd.GeoDataFrame(geometry=[g for i, g in enumerate(grid) if i not in removed], crs=32611)
    return tmp_path, grid, removed, ref


@pytest.mark.parametrize("crs", [32611, 3857, 4326])
def test_cli_any_crs_same_kilometres(cli, grid_files, crs):
    tmp, grid, removed, ref = grid_files
    ref.to_crs(crs).to_file(tmp / "ref.geojson")
    code, out, err = cli("compare", tmp / "pred.gpkg", tmp / "ref.geojson", "-o", tmp / "d.gpkg", "--json",
                         tmp / "d.json")
    assert code == 0, err
    s = json.loads((tmp / "d.json").read_text())
    want = sum(grid[i].length for i in removed) / 1000
    assert want - 0.06 <= s["km"]["missing"] <= want + 1e-6 and s["km"]["unconfirmed"] == pytest.approx(0, abs=1e-3)
    layers = {name: gpd.read_file(tmp / "d.gpkg", layer=name) for name in ("missing", "unconfirmed", "mapped")}
    assert len(layers["missing"]) == s["pieces"]["missing"] and set(layers["missing"]["joins"]) <= {"one", "both"}
    assert layers["missing"].crs.to_epsg() == crs  # written in the reference's CRS


def test_osm_xml_loads_in_osmnx_and_shares_nodes(cli, grid_files):
    """Two removed sides that meet (an L at a corner) become two ways sharing their corner node; an end that joins
    an existing OpenStreetMap node of the reference reuses that node's id."""
    import xml.etree.ElementTree as ET

    import osmnx

    tmp, grid, removed, ref = grid_files
    ll = ref.to_crs(4326)
    nodes, ways, ids = [], [], {}
    for k, g in enumerate(ll.geometry):  # the reference as OpenStreetMap XML with positive ids
        refs = []
        for x, y in g.coords:
            key = (round(x, 7), round(y, 7))
            if key not in ids:
                ids[key] = 1000 + len(ids)
                nodes.append(f'<node id="{ids[key]}" version="3" lat="{y:.7f}" lon="{x:.7f}"/>')
            refs.append(ids[key])
        ways.append(f'<way id="{500 + k}" version="2">' + "".join(f'<nd ref="{r}"/>' for r in refs)
                    + '<tag k="highway" v="residential"/></way>')
    (tmp / "ref.osm").write_text('<?xml version="1.0"?><osm version="0.6">' + "".join(nodes + ways) + "</osm>")
    code, _, err = cli("compare", tmp / "pred.gpkg", tmp / "ref.osm", "-o", tmp / "d.gpkg", "--osm", tmp / "m.osm")
    assert code == 0, err
    root = ET.parse(tmp / "m.osm").getroot()
    assert root.get("upload") == "never"
    way_refs = [[nd.get("ref") for nd in w.findall("nd")] for w in root.findall("way")]
    assert len(way_refs) >= 2 and all(int(w.get("id")) < 0 for w in root.findall("way"))
    tags = {t.get("k"): t.get("v") for t in root.find("way").findall("tag")}
    assert tags["highway"] == "road" and "fixme" in tags and tags["source"].startswith("roadmap")
    ends = [r for refs in way_refs for r in (refs[0], refs[-1])]
    assert any(ends.count(r) > 1 for r in ends)  # ways meeting share a node
    assert any(int(r) > 0 for r in ends)  # an end on the existing network reuses its node
    existing = {n.get("id"): n.get("version") for n in root.findall("node") if int(n.get("id")) > 0}
    assert existing and set(existing.values()) == {"3"}
    g = osmnx.graph_from_xml(tmp / "m.osm", retain_all=True, simplify=False)
    assert g.number_of_edges() > 0


def test_report_shows_the_three_layers(cli, grid_files):
    tmp, _, _, ref = grid_files
    ref.to_file(tmp / "ref.gpkg")
    code, _, err = cli("compare", tmp / "pred.gpkg", tmp / "ref.gpkg", "-o", tmp / "d.gpkg", "--report", tmp / "r.html")
    assert code == 0, err
    page = (tmp / "r.html").read_text()
    assert all(f"{k} (" in page for k in ("missing", "mapped")) and "roadmap compare" in page
    assert "<script src=" not in page.split("<body>")[0] or "leaflet" in page  # self-contained


def test_area_from_the_scene_clips_the_comparison(cli, grid_files):
    """Only what the imagery shows is compared: a scene over the west half leaves the east half's removed road
    out."""
    import rasterio
    from rasterio.transform import from_origin

    tmp, grid, removed, ref = grid_files
    ref.to_file(tmp / "ref.gpkg")
    with rasterio.open(tmp / "west.tif", "w", driver="GTiff", width=150, height=400, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(E0 - 10, N0 + 410, 1, 1)) as ds:
        ds.write(np.full((3, 400, 150), 90, np.uint8))
    code, _, err = cli("compare", tmp / "pred.gpkg", tmp / "ref.gpkg", "-o", tmp / "d.gpkg", "--scene",
                       tmp / "west.tif", "--json", tmp / "d.json")
    assert code == 0, err
    missing = gpd.read_file(tmp / "d.gpkg", layer="missing")
    assert len(missing) and missing.total_bounds[2] <= E0 + 140 + 1e-6
    assert "valid pixels of west.tif" in json.loads((tmp / "d.json").read_text())["area_from"]


@pytest.mark.parametrize("case", ["points only", "no highway", "far apart", "garbage pbf", "tolerance 0"])
def test_bad_input_one_line_exit_2_nothing_written(cli, grid_files, case):
    tmp, grid, removed, ref = grid_files
    argv = [tmp / "pred.gpkg", tmp / "ref.gpkg", "-o", tmp / "d.gpkg"]
    if case == "points only":
        gpd.GeoDataFrame(geometry=[Point(E0, N0)], crs=32611).to_file(tmp / "ref.gpkg")
        words = "no line features"
    elif case == "no highway":
        (tmp / "ref.osm").write_text('<?xml version="1.0"?><osm version="0.6"><node id="1" lat="36.2" lon="-115.2"/>'
                                     '<node id="2" lat="36.21" lon="-115.2"/><way id="3"><nd ref="1"/><nd ref="2"/>'
                                     '<tag k="waterway" v="river"/></way></osm>')
        argv[1] = tmp / "ref.osm"
        words = "no highway"
    elif case == "far apart":
        ref.assign(geometry=[translate(g, 50000, 0) for g in ref.geometry]).to_file(tmp / "ref.gpkg")
        words = "do not overlap"
    elif case == "garbage pbf":
        (tmp / "ref.osm.pbf").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(500)))
        argv[1] = tmp / "ref.osm.pbf"
        words = "cannot read"
    else:
        ref.to_file(tmp / "ref.gpkg")
        argv += ["--tolerance-m", "0"]
        words = "--tolerance-m must be a positive"
    code, out, err = cli("compare", *argv, "--osm", tmp / "m.osm", "--json", tmp / "d.json")
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not any((tmp / n).exists() for n in ("d.gpkg", "m.osm", "d.json"))


def spacenet_rows(shared, tmp_path) -> dict:
    """chip -> (km SpaceNet labels, km OpenStreetMap, km missing from OSM, km of OSM unconfirmed, share confirmed)."""
    from roadmap_cli.compare import CompareOptions, run_compare

    d = shared / "spacenet3-vegas-apls" / "other_chips_no_imagery"
    rows = {}
    for chip in ("99", "990", "991", "995", "997", "998", "999"):
        name = f"AOI_2_Vegas_img{chip}.geojson"
        r = run_compare(CompareOptions(d / "spacenetroads" / name, d / "osm" / name, tmp_path / f"c{chip}.gpkg"))
        rows[chip] = (round(r.km["mapped"] + r.km["missing"], 2),
                      round(r.km["reference_confirmed"] + r.km["unconfirmed"], 2), round(r.km["missing"], 2),
                      round(r.km["unconfirmed"], 2), round(r.confirmed_share, 3))
    return rows


def test_spacenet_and_openstreetmap_chips(shared, tmp_path):
    """The README table: SpaceNet's labels (as the "prediction") against OpenStreetMap's roads for seven chips."""
    assert spacenet_rows(shared, tmp_path) == SPACENET_TABLE


SPACENET_TABLE = {  # measured 2026-12-07 (README "roadmap compare")
    "99": (0.32, 0.31, 0.0, 0.0, 1.0), "990": (3.31, 2.51, 0.85, 0.05, 0.981), "991": (2.6, 2.77, 0.16, 0.32, 0.885),
    "995": (2.4, 1.96, 0.52, 0.07, 0.966), "997": (2.33, 1.5, 0.76, 0.04, 0.974), "998": (3.43, 2.23, 1.22, 0.0, 1.0),
    "999": (3.27, 2.03, 1.18, 0.0, 1.0)}


def test_graphml_prediction(cli, grid_files):
    """roadmap's GraphML (osmnx schema: node x / y, edge geometry as WKT, the graph's crs) is a prediction too."""
    import networkx as nx

    tmp, grid, removed, ref = grid_files
    ref.to_file(tmp / "ref.gpkg")
    g = nx.MultiDiGraph(crs="EPSG:32611")
    for k, ln in enumerate(grid):
        (x0, y0), (x1, y1) = ln.coords
        g.add_node(f"{x0},{y0}", x=x0, y=y0)
        g.add_node(f"{x1},{y1}", x=x1, y=y1)
        g.add_edge(f"{x0},{y0}", f"{x1},{y1}", geometry=ln.wkt, mean_prob=0.8)
    nx.write_graphml(g, tmp / "pred.graphml")
    code, _, err = cli("compare", tmp / "pred.graphml", tmp / "ref.gpkg", "-o", tmp / "d.gpkg", "--json",
                       tmp / "d.json")
    assert code == 0, err
    missing = gpd.read_file(tmp / "d.gpkg", layer="missing")
    assert len(missing) == 3 and (missing["mean_prob"] == 0.8).all()


@pytest.mark.slow
def test_extract_compare_runs_at_the_end(cli, tmp_path):
    """``extract --compare REF``: the bundled model finds no road on the example chip, so every road of its
    SpaceNet centre lines comes back unconfirmed, over the chip's valid pixels."""
    from pathlib import Path

    ex = Path(__file__).resolve().parents[1] / "examples"
    code, out, err = cli("extract", ex / "vegas_img0.tif", "-o", tmp_path / "r.gpkg", "--compare",
                         ex / "vegas_img0_roads_gt.geojson")
    assert code == 0, err
    assert (tmp_path / "r.compare.gpkg").is_file() and (tmp_path / "r.missing.osm").is_file()
    un = gpd.read_file(tmp_path / "r.compare.gpkg", layer="unconfirmed")
    assert un.to_crs(un.estimate_utm_crs()).length.sum() > 4000 and "in the map, not confirmed" in out
