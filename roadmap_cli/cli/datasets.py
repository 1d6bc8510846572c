"""``roadmap datasets download|from-vectors``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Training datasets.")


@app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="massachusetts or deepglobe"),
    root: Path = typer.Option(..., "--root", help="Folder to download and extract into."),
):
    """Download and extract a training dataset (resumable, checksummed, safe extraction)."""
    from ..data.sources import download_dataset

    typer.echo(str(download_dataset(name, root)))


@app.command("from-vectors")
def datasets_from_vectors(
    scene: Path = typer.Argument(..., help="Georeferenced GeoTIFF."),
    roads: Path = typer.Argument(..., help="Road centre lines (GeoJSON / GPKG / any OGR vector, with a CRS)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder (images/ and labels/ are added to it)."),
    name: Optional[str] = typer.Option(None, "--name", help="File stem (default: the scene's)."),
    gsd: float = typer.Option(1.0, "--gsd", help="Ground resolution of the pairs in m/px (the model's)."),
    road_width_m: float = typer.Option(7.0, "--road-width-m", help="Label width (Massachusetts labels: ~7 m)."),
    bands: Optional[str] = options.BANDS,
    tile: int = typer.Option(1500, "--tile", help="Cut larger scenes into tiles of this many pixels."),
    overwrite: bool = options.OVERWRITE,
):
    """Make image/label training pairs from a scene and its road vectors (for `train --dataset folder`)."""
    from ..data.from_vectors import pairs_from_vectors

    pairs = pairs_from_vectors(scene, roads, out, name, gsd, road_width_m, bands, tile, overwrite)
    more = " ..." if len(pairs) > 5 else ""
    typer.echo(f"{len(pairs)} pair(s) in {out}: " + ", ".join(p.stem for p in pairs[:5]) + more)
