"""APLS speed and memory on a generated grid city against a perturbed proposal (1.5 m vertex noise, 5 % of the
edges dropped).

    python benchmarks/bench_apls.py                            # 5 km x 5 km, 17 x 17 streets (544 edges)
    python benchmarks/bench_apls.py --streets 31 --size 50000  # 50 km, 3 km of road per street: >= 60 k control points
    python benchmarks/bench_apls.py --convention sat2graph     # the Go APLS of Sat2Graph / SAM-Road
"""
import argparse
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--streets", type=int, default=17)
    ap.add_argument("--size", type=float, default=5000.0, help="side of the city in metres")
    ap.add_argument("--convention", default="spacenet", choices=["spacenet", "sat2graph"])
    a = ap.parse_args()
    gt = grid_city(a.streets, a.size)
    prop = grid_city(a.streets, a.size, jitter=1.5, drop=0.05, seed=1)
    from roadmap_cli.metrics.apls import densify, graph_from_lines
    control = densify(graph_from_lines(gt), 50.0).n
    t = time.perf_counter()
    if a.convention == "sat2graph":
        from roadmap_cli.metrics.apls_sat2graph import apls_sat2graph
        res = apls_sat2graph(gt, prop)
    else:
        res = apls(gt, prop)
    dt = time.perf_counter() - t
    out = {"convention": a.convention, "gt_edges": len(gt), "prop_edges": len(prop), "gt_km": round(sum(x.length for x in gt) / 1000, 1),
           "gt_control_points": control, "apls": round(res["apls"], 4), "seconds": round(dt, 2),
           "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
