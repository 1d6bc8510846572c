"""APLS hand-computed cases, the real SpaceNet sample, pixel metrics and the score command."""
import csv
import json

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import LineString

from roadmap_cli.metrics.apls import apls, apls_from_masks
from roadmap_cli.metrics.pixel import PixelCounts, prf

CROSS = [LineString([(0, 0), (200, 0)]), LineString([(100, -100), (100, 100)])]


def test_identical_is_one_and_empty_is_zero():
    assert apls(CROSS, CROSS)["apls"] == pytest.approx(1.0)
    assert apls(CROSS, [])["apls"] == 0.0
    assert apls([], [])["apls"] == 1.0


def test_shift_below_and_above_snap_distance():
    def shifted(d):
        return [LineString([(0, d), (200, d)]), LineString([(100 + d, -100), (100 + d, 100)])]
    assert apls(CROSS, shifted(2))["apls"] > 0.95
    assert apls(CROSS, shifted(6))["apls"] == 0.0  # nothing snaps within 4 m


def test_missing_segment_hand_computed():
    # proposal lacks the vertical road. gt->prop: control nodes of the horizontal road (0,50,100,150,200: 5 nodes)
    # match; the 4 extra nodes of the vertical road (y=-100,-50,50,100) do not.  Pairs with any unmatched node
    # score 1; 9 nodes -> 72 ordered pairs, 20 among matched ones score 0 -> 1 - 52/72.
    res = apls(CROSS, [LineString([(0, 0), (200, 0)])])
    assert res["gt_to_prop"] == pytest.approx(1 - 52 / 72)
    assert res["prop_to_gt"] == pytest.approx(1.0)
    a, b = res["gt_to_prop"], res["prop_to_gt"]
    assert res["apls"] == pytest.approx(2 * a * b / (a + b))


def test_gap_breaks_paths():
    gap = [LineString([(0, 0), (90, 0)]), LineString([(110, 0), (200, 0)]), CROSS[1]]
    res = apls(CROSS, gap)
    assert 0 < res["apls"] < 0.75
    assert res["prop_to_gt"] == pytest.approx(1.0)


def test_spur_costs_little():
    spur = CROSS + [LineString([(50, 0), (50, 30)])]
    res = apls(CROSS, spur)
    assert 0.8 < res["apls"] < 1.0
    assert res["gt_to_prop"] == pytest.approx(1.0)


def test_detour_is_penalised_by_length():
    # the proposal joins A and B with a 300 m detour instead of a straight 200 m road
    gt = [LineString([(0, 0), (200, 0)])]
    prop = [LineString([(0, 0), (0, 50), (200, 50), (200, 0)])]
    res = apls(gt, prop, snap_m=4)
    assert res["gt_to_prop"] < 0.8


def test_control_points_placed_as_the_reference_tool_places_them():
    from roadmap_cli.metrics.apls import densify, graph_from_lines

    def n_control(length):
        return densify(graph_from_lines([LineString([(0, 0), (length, 0)])]), 50.0).n

    assert n_control(30) == 2     # shorter than 0.75 * spacing: end nodes only
    assert n_control(40) == 3     # 37.5 .. 50 m: one midpoint
    assert n_control(100) == 3    # 2 segments of 50 m
    assert n_control(120) == 4    # ceil(120 / 50) = 3 segments of 40 m


def _spacenet_sample(shared):
    import geopandas as gpd
    import rasterio
    from shapely import wkt

    d = shared / "spacenet3-vegas-apls"
    with rasterio.open(d / "RGB-PanSharpen_AOI_2_Vegas_img0.tif") as ds:
        t = ds.transform
    lines = []
    for row in csv.DictReader(open(d / "sn3_sample_submission_albu.csv")):
        g = wkt.loads(row["WKT_Pix"])
        if not g.is_empty:
            c = np.asarray(g.coords)
            x, y = t * (c[:, 0], c[:, 1])
            lines.append(LineString(np.c_[x, y]))
    prop = gpd.GeoDataFrame(geometry=lines, crs=4326)
    gt = gpd.read_file(d / "AOI_2_Vegas_img0_roads_gt.geojson")
    utm = gt.estimate_utm_crs()
    return list(gt.to_crs(utm).geometry), list(prop.to_crs(utm).geometry)


