"""Degenerate scene shapes cost about one tile (issue 32): ``roadmap extract`` on a 1 x N and an N x 1 scene, a
scene smaller than one tile and a plain one-tile scene, each a separate process run twice (the faster counts), in one
run so the ratios compare.  Also times the HTML report of a large scene (``bench_report.py``).

    python benchmarks/bench_degenerate.py            # N = 3000 at 0.5 m (1500 working px: 4 tiles of 32 x 512)
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def scene(path: Path, h: int, w: int, res: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8", crs="EPSG:32611",
                       transform=from_origin(660000, 4010000, res, res)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, h, w), dtype=np.uint8))


def timed(args) -> tuple[float, float]:
    best, rss = float("inf"), 0.0
    for _ in range(2):
        t = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6)
    return best, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    a = ap.parse_args()
    shapes = {"one tile (512 x 512 at 1 m)": (512, 512, 1.0), f"1 x {a.n} at 0.5 m": (1, a.n, 0.5),
              f"{a.n} x 1 at 0.5 m": (a.n, 1, 0.5), "40 x 40 at 0.3 m (under one tile)": (40, 40, 0.3)}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (h, w, res)) in enumerate(shapes.items()):
            p = Path(tmp) / f"s{i}.tif"
            scene(p, h, w, res)
            secs, _ = timed([sys.executable, "-m", "roadmap_cli", "-q", "extract", str(p), "-o",
                             str(Path(tmp) / f"s{i}.gpkg"), "--overwrite"])
            rows[name] = round(secs, 2)
    one = rows["one tile (512 x 512 at 1 m)"]
    print(json.dumps({"seconds": rows, "ratio_to_one_tile": {k: round(v / one, 2) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
