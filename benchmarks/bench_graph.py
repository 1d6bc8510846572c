"""Graph building on a generated road mask far larger than one sknw call can take.

Writes an N x N road mask (default 40000) block by block into a tiled GeoTIFF, then runs the graph stage of
extract on it (one pass per 2048 px tile: skeleton, half-width, traced pieces; exact join; cleanup), reporting time
and peak RSS; then builds the graph of an 8192 px crop both with one sknw call (skeletonize + build_sknw, which
wraps coordinates past 32767) and with the tiled stage (graph_from_mask), for the ratio.

    python benchmarks/bench_graph.py --size 40000
"""
import argparse
import json
import os
import resource
import tempfile
import time
import warnings

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from scipy import ndimage
from skimage.draw import line as draw_line

os.environ.setdefault("GDAL_CACHEMAX", "128")
warnings.simplefilter("ignore", NotGeoreferencedWarning)


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def road_block(r0, c0, h, w, spacing=300, width=7, seed=0):
    """A jittered street grid, deterministic per global position, plus diagonal avenues."""
    m = np.zeros((h, w), bool)
    for k in range(r0 // spacing, (r0 + h) // spacing + 1):
        y = k * spacing + int(np.random.default_rng([seed, k + 10**6, 0]).integers(-40, 40)) - r0
        if 0 <= y < h:
            m[y, :] = True
    for k in range(c0 // spacing, (c0 + w) // spacing + 1):
        x = k * spacing + int(np.random.default_rng([seed, k + 10**6, 1]).integers(-40, 40)) - c0
        if 0 <= x < w:
            m[:, x] = True
    for k in range(-20, 200):  # avenues x - y = k * 2000
        d = k * 2000
        y0, y1 = max(0, c0 - d - r0), min(h - 1, c0 + w - 1 - d - r0)
        if y0 <= y1:
            rr, cc = draw_line(y0, y0 + d + r0 - c0, y1, y1 + d + r0 - c0)
            ok = (cc >= 0) & (cc < w)
            m[rr[ok], cc[ok]] = True
    return ndimage.binary_dilation(m, iterations=width // 2)


def write_mask(path, size, block=2048):
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", tiled=True, blockxsize=512,
                blockysize=512, compress="deflate", BIGTIFF="YES")
    with rasterio.open(path, "w", **prof) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                pad = 8  # dilation across block borders
                m = road_block(r - pad, c - pad, h + 2 * pad, w + 2 * pad)[pad:pad + h, pad:pad + w]
                ds.write(m.astype(np.uint8), 1, window=Window(c, r, w, h))


def tiled_graph(mask_path, tile=2048):
    """The graph stage of `roadmap extract` (graph.graph_from_rasters) on a mask GeoTIFF read by windows."""
    from roadmap_cli.graph import CleanOptions, graph_from_rasters
    with rasterio.open(mask_path) as src:
        read_mask = lambda r0, r1, c0, c1: src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)) > 0  # noqa
        return graph_from_rasters(read_mask, src.height, src.width, CleanOptions(gsd=1.0, bridge_m=0), tile=tile)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=40000)
    ap.add_argument("--single", type=int, default=8192, help="crop side for the single-sknw comparison")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "mask.tif")
        t = time.perf_counter()
        write_mask(path, a.size)
        gen = time.perf_counter() - t
        base = rss_gb()
        t = time.perf_counter()
        g = tiled_graph(path)
        out = {"size": a.size, "generate_s": round(gen, 1), "tiled_graph_s": round(time.perf_counter() - t, 1),
               "nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
               "peak_rss_GB_before": round(base, 2), "peak_rss_GB": round(rss_gb(), 2)}
        print(json.dumps(out), flush=True)
        # comparison on the largest crop a single sknw call is meant for
        import sknw
        from skimage.morphology import skeletonize
        n = a.single
        with rasterio.open(path) as src:
            crop = src.read(1, window=Window(0, 0, n, n)) > 0
        sknw.build_sknw(skeletonize(crop[:256, :256]).astype(np.uint16), multi=True)  # numba compiled first
        t = time.perf_counter()
        gs = sknw.build_sknw(skeletonize(crop).astype(np.uint16), multi=True)
        single = time.perf_counter() - t
        from roadmap_cli.graph import build_graph, graph_from_mask
        from roadmap_cli.tiling import array_reader
        build_graph(array_reader(crop[:256, :256]), 256, 256, 64)  # numba compiled (or loaded) before timing
        t = time.perf_counter()
        gt_ = graph_from_mask(crop, tile=2048)
        tiled = time.perf_counter() - t
        raw = build_graph(array_reader(crop), n, n, 2048)
        print(json.dumps({"crop": n, "single_sknw_s": round(single, 1), "single_nodes": gs.number_of_nodes(),
                          "tiled_s": round(tiled, 1), "ratio": round(tiled / single, 2),
                          "tiled_raw_nodes": raw.number_of_nodes(), "tiled_clean_nodes": gt_.number_of_nodes(),
                          "peak_rss_GB": round(rss_gb(), 2)}))


if __name__ == "__main__":
    main()
