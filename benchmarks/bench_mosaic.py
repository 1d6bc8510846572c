"""A scene against the same scene cut into overlapping pieces and read as one mosaic: time of each extract and
whether the road graphs are identical (they should be: the pieces lie on the scene's own grid).

The scene is a Massachusetts tile (1 m) placed in UTM 19N; the pieces overlap by ``--overlap`` px and are written
as separate GeoTIFFs, listed in a text file for ``roadmap extract``.

    python benchmarks/bench_mosaic.py --tile 12 --pieces 2 --overlap 100
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "massachusetts-roads-cskanani"


def write(path, img, x0, y0):
    with rasterio.open(path, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=3, dtype="uint8",
                       crs="EPSG:32619", transform=from_origin(x0, y0, 1.0, 1.0), tiled=True, blockxsize=256,
                       blockysize=256) as ds:
        ds.write(img.transpose(2, 0, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tile", default="12")
    ap.add_argument("--pieces", type=int, default=2, help="pieces per side")
    ap.add_argument("--overlap", type=int, default=100)
    a = ap.parse_args()
    import geopandas as gpd

    from roadmap_cli.extract import ExtractOptions, run_extract
    img = np.asarray(Image.open(DATA / "images" / f"{a.tile}.jpg").convert("RGB"))
    h, w = img.shape[:2]
    x0, y0 = 330000.0, 4690000.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write(tmp / "whole.tif", img, x0, y0)
        names = []
        step_r, step_c = -(-h // a.pieces), -(-w // a.pieces)
        for i in range(a.pieces):
            for j in range(a.pieces):
                r0, c0 = max(0, i * step_r - a.overlap // 2), max(0, j * step_c - a.overlap // 2)
                r1, c1 = min(h, (i + 1) * step_r + a.overlap // 2), min(w, (j + 1) * step_c + a.overlap // 2)
                write(tmp / f"p{i}{j}.tif", img[r0:r1, c0:c1], x0 + c0, y0 - r0)
                names.append(f"p{i}{j}.tif")
        (tmp / "pieces.txt").write_text("\n".join(names) + "\n")
        out = {}
        for name, scene in (("whole", tmp / "whole.tif"), ("mosaic", [tmp / "pieces.txt"])):
            t = time.perf_counter()
            r = run_extract(ExtractOptions(scene=scene, output=tmp / f"{name}.gpkg",
                                           prob_out=tmp / f"prob_{name}.tif"))
            out[name] = {"s": round(time.perf_counter() - t, 1), "edges": r.edges, "km": round(r.km, 3)}
        with rasterio.open(tmp / "prob_whole.tif") as pa, rasterio.open(tmp / "prob_mosaic.tif") as pb:
            out["same_grid"] = pa.transform == pb.transform and pa.shape == pb.shape
            out["prob_max_abs_diff"] = float(np.abs(pa.read(1) - pb.read(1)).max()) if out["same_grid"] else None
        ea = gpd.read_file(tmp / "whole.gpkg", layer="edges")
        eb = gpd.read_file(tmp / "mosaic.gpkg", layer="edges")
        out["pieces"] = a.pieces ** 2
        out["graphs_identical"] = bool(len(ea) == len(eb) and ea.geometry.geom_equals_exact(eb.geometry, 1e-6).all())
        print(json.dumps(out))


if __name__ == "__main__":
    main()
