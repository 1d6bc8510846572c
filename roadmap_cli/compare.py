"""``roadmap compare``: what an existing road map lacks, and what of it the imagery no longer confirms.

Both networks are brought to one metric CRS (the UTM zone of their centre) and clipped to the area the imagery shows
(the scene's valid pixels, or the probability raster's; else the prediction's bounding box).  Each line is cut into
pieces of at most ``step_m``; a predicted piece is **mapped** when a reference segment lies within ``tolerance_m`` of
its middle and runs within ``angle_deg`` of its direction, otherwise **missing**; a reference piece with no predicted
segment alongside (same test the other way) is **unconfirmed** (the road may be gone, hidden under trees, or a model
miss: the comparison cannot tell which).  Consecutive pieces of one status are merged, so a line is split exactly where
its status changes; a run shorter than ``min_length_m`` takes the status of the run beside it (noise at junctions and
line ends).  Missing pieces carry their length, mean model probability and whether they join the reference network
at both ends (a connector), one end or neither (an island).  Everything is vectorised over pieces with an STR-tree of
segments, in bounded chunks, so a 5,000 km city is compared in seconds (``benchmarks/bench_compare.py``)."""
from __future__ import annotations

import json
import math
import xml.sax.saxutils as xml
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checks import check_suffix
from .errors import InputError
from .io.atomic import atomic_open, atomic_path, check_output_path
from .io.guard import Inputs, guard_outputs

# OpenStreetMap ways kept from an .osm / .osm.pbf reference: the roads a vehicle can drive (links included)
DEFAULT_HIGHWAYS = ("motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
                    "living_street", "service", "road", "track", "motorway_link", "trunk_link", "primary_link",
                    "secondary_link", "tertiary_link")
OSM_SUFFIXES = (".osm", ".pbf")
CHUNK = 200_000  # pieces per spatial query


@dataclass
class CompareOptions:
    """What ``roadmap compare`` takes (the CLI's options, by the same names)."""

    prediction: Path  # roadmap's GPKG / GeoJSON / GraphML, or any line layer
    reference: Path  # the existing map: any OGR line layer, or OpenStreetMap .osm / .osm.pbf
    output: Path  # GeoPackage with layers missing / unconfirmed / mapped
    scene: Path | None = None  # the imagery: its valid pixels are the area compared
    prob: Path | None = None  # roadmap's probability raster (--prob-out): the area and the pieces' mean probability
    osm_out: Path | None = None  # OpenStreetMap XML of the missing roads, for JOSM / iD
    json_out: Path | None = None
    report: Path | None = None  # an HTML map of the three layers
    tolerance_m: float = 10.0
    angle_deg: float = 30.0
    min_length_m: float = 20.0
    step_m: float = 2.0
    highway: str | None = None  # comma list of highway=* values (OSM references), "all", or the default set
    crs: str | None = None  # CRS of files that name none
    source: str = "roadmap"  # the OSM source=* tag
    overwrite: bool = False


