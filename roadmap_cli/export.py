"""Georeference a pixel road graph and write GeoPackage / GeoJSON / GraphML (atomically)."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
from shapely.geometry import LineString, Point

from .checks import FORMATS, output_format  # noqa: F401 - re-exported
from .errors import InputError
from .io.atomic import atomic_path


def metric_lengths(geoms, crs, metres_per_unit: float | None = None) -> np.ndarray:
    """Ground lengths in metres: geodesic on the WGS84 ellipsoid for any CRS (so Web Mercator, feet and projection
    scale factors do not distort them); without a CRS, coordinate length times ``metres_per_unit``."""
    import geopandas as gpd

    s = gpd.GeoSeries(list(geoms), crs=crs)
    if len(s) == 0:
        return np.zeros(0)
    if crs is None:
        return s.length.to_numpy() * (1.0 if metres_per_unit is None else metres_per_unit)
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return np.array([geod.geometry_length(g) for g in s.to_crs("EPSG:4326")])


def to_geodataframes(g: nx.MultiGraph, transform, crs, gsd: float, simplify_px: float = 0.0, to_crs=None,
                     metres_per_unit: float | None = None):
    """(edges, nodes) GeoDataFrames from a cleaned pixel graph (``line`` in row/col); ``gsd`` is ground metres per
    pixel, ``metres_per_unit`` the ground size of a coordinate unit when there is no CRS."""
    import geopandas as gpd

    def xy(rc: np.ndarray) -> np.ndarray:
        cols, rows = rc[:, 1] + 0.5, rc[:, 0] + 0.5
        x = transform.a * cols + transform.b * rows + transform.c
        y = transform.d * cols + transform.e * rows + transform.f
        return np.c_[x, y]

    erows, egeoms = [], []
    for u, v, k, d in g.edges(keys=True, data=True):
        line = np.asarray(d["line"], float)
        ls = LineString(line)
        if simplify_px > 0 and len(line) > 2:
            ls = ls.simplify(simplify_px, preserve_topology=False)
        egeoms.append(LineString(xy(np.asarray(ls.coords))))
        n = max(1, d["n"])
        erows.append({"id": int(k), "u": int(u), "v": int(v), "mean_prob": round(d["sum_p"] / n, 4),
                      "min_prob": round(float(d["min_p"]), 4), "width_m": round(2 * d["sum_w"] / n * gsd, 2),
                      "bridged": bool(d["bridged"]), "source": d.get("source", "skeleton")})
    edges = gpd.GeoDataFrame(erows, geometry=egeoms, crs=crs) if erows else gpd.GeoDataFrame(
        {"id": [], "u": [], "v": [], "mean_prob": [], "min_prob": [], "width_m": [], "bridged": [], "source": []},
        geometry=[], crs=crs)
    edges.insert(3, "length_m", np.round(metric_lengths(edges.geometry, crs, metres_per_unit), 2))
    nrows, ngeoms = [], []
    for n, d in g.nodes(data=True):
        ngeoms.append(Point(xy(np.asarray(d["o"], float)[None])[0]))
        nrows.append({"id": int(n), "degree": int(g.degree(n))})
    nodes = gpd.GeoDataFrame(nrows, geometry=ngeoms, crs=crs) if nrows else gpd.GeoDataFrame(
        {"id": [], "degree": []}, geometry=[], crs=crs)
    if to_crs:
        try:
            edges, nodes = edges.to_crs(to_crs), nodes.to_crs(to_crs)
        except Exception as e:
            raise InputError(f"--to-crs {to_crs}: {e}") from e
    return edges, nodes


def write_graph(path, edges, nodes, overwrite: bool = False) -> None:
    """Write edges (and nodes, for GPKG / GraphML) atomically in the format the suffix names.  The layers are named
    after the output (GeoJSON) or ``edges`` / ``nodes`` (GeoPackage), never after the temporary file."""
    fmt = output_format(path)
    # an empty layer has no geometry to infer its type from: name it, so a GIS opens it as lines / points
    e_kw = {"geometry_type": "LineString"} if edges.empty else {}
    n_kw = {"geometry_type": "Point"} if nodes.empty else {}
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "GPKG":
            edges.to_file(tmp, layer="edges", driver="GPKG", engine="pyogrio", **e_kw)
            nodes.to_file(tmp, layer="nodes", driver="GPKG", engine="pyogrio", append=False, **n_kw)
        elif fmt == "GeoJSON":
            edges.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=Path(path).stem, **e_kw)
        else:
            nx.write_graphml(to_osmnx_graph(edges, nodes), tmp)


def to_osmnx_graph(edges, nodes) -> nx.MultiDiGraph:
    """The road graph in osmnx's GraphML schema, so ``osmnx.load_graphml`` (and plain networkx) read it: a
    MultiDiGraph with both directions of every (two-way) road, ``oneway``/``reversed`` flags, node ``x``/``y`` and
    ``street_count``, edge ``osmid`` (roadmap's edge id), ``length`` in metres and ``geometry`` as WKT, every value
    stored as a string as osmnx stores it; graph attributes ``crs`` and ``created_with``."""
    from . import __version__

    g = nx.MultiDiGraph(crs=edges.crs.to_string() if edges.crs else "", created_with=f"roadmap {__version__}",
                        simplified="True")
    for _, r in nodes.iterrows():
        g.add_node(int(r["id"]), x=repr(float(r.geometry.x)), y=repr(float(r.geometry.y)),
                   street_count=str(int(r["degree"])))
    extra = [c for c in edges.columns if c not in ("id", "u", "v", "length_m", "geometry")]
    for _, r in edges.iterrows():
        u, v, line = int(r["u"]), int(r["v"]), r.geometry
        attrs = {"osmid": str(int(r["id"])), "length": str(float(r["length_m"])), "oneway": "False",
                 **{c: str(r[c]) for c in extra}}
        g.add_edge(u, v, geometry=line.wkt, reversed="False", **attrs)
        if u != v:
            g.add_edge(v, u, geometry=LineString(list(line.coords)[::-1]).wkt, reversed="True", **attrs)
    return g
