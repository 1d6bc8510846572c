"""--report: a self-contained HTML map, checked in a real headless browser (Chromium from the system packages)."""
import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from scipy import ndimage

from roadmap_cli import extract as ex
from roadmap_cli.report import colour

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)



def _scene(path, size):
    m = np.zeros((size, size), bool)
    for k in (size // 4, size // 2, 3 * size // 4):
        m[k, :] = True
        m[:, k] = True
    m = ndimage.binary_dilation(m, iterations=4)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(np.stack([np.where(m, 200, 60).astype(np.uint8)] * 3))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory, bright):
    tmp = tmp_path_factory.mktemp("report")
    scene = _scene(tmp / "s.tif", 1300)
    real = ex.load_model
    ex.load_model = lambda *a, **k: bright
    try:
        ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp / "r.gpkg", tile=512, report=tmp / "r.html"))
    finally:
        ex.load_model = real
    return tmp / "r.html"


def test_report_is_self_contained_and_bounded(report):
    page = report.read_text()
    assert not re.search(r'<script[^>]+src=|<link[^>]+href="https?:', page)  # nothing fetched: works offline
    assert "L.map(" in page and "roadmap" in page and "road length" in page
    assert report.stat().st_size < 3_000_000
    for url in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page):
        w, h = Image.open(io.BytesIO(base64.b64decode(url))).size
        assert max(w, h) <= 1100  # quicklook and overlay are bounded, whatever the scene size (1300 px here)


def test_report_refuses_scenes_without_georeferencing(cli, tmp_path, tiny_ckpt):
    plain = tmp_path / "p.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(np.full((3, 64, 64), 90, np.uint8))
    code, _, err = cli("extract", plain, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--allow-pixel-coords",
                       "--report", tmp_path / "r.html")
    assert code == 2 and "--report needs a georeferenced scene" in err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.gpkg.roadmap-work").exists()
    code, _, err = cli("extract", plain, "-o", tmp_path / "r.gpkg", "--report", tmp_path / "r.txt")
    assert code == 2 and "must end in .html" in err


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (CI installs Debian's chromium)")
def test_report_renders_roads_over_the_image_in_a_browser(report, tmp_path):
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,800",
            "--virtual-time-budget=4000", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    r = subprocess.run(base + [f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    assert not [ln for ln in console if re.search(r"error|uncaught|failed", ln, re.I)], console
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("leaflet-image-layer") >= 1 and dom.count("<path") >= 6  # imagery and the road edges drawn
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    green = np.array([int(colour(1.0)[i:i + 2], 16) for i in (1, 3, 5)])  # confident roads
    road_px = (np.abs(img - green).sum(axis=2) < 40).sum()
    ground_px = (np.abs(img - 60).sum(axis=2) < 20).sum()  # the scene's dark ground, i.e. the imagery is shown
    assert road_px > 1000 and ground_px > 20000, (road_px, ground_px)
