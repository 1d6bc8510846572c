"""The first-hour mistakes answer at once (issue 33): each refusal against ``roadmap --version``, in one run
(median of ``--repeat`` runs each, separate processes), with the ratio; the bar is 3x.

    python benchmarks/bench_first_hour.py --repeat 5
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "scene.tif").write_bytes(b"II*\x00" + bytes(100))  # only its header is read before the refusals
        (t / "notes.tif").write_text("not a raster")
        (t / "out.gpkg").write_bytes(b"")
        (t / "empty").mkdir()
        cases = {
            "--version": ["--version"],
            "scene not found": ["extract", "nosuch.tif", "-o", "x.gpkg"],
            "output exists": ["extract", "scene.tif", "-o", "out.gpkg"],
            "unknown output format": ["extract", "scene.tif", "-o", "x.shp"],
            "output folder missing": ["extract", "scene.tif", "-o", "nope/x.gpkg"],
            "non-raster input": ["extract", "notes.tif", "-o", "x.gpkg"],
            "folder without rasters": ["extract", "empty", "-o", "x.gpkg"],
            "output is the input": ["extract", "scene.tif", "-o", "x.gpkg", "--prob-out", "scene.tif"],
            "adapt: vectors not found": ["adapt", "scene.tif", "nope.gpkg", "-o", "m.pt"],
            "models list": ["models", "list"],
        }
        times = {}
        for name, args in cases.items():
            runs = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "roadmap_cli", *args], cwd=tmp, capture_output=True)
                runs.append(time.perf_counter() - t0)
                assert (r.returncode == 0) == (name in ("--version", "models list")), (name, r.stderr)
            times[name] = statistics.median(runs)
    base = times["--version"]
    print(json.dumps({k: {"s": round(v, 3), "x_version": round(v / base, 2)} for k, v in times.items()}, indent=1))


if __name__ == "__main__":
    main()
