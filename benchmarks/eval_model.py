"""Evaluate a road model the way the model card reports it, with the CLI itself.

1. Validation tiles (Massachusetts, 1 m, not georeferenced): `roadmap extract --allow-pixel-coords --mask-out` on
   each, then `roadmap score masks/ labels/ --gsd 1` (pixel P/R/F1/IoU and APLS of mask graphs).
2. The example chip (SpaceNet Vegas, 0.27 m, EPSG:4326): `roadmap extract` (resampled to the model's 1 m), then
   `roadmap score roads.gpkg gt.geojson` (APLS) and pixel F1 against the ground-truth centre lines buffered by
   3.5 m (the 7 m road width of the Massachusetts labels), rasterized on the same 1 m grid.

    python benchmarks/eval_model.py --model roadmap_cli/models/roadmap-compact.pt --val 5,12 --out eval_out
    python benchmarks/eval_model.py --precision bf16 --skip-chip --out eval_bf16   # bf16 autocast, val tiles only
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def roadmap(*args):
    cmd = [sys.executable, "-m", "roadmap_cli", "-q", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "roadmap_cli" / "models" / "roadmap-compact.pt"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "massachusetts-roads-cskanani"))
    ap.add_argument("--val", default="5,12")
    ap.add_argument("--out", default="eval_out")
    ap.add_argument("--precision", default="fp32", help="extract's --precision (fp32, bf16, auto)")
    ap.add_argument("--skip-chip", action="store_true", help="validation tiles only")
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "img").mkdir(parents=True)
    (out / "pred").mkdir()
    (out / "gt").mkdir()
    for name in a.val.split(","):
        tif = out / "img" / f"{name}.tif"
        img = np.asarray(Image.open(Path(a.data) / "images" / f"{name}.jpg").convert("RGB"))
        with rasterio.open(tif, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=3,
                           dtype="uint8") as ds:
            ds.write(img.transpose(2, 0, 1))
        roadmap("extract", tif, "-o", out / "img" / f"{name}.gpkg", "--model", a.model, "--allow-pixel-coords",
                "--mask-out", out / "pred" / f"{name}.tif", "--precision", a.precision)
        shutil.copy(Path(a.data) / "labels" / f"{name}.jpg", out / "gt" / f"{name}.jpg")
    roadmap("score", out / "pred", out / "gt", "--gsd", "1", "--json", out / "val.json")
    val = json.loads((out / "val.json").read_text())["aggregate"]
    if a.skip_chip:
        res = {"precision": a.precision, "val": {k: round(v, 4) for k, v in val.items() if isinstance(v, float)}}
        print(json.dumps(res, indent=1))
        (out / "summary.json").write_text(json.dumps(res, indent=1))
        return

    ex = ROOT / "examples"
    roadmap("extract", ex / "vegas_img0.tif", "-o", out / "vegas.gpkg", "--model", a.model,
            "--mask-out", out / "vegas_mask.tif", "--preview", out / "vegas_preview.png", "--precision", a.precision)
    roadmap("score", out / "vegas.gpkg", ex / "vegas_img0_roads_gt.geojson", "--json", out / "vegas_apls.json")
    chip = json.loads((out / "vegas_apls.json").read_text())["aggregate"]
    import geopandas as gpd
    from rasterio.features import rasterize
    with rasterio.open(out / "vegas_mask.tif") as ds:
        pred = ds.read(1) == 1
        gt = gpd.read_file(ex / "vegas_img0_roads_gt.geojson")
        utm = gt.estimate_utm_crs()
        buf = gt.to_crs(utm).buffer(3.5).to_crs(ds.crs)
        gtm = rasterize([(g, 1) for g in buf], out_shape=pred.shape, transform=ds.transform).astype(bool)
    from roadmap_cli.metrics.pixel import PixelCounts
    c = PixelCounts()
    c.add(pred, gtm)
    px = c.summary()
    res = {"precision": a.precision, "val": {k: round(v, 4) for k, v in val.items() if isinstance(v, float)},
           "example_chip": {"apls": round(chip["apls"], 4), "f1_buffered_3.5m": round(px["f1"], 4),
                            "precision": round(px["precision"], 4), "recall": round(px["recall"], 4)}}
    print(json.dumps(res, indent=1))
    (out / "summary.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
