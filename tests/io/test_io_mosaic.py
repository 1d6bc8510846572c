"""Many scenes as one mosaic: input expansion (files, folders, lists, STAC), the GTI index (common grid, mixed CRSs,
z-order, coverage mask), and extract across scene borders."""
import json

import numpy as np
import pytest
import rasterio
from conftest import interrupted_at_save
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from roadmap_cli.errors import InputError
from roadmap_cli.io.mosaic import build_mosaic, expand_inputs

UTM = "EPSG:32611"
X0, Y0 = 500000.0, 4000000.0


def scene(path, data, crs=UTM, origin=(X0, Y0), res=1.0, nodata=None):
    data = np.asarray(data, np.uint8)
    if data.ndim == 2:
        data = np.stack([data] * 3)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype="uint8", crs=crs, transform=from_origin(*origin, res, res), nodata=nodata) as ds:
        ds.write(data)
    return path


def road_image(h, w, rows=(), cols=(), half=4):
    a = np.full((h, w), 60, np.uint8)
    for r in rows:
        a[max(r - half, 0):r + half + 1, :] = 200
    for c in cols:
        a[:, max(c - half, 0):c + half + 1] = 200
    return a


def test_expand_folders_lists_and_stac(tmp_path):
    a = scene(tmp_path / "a.tif", np.zeros((8, 8)))
    (tmp_path / "sub").mkdir()
    b = scene(tmp_path / "sub" / "b.tif", np.zeros((8, 8)))
    (tmp_path / "sub" / "notes.md").write_text("not a raster")
    assert expand_inputs([tmp_path]) == [str(a), str(b)]
    lst = tmp_path / "scenes.txt"
    lst.write_text("# my scenes\na.tif\n\nsub/b.tif  # the second\n")
    assert expand_inputs([lst]) == [str(a), str(b)]
    item = {"type": "Feature", "id": "x", "assets": {"thumbnail": {"href": "t.png", "type": "image/png"},
                                                      "visual": {"href": "sub/b.tif", "type": "image/tiff"},
                                                      "red": {"href": "a.tif"}}}
    (tmp_path / "item.json").write_text(json.dumps(item))
    assert expand_inputs([tmp_path / "item.json"]) == [str(b)]
    assert expand_inputs([tmp_path / "item.json"], asset="red") == [str(a)]
    coll = {"type": "FeatureCollection", "features": [item, {**item, "id": "y",
                                                             "assets": {"visual": {"href": "https://e.x/c.tif"}}}]}
    (tmp_path / "coll.json").write_text(json.dumps(coll))
    assert expand_inputs([tmp_path / "coll.json"]) == [str(b), "/vsicurl/https://e.x/c.tif"]
    for bad, msg in (([tmp_path / "nope.tif"], "not found"), ([tmp_path / "item.json"], "no asset 'nir'")):
        with pytest.raises(InputError, match=msg):
            expand_inputs(bad, asset="nir" if "item" in str(bad[0]) else None)
    work = tmp_path / "r.gpkg.roadmap-work"
    work.mkdir()
    scene(work / "prob.tif", np.zeros((8, 8)))  # a run's scratch inside the folder, and its own outputs
    out = scene(tmp_path / "sub" / "mask.tif", np.zeros((8, 8)))
    # an output path that holds a raster roadmap did not write is a scene (writing over it is refused later) ...
    assert expand_inputs([tmp_path], exclude=[out]) == [str(a), str(b), str(out)]
    with rasterio.open(out, "r+") as ds:  # ... one it wrote (tagged) is passed over
        ds.update_tags(ROADMAP_OUTPUT="mask.tif")
    assert expand_inputs([tmp_path], exclude=[out]) == [str(a), str(b)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no raster files"):
        expand_inputs([tmp_path / "empty"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="is not JSON"):
        expand_inputs([tmp_path / "bad.json"])


def test_mosaic_of_mixed_crs_scenes(tmp_path):
    """A UTM scene and a lon/lat scene overlapping it: one UTM grid at the finer resolution, the finer scene on top,
    a mask where neither covers."""
    a = scene(tmp_path / "a.tif", np.full((200, 200), 100))                        # 1 m, x 0..200
    w, s, e, n = transform_bounds(UTM, "EPSG:4326", X0 + 150, Y0 - 200, X0 + 350, Y0)
    res = (e - w) / 400                                                            # ~0.5 m
    rows = int(round((n - s) / res))
    b = scene(tmp_path / "b.tif", np.full((rows, 400), 180), crs="EPSG:4326", origin=(w, n), res=res)
    m = build_mosaic([str(a), str(b)], tmp_path / "m.gti.gpkg")
    assert m.crs == "EPSG:32611" and 0.4 < m.resolution < 0.6
    with rasterio.open(m.path) as ds:
        assert ds.driver == "GTI" and ds.crs.to_epsg() == 32611 and ds.res[0] == pytest.approx(m.resolution)
        band = ds.read(1)

        def at(x, y=Y0 - 100):
            r, c = ds.index(x, y)
            return int(band[r, c])

        assert at(X0 + 50) == 100 and at(X0 + 175) == 180 and at(X0 + 300) == 180  # b (finer) over a
        mask = ds.read_masks(1)
        assert mask.min() == 0 and mask.max() == 255  # corners that no scene covers
    c = scene(tmp_path / "c.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="band"):
        build_mosaic([str(a), str(c)], tmp_path / "m2.gti.gpkg")


def test_extract_mosaic_equals_the_whole_scene(tmp_path, bright, monkeypatch):
    """The same roads cut into two overlapping scenes (one of them in lon/lat) give one network across the border:
    no break, no duplicate, the same length as the whole scene."""
    import geopandas as gpd

    from roadmap_cli import extract as ex
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: bright)
    img = road_image(300, 400, rows=(150,), cols=(120, 260))
    whole = scene(tmp_path / "whole.tif", img)
    left = scene(tmp_path / "left.tif", img[:, :230])
    w, s, e, n = transform_bounds(UTM, "EPSG:4326", X0 + 180, Y0 - 300, X0 + 400, Y0)
    # the right part resampled to lon/lat by GDAL itself
    from rasterio.warp import Resampling, reproject
    res = (e - w) / 240
    rows = int(np.ceil((n - s) / res))
    dst = np.zeros((3, rows, 240), np.uint8)
    reproject(np.stack([img] * 3), dst, src_transform=from_origin(X0, Y0, 1, 1), src_crs=UTM,
              dst_transform=from_origin(w, n, res, res), dst_crs="EPSG:4326", resampling=Resampling.nearest)
    right = scene(tmp_path / "right.tif", dst, crs="EPSG:4326", origin=(w, n), res=res)
    kw = dict(tile=128, overlap=32, gsd=1.0, min_component_m=0)
    a = ex.run_extract(ex.ExtractOptions(scene=[left, right], output=tmp_path / "m.gpkg", **kw))
    w = ex.run_extract(ex.ExtractOptions(scene=whole, output=tmp_path / "w.gpkg", **kw))
    assert a.scene.name == "mosaic of 2 scenes" and (a.edges, a.nodes) == (w.edges, w.nodes)
    em, ew = (gpd.read_file(tmp_path / f, layer="edges") for f in ("m.gpkg", "w.gpkg"))
    nm = gpd.read_file(tmp_path / "m.gpkg", layer="nodes")
    nw = gpd.read_file(tmp_path / "w.gpkg", layer="nodes")
    assert sorted(nm["degree"]) == sorted(nw["degree"])  # the same junctions and ends: no break at the border
    assert len(em) == len(ew)
    assert em["length_m"].sum() == pytest.approx(ew["length_m"].sum(), rel=0.02)
    assert em.crs.to_epsg() == 32611
    lst = tmp_path / "scenes.txt"
    lst.write_text("left.tif\nright.tif\n")
    c = ex.run_extract(ex.ExtractOptions(scene=[lst], output=tmp_path / "l.gpkg", **kw))
    assert (c.edges, c.km) == (a.edges, a.km)


def test_extract_cli_many_inputs_and_errors(cli, tmp_path, tiny_ckpt):
    a = scene(tmp_path / "a.tif", road_image(96, 96, rows=(48,)))
    b = scene(tmp_path / "b.tif", road_image(96, 96, rows=(48,)), origin=(X0 + 80, Y0))
    code, out, err = cli("extract", a, b, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--dry-run")
    assert code == 0, err
    assert "176 x 96" in out  # one working grid over both scenes
    c = scene(tmp_path / "c.tif", np.zeros((2, 8, 8), np.uint8))
    code, _, err = cli("extract", a, c, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and "the scenes of one run must match" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("extract", a, b, "-o", tmp_path / "r.gpkg", "--prob-out", b, "--model", tiny_ckpt,
                       "--overwrite")
    assert code == 2 and "never writes over an input" in err
    assert not list(tmp_path.glob("r.gpkg*"))


def test_mosaic_resume_after_interruption_equals_uninterrupted(tmp_path, tiny_ckpt, monkeypatch):
    """The mosaic index is rebuilt on resume; the run key follows its scenes, so the cached tiles are reused."""
    from roadmap_cli import extract as ex
    a = scene(tmp_path / "a.tif", road_image(200, 200, rows=(100,)))
    b = scene(tmp_path / "b.tif", road_image(200, 200, rows=(100,), cols=(50,)), origin=(X0 + 150, Y0))
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=1)
    ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "x.gpkg", prob_out=tmp_path / "x.tif", **kw))
    with interrupted_at_save(monkeypatch, 4):
        ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "y.gpkg", prob_out=tmp_path / "y.tif",
                                         **kw))
    cached = len(list((tmp_path / "y.gpkg.roadmap-work" / "tiles").glob("*.npy")))
    assert cached == 3
    ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "y.gpkg", prob_out=tmp_path / "y.tif",
                                     resume=True, **kw))
    with rasterio.open(tmp_path / "x.tif") as x, rasterio.open(tmp_path / "y.tif") as y:
        assert np.array_equal(x.read(), y.read())
    scene(tmp_path / "b.tif", road_image(200, 200, rows=(90,)), origin=(X0 + 150, Y0))  # a scene changed
    with interrupted_at_save(monkeypatch, 4):
        ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "z.gpkg", **kw))
    import os
    os.utime(tmp_path / "b.tif", (1, 1))
    with pytest.raises(InputError, match="other inputs"):
        ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "z.gpkg", resume=True, **kw))


