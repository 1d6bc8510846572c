"""``--report``: one self-contained HTML page (folium / Leaflet, every script, style and image inlined, no tile
server) with the imagery quicklook, the road probability overlay, the road graph coloured by confidence with bridged
edges marked, and the run summary.  Its size is bounded for any scene: rasters at most ``max_px`` pixels a side,
vectors simplified to about one quicklook pixel."""
from __future__ import annotations

import base64
import html
import io
import json
import re
from importlib import resources

import numpy as np

from .errors import InputError

# confidence colours, low to high mean probability (colour-blind-safe diverging scheme)
COLOURS = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))
BRIDGED = "#00bfff"


def colour(p: float) -> str:
    """Hex colour of a mean probability on the report's scale."""
    p = float(np.clip(p, 0, 1))
    for (a, ca), (b, cb) in zip(COLOURS[:-1], COLOURS[1:]):
        if p <= b:
            t = (p - a) / (b - a)
            return "#%02x%02x%02x" % tuple(int(round(x + (y - x) * t)) for x, y in zip(ca, cb))
    return "#%02x%02x%02x" % COLOURS[-1][1]


def caption(img, notes: list[str], background=(40, 40, 40), colour=(255, 220, 120)):
    """The image with ``notes`` written in a dark band across its top, inside it (the size stays the scene grid's,
    so the preview still lines up with the scene): a preview of a run that found no road says so itself, wherever
    it is opened."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    img = img.copy()
    w = img.width
    try:
        font = ImageFont.load_default(size=max(11, min(22, w // 60)))
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    char_w = max(1.0, draw.textlength("abcdefghij", font=font) / 10)
    lines = [ln for note in notes for ln in textwrap.wrap(note, max(20, int((w - 16) / char_w)))]
    line_h = int(font.getbbox("Ag")[3] * 1.35) + 1
    band = min(img.height, 12 + line_h * len(lines))
    draw.rectangle([0, 0, w, band], fill=background)
    for i, ln in enumerate(lines):
        draw.text((8, 6 + i * line_h), ln, fill=colour, font=font)
    return img


def _png_url(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _to_mercator(data: np.ndarray, transform, crs, resampling: str):
    """Warp (bands, h, w) onto a Web Mercator grid of about the same size (Leaflet stretches image overlays
    linearly in Web Mercator); returns (array, [[south, west], [north, east]])."""
    from pyproj import Transformer
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    bands, h, w = data.shape
    left, top = transform * (0, 0)
    right, bottom = transform * (w, h)
    dst_t, dw, dh = calculate_default_transform(crs, "EPSG:3857", w, h, left=min(left, right), bottom=min(top, bottom),
                                                right=max(left, right), top=max(top, bottom))
    out = np.zeros((bands, dh, dw), data.dtype)
    reproject(data, out, src_transform=transform, src_crs=crs, dst_transform=dst_t, dst_crs="EPSG:3857",
              resampling=getattr(Resampling, resampling), src_nodata=None, dst_nodata=0)
    to_ll = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    (w_, e_), (n_, s_) = to_ll.transform([dst_t.c, dst_t.c + dst_t.a * dw], [dst_t.f, dst_t.f + dst_t.e * dh])
    return out, [[s_, w_], [n_, e_]]


def _decimated(ds, bands: list[int], max_px: int, resampling: str = "average"):
    """(bands, h, w) read of a dataset at most ``max_px`` a side, and the transform of that read."""
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    f = max(1.0, max(ds.width, ds.height) / max_px)
    w, h = max(1, int(round(ds.width / f))), max(1, int(round(ds.height / f)))
    data = ds.read(bands, out_shape=(len(bands), h, w), resampling=getattr(Resampling, resampling))
    return data, ds.transform * Affine.scale(ds.width / w, ds.height / h)


def _leaflet_assets() -> tuple[str, str]:
    """Leaflet's JS and CSS (the ``django-js-lib-leaflet`` package's copy of Leaflet 1.9.4), the CSS's images as
    data URLs."""
    root = resources.files("js_lib_leaflet") / "static" / "js_lib_leaflet"
    js = (root / "leaflet.js").read_text(encoding="utf-8")
    css = (root / "leaflet.css").read_text(encoding="utf-8")

    def inline(m):
        name = m.group(1)
        data = (root / "images" / name).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode()})"

    return js, re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)


def _legend(summary: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary)
    stops = ", ".join(f"rgb{c} {int(100 * p)}%" for p, c in COLOURS)
    return f"""
