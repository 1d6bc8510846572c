"""Peak memory of `roadmap extract` must not grow with the scene: runs extract (in a child process, so each run has
its own peak RSS) on generated georeferenced scenes of 5k x 5k and 20k x 20k px, by default with the bundled
roadmap-compact model (small, so it is quick on a CPU).  The scenes are mosaics of the real 1 m Massachusetts tiles
in ../shared/data (so the model finds roads everywhere and the graph stage has real work); without them, or with
`--synthetic`, a drawn street grid is used.  `--model random` uses a tiny random network instead.

    python benchmarks/bench_extract_memory.py --sizes 5000,20000
"""
import argparse
import json
import os
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

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "massachusetts-roads-cskanani", "images")


def mosaic_block(tiles, r, c, h, w):
    """Block of an endless mosaic of 1500 px tiles (tile (i, j) = tiles[(i * 7 + j) % n])."""
    out = np.zeros((h, w, 3), np.uint8)
    for rr in range(r - r % 1500, r + h, 1500):
        for cc in range(c - c % 1500, c + w, 1500):
            t = tiles[((rr // 1500) * 7 + cc // 1500) % len(tiles)]
            r0, c0 = max(r, rr), max(c, cc)
            r1, c1 = min(r + h, rr + 1500), min(c + w, cc + 1500)
            out[r0 - r:r1 - r, c0 - c:c1 - c] = t[r0 - rr:r1 - rr, c0 - cc:c1 - cc]
    return out


def write_scene(path, size, block=2048, synthetic=False):
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True, blockxsize=512,
                blockysize=512, compress="deflate", crs="EPSG:32619", transform=from_origin(300000, 4700000, 1, 1),
                BIGTIFF="YES")
    tiles = []
    if not synthetic and os.path.isdir(DATA):
        from PIL import Image
        tiles = [np.asarray(Image.open(os.path.join(DATA, f)).convert("RGB"))[:1500, :1500]
                 for f in sorted(os.listdir(DATA)) if f.endswith(".jpg")]
    with rasterio.open(path, "w", **prof) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                if tiles:
                    img = mosaic_block(tiles, r, c, h, w).transpose(2, 0, 1)
                else:
                    m = road_block(r, c, h, w)
                    img = np.stack([np.where(m, 190, 70).astype(np.uint8)] * 3)
                ds.write(img, window=Window(c, r, w, h))
    return "mosaic" if tiles else "synthetic"


def small_model(path):
    import torch

    from roadmap_cli.nn import build_model
    from roadmap_cli.weights import load_variant, save_checkpoint
    cfg = load_variant("roadmap-compact").replace(name="bench-small", embed_dim=16, d_model=32, grr_dim=32,
                                                  decoder_channels=(32, 32, 16, 16))
    torch.manual_seed(0)
    save_checkpoint(path, build_model(cfg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--tile", default=None, help="tile side (default: the model's)")
    ap.add_argument("--synthetic", action="store_true", help="drawn street grid instead of the real-tile mosaic")
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "roadmap_cli", "models", "roadmap-compact.pt"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        model = a.model
        if model == "random":
            model = os.path.join(work, "small.pt")
            small_model(model)
        for size in map(int, a.sizes.split(",")):
            scene = os.path.join(work, f"scene_{size}.tif")
            kind = write_scene(scene, size, synthetic=a.synthetic)
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
            rows.append({"size": size, "scene": kind, "seconds": round(time.perf_counter() - t, 1), "peak_rss_GB": round(rss, 3),
                         "road_km": round(km, 1)})
            print(json.dumps(rows[-1]), flush=True)
            os.remove(scene)
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_GB"] / rows[0]["peak_rss_GB"]
        print(json.dumps({"ratio_largest_to_smallest": round(ratio, 3), "limit": 1.25, "ok": ratio <= 1.25}))


if __name__ == "__main__":
    main()
