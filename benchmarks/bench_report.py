"""Time and peak memory of ``extract --report``'s page for a large scene (issue 32: a 10,000 x 10,000 px scene in
<= 60 s and <= 1.5 GB), the page built from the scene, its probability raster and a dense road graph, as extract's
write stage builds it.

    python benchmarks/bench_report.py                 # 10,000 x 10,000 px, 3 x uint8, tiled GeoTIFF
    python benchmarks/bench_report.py --size 20000
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_inputs(folder: Path, size: int, step: int = 100):
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin
    from shapely.geometry import LineString

    t = from_origin(660000, 4020000, 0.5, 0.5)
    prof = dict(driver="GTiff", width=size, height=size, tiled=True, blockxsize=512, blockysize=512,
                compress="deflate", crs="EPSG:32611", transform=t)
    rng = np.random.default_rng(0)
    with rasterio.open(folder / "scene.tif", "w", count=3, dtype="uint8", **prof) as ds, \
            rasterio.open(folder / "prob.tif", "w", count=1, dtype="float32", nodata=-1, **prof) as pr:
        for _, win in ds.block_windows(1):
            h, w = win.height, win.width
            ds.write(rng.integers(40, 200, (3, h, w), dtype=np.uint8), window=win)
            pr.write(rng.random((1, h, w), dtype=np.float32), window=win)
    lines = []  # a street grid every `step` px: (size/step)^2 * 2 edges
    for i in range(0, size, step):
        for j in range(0, size - step, step):
            for a, b in (((i, j), (i, j + step)), ((j, i), (j + step, i))):
                lines.append(LineString([t * (a[1], a[0]), t * (b[1], b[0])]))
    n = len(lines)
    edges = gpd.GeoDataFrame({"length_m": np.full(n, step * 0.5), "mean_prob": rng.random(n),
                              "min_prob": rng.random(n) / 2, "width_m": np.full(n, 6.0),
                              "bridged": rng.random(n) < 0.02}, geometry=lines, crs=32611)
    return edges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10000)
    a = ap.parse_args()
    import rasterio

    from roadmap_cli.io.raster import StretchStats
    from roadmap_cli.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        edges = make_inputs(tmp, a.size)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        t0 = time.perf_counter()
        with rasterio.open(tmp / "scene.tif") as ds, rasterio.open(tmp / "prob.tif") as prob:
            stretch = StretchStats(ds, [1, 2, 3])
            page = build_report(ds, [1, 2, 3], stretch, prob, edges, [("scene", "bench")])
        dt = time.perf_counter() - t0
    print(json.dumps({"size_px": a.size, "edges": len(edges), "seconds": round(dt, 1), "page_MB": round(len(page) / 1e6, 1),
                      "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                      "rss_before_GB": round(base, 2)}))


if __name__ == "__main__":
    main()