def test_spacenet_sample_proposal(shared):
    """The real SpaceNet Vegas ground truth and the sample proposal."""
    gt, prop = _spacenet_sample(shared)
    res = apls(gt, prop)
    assert res["apls"] == pytest.approx(0.8231, abs=0.001)  # measured
    assert res["gt_to_prop"] == pytest.approx(0.8491, abs=0.001)
    assert res["prop_to_gt"] == pytest.approx(0.7986, abs=0.001)


def test_spacenet_sample_reproduces_the_reference_tool(shared):
    """The SpaceNet reference tool (PyPI ``apls`` 0.1.0, ``--test_method gt_json_prop_wkt --linestring_delta 50
    --is_curved_eps -1``) scores this sample 0.7773 / 0.6867 -> 0.7292.  Its graph builder loses the 2.5 m segment
    that ground-truth features 7 and 20 share (a stretch of the main east-west road), which forces detours; with
    that one segment removed from the ground truth our APLS equals the reference tool's."""
    gt, prop = _spacenet_sample(shared)
    a, b = (664545.864, 4011954.016), (664548.410, 4011953.985)  # UTM 11N ends of the shared segment

    def is_shared(p, q):
        near = lambda u, v: abs(u[0] - v[0]) < 0.1 and abs(u[1] - v[1]) < 0.1  # noqa: E731
        return (near(p, a) and near(q, b)) or (near(p, b) and near(q, a))

    cut = []
    for line in gt:
        c = list(line.coords)
        start = 0
        for i in range(len(c) - 1):
            if is_shared(c[i], c[i + 1]):
                cut.append(c[start:i + 1])
                start = i + 1
        cut.append(c[start:])
    cut = [LineString(c) for c in cut if len(c) >= 2]
    assert len(cut) == len(gt) + 1  # feature 7 split in two, feature 20 shortened
    res = apls(cut, prop)
    assert res["gt_to_prop"] == pytest.approx(0.7773, abs=0.001)
    assert res["prop_to_gt"] == pytest.approx(0.6867, abs=0.001)
    assert res["apls"] == pytest.approx(0.7292, abs=0.001)


def test_apls_from_masks_identical_and_broken():
    m = np.zeros((200, 200), bool)
    m[98:103, 5:195] = True
    m[5:195, 98:103] = True
    assert apls_from_masks(m, m, gsd=1.0) == pytest.approx(1.0, abs=1e-4)
    broken = m.copy()
    broken[:, 60:80] = False
    assert apls_from_masks(m, broken, gsd=1.0) < 0.8