@dataclass
class CompareResult:
    """Kilometres per status, the share of the reference confirmed, and where everything was written."""

    km: dict
    confirmed_share: float
    pieces: dict
    area_km2: float
    area_from: str
    crs: str
    outputs: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The JSON summary."""
        return {"km": self.km, "reference_confirmed_share": self.confirmed_share, "pieces": self.pieces,
                "area_km2": self.area_km2, "area_from": self.area_from, "crs": self.crs,
                "outputs": {k: str(v) for k, v in self.outputs.items()}}


# ------------------------------------------------------------------------------------------------ checks

def check(opts: CompareOptions, pending: bool = False) -> None:
    """Refuse options and paths that cannot work, before anything is read (no heavy import).  ``pending``: the
    prediction is yet to be written (``extract --compare``)."""
    for flag, v in (("--tolerance-m", opts.tolerance_m), ("--step-m", opts.step_m)):
        if not (isinstance(v, (int, float)) and 0 < v < float("inf")):
            raise InputError(f"{flag} must be a positive number of metres, got {v}")
    if not (0 <= opts.min_length_m < float("inf")):
        raise InputError(f"--min-length-m must be a number of metres >= 0, got {opts.min_length_m}")
    if not 0 < opts.angle_deg <= 90:
        raise InputError(f"--angle-deg must be in (0, 90], got {opts.angle_deg}")
    for what, p in (("prediction", opts.prediction), ("reference", opts.reference), ("--scene", opts.scene),
                    ("--prob", opts.prob)):
        if p is not None and not Path(p).exists() and not (pending and p in (opts.prediction, opts.prob)):
            raise InputError(f"{what} {p} not found")
    check_suffix("-o", opts.output, (".gpkg",), "the comparison is a GeoPackage (layers missing, unconfirmed, "
                                                "mapped): name it .gpkg")
    check_suffix("--osm", opts.osm_out, (".osm",), "the missing roads for JOSM / iD are OpenStreetMap XML: .osm")
    check_suffix("--report", opts.report, (".html", ".htm"), "must end in .html")
    outputs = {"-o": opts.output, "--osm": opts.osm_out, "--json": opts.json_out, "--report": opts.report}
    guard_outputs(outputs, Inputs({"the prediction {}": opts.prediction, "the reference {}": opts.reference,
                                   "--scene {}": opts.scene, "--prob {}": opts.prob}))
    for p in outputs.values():
        if p is not None:
            check_output_path(p, opts.overwrite)


# ------------------------------------------------------------------------------------------------ reading

def _highways(spec: str | None):
    if spec is None:
        return set(DEFAULT_HIGHWAYS)
    if spec.strip().lower() == "all":
        return None
    return {h.strip() for h in spec.split(",") if h.strip()}


def read_reference(path: Path, highway: str | None = None):
    """The reference's line features; for OpenStreetMap files (GDAL's OSM driver) the ``highway=*`` ways of the
    chosen types."""
    import pyogrio

    from .io.vectors import read_lines

    path = Path(path)
    if path.suffix.lower() not in OSM_SUFFIXES:
        return read_lines(path)
    try:
        df = pyogrio.read_dataframe(path, layer="lines")
    except Exception as e:  # noqa: BLE001 - GDAL's OSM driver fails in many ways on a broken file
        raise InputError(f"cannot read {path} as OpenStreetMap data: {' '.join(str(e).split())[:160]}") from e
    if "highway" not in df.columns:
        raise InputError(f"{path} holds no highway=* ways")
    keep = _highways(highway)
    df = df[df["highway"].notna() & (df["highway"].isin(keep) if keep is not None else True)]
    if df.empty:
        raise InputError(f"{path} holds no highway ways of the types compared ({highway or 'the default set'}; "
                         "--highway all keeps every highway=* way)")
    return df[df.geom_type.isin(["LineString", "MultiLineString"])]


def read_prediction(path: Path):
    """The predicted network: roadmap's GraphML (osmnx schema) or any line layer."""
    from .io.vectors import read_lines

    path = Path(path)
    if path.suffix.lower() != ".graphml":
        return read_lines(path)
    import geopandas as gpd
    import networkx as nx
    from shapely import wkt
    from shapely.geometry import LineString

    try:
        g = nx.read_graphml(path)
    except Exception as e:  # noqa: BLE001 - malformed XML
        raise InputError(f"cannot read {path} as GraphML: {' '.join(str(e).split())[:160]}") from e
    lines, probs = [], []
    for u, v, d in g.edges(data=True):
        if "geometry" in d:
            lines.append(wkt.loads(d["geometry"]))
        else:
            lines.append(LineString([(float(g.nodes[n]["x"]), float(g.nodes[n]["y"])) for n in (u, v)]))
        probs.append(float(d.get("mean_prob", "nan")))
    crs = g.graph.get("crs")
    return gpd.GeoDataFrame({"mean_prob": probs}, geometry=lines, crs=crs)