<div id="roadmap-summary" style="position:fixed; top:10px; left:50px; z-index:1000; background:white;
     padding:8px 10px; font:12px sans-serif; border-radius:4px; box-shadow:0 1px 4px rgba(0,0,0,.4); max-width:380px">
  <b>roadmap</b>
  <table style="border-collapse:collapse; margin-top:4px">{rows}</table>
  <div style="margin-top:6px">edge confidence (mean probability)</div>
  <div style="height:10px; background:linear-gradient(to right, {stops})"></div>
  <div style="display:flex; justify-content:space-between"><span>0</span><span>0.5</span><span>1</span></div>
  <div style="margin-top:4px"><span style="border-top:3px dashed {BRIDGED}; display:inline-block; width:24px;
       vertical-align:middle"></span> bridged by the cleanup</div>
</div>"""


def _banner(notes: list[str]) -> str:
    items = "".join(f"<div>{html.escape(n)}</div>" for n in notes)
    return f"""
<div id="roadmap-banner" role="alert" style="position:fixed; bottom:24px; left:50%; transform:translateX(-50%);
     z-index:1001; background:#fff3cd; color:#5c4400; border:1px solid #e0b000; padding:8px 12px;
     font:13px sans-serif; border-radius:4px; max-width:70%; box-shadow:0 1px 4px rgba(0,0,0,.4)">
  <b>Note</b>{items}