def test_pixel_metrics_hand_computed():
    gt = np.zeros((4, 4), bool)
    gt[1, :] = True
    pred = np.zeros((4, 4), bool)
    pred[1, :2] = True
    pred[3, 0] = True
    r = prf(2, 1, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(0.5)
    assert r["iou"] == pytest.approx(0.4) and r["f1"] == pytest.approx(4 / 7)
    c = PixelCounts(slack=1)
    row = c.add(pred, gt)
    assert row["f1"] == pytest.approx(4 / 7)
    assert row["relaxed_precision"] == pytest.approx(2 / 3)  # (3,0) is 2 px from the road
    assert row["relaxed_recall"] == pytest.approx(0.75)       # (1,3) is 2 px from any prediction


def test_dataset_wide_vs_per_image_mean():
    c = PixelCounts()
    a = np.zeros((10, 10), bool)
    a[0, :] = True
    c.add(a, a)
    b = np.zeros((10, 10), bool)
    b[0, 0] = True
    c.add(np.zeros_like(b), b)
    s = c.summary()
    assert s["f1"] == pytest.approx(20 / 21) and s["mean_f1"] == pytest.approx(0.5)


def _save(path, a):
    Image.fromarray(a).save(path)


def test_score_folders_json_csv_and_unmatched(cli, tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    m = np.zeros((100, 100), np.uint8)
    m[48:53, :] = 255
    for name in ("a", "b"):
        _save(gt / f"{name}.png", m)
        _save(pred / f"{name}.png", m)
    _save(gt / "only_gt.png", m)
    code, out, err = cli("score", pred, gt, "--gsd", "1", "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv",
                         "--skip-unmatched")
    assert code == 0, err
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["aggregate"]["f1"] == 1.0 and res["aggregate"]["apls"] == pytest.approx(1.0, abs=1e-4)
    assert res["unmatched_gt"] == ["only_gt"] and "only_gt" in out
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["name"] for r in rows] == ["a", "b", "ALL", "MEAN"]
    # by default (SpaceNet's convention) the ground truth without a prediction scores 0, and the output says so
    code, out, err = cli("score", pred, gt, "--gsd", "1", "--json", tmp_path / "d.json")
    res = json.loads((tmp_path / "d.json").read_text())
    assert res["aggregate"]["apls"] == pytest.approx(2 / 3, abs=1e-4) and res["aggregate"]["recall"] == pytest.approx(
        2 / 3) and res["aggregate"]["images"] == 3
    assert [r["name"] for r in res["per_image"]][-1] == "only_gt" and "scored 0" in " ".join(out.split())


def test_score_bad_inputs(cli, tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    _save(gt / "a.png", np.zeros((10, 10), np.uint8))
    _save(pred / "a.png", np.zeros((12, 10), np.uint8))
    code, out, err = cli("score", pred, gt, "--no-apls")  # another size: resampled onto the label, and said
    assert code == 0 and "resampled onto their label's grid: a" in " ".join(out.split())
    _save(pred / "a.png", (np.arange(100).reshape(10, 10) * 2).astype(np.uint8))
    code, _, err = cli("score", pred, gt, "--no-apls")
    assert code == 2 and "not a binary mask" in err and "--threshold" in err
    code, _, err = cli("score", pred, gt, "--no-apls", "--threshold", "0.5")
    assert code == 0
    (pred / "a.png").write_bytes(b"garbage")
    code, _, err = cli("score", pred, gt, "--no-apls")
    assert code == 2 and "cannot read" in err and "Traceback" not in err
    code, _, err = cli("score", tmp_path / "nope", gt)
    assert code == 2 and "not found" in err


def test_score_vectors_reprojects_other_crs(cli, tmp_path, shared):
    import geopandas as gpd
    gt = shared / "spacenet3-vegas-apls" / "AOI_2_Vegas_img0_roads_gt.geojson"
    df = gpd.read_file(gt)
    df.to_crs(df.estimate_utm_crs()).to_file(tmp_path / "pred.gpkg", layer="edges")
    code, out, err = cli("score", tmp_path / "pred.gpkg", gt, "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["apls"] == pytest.approx(1.0, abs=1e-4)


def test_score_convention_unknown_is_clear(cli, tmp_path):
    code, _, err = cli("score", tmp_path, tmp_path, "--convention", "cosmiq")
    assert code == 2 and "--convention must be spacenet or sat2graph" in err


def _grid(tmp_path, crs, name, shift=0.0):
    """A 2 km street grid near Las Vegas (UTM 11N), written in ``crs``; ``shift`` moves it east (metres)."""
    import geopandas as gpd
    from shapely.geometry import LineString
    x0, y0 = 660000.0 + shift, 4010000.0
    lines = [LineString([(x0 + i * 400, y0), (x0 + i * 400, y0 + 2000)]) for i in range(6)]
    lines += [LineString([(x0, y0 + i * 400), (x0 + 2000, y0 + i * 400)]) for i in range(6)]
    df = gpd.GeoDataFrame(geometry=lines, crs="EPSG:32611").to_crs(crs)
    path = tmp_path / f"{name}.gpkg"
    df.to_file(path)
    return path


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:2229", "EPSG:4326"])
def test_vector_scores_do_not_depend_on_the_crs(cli, tmp_path, crs):
    """Lengths are ground metres whatever the CRS: Web Mercator (x1.25 here), US feet, degrees score as UTM."""
    scores = []
    for c in ("EPSG:32611", crs):
        gt = _grid(tmp_path, c, f"gt_{c[5:]}")
        pred = _grid(tmp_path, c, f"pred_{c[5:]}", shift=3.0)  # within SpaceNet's 4 m snap
        code, _, err = cli("score", pred, gt, "--json", tmp_path / f"{c[5:]}.json")
        assert code == 0, err
        scores.append(json.loads((tmp_path / f"{c[5:]}.json").read_text())["per_image"][0])
    assert scores[0]["apls"] == pytest.approx(scores[1]["apls"], abs=2e-3)
    assert scores[0]["gt_km"] == pytest.approx(scores[1]["gt_km"], rel=2e-3) == pytest.approx(24.0, rel=2e-3)


def test_identical_inputs_score_exactly_one(shared):
    import geopandas as gpd
    df = gpd.read_file(shared / "spacenet3-vegas-apls" / "AOI_2_Vegas_img0_roads_gt.geojson")
    g = list(df.to_crs(df.estimate_utm_crs()).geometry)
    assert apls(g, g) == {"apls": 1.0, "gt_to_prop": 1.0, "prop_to_gt": 1.0}


def test_geojson_without_crs(cli, tmp_path):
    import geopandas as gpd
    utm = gpd.read_file(_grid(tmp_path, "EPSG:32611", "g"))
    text = json.loads(utm.to_json())
    text.pop("crs", None)  # UTM coordinates, no "crs" member
    (tmp_path / "nocrs.geojson").write_text(json.dumps(text))
    code, _, err = cli("score", tmp_path / "nocrs.geojson", tmp_path / "nocrs.geojson")
    assert code == 2 and "do not fit degrees" in err and "--crs" in err and "internal error" not in err
    code, out, err = cli("score", tmp_path / "nocrs.geojson", tmp_path / "g.gpkg", "--crs", "EPSG:32611", "--json",
                         tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["apls"] == 1.0
    ll = json.loads(utm.to_crs(4326).to_json())
    ll.pop("crs", None)  # degrees without a crs member: RFC 7946's WGS 84
    (tmp_path / "deg.geojson").write_text(json.dumps(ll))
    code, _, err = cli("score", tmp_path / "deg.geojson", tmp_path / "g.gpkg", "--json", tmp_path / "q.json")
    assert code == 0, err
    assert json.loads((tmp_path / "q.json").read_text())["aggregate"]["apls"] == pytest.approx(1.0, abs=1e-6)


def test_blocked_apls_equals_all_at_once():
    """Dijkstra in blocks of sources (bounded memory) gives the same score as one block."""
    from roadmap_cli.metrics.apls import densify, graph_from_lines, one_direction
    rng = np.random.default_rng(3)
    lines = [LineString([(x, 0), (x, 1000)]) for x in range(0, 1001, 250)]
    lines += [LineString([(0, y), (1000, y)]) for y in range(0, 1001, 250)]
    prop = [LineString(np.asarray(ln.coords) + rng.normal(0, 1.5, (2, 2))) for ln in lines[:-2]]
    g, p = densify(graph_from_lines(lines), 50), densify(graph_from_lines(prop), 50)
    whole = one_direction(g, p, 4.0, block=10 ** 6)
    assert 0 < whole < 1
    for block in (1, 7, 64):
        assert one_direction(g, p, 4.0, block=block) == pytest.approx(whole, abs=1e-12)


def test_pooled_and_per_image_relaxed_scores_are_both_reported_and_named():
    c = PixelCounts(slack=1)
    a = np.zeros((10, 10), bool)
    a[0, :] = True
    c.add(a, a)  # 10 of 10
    b = np.zeros((10, 10), bool)
    b[5, 5] = True
    c.add(b, np.zeros_like(b))  # 1 false pixel
    s = c.summary()
    assert s["relaxed_precision"] == pytest.approx(10 / 11)  # pooled
    assert s["mean_relaxed_precision"] == pytest.approx(0.5)  # per image: 1 and 0
    assert s["precision"] == pytest.approx(10 / 11) and s["mean_precision"] == pytest.approx(0.5)


def test_prediction_on_another_grid_is_resampled_and_soft_labels_take_a_gt_threshold(cli, tmp_path):
    import rasterio
    from rasterio.transform import from_origin
    gt = np.zeros((100, 100), np.uint8)
    gt[40:60, :] = 255
    with rasterio.open(tmp_path / "g.tif", "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(gt, 1)
    pred = np.zeros((50, 50), np.uint8)
    pred[20:30, :] = 1  # the same road on a 2 m grid
    with rasterio.open(tmp_path / "p.tif", "w", driver="GTiff", width=50, height=50, count=1, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(500000, 4000000, 2, 2)) as ds:
        ds.write(pred, 1)
    code, out, err = cli("score", tmp_path / "p.tif", tmp_path / "g.tif", "--no-apls", "--json", tmp_path / "s.json")
    assert code == 0, err
    row = json.loads((tmp_path / "s.json").read_text())["per_image"][0]
    assert row["resampled_from"] == "50x50" and row["f1"] == 1.0
    soft = (np.linspace(0, 255, 100)[None, :].repeat(100, 0)).astype(np.uint8)  # a soft-edged label
    _save(tmp_path / "soft.png", soft)
    _save(tmp_path / "half.png", (soft >= 0.8 * 255).astype(np.uint8) * 255)
    code, _, err = cli("score", tmp_path / "half.png", tmp_path / "soft.png", "--no-apls", "--gt-threshold", "0.8",
                       "--json", tmp_path / "t.json")
    assert code == 0, err
    assert json.loads((tmp_path / "t.json").read_text())["aggregate"]["f1"] == 1.0


def test_travel_time_apls_hand_case():
    """Two routes from A (0, 0) to B (1000, 0): the straight one, 1000 m at 10 m/s (100 s), and a detour of
    ~1414 m at 30 m/s (~47 s).  In time the detour is the shortest path; a proposal that is right in shape but slow on
    the detour gets a lower APLS_time, while its length APLS stays 1."""
    straight = LineString([(0, 0), (1000, 0)])
    detour = LineString([(0, 0), (500, 500), (1000, 0)])
    gt = [straight, detour]
    fast, slow = [1 / 10, 1 / 30], [1 / 10, 1 / 10]
    assert apls(gt, gt, gt_rates=fast, prop_rates=fast)["apls"] == 1.0
    assert apls(gt, gt)["apls"] == 1.0
    wrong = apls(gt, gt, gt_rates=fast, prop_rates=slow)
    assert 0.3 < wrong["apls"] < 0.99


def test_score_weight_time(cli, tmp_path, shared):
    import geopandas as gpd
    gt = shared / "spacenet3-vegas-apls" / "AOI_2_Vegas_img0_roads_gt.geojson"
    df = gpd.read_file(gt)
    same = tmp_path / "same.gpkg"
    df.to_file(same)
    slow = df.copy()
    slow["speed_mph"] = slow["speed_mph"] / 3
    slow = slow.drop(columns=["speed_m/s"])
    slow.to_file(tmp_path / "slow.gpkg")
    nospeed = df.drop(columns=["speed_mph", "speed_m/s"])
    nospeed.to_file(tmp_path / "nospeed.gpkg")
    code, _, err = cli("score", same, gt, "--weight", "time", "--json", tmp_path / "a.json")
    assert code == 0, err
    assert json.loads((tmp_path / "a.json").read_text())["aggregate"]["apls"] == 1.0
    code, _, err = cli("score", tmp_path / "slow.gpkg", gt, "--weight", "time", "--json", tmp_path / "b.json")
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["aggregate"]["apls"] < 0.9  # uniformly 3x too slow
    code, _, err = cli("score", tmp_path / "nospeed.gpkg", gt, "--weight", "time")
    assert code == 2 and "needs a speed column" in err
    code, _, err = cli("score", same, gt, "--weight", "time", "--convention", "sat2graph")
    assert code == 2 and "use it with --convention spacenet" in err
