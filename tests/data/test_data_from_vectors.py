"""`roadmap datasets from-vectors`: training pairs from a georeferenced scene and road centre lines."""
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.enums
from PIL import Image

from roadmap_cli.data.sources import folder_pairs
from roadmap_cli.io.raster import working_grid

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENE, ROADS = EXAMPLES / "vegas_img0.tif", EXAMPLES / "vegas_img0_roads_gt.geojson"


def test_pairs_are_on_extracts_working_grid_and_labels_follow_the_lines(cli, tmp_path):
    code, out, err = cli("datasets", "from-vectors", SCENE, ROADS, "--out", tmp_path / "ds")
    assert code == 0, err
    assert "1 pair(s)" in out
    img = np.asarray(Image.open(tmp_path / "ds" / "images" / "vegas_img0.png"))
    lab = np.asarray(Image.open(tmp_path / "ds" / "labels" / "vegas_img0.png"))
    with rasterio.open(SCENE) as ds:
        grid = working_grid(ds, 1.0)
        src = ds.read([1, 2, 3], out_shape=(3, grid.height, grid.width),
                      resampling=rasterio.enums.Resampling.average).transpose(1, 2, 0)
    assert img.shape == (grid.height, grid.width, 3) and lab.shape == (grid.height, grid.width)
    assert np.median(np.abs(img.astype(int) - src.astype(int))) <= 2  # the scene itself (uint8: no stretch)
    assert set(np.unique(lab)) == {0, 255}
    # every point along the centre lines is road; points 15 m away from every line are not
    lines = gpd.read_file(ROADS).to_crs(grid.crs)
    inv = ~grid.transform
    on = [p for g in lines.geometry for d in np.arange(0, g.length, g.length / 20)
          for p in [g.interpolate(d)]]
    rc = [inv * (p.x, p.y) for p in on]
    inside = [(int(r), int(c)) for c, r in rc if 0 <= r < grid.height and 0 <= c < grid.width]
    assert len(inside) > 300
    assert np.mean([lab[r, c] == 255 for r, c in inside]) > 0.97
    utm = lines.estimate_utm_crs()
    union = lines.to_crs(utm).union_all()
    rng = np.random.default_rng(0)

    def dist_m(value):  # distances in metres from 400 random pixels of that label value to the nearest line
        rows, cols = np.nonzero(lab == value)
        pick = rng.choice(len(rows), 400, replace=False)
        xy = grid.transform * (cols[pick] + 0.5, rows[pick] + 0.5)
        pts = gpd.GeoSeries(gpd.points_from_xy(*xy), crs=grid.crs)
        return pts.to_crs(utm).distance(union).to_numpy()

    # 7 m wide labels (3.5 m half-width; working pixels are square, 1 m on the ground)
    assert (dist_m(255) < 5.0).mean() > 0.99 and (dist_m(0) > 2.5).mean() > 0.99
    assert [p.stem for p in folder_pairs(tmp_path / "ds")] == ["vegas_img0"]  # ready for train --dataset folder


def test_large_scenes_are_cut_into_tiles(cli, tmp_path):
    code, out, err = cli("datasets", "from-vectors", SCENE, ROADS, "--out", tmp_path / "ds", "--tile", "150",
                         "--name", "v")
    assert code == 0, err
    with rasterio.open(SCENE) as ds:
        grid = working_grid(ds, 1.0)  # 316 x 389: square 1 m ground pixels of a 0.24 x 0.30 m EPSG:4326 scene
    stems = sorted(p.stem for p in (tmp_path / "ds" / "images").glob("*.png"))
    assert stems == sorted(f"v_r{i}_c{j}" for i in range(3) for j in range(3))  # roads reach every tile
    a = np.asarray(Image.open(tmp_path / "ds" / "labels" / "v_r2_c2.png"))
    assert a.shape == (grid.height - 300, grid.width - 300)  # the last tile is the remainder
    code, _, err = cli("datasets", "from-vectors", SCENE, ROADS, "--out", tmp_path / "ds", "--tile", "150",
                       "--name", "v")
    assert code == 2 and "exists (use --overwrite)" in err


def test_bad_inputs_are_one_line_errors(cli, tmp_path):
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as d:
        d.write(np.zeros((3, 64, 64), np.uint8))
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=gpd.GeoSeries.from_wkt(["LINESTRING (10 10, 10.01 10.01)"]), crs=4326).to_file(far)
    cases = [((plain, ROADS), "no georeferencing"), ((SCENE, far), "no road of"),
             ((SCENE, tmp_path / "missing.geojson"), "cannot read"), ((tmp_path / "nope.tif", ROADS), "not found")]
    for (scene, roads), msg in cases:
        code, _, err = cli("datasets", "from-vectors", scene, roads, "--out", tmp_path / "o")
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (msg, err)
    assert not (tmp_path / "o").exists()  # nothing written, not even empty folders