def test_overlapping_scenes_are_blended_not_cut(tmp_path, bright, monkeypatch):
    """Scene a shows a road that scene b (same grid, later, so on top in the mosaic) does not: across their
    80 m overlap the road's probability fades from a's to b's with the scenes' feather weights instead of
    stopping where b begins; outside the overlap each scene's own prediction is kept."""
    from roadmap_cli import extract as ex
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: bright)
    a = scene(tmp_path / "a.tif", road_image(160, 200, rows=(80,)))
    b = scene(tmp_path / "b.tif", road_image(160, 200), origin=(X0 + 120, Y0))
    ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "r.gpkg", prob_out=tmp_path / "p.tif",
                                     tile=128, overlap=32, gsd=1.0, min_component_m=0, raster_grid="model"))
    with rasterio.open(tmp_path / "p.tif") as ds:
        p = ds.read(1)[80]
    assert p[:115].min() > 0.99 and p[205:].max() < 0.01  # one scene only: its own prediction
    assert p[125] > 0.6 and 0.2 < p[160] < 0.8 and p[195] < 0.4  # the overlap: a fade, not a cut at x = 120
    assert np.all(np.diff(p[118:202]) <= 1e-3)  # and a monotone one


def test_a_vrt_is_a_scene_like_its_file(tmp_path, bright, monkeypatch):
    """A GDAL VRT among the inputs (here a plain VRT over scene b) reads as the file it wraps."""
    from roadmap_cli import extract as ex
    monkeypatch.setattr(ex, "load_model", lambda *a, **k: bright)
    a = scene(tmp_path / "a.tif", road_image(160, 200, rows=(80,)))
    b = scene(tmp_path / "b.tif", road_image(160, 200, rows=(80,), cols=(100,)), origin=(X0 + 150, Y0))
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">'
                    f'b.tif</SourceFilename><SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>'
                    for i in (1, 2, 3))
    with rasterio.open(b) as ds:
        geo = ", ".join(repr(v) for v in ds.transform.to_gdal())
        (tmp_path / "b.vrt").write_text(f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">'
                                        f'<SRS>{ds.crs.to_wkt()}</SRS><GeoTransform>{geo}</GeoTransform>'
                                        f'{bands}</VRTDataset>')
    kw = dict(tile=128, overlap=32, gsd=1.0, min_component_m=0)
    x = ex.run_extract(ex.ExtractOptions(scene=[a, b], output=tmp_path / "x.gpkg", **kw))
    v = ex.run_extract(ex.ExtractOptions(scene=[a, tmp_path / "b.vrt"], output=tmp_path / "v.gpkg", **kw))
    assert (v.edges, v.nodes, v.km) == (x.edges, x.nodes, x.km) and v.edges >= 3