def footprint(opts: CompareOptions, crs, pred_lines, whose: str = "the prediction's"):
    """The area the imagery shows, in ``crs``: the valid pixels of ``--prob`` or ``--scene`` (read at most 2048 px a
    side, so exact to a few of the scene's pixels), else the prediction's bounding box widened by the tolerance.
    (polygon, source)."""
    from shapely.geometry import box, shape
    from shapely.ops import unary_union

    raster = opts.prob or opts.scene
    if raster is None:
        b = np.array([ln.bounds for ln in pred_lines])  # widened by the tolerance: roads along its edge count
        pad = opts.tolerance_m
        return (box(b[:, 0].min() - pad, b[:, 1].min() - pad, b[:, 2].max() + pad, b[:, 3].max() + pad),
                f"{whose} bounding box")
    import geopandas as gpd
    import rasterio
    from rasterio.features import shapes
    from rasterio.transform import Affine

    from .io.raster import open_raster

    with open_raster(raster) as ds:
        if ds.crs is None:
            raise InputError(f"{raster} has no georeferencing: it cannot place the area compared")
        f = max(1.0, max(ds.width, ds.height) / 2048)
        w, h = max(1, int(round(ds.width / f))), max(1, int(round(ds.height / f)))
        if opts.prob is not None:  # roadmap's probability raster: nodata (-1) outside the imagery
            a = ds.read(1, out_shape=(h, w), resampling=rasterio.enums.Resampling.nearest, masked=True)
            valid = (~np.ma.getmaskarray(a)) & (np.ma.filled(a, -1) >= 0)
        else:
            valid = ds.dataset_mask(out_shape=(h, w)) > 0
        t = ds.transform * Affine.scale(ds.width / w, ds.height / h)
        polys = [shape(g) for g, v in shapes(valid.astype(np.uint8), mask=valid, transform=t) if v]
        if not polys:
            raise InputError(f"{raster} has no valid pixels: nothing to compare")
        area = gpd.GeoSeries([unary_union(polys)], crs=ds.crs).to_crs(crs).iloc[0]
    return area, f"the valid pixels of {Path(raster).name}"


# ------------------------------------------------------------------------------------------------ pieces

def _segments(lines) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive vertex pairs of every single line: (k, 4) x0 y0 x1 y1 and the line index of each."""
    import shapely

    coords, idx = shapely.get_coordinates(lines, return_index=True)
    same = idx[1:] == idx[:-1]
    seg = np.c_[coords[:-1][same], coords[1:][same]]
    keep = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) > 0
    return seg[keep], idx[:-1][same][keep]


def _pieces(lines, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Every line cut into pieces of at most ``step``: (n, 4) x0 y0 x1 y1 in line order, and each piece's line."""
    seg, line = _segments(lines)
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    n = np.maximum(1, np.ceil(length / step).astype(np.int64))
    rep = np.repeat(np.arange(len(seg)), n)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    t0, t1 = k / n[rep], (k + 1) / n[rep]
    s = seg[rep]
    dx, dy = s[:, 2] - s[:, 0], s[:, 3] - s[:, 1]
    return np.c_[s[:, 0] + t0 * dx, s[:, 1] + t0 * dy, s[:, 0] + t1 * dx, s[:, 1] + t1 * dy], line[rep]


def _alongside(pieces: np.ndarray, other_lines, tol: float, angle_deg: float) -> np.ndarray:
    """For each piece: does a segment of ``other_lines`` lie within ``tol`` of its middle, within ``angle_deg`` of
    its direction?"""
    import shapely

    out = np.zeros(len(pieces), bool)
    seg, _ = _segments(other_lines)
    if not len(seg) or not len(pieces):
        return out
    tree = shapely.STRtree(shapely.linestrings(seg.reshape(-1, 2, 2)))
    dseg = seg[:, 2:] - seg[:, :2]
    dseg /= np.hypot(dseg[:, 0], dseg[:, 1])[:, None]
    cos_min = math.cos(math.radians(angle_deg)) - 1e-9
    for a in range(0, len(pieces), CHUNK):
        p = pieces[a:a + CHUNK]
        mid = shapely.points((p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2)
        qi, si = tree.query(mid, predicate="dwithin", distance=tol)
        d = p[qi, 2:] - p[qi, :2]
        d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]
        ok = np.abs((d * dseg[si]).sum(axis=1)) >= cos_min
        out[a + qi[ok]] = True
    return out


def _runs(pieces: np.ndarray, line: np.ndarray, status: np.ndarray, min_len: float):
    """Consecutive pieces of one line and one status merged: a list of (status, coords (m, 2), piece slice).  A run
    shorter than ``min_len`` takes the status of its longer neighbour within the same line (a whole short line
    keeps its own)."""
    length = np.hypot(pieces[:, 2] - pieces[:, 0], pieces[:, 3] - pieces[:, 1])
    status = status.copy()
    breaks = np.flatnonzero((line[1:] != line[:-1]) | (status[1:] != status[:-1])) + 1
    starts = np.r_[0, breaks]
    ends = np.r_[breaks, len(status)]
    run_len = np.add.reduceat(length, starts) if len(status) else np.zeros(0)
    for i in np.argsort(run_len, kind="stable"):  # shortest first
        if run_len[i] >= min_len:
            break
        a, b = starts[i], ends[i]
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(starts) and line[starts[j]] == line[a]]
        if not nbrs:
            continue
        j = max(nbrs, key=lambda j: run_len[j])
        status[a:b] = status[starts[j]]
    breaks = np.flatnonzero((line[1:] != line[:-1]) | (status[1:] != status[:-1])) + 1
    out = []
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(status)]):
        xy = np.r_[pieces[a:b, :2], pieces[b - 1:b, 2:]]
        out.append((bool(status[a]), xy, slice(a, b)))
    return out


