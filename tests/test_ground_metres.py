"""Metres that are metres: square ground pixels and geodesic lengths in every CRS, --scene-gsd, full-resolution
resampling (no lossy overviews)."""
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Geod, Transformer
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import LineString

from roadmap_cli import extract as ex
from roadmap_cli.export import metric_lengths
from roadmap_cli.io.raster import (
    StretchStats,
    ground_scale_variation,
    open_raster,
    pixel_ground_size,
    read_window,
    working_grid,
)

GEOD = Geod(ellps="WGS84")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vegas_img0.tif"
SRC_M = 0.5  # ground metres per source pixel of the synthetic scenes
SIZE = 320  # source pixels: 160 m on the ground



def _res(crs: str, lat: float) -> tuple[float, float, float, float]:
    """(pixel x, pixel y, origin x, origin y) in CRS units for SRC_M ground metres per pixel at ``lat``."""
    if crs == "EPSG:4326":
        lon1 = GEOD.fwd(10.0, lat, 90, SRC_M)[0]
        lat1 = GEOD.fwd(10.0, lat, 0, SRC_M)[1]
        return lon1 - 10.0, lat1 - lat, 10.0, lat
    x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(10.0, lat)
    k = 1 / math.cos(math.radians(lat))  # Web Mercator's scale factor: SRC_M on the ground is k * SRC_M units
    return SRC_M * k, SRC_M * k, x0, y0


def _scene(path, crs, lat):
    """Two 8 m wide bright roads through the centre, one along a row, one along a column."""
    m = np.zeros((SIZE, SIZE), bool)
    m[SIZE // 2, :] = True
    m[:, SIZE // 2] = True
    m = ndimage.binary_dilation(m, iterations=8)  # 17 px = 8.5 m wide
    rx, ry, x0, y0 = _res(crs, lat)
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs=crs,
                       transform=from_origin(x0, y0, rx, ry)) as ds:
        ds.write(np.stack([np.where(m, 200, 60).astype(np.uint8)] * 3))
    return path


def _true_length(path) -> float:
    """Geodesic length of the two drawn centre lines, edge to edge."""
    with rasterio.open(path) as ds:
        t, crs = ds.transform, ds.crs
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    total = 0.0
    for a, b in (((0, SIZE / 2 + 0.5), (SIZE, SIZE / 2 + 0.5)), ((SIZE / 2 + 0.5, 0), (SIZE / 2 + 0.5, SIZE))):
        cols, rows = np.linspace(a[0], b[0], 50), np.linspace(a[1], b[1], 50)
        x, y = t * (cols, rows)
        lon, lat = to_ll.transform(x, y)
        total += GEOD.line_length(lon, lat)
    return total


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
@pytest.mark.parametrize("lat", [0.0, 22.0, 45.0, 60.0])
def test_square_ground_pixels_and_geodesic_lengths(tmp_path, bright, monkeypatch, crs, lat):
    scene = _scene(tmp_path / "s.tif", crs, lat)
    with open_raster(scene) as ds:
        gx, gy = pixel_ground_size(ds)
        assert gx == pytest.approx(SRC_M, rel=0.01) and gy == pytest.approx(SRC_M, rel=0.01)
        grid = working_grid(ds, 1.0)
    assert abs(grid.width - SIZE / 2) <= 2 and abs(grid.height - SIZE / 2) <= 2  # 1 m working pixels, square
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: bright)
    out = tmp_path / "r.gpkg"
    r = ex.run_extract(ex.ExtractOptions(scene=scene, output=out, tile=128, overlap=32, prob_out=tmp_path / "p.tif",
                                         min_spur_m=0, min_component_m=0, raster_grid="model"))
    assert r.gsd == pytest.approx(1.0, rel=0.01)
    with rasterio.open(tmp_path / "p.tif") as p:
        px, py = pixel_ground_size(p)
    assert px == pytest.approx(1.0, rel=0.015) and py == pytest.approx(1.0, rel=0.015)
    edges = gpd.read_file(out, layer="edges")
    assert edges.crs == rasterio.crs.CRS.from_user_input(crs)  # outputs stay in the scene's CRS
    truth = _true_length(scene)  # ~320 m
    assert 0.95 * truth < edges["length_m"].sum() < 1.01 * truth, (edges["length_m"].sum(), truth)
    assert edges["width_m"].median() == pytest.approx(8.5, abs=1.5)  # road width in ground metres


@pytest.mark.parametrize("crs, lat", [("EPSG:3857", 0), ("EPSG:3857", 22), ("EPSG:3857", 45), ("EPSG:3857", 60),
                                      ("EPSG:4326", 36), ("EPSG:32633", 45), ("EPSG:2263", 40.7),
                                      ("EPSG:3035", 52)])
