"""Road vector files (GeoJSON, GeoPackage, Shapefile, any OGR format) read through pyogrio."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def line_layer(path: Path) -> str | None:
    """The layer holding the roads of a multi-layer file: ``edges`` (roadmap's own GeoPackage), else the first
    line layer; None for a single-layer file."""
    import pyogrio

    layers = pyogrio.list_layers(path)
    if len(layers) <= 1:
        return None
    names = [str(n) for n, _ in layers]
    if "edges" in names:
        return "edges"
    lines = [str(n) for n, kind in layers if kind and "LINE" in str(kind).upper()]
    return lines[0] if lines else names[0]


def read_lines(path: Path):
    """The (Multi)LineString features of a vector file (its road layer, :func:`line_layer`) as a GeoDataFrame, in
    the file's CRS."""
    import geopandas as gpd

    try:
        df = gpd.read_file(path, engine="pyogrio", layer=line_layer(path))
    except Exception as e:
        raise InputError(f"cannot read {path}: {' '.join(str(e).split())[:160]}") from e
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    return df[df.geom_type.isin(["LineString", "MultiLineString"])]
