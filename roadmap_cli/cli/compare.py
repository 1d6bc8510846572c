"""``roadmap compare``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from . import options


def compare(
    prediction: Path = typer.Argument(..., help="The extracted roads: roadmap's GPKG / GeoJSON / GraphML, or any "
                                                "line layer."),
    reference: Path = typer.Argument(..., help="The existing map: GPKG, GeoJSON, Shapefile, FlatGeobuf, or "
                                               "OpenStreetMap .osm / .osm.pbf (highway=* ways)."),
    output: Path = typer.Option(..., "-o", "--output", help="GeoPackage with layers missing, unconfirmed, mapped."),
    scene: Optional[Path] = typer.Option(None, "--scene", help="The imagery: only its valid pixels are compared."),
    prob: Optional[Path] = typer.Option(None, "--prob", help="roadmap's probability raster (extract --prob-out): "
                                                             "the area compared and each piece's mean probability."),
    osm_out: Optional[Path] = typer.Option(None, "--osm", help="The missing roads as OpenStreetMap XML for JOSM / iD "
                                                               "(nothing is uploaded)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="The summary as JSON."),
    report: Optional[Path] = typer.Option(None, "--report", help="An HTML map of the three layers."),
    tolerance_m: float = typer.Option(10.0, "--tolerance-m", help="A road runs alongside within this distance."),
    angle_deg: float = typer.Option(30.0, "--angle-deg", help="... and within this angle of its direction."),
    min_length_m: float = typer.Option(20.0, "--min-length-m",
                                       help="Runs shorter than this take the status of the run beside them."),
    highway: Optional[str] = typer.Option(None, "--highway", help="OpenStreetMap references: the highway=* types "
                                                                  "compared (comma list, or all; default: the roads "
                                                                  "a vehicle drives, README)."),
    crs: Optional[str] = typer.Option(None, "--crs", help="CRS of files that name none, e.g. EPSG:32611."),
    overwrite: bool = options.OVERWRITE,
):
    """Compare extracted roads with an existing road map: what the map lacks, what the imagery does not confirm."""
    from ..compare import CompareOptions, check

    opts = CompareOptions(prediction, reference, output, scene, prob, osm_out, json_out, report, tolerance_m,
                          angle_deg, min_length_m, highway=highway, crs=crs, overwrite=overwrite)
    check(opts)  # before GDAL and geopandas load
    from ..compare import run_compare

    print_compare(run_compare(opts))


def print_compare(r) -> None:
    """The km per status and the share of the reference confirmed."""
    from .render import print_table

    share = "-" if math.isnan(r.confirmed_share) else f"{100 * r.confirmed_share:.1f} %"
    print_table("roadmap compare", [
        ("missing from the map", f"{r.km['missing']:.2f} km in {r.pieces['missing']} piece(s)"),
        ("in the map, not confirmed", f"{r.km['unconfirmed']:.2f} km in {r.pieces['unconfirmed']} piece(s)"),
        ("mapped (found and in the map)", f"{r.km['mapped']:.2f} km"),
        ("reference confirmed", share),
        ("area compared", f"{r.area_km2:.3f} km2 ({r.area_from})"),
        *[(k, str(v)) for k, v in r.outputs.items()],
    ])