def test_metric_lengths_are_geodesic_in_any_crs(crs, lat):
    """A 1 km geodesic line, drawn in the CRS, measures 1 km whatever the CRS's unit or scale factor."""
    lon0 = {"EPSG:2263": -73.9, "EPSG:32633": 15.0, "EPSG:3035": 10.0}.get(crs, 10.0)
    lons, lats = zip(*[GEOD.fwd(lon0, lat, 60, d)[:2] for d in np.linspace(0, 1000, 41)])
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lons, lats)
    got = metric_lengths([LineString(np.c_[x, y])], crs)[0]
    assert got == pytest.approx(1000.0, abs=0.05)


def test_ground_scale_variation_of_web_mercator():
    """Web Mercator's scale factor grows with latitude: at 60 N a 100 km scene's corners are > 1 % off its centre."""
    lat = 60.0
    rx, _, x0, y0 = _res("EPSG:3857", lat)
    for size_m, check in ((100_000, lambda v: v > 0.01), (1_000, lambda v: v < 0.002)):
        with rasterio.MemoryFile() as f, f.open(driver="GTiff", width=100, height=100, count=1, dtype="uint8",
                                                crs="EPSG:3857",
                                                transform=from_origin(x0, y0, rx * size_m / 50, rx * size_m / 50)) as ds:
            assert check(ground_scale_variation(ds)), size_m