# ------------------------------------------------------------------------------------------------ the comparison

def compare_lines(pred_lines, ref_lines, area, tol: float = 10.0, angle_deg: float = 30.0, min_len: float = 20.0,
                  step: float = 2.0) -> dict:
    """The comparison of two lists of LineStrings in one metric CRS inside ``area`` (a polygon, or None for
    everything): ``{"missing": [...], "mapped": [...], "unconfirmed": [...], "confirmed": [...]}``, each a list of
    (coords, extra) with ``extra`` = {"line": index of the source line}."""
    import shapely

    def clip(lines):
        single = [p for ln in lines if ln is not None and not ln.is_empty
                  for p in (ln.geoms if hasattr(ln, "geoms") else [ln])]
        if area is None or not single:
            return single, list(range(len(single)))
        parts, src = [], []
        for i, g in enumerate(shapely.intersection(np.array(single, dtype=object), area)):
            for p in (g.geoms if hasattr(g, "geoms") else [g]):
                if p.geom_type == "LineString" and p.length > 0:
                    parts.append(p)
                    src.append(i)
        return parts, src

    pred, pred_src = clip(pred_lines)
    ref, ref_src = clip(ref_lines)
    res = {"missing": [], "mapped": [], "unconfirmed": [], "confirmed": []}
    for lines, src, other, (yes, no) in ((pred, pred_src, ref, ("mapped", "missing")),
                                         (ref, ref_src, pred, ("confirmed", "unconfirmed"))):
        if not lines:
            continue
        pieces, line = _pieces(np.array(lines, dtype=object), step)
        ok = _alongside(pieces, np.array(other, dtype=object), tol, angle_deg) if other else np.zeros(len(pieces), bool)
        for matched, xy, part in _runs(pieces, line, ok, min_len):
            res[yes if matched else no].append((xy, {"line": src[int(line[part.start])]}))
    return res


def _joins(xy_list, ref_lines, tol: float) -> list[str]:
    """For each missing piece: does it meet the reference network at both ends, one or none?"""
    import shapely

    if not xy_list:
        return []
    ref = [p for ln in ref_lines for p in (ln.geoms if hasattr(ln, "geoms") else [ln])]
    if not ref:
        return ["none"] * len(xy_list)
    tree = shapely.STRtree(ref)
    ends = np.array([[xy[0], xy[-1]] for xy in xy_list]).reshape(-1, 2)
    qi, _ = tree.query(shapely.points(ends), predicate="dwithin", distance=tol)
    near = np.zeros(len(ends), bool)
    near[qi] = True
    n = near.reshape(-1, 2).sum(axis=1)
    return [("none", "one", "both")[k] for k in n]


def _mean_prob(xy_list, prob_path, crs, step: float) -> list[float]:
    """Mean of the probability raster along each piece (every ``step`` m), NaN where it has no value."""
    if prob_path is None or not xy_list:
        return [float("nan")] * len(xy_list)
    import rasterio
    from pyproj import Transformer

    out = []
    with rasterio.open(prob_path) as ds:
        to = Transformer.from_crs(crs, ds.crs, always_xy=True)
        nod = ds.nodata
        for xy in xy_list:
            seg = np.diff(xy, axis=0)
            L = np.hypot(seg[:, 0], seg[:, 1]).sum()
            n = max(2, int(L / step) + 1)
            cum = np.r_[0, np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))]
            t = np.linspace(0, cum[-1], n)
            px, py = np.interp(t, cum, xy[:, 0]), np.interp(t, cum, xy[:, 1])
            sx, sy = to.transform(px, py)
            vals = np.array([v[0] for v in ds.sample(zip(sx, sy))], float)
            vals = vals[np.isfinite(vals) & ((vals != nod) if nod is not None else True) & (vals >= 0)]
            out.append(float(vals.mean()) if len(vals) else float("nan"))
    return out


