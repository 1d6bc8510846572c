"""APLS speed on a generated 5 km x 5 km grid city (17 x 17 streets, 544 edges) against a perturbed proposal.

    python benchmarks/bench_apls.py
"""
import json
import resource
import time

import numpy as np
from shapely.geometry import LineString

from roadmap_cli.metrics.apls import apls


def grid_city(n=17, size=5000.0, jitter=0.0, drop=0.0, seed=0):
    rng = np.random.default_rng(seed)
    xs = np.linspace(0, size, n)
    off = rng.normal(0, jitter, (n, n, 2)) if jitter else np.zeros((n, n, 2))
    pts = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1) + off
    lines = []
    for i in range(n):
        for j in range(n - 1):
            for a, b in (((i, j), (i, j + 1)), ((j, i), (j + 1, i))):
                if rng.random() >= drop:
                    lines.append(LineString([pts[a], pts[b]]))
    return lines


def main():
    gt = grid_city()
    prop = grid_city(jitter=1.5, drop=0.05, seed=1)
    t = time.perf_counter()
    res = apls(gt, prop)
    dt = time.perf_counter() - t
    out = {"gt_edges": len(gt), "prop_edges": len(prop), "apls": round(res["apls"], 4), "seconds": round(dt, 2),
           "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
