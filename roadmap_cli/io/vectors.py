"""Road vector files (GeoJSON, GeoPackage, Shapefile, any OGR format) read through pyogrio."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def read_lines(path: Path):
    """The (Multi)LineString features of a vector file as a GeoDataFrame, in the file's CRS."""
    import geopandas as gpd

    try:
        df = gpd.read_file(path, engine="pyogrio")
    except Exception as e:
        raise InputError(f"cannot read {path}: {' '.join(str(e).split())[:160]}") from e
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    return df[df.geom_type.isin(["LineString", "MultiLineString"])]