def run_compare(opts: CompareOptions) -> CompareResult:
    """Compare ``opts.prediction`` with ``opts.reference``; write the GeoPackage and the optional OSM XML, JSON and
    report."""
    import geopandas as gpd
    from shapely.geometry import LineString

    from .checks import check_crs
    from .score import _metric_lines, with_crs

    check(opts)
    crs_hint = check_crs(opts.crs)
    pred_df = read_prediction(opts.prediction)  # may be empty: a model that found nothing confirms nothing
    ref_df = read_reference(opts.reference, opts.highway)
    if ref_df.empty:
        raise InputError(f"{opts.reference} holds no line features: it cannot be a road map")
    pred_df = with_crs(pred_df, Path(opts.prediction), crs_hint)
    ref_df = with_crs(ref_df, Path(opts.reference), crs_hint)
    pb, rb = pred_df.to_crs(4326).total_bounds, ref_df.to_crs(4326).total_bounds
    if not pred_df.empty and (pb[0] > rb[2] or rb[0] > pb[2] or pb[1] > rb[3] or rb[1] > pb[3]):
        raise InputError(f"{opts.prediction} and {opts.reference} do not overlap: they cover different places")
    pred, ref, crs = _metric_lines(pred_df, ref_df)
    area, area_from = footprint(opts, crs, pred or ref, "the prediction's" if pred else "the reference's")
    res = compare_lines(pred, ref, area, opts.tolerance_m, opts.angle_deg, opts.min_length_m, opts.step_m)
    missing_xy = [xy for xy, _ in res["missing"]]
    joins = _joins(missing_xy, ref, opts.tolerance_m)
    if opts.prob is not None:
        probs = _mean_prob(missing_xy, opts.prob, crs, opts.step_m)
    elif "mean_prob" in pred_df.columns:  # roadmap's own edges carry their mean probability
        probs = _edge_probs(pred_df, res["missing"])
    else:
        probs = [float("nan")] * len(missing_xy)

    def frame(items, cols=None):
        geoms = [LineString(xy) for xy, _ in items]
        data = {"length_m": [g.length for g in geoms], **(cols or {})}
        return gpd.GeoDataFrame(data, geometry=geoms, crs=crs)

    layers = {"missing": frame(res["missing"], {"mean_prob": probs, "joins": joins}),
              "unconfirmed": frame(res["unconfirmed"]), "mapped": frame(res["mapped"])}
    km = {k: float(sum(LineString(xy).length for xy, _ in v) / 1000) for k, v in res.items()}
    ref_total = km["confirmed"] + km["unconfirmed"]
    share = km["confirmed"] / ref_total if ref_total else float("nan")
    out_crs = ref_df.crs if ref_df.crs is not None else crs
    with atomic_path(opts.output, opts.overwrite) as tmp:
        for name, df in layers.items():
            df.to_crs(out_crs).to_file(tmp, layer=name, driver="GPKG", engine="pyogrio")
    result = CompareResult({"missing": km["missing"], "mapped": km["mapped"], "unconfirmed": km["unconfirmed"],
                            "reference_confirmed": km["confirmed"]}, share,
                           {k: len(v) for k, v in res.items()}, float(area.area / 1e6), area_from, str(crs),
                           {"gpkg": Path(opts.output)})
    if opts.osm_out is not None:
        write_osm(layers["missing"].to_crs(4326), opts.osm_out, opts.reference, ref_df.to_crs(4326), opts.tolerance_m,
                  f"{opts.source}; compared with {Path(opts.reference).name}", opts.overwrite)
        result.outputs["osm"] = Path(opts.osm_out)
    if opts.report is not None:
        from .report import build_compare_report

        page = build_compare_report({k: df.to_crs(4326) for k, df in layers.items()}, [
            ("prediction", Path(opts.prediction).name), ("reference", Path(opts.reference).name),
            ("missing", f"{km['missing']:.2f} km"), ("unconfirmed", f"{km['unconfirmed']:.2f} km"),
            ("reference confirmed", f"{100 * share:.0f} %" if ref_total else "-")])
        with atomic_path(opts.report, opts.overwrite) as tmp:
            tmp.write_text(page, encoding="utf-8")
        result.outputs["report"] = Path(opts.report)
    if opts.json_out is not None:
        result.outputs["json"] = Path(opts.json_out)
        with atomic_open(opts.json_out, overwrite=opts.overwrite) as f:
            json.dump(result.summary(), f, indent=1)
    return result


