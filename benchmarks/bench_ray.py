"""Throughput of the local engine against Ray with 1 and 2 workers on this machine, and memory per worker.

Four Massachusetts tiles placed side by side in UTM 19N (a 3000 x 3000 m mosaic of four scenes, 1 m, bundled model,
512 px tiles) are extracted with each engine; the inference stage's tiles/s and km^2/h, the whole run's time, the
peak RSS of the driver and of each Ray worker, and whether the probability rasters are identical to the local run.

    python benchmarks/bench_ray.py [--tiles 1,2,3,4] [--runs local:2,local:1,ray:1:2,ray:2:1]
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "massachusetts-roads-cskanani"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", default="1,2,3,4")
    ap.add_argument("--runs", default="local:2,local:1,ray:1:2,ray:2:1",
                    help="engine[:workers]:threads per run; the first is the reference for identity")
    a = ap.parse_args()
    from roadmap_cli import engines
    from roadmap_cli.extract import ExtractOptions, run_extract
    rss_seen = []
    real = engines.RayEngine.predict

    def spy(self, *args, **kw):  # keep the model workers' memory, which the run only logs
        r = real(self, *args, **kw)
        rss_seen.append(r["worker_rss_gb"])
        return r

    engines.RayEngine.predict = spy
    names = a.tiles.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scenes = []
        for k, name in enumerate(names):
            img = np.asarray(Image.open(DATA / "images" / f"{name}.jpg").convert("RGB"))
            x0, y0 = 330000.0 + 1500 * (k % 2), 4690000.0 - 1500 * (k // 2)
            p = tmp / f"s{name}.tif"
            with rasterio.open(p, "w", driver="GTiff", width=1500, height=1500, count=3, dtype="uint8",
                               crs="EPSG:32619", transform=from_origin(x0, y0, 1.0, 1.0), tiled=True) as ds:
                ds.write(img.transpose(2, 0, 1))
            scenes.append(p)
        runs = []
        for spec in a.runs.split(","):
            parts = spec.split(":")
            runs.append((parts[0], int(parts[1]) if len(parts) == 3 else None, int(parts[-1])))
        ref = None
        for engine, workers, threads in runs:
            out = tmp / f"{engine}{workers or ''}_{threads}"
            ref = ref or out.with_suffix(".tif")
            t = time.perf_counter()
            r = run_extract(ExtractOptions(scene=scenes, output=out.with_suffix(".gpkg"),
                                           prob_out=out.with_suffix(".tif"), engine=engine, workers=workers,
                                           threads=threads))
            total = time.perf_counter() - t
            km2 = r.grid[0] * r.grid[1] * r.gsd ** 2 / 1e6
            row = {"engine": engine, "workers": workers, "tiles": r.tiles, "infer_s": round(r.times["infer"], 1),
                   "tiles_per_s": round(r.tiles / r.times["infer"], 2),
                   "km2_per_h": round(km2 / r.times["infer"] * 3600, 1), "total_s": round(total, 1),
                   "driver_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                   "worker_peak_rss_gb": [round(x, 2) for x in rss_seen[-1]] if engine == "ray" else None,
                   "torch_threads": threads}
            with rasterio.open(ref) as x, rasterio.open(out.with_suffix(".tif")) as y:
                row["prob_max_diff_to_first"] = float(np.abs(x.read() - y.read()).max())
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
