"""``roadmap compare`` at city scale (issue 34: 5,000 km against 5,000 km in <= 60 s and <= 2 GB): a street grid of
``--km`` km of road (vertices every 50 m, 1.5 m of noise) against a copy with 5 % of its streets removed and its own
noise, compared with the default tolerance, angle, step and minimum length, in a metric CRS.

    python benchmarks/bench_compare.py             # 5,100 km each side
"""
import argparse
import json
import resource
import time

import numpy as np
from shapely.geometry import LineString


def city(km: float, spacing: float = 1000.0, seed: int = 0, drop: float = 0.0):
    rng = np.random.default_rng(seed)
    n = int(round(np.sqrt(km * 1000 / (2 * spacing)))) + 1  # n streets each way, (n - 1) * spacing long
    size = (n - 1) * spacing
    t = np.arange(0, size + 1, 50.0)
    lines = []
    for i in range(n):
        for horizontal in (True, False):
            if rng.random() < drop:
                continue
            c = np.full_like(t, i * spacing) + rng.normal(0, 1.5, len(t))
            xy = np.c_[t, c] if horizontal else np.c_[c, t]
            lines.append(LineString(xy + [500000.0, 4000000.0]))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--km", type=float, default=5000.0)
    a = ap.parse_args()
    from roadmap_cli.compare import compare_lines

    pred, ref = city(a.km, seed=0), city(a.km, seed=1, drop=0.05)
    t = time.perf_counter()
    res = compare_lines(pred, ref, None)
    dt = time.perf_counter() - t
    km = {k: round(sum(LineString(xy).length for xy, _ in v) / 1000, 1) for k, v in res.items()}
    print(json.dumps({"pred_km": round(sum(g.length for g in pred) / 1000), "ref_km": round(sum(g.length for g in ref)
                      / 1000), "km": km, "seconds": round(dt, 1),
                      "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}))


if __name__ == "__main__":
    main()