def test_scene_gsd_for_images_without_georeferencing(cli, tmp_path):
    """--scene-gsd 0.5 on a 0.5 m image: the model sees it at 1 m, lengths come out in metres."""
    plain = tmp_path / "plain.tif"
    m = np.zeros((SIZE, SIZE), bool)
    m[SIZE // 2 - 8:SIZE // 2 + 9, :] = True
    with rasterio.open(plain, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8") as ds:
        ds.write(np.stack([np.where(m, 200, 60).astype(np.uint8)] * 3))
    with open_raster(plain) as ds:
        grid = working_grid(ds, 1.0, scene_gsd=0.5)
        assert (grid.width, grid.height, grid.gsd) == (SIZE // 2, SIZE // 2, 1.0)
        assert grid.metres_per_unit == 0.5  # output coordinates are source pixels of 0.5 m
        same = working_grid(ds, 1.0)  # no statement: taken to be at the model's resolution
        assert (same.width, same.height) == (SIZE, SIZE)


def test_scene_gsd_lengths_and_messages(cli, tmp_path, monkeypatch, bright):
    plain = tmp_path / "plain.tif"
    m = np.zeros((SIZE, SIZE), bool)
    m[SIZE // 2 - 8:SIZE // 2 + 9, :] = True
    with rasterio.open(plain, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8") as ds:
        ds.write(np.stack([np.where(m, 200, 60).astype(np.uint8)] * 3))
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: bright)
    code, out, err = cli("extract", plain, "-o", tmp_path / "r.gpkg", "--allow-pixel-coords", "--scene-gsd", "0.5",
                         "--tile", "128", "--min-spur-m", "0")
    assert code == 0, err
    edges = gpd.read_file(tmp_path / "r.gpkg", layer="edges")
    assert edges["length_m"].sum() == pytest.approx(SIZE * 0.5, rel=0.05)  # 160 m, not 320 "m" of pixels
    assert "scene 0.500 x 0.500 m/px, model 1.00 m/px" in out
    code, out, _ = cli("extract", plain, "-o", tmp_path / "d.gpkg", "--allow-pixel-coords", "--scene-gsd", "0.5",
                       "--dry-run")
    assert code == 0 and "0.500 x 0.500 m/px ground, as given" in out and "at 1.000 m/px on the ground" in out
    for bad in ("nan", "inf", "-1", "0"):
        code, _, err = cli("extract", plain, "-o", tmp_path / "e.gpkg", "--allow-pixel-coords", "--scene-gsd", bad)
        assert code == 2 and "--scene-gsd must be a positive number" in err
        assert not (tmp_path / "e.gpkg.roadmap-work").exists()


def test_jpeg_and_lossless_copies_give_the_same_probabilities(tmp_path):
    """A JPEG's internal DCT-scaled overviews must not stand in for its pixels when the scene is downsampled."""
    from rasterio.shutil import copy

    tif = tmp_path / "v.tif"
    with rasterio.open(EXAMPLE) as ds:
        profile = {**ds.profile, "count": 3, "tiled": True, "blockxsize": 256, "blockysize": 256,
                   "compress": "deflate"}
        with rasterio.open(tif, "w", **profile) as out:
            out.write(ds.read([1, 2, 3]))
    copy(tif, tmp_path / "v.jpg", driver="JPEG", QUALITY=95)
    with rasterio.open(tmp_path / "v.jpg") as ds:
        assert ds.overviews(1)  # GDAL offers them: the reader must not use them
    probs = []
    for src in (tif, tmp_path / "v.jpg"):
        out = tmp_path / f"{src.suffix[1:]}.gpkg"
        ex.run_extract(ex.ExtractOptions(scene=src, output=out, prob_out=tmp_path / f"{src.suffix[1:]}.tif"))
        with rasterio.open(tmp_path / f"{src.suffix[1:]}.tif") as p:
            probs.append(p.read(1))
    diff = np.abs(probs[0] - probs[1])
    assert diff.max() < 0.15 and diff.mean() < 0.002, (diff.max(), diff.mean())
    # the model's input itself: the working-grid pixels differ by JPEG's own loss only (GDAL's overview-based
    # downsampled read of the same JPEG is up to 42 grey levels off the TIFF here)
    imgs = []
    for src in (tif, tmp_path / "v.jpg"):
        with open_raster(src) as ds:
            grid = working_grid(ds, 1.0)
            imgs.append(read_window(ds, grid, [1, 2, 3], StretchStats(ds, [1, 2, 3]), 0, grid.height, 0,
                                    grid.width)[0])
    assert np.abs(imgs[0] - imgs[1]).max() <= 12 and np.abs(imgs[0] - imgs[1]).mean() < 1


def test_scene_too_large_for_one_scale_is_warped_to_utm(tmp_path, bright, monkeypatch, caplog):
    """A 100 km EPSG:3857 scene at 60 N (scale factor varies by > 1 %): warped block by block to its UTM zone, the
    graph comes back in EPSG:3857 with geodesic lengths, the working pixels are square on the ground everywhere."""
    size, cell = 400, 250.0  # 250 m ground pixels: 100 km
    m = np.zeros((size, size), bool)
    m[size // 2 - 2:size // 2 + 3, :] = True
    m[:, size // 2 - 2:size // 2 + 3] = True
    kx, _, x0, y0 = _res("EPSG:3857", 60.0)
    k = kx / SRC_M * cell
    scene = tmp_path / "big.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=from_origin(x0, y0 + k * size / 2, k, k)) as ds:
        ds.write(np.stack([np.where(m, 200, 60).astype(np.uint8)] * 3))
        assert ground_scale_variation(ds) > 0.01
    monkeypatch.setattr(ex, "load_model", lambda *a, **kw: bright)
    out = tmp_path / "r.gpkg"
    with caplog.at_level("WARNING"):
        r = ex.run_extract(ex.ExtractOptions(scene=scene, output=out, tile=128, overlap=32, gsd=cell,
                                             prob_out=tmp_path / "p.tif", min_spur_m=0, min_component_m=0,
                                             raster_grid="model", mask_out=tmp_path / "m.tif"))
    assert "warped block by block to EPSG:326" in caplog.text
    edges = gpd.read_file(out, layer="edges")
    assert edges.crs.to_epsg() == 3857  # the scene's CRS
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.crs.to_epsg() // 100 == 326  # the working CRS (--raster-grid model)
        for row, col in ((5, 5), (p.height // 2, p.width // 2), (p.height - 5, p.width - 5)):
            gx, gy = pixel_ground_size(p, row, col)
            assert gx == pytest.approx(cell, rel=0.01) and gy == pytest.approx(cell, rel=0.01)
    truth = 0.0  # geodesic length of the two centre lines of the scene
    to_ll = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    with rasterio.open(scene) as ds:
        t = ds.transform
    for cols, rows in ((np.linspace(0, size, 200), np.full(200, size / 2 + 0.5)),
                       (np.full(200, size / 2 + 0.5), np.linspace(0, size, 200))):
        lon, lat = to_ll.transform(*(t * (cols, rows)))
        truth += GEOD.line_length(lon, lat)
    assert 0.93 * truth < edges["length_m"].sum() < 1.01 * truth, (edges["length_m"].sum(), truth)
    assert r.gsd == pytest.approx(cell, rel=0.01)


def test_rasters_and_preview_default_to_the_scene_grid(tmp_path):
    """--prob-out / --mask-out / --preview overlay the imagery: the scene's own grid unless --raster-grid model."""
    from PIL import Image

    ex.run_extract(ex.ExtractOptions(scene=EXAMPLE, output=tmp_path / "a.gpkg", prob_out=tmp_path / "p.tif",
                                     mask_out=tmp_path / "m.tif", preview=tmp_path / "v.png"))
    with rasterio.open(EXAMPLE) as src, rasterio.open(tmp_path / "p.tif") as p, rasterio.open(tmp_path / "m.tif") as m:
        for r in (p, m):
            assert (r.width, r.height, r.crs) == (src.width, src.height, src.crs)
            assert r.transform.almost_equals(src.transform) and r.profile.get("tiled")
        assert p.nodata == -1 and m.nodata == 255 and set(np.unique(m.read(1))) <= {0, 1, 255}
    assert Image.open(tmp_path / "v.png").size == (1300, 1300)
    ex.run_extract(ex.ExtractOptions(scene=EXAMPLE, output=tmp_path / "b.gpkg", prob_out=tmp_path / "q.tif",
                                     raster_grid="model"))
    with rasterio.open(tmp_path / "q.tif") as q:
        assert (q.width, q.height) == (316, 389)  # 1 m working pixels of a 0.24 x 0.30 m scene