</div>"""


def build_report(scene_ds, bands: list[int], stretch, prob_ds, edges, summary: list[tuple[str, str]],
                 max_px: int = 1024, banner: list[str] | None = None) -> str:
    """The report page as a string.  ``prob_ds`` is the probability raster (nodata -1), ``edges`` the road graph
    in any CRS, ``summary`` (label, value) rows, ``banner`` notes shown over the map (a run that found no road)."""
    import folium

    if scene_ds.crs is None:
        raise InputError("--report needs a georeferenced scene (a map has no place for pixel coordinates)")
    img, t = _decimated(scene_ds, bands, max_px)
    rgb = stretch.apply(img).astype(np.uint8).transpose(2, 0, 1)
    rgb_m, bounds = _to_mercator(rgb, t, scene_ds.crs, "bilinear")
    alpha = (rgb_m.max(axis=0) > 0).astype(np.uint8) * 255
    prob, pt = _decimated(prob_ds, [1], max_px, "bilinear")
    p = np.clip(prob[0].astype(np.float32), 0, 1)
    heat = np.zeros((4,) + p.shape, np.uint8)
    heat[0], heat[1], heat[2] = 255, (255 * (1 - p)).astype(np.uint8), 0
    heat[3] = (np.clip((p - 0.1) / 0.9, 0, 1) * 200).astype(np.uint8)
    heat_m, heat_bounds = _to_mercator(heat, pt, prob_ds.crs, "bilinear")

    m = folium.Map(tiles=None, control_scale=True, prefer_canvas=False)
    m.default_js = [("leaflet", "roadmap-inline://leaflet.js")]
    m.default_css = [("leaflet_css", "roadmap-inline://leaflet.css")]
    folium.raster_layers.ImageOverlay(_png_url(np.dstack([*rgb_m, alpha])), bounds, name="imagery",
                                      interactive=False, zindex=1).add_to(m)
    folium.raster_layers.ImageOverlay(_png_url(np.dstack(list(heat_m))), heat_bounds, name="road probability",
                                      interactive=False, zindex=2, show=False).add_to(m)
    if len(edges):
        ll = edges.to_crs("EPSG:4326")
        west, south, east, north = ll.total_bounds
        tol = max(east - west, north - south) / max_px  # about one quicklook pixel
        ll = ll.assign(geometry=ll.geometry.simplify(tol, preserve_topology=False))
        ll["colour"] = [BRIDGED if b else colour(v) for b, v in zip(ll["bridged"], ll["mean_prob"])]
        fields = [c for c in ("length_m", "mean_prob", "min_prob", "width_m", "bridged") if c in ll.columns]
        data = json.loads(ll[fields + ["colour", "geometry"]].to_json(drop_id=True))
        for f in data["features"]:  # 6 decimals (~0.1 m) are enough on a map
            f["geometry"]["coordinates"] = np.round(np.asarray(f["geometry"]["coordinates"]), 6).tolist()
        folium.GeoJson(data, name="road graph", style_function=lambda f: {
            "color": f["properties"]["colour"], "weight": 3, "opacity": 0.95,
            "dashArray": "6 4" if f["properties"].get("bridged") else None},
            tooltip=folium.GeoJsonTooltip(fields=fields)).add_to(m)
    m.fit_bounds(bounds)
    folium.LayerControl(collapsed=False).add_to(m)
    m.get_root().html.add_child(folium.Element(_legend(summary)))
    if banner:
        m.get_root().html.add_child(folium.Element(_banner(banner)))
    page = m.get_root().render()
    js, css = _leaflet_assets()
    page = re.sub(r'<script src="roadmap-inline://leaflet.js"></script>', lambda _: f"<script>{js}</script>", page)
    page = re.sub(r'<link rel="stylesheet" href="roadmap-inline://leaflet.css"/>',
                  lambda _: f"<style>{css}</style>", page)
    return page


COMPARE_STYLE = {"missing": ("#d7301f", None, 4), "unconfirmed": ("#2b8cbe", "6 5", 3), "mapped": ("#636363", None, 2)}


def build_compare_report(layers: dict, summary: list[tuple[str, str]]) -> str:
    """``roadmap compare --report``: one self-contained page with the layers ``missing`` (red), ``unconfirmed``
    (blue, dashed) and ``mapped`` (grey), each a GeoDataFrame in EPSG:4326, and the summary rows."""
    import folium

    m = folium.Map(tiles=None, control_scale=True)
    m.default_js = [("leaflet", "roadmap-inline://leaflet.js")]
    m.default_css = [("leaflet_css", "roadmap-inline://leaflet.css")]
    bounds = None
    for name in ("mapped", "unconfirmed", "missing"):
        df = layers.get(name)
        if df is None or not len(df):
            continue
        colour, dash, weight = COMPARE_STYLE[name]
        fields = [c for c in ("length_m", "mean_prob", "joins") if c in df.columns]
        data = json.loads(df[fields + ["geometry"]].to_json(drop_id=True))
        folium.GeoJson(data, name=f"{name} ({df['length_m'].sum() / 1000:.2f} km)",
                       style_function=lambda f, c=colour, d=dash, w=weight: {"color": c, "weight": w, "opacity": 0.9,
                                                                             "dashArray": d},
                       tooltip=folium.GeoJsonTooltip(fields=fields)).add_to(m)
        w, s, e, n = df.total_bounds
        bounds = [[s, w], [n, e]] if bounds is None else [[min(bounds[0][0], s), min(bounds[0][1], w)],
                                                           [max(bounds[1][0], n), max(bounds[1][1], e)]]
    if bounds is not None:
        m.fit_bounds(bounds)
    folium.LayerControl(collapsed=False).add_to(m)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary)
    keys = "".join(f'<div><span style="border-top:{w}px {"dashed" if d else "solid"} {c}; display:inline-block; '
                   f'width:24px; vertical-align:middle"></span> {html.escape(k)}</div>'
                   for k, (c, d, w) in COMPARE_STYLE.items())
    m.get_root().html.add_child(folium.Element(
        f'<div id="roadmap-summary" style="position:fixed; top:10px; left:50px; z-index:1000; background:white; '
        f'padding:8px 10px; font:12px sans-serif; border-radius:4px; box-shadow:0 1px 4px rgba(0,0,0,.4)">'
        f'<b>roadmap compare</b><table style="border-collapse:collapse; margin-top:4px">{rows}</table>{keys}</div>'))
    page = m.get_root().render()
    js, css = _leaflet_assets()
    page = re.sub(r'<script src="roadmap-inline://leaflet.js"></script>', lambda _: f"<script>{js}</script>", page)
    return re.sub(r'<link rel="stylesheet" href="roadmap-inline://leaflet.css"/>', lambda _: f"<style>{css}</style>",
                  page)
