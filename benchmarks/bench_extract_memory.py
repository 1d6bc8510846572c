"""Peak memory of `roadmap extract` must not grow with the scene: runs extract (in a child process, so each run has
its own peak RSS) on generated georeferenced scenes (a street grid) of 5k x 5k and 20k x 20k px, by default with
the bundled roadmap-compact model (small, so it is quick on a CPU, and its masks are roads, not noise);
`--model random` uses a tiny random network instead.

    python benchmarks/bench_extract_memory.py --sizes 5000,20000
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, os.path.dirname(__file__))
from bench_graph import road_block  # noqa: E402


def write_scene(path, size, block=2048):
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True, blockxsize=512,
                blockysize=512, compress="deflate", crs="EPSG:32619", transform=from_origin(300000, 4700000, 1, 1),
                BIGTIFF="YES")
    with rasterio.open(path, "w", **prof) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                m = road_block(r, c, h, w)
                img = np.where(m, 190, 70).astype(np.uint8)
                ds.write(np.stack([img, img, img]), window=Window(c, r, w, h))


def small_model(path):
    import torch
    from roadmap_cli.nn import build_model, load_variant
    from roadmap_cli.nn.checkpoint import save_checkpoint
    cfg = load_variant("roadmap-compact").replace(name="bench-small", embed_dim=16, d_model=32, grr_dim=32,
                                                  decoder_channels=(32, 32, 16, 16))
    torch.manual_seed(0)
    save_checkpoint(path, build_model(cfg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--tile", default=None, help="tile side (default: the model's)")
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "models", "roadmap-compact.pt"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as work:
        model = a.model
        if model == "random":
            model = os.path.join(work, "small.pt")
            small_model(model)
        for size in map(int, a.sizes.split(",")):
            scene = os.path.join(work, f"scene_{size}.tif")
            write_scene(scene, size)
            out = os.path.join(work, f"roads_{size}.gpkg")
            cmd = [sys.executable, "-c",
                   "import resource,sys; from roadmap_cli.cli import main; rc=main(sys.argv[1:]); "
                   "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)",
                   "-q", "extract", scene, "-o", out, "--model", model, "--device", "cpu"] + (["--tile", a.tile] if a.tile else [])
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(r.stderr[-2000:])
            rss = int([ln for ln in r.stdout.splitlines() if ln.startswith("MAXRSS")][0].split()[1]) / 1e6
            import geopandas as gpd
            km = float(gpd.read_file(out, layer="edges")["length_m"].sum() / 1000)
            rows.append({"size": size, "seconds": round(time.perf_counter() - t, 1), "peak_rss_GB": round(rss, 3),
                         "road_km": round(km, 1)})
            print(json.dumps(rows[-1]), flush=True)
            os.remove(scene)
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_GB"] / rows[0]["peak_rss_GB"]
        print(json.dumps({"ratio_largest_to_smallest": round(ratio, 3), "limit": 1.25, "ok": ratio <= 1.25}))


if __name__ == "__main__":
    main()
