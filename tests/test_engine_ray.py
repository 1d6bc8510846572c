"""--engine ray: a real local Ray instance with 2 workers gives exactly what the local engine gives, on a mosaic of
small georeferenced scenes (two of them overlapping in different CRSs); a killed run resumes on Ray."""
import numpy as np
import pytest
import rasterio
from conftest import error_lines, interrupted_at_save
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds

ray = pytest.importorskip("ray")

UTM = "EPSG:32611"
X0, Y0 = 500000.0, 4000000.0


def _scene(path, data, crs=UTM, origin=(X0, Y0), res=1.0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                       crs=crs, transform=from_origin(*origin, res, res)) as ds:
        ds.write(data)
    return path


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """Three scenes: two UTM pieces side by side and a lon/lat scene overlapping the second, a little brighter (so
    the overlap's tiles are predicted per scene and blended)."""
    d = tmp_path_factory.mktemp("mosaic")
    img = np.full((3, 200, 420), 60, np.uint8)
    img[:, 96:105, :] = 200
    img[:, :, 140:149] = 200
    img[:, :, 300:309] = 200
    a = _scene(d / "a.tif", img[:, :, :220])
    b = _scene(d / "b.tif", img[:, :, 200:], origin=(X0 + 200, Y0))
    w, s, e, n = transform_bounds(UTM, "EPSG:4326", X0 + 250, Y0 - 200, X0 + 420, Y0)
    res = (e - w) / 170
    rows = int(np.ceil((n - s) / res))
    dst = np.zeros((3, rows, 170), np.uint8)
    reproject(img, dst, src_transform=from_origin(X0, Y0, 1, 1), src_crs=UTM, dst_transform=from_origin(w, n, res, res),
              dst_crs="EPSG:4326", resampling=Resampling.nearest)
    dst = np.where(dst > 0, np.minimum(dst.astype(int) + 15, 255), 0).astype(np.uint8)  # another date: brighter
    c = _scene(d / "c.tif", dst, crs="EPSG:4326", origin=(w, n), res=res)
    return [a, b, c]


@pytest.mark.timeout(300)
def test_ray_engine_equals_local_engine(tmp_path, tiny_ckpt, mosaic, monkeypatch):
    import geopandas as gpd

    from roadmap_cli import extract as ex
    monkeypatch.setenv("ROADMAP_RAY_TMP", "/tmp")
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=2, min_component_m=0)
    ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "local.gpkg", prob_out=tmp_path / "l.tif",
                                     **kw))
    r = ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "ray.gpkg", prob_out=tmp_path / "r.tif",
                                         engine="ray", workers=2, **kw))
    assert r.tiles > 4
    from roadmap_cli.io import mosaic as mo
    calls = []
    real = mo.SceneViews.read
    monkeypatch.setattr(mo.SceneViews, "read", lambda self, *a: calls.append(real(self, *a)) or calls[-1])
    ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "again.gpkg", **kw))
    assert any(isinstance(c, list) for c in calls)  # some tiles were blended from several scenes
    with rasterio.open(tmp_path / "l.tif") as a, rasterio.open(tmp_path / "r.tif") as b:
        assert np.array_equal(a.read(), b.read())
    ea = gpd.read_file(tmp_path / "local.gpkg", layer="edges")
    eb = gpd.read_file(tmp_path / "ray.gpkg", layer="edges")
    assert len(ea) == len(eb) and ea.geometry.geom_equals_exact(eb.geometry, 1e-9).all()
    assert not ray.is_initialized()  # the local instance this run started is gone


@pytest.mark.timeout(300)
def test_lost_worker_and_killed_run_continue_on_ray(tmp_path, tiny_ckpt, mosaic, monkeypatch):
    """A worker that dies mid-run is restarted and its batch retried; a run interrupted on the local engine is
    resumed on Ray (the tile cache is the same); both equal the uninterrupted local run."""
    from roadmap_cli import extract as ex
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=1, min_component_m=0)
    ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "a.gpkg", prob_out=tmp_path / "a.tif", **kw))
    monkeypatch.setenv("ROADMAP_FAULT_KILL_WORKER_ONCE", str(tmp_path / "killed"))
    ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "b.gpkg", prob_out=tmp_path / "b.tif",
                                     engine="ray", workers=2, **kw))
    assert (tmp_path / "killed").exists()  # a worker did die
    monkeypatch.delenv("ROADMAP_FAULT_KILL_WORKER_ONCE")
    with interrupted_at_save(monkeypatch, 3):
        ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "c.gpkg", prob_out=tmp_path / "c.tif",
                                         **kw))
    r = ex.run_extract(ex.ExtractOptions(scene=mosaic, output=tmp_path / "c.gpkg", prob_out=tmp_path / "c.tif",
                                         engine="ray", workers=2, resume=True, **kw))
    assert r.tiles > 4
    for other in ("b.tif", "c.tif"):
        with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / other) as b:
            assert np.array_equal(a.read(), b.read())


def test_engine_errors(cli, tmp_path, tiny_ckpt, mosaic):
    for args, msg in ((["--engine", "spark"], "--engine must be one of local, ray"),
                      (["--engine", "ray", "--workers", "0"], "--workers must be at least 1"),
                      (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be between 0 and 64"),
                      (["--threads", "0"], "--threads must be between 1 and 1024")):
        code, _, err = cli("extract", mosaic[0], "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, *args)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_ray_refuses_what_it_cannot_have(cli, tmp_path, tiny_ckpt, mosaic):
    """Issue 37: an unreachable --address (a closed port on 127.0.0.1) is refused in bounded time, and GPUs that
    the cluster does not have are refused instead of waiting for them; one line, exit 2, nothing kept."""
    import time

    t = time.perf_counter()
    code, _, err = cli("-q", "extract", mosaic[0], "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--engine", "ray",
                       "--address", "127.0.0.1:1")
    assert code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in error_lines(err)[-1]
    assert time.perf_counter() - t < 30
    code, _, err = cli("-q", "extract", mosaic[0], "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--engine", "ray",
                       "--gpus-per-worker", "1")
    assert code == 2 and "the Ray cluster has 0 GPU(s)" in error_lines(err)[-1]
    assert not (tmp_path / "r.gpkg").exists() and not (tmp_path / "r.gpkg.roadmap-work").exists()