def _edge_probs(pred_df, missing) -> list[float]:
    """Each missing piece's source edge's ``mean_prob`` (roadmap's edges carry it), by the clipped line's index."""
    singles = [float(p) for p, g in zip(pred_df["mean_prob"].to_numpy(float), pred_df.geometry)
               for _ in (g.geoms if hasattr(g, "geoms") else [g])]
    return [singles[extra["line"]] if extra["line"] < len(singles) else float("nan") for _, extra in missing]


# ------------------------------------------------------------------------------------------------ OSM XML

def _osm_nodes(path: Path) -> dict:
    """(lon, lat) rounded to 1e-7 -> (id, version) of the nodes of an OpenStreetMap XML file."""
    import xml.etree.ElementTree as ET

    nodes = {}
    try:
        for _, el in ET.iterparse(path, events=("end",)):
            if el.tag == "node":
                key = (round(float(el.get("lon")), 7), round(float(el.get("lat")), 7))
                nodes[key] = (el.get("id"), el.get("version"))
            el.clear()
    except (ET.ParseError, TypeError, ValueError):
        return {}
    return nodes


def write_osm(missing, path, reference: Path, ref_ll, tol_m: float, source: str, overwrite: bool) -> None:
    """The missing roads as OpenStreetMap XML for review in JOSM or iD (nothing is uploaded; ``upload="never"``):
    new ways and nodes with negative ids, a node shared wherever ways meet, an end that joins the reference snapped
    onto the reference's nearest vertex (its existing node when the reference is an .osm file), tags
    ``highway=road``, ``fixme`` and ``source``."""
    import shapely

    existing = _osm_nodes(Path(reference)) if Path(reference).suffix.lower() == ".osm" else {}
    ref_pts = shapely.get_coordinates(np.array(list(ref_ll.geometry), dtype=object)) if len(ref_ll) else np.zeros((0, 2))
    from scipy.spatial import cKDTree

    tree = cKDTree(ref_pts * [math.cos(math.radians(float(ref_pts[:, 1].mean()))), 1.0]) if len(ref_pts) else None
    tol_deg = tol_m / 111_320.0
    ids: dict = {}
    nodes: list[tuple] = []  # (id, lon, lat, version or None)
    ways = []
    next_id = [-1]

    def node(lon: float, lat: float, end: bool):
        if end and tree is not None:  # an end at the reference: onto its nearest vertex
            d, j = tree.query([lon * math.cos(math.radians(lat)), lat])
            if d <= tol_deg:
                lon, lat = (float(v) for v in ref_pts[j])
        key = (round(lon, 7), round(lat, 7))
        if key not in ids:
            if key in existing:
                nid, version = existing[key]
                ids[key] = nid
                nodes.append((nid, lon, lat, version))
            else:
                ids[key] = str(next_id[0])
                nodes.append((str(next_id[0]), lon, lat, None))
                next_id[0] -= 1
        return ids[key]

    for g, joins in zip(missing.geometry, missing["joins"]):
        xy = np.asarray(g.coords)
        refs = [node(x, y, end=i in (0, len(xy) - 1)) for i, (x, y) in enumerate(xy)]
        refs = [r for k, r in enumerate(refs) if k == 0 or r != refs[k - 1]]
        if len(refs) >= 2:
            ways.append((refs, joins))
    fixme = ("roadmap: a road seen in the imagery that this map lacks; check it against the imagery and classify "
             "it (highway=road is a placeholder)")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<osm version="0.6" generator="roadmap compare" upload="never">']
    for nid, lon, lat, version in nodes:
        v = f' version="{version}"' if version else ""
        lines.append(f'  <node id="{nid}"{v} lat="{lat:.7f}" lon="{lon:.7f}"/>')
    for k, (refs, joins) in enumerate(ways):
        lines.append(f'  <way id="{next_id[0] - k}">')
        lines += [f'    <nd ref="{r}"/>' for r in refs]
        for key, val in (("highway", "road"), ("fixme", fixme), ("source", source),
                         ("note", f"joins the existing network: {joins}")):
            lines.append(f'    <tag k="{key}" v={xml.quoteattr(val)}/>')
        lines.append("  </way>")
    lines.append("</osm>")
    with atomic_open(path, overwrite=overwrite, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
