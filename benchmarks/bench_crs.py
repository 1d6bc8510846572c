"""One Massachusetts tile georeferenced in EPSG:3857 at several latitudes: F1 and total road length must not depend
on the latitude (Web Mercator's scale factor is 1/cos(lat): a "metre" of EPSG:3857 is 2 ground metres at 60 N).

    python benchmarks/bench_crs.py                       # this tree
    python benchmarks/bench_crs.py --code /path/to/old   # another checkout of roadmap (PYTHONPATH), for before/after

Each pixel of the tile is 1 m on the ground at its latitude.  The tile is a validation tile of the bundled model
(not a test tile); scale invariance, not accuracy, is what is measured.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from PIL import Image
from pyproj import Geod, Transformer
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "massachusetts-roads-cskanani"


def _units_per_metre(lat: float) -> tuple[float, float]:
    """EPSG:3857 units per ground metre east and north at (-71, lat) (about 1/cos(lat), ellipsoid included)."""
    geod = Geod(ellps="WGS84")
    to = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x0, y0 = to.transform(-71.0, lat)
    xe, _ = to.transform(*geod.fwd(-71.0, lat, 90, 100.0)[:2])
    _, yn = to.transform(*geod.fwd(-71.0, lat, 0, 100.0)[:2])
    return (xe - x0) / 100.0, (yn - y0) / 100.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tile", default="5")
    ap.add_argument("--lats", default="0,45,60")
    ap.add_argument("--code", default=None, help="roadmap source folder to run instead of the installed one")
    a = ap.parse_args()
    img = np.asarray(Image.open(DATA / "images" / f"{a.tile}.jpg").convert("RGB"))
    lab = np.asarray(Image.open(DATA / "labels" / f"{a.tile}.jpg").convert("L")) > 127
    env = dict(os.environ)
    if a.code:
        env["PYTHONPATH"] = a.code
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for lat in [float(v) for v in a.lats.split(",")]:
            kx, ky = _units_per_metre(lat)  # EPSG:3857 units per ground metre at the tile's centre
            x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(-71.0, lat)
            x0, y0 = x0 - kx * img.shape[1] / 2, y0 + ky * img.shape[0] / 2
            scene = tmp / f"lat{lat:g}.tif"
            with rasterio.open(scene, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=3,
                               dtype="uint8", crs="EPSG:3857", transform=from_origin(x0, y0, kx, ky)) as ds:
                ds.write(img.transpose(2, 0, 1))
            out, mask = tmp / f"lat{lat:g}.gpkg", tmp / f"lat{lat:g}_mask.tif"
            subprocess.run([sys.executable, "-m", "roadmap_cli", "-q", "extract", str(scene), "-o", str(out),
                            "--mask-out", str(mask)], check=True, env=env, cwd=tmp)
            with rasterio.open(mask) as m:
                pred = m.read(1) == 1
            gt = np.asarray(Image.fromarray(lab.astype(np.uint8) * 255).resize(pred.shape[::-1], Image.BILINEAR)) > 127
            tp, fp, fn = (pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum()
            f1 = 2 * tp / max(1, 2 * tp + fp + fn)
            km = float(gpd.read_file(out, layer="edges")["length_m"].sum() / 1000)
            rows.append({"lat": lat, "grid": f"{pred.shape[1]}x{pred.shape[0]}", "f1": round(float(f1), 4),
                         "km": round(km, 3)})
            print(json.dumps(rows[-1]), flush=True)
    f1s, kms = [r["f1"] for r in rows], [r["km"] for r in rows]
    print(json.dumps({"f1_spread": round(max(f1s) - min(f1s), 4),
                      "km_spread_pct": round(100 * (max(kms) - min(kms)) / max(1e-9, min(kms)), 2)}))


if __name__ == "__main__":
    main()
