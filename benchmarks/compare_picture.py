"""The README's picture of ``roadmap compare``: one SpaceNet chip's labels against OpenStreetMap (../shared), drawn
as the three layers (missing red, unconfirmed blue, mapped grey).

    python benchmarks/compare_picture.py --chip 998 --out docs/compare_img998.png
"""
import argparse
import tempfile
from pathlib import Path

import geopandas as gpd
from PIL import Image, ImageDraw

from roadmap_cli.compare import CompareOptions, run_compare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "spacenet3-vegas-apls" / "other_chips_no_imagery"
STYLE = {"mapped": ((110, 110, 110), 3), "unconfirmed": ((43, 140, 190), 4), "missing": ((215, 48, 31), 5)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", default="998")
    ap.add_argument("--out", default="docs/compare_img998.png")
    ap.add_argument("--px", type=int, default=560)
    a = ap.parse_args()
    name = f"AOI_2_Vegas_img{a.chip}.geojson"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "c.gpkg"
        r = run_compare(CompareOptions(SHARED / "spacenetroads" / name, SHARED / "osm" / name, out))
        layers = {k: gpd.read_file(out, layer=k).to_crs(r.crs) for k in STYLE}
    allb = gpd.GeoSeries(gpd.pd.concat([df.geometry for df in layers.values()]), crs=r.crs).total_bounds
    x0, y0, x1, y1 = allb
    s = (a.px - 20) / max(x1 - x0, y1 - y0)
    img = Image.new("RGB", (a.px, a.px + 40), "white")
    d = ImageDraw.Draw(img)
    for k, (colour, width) in STYLE.items():
        for g in layers[k].geometry:
            d.line([(10 + (x - x0) * s, 10 + (y1 - y) * s) for x, y in g.coords], fill=colour, width=width)
    d.text((10, a.px + 5), f"chip {a.chip}: SpaceNet labels vs OpenStreetMap. red: missing from OSM "
                           f"{r.km['missing']:.2f} km", fill=(0, 0, 0))
    d.text((10, a.px + 20), f"blue: in OSM, not in the labels {r.km['unconfirmed']:.2f} km; grey: both "
                            f"{r.km['mapped']:.2f} km", fill=(0, 0, 0))
    img.save(a.out, optimize=True)


if __name__ == "__main__":
    main()
