"""``roadmap models list|download``."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Model variants and pretrained weights.")


@app.command("list")
def models_list():
    """Model variants (configs) and downloadable checkpoints."""
    from ..registry import list_rows

    for row in list_rows():
        typer.echo(row)


@app.command("download")
def models_download(
    name: str = typer.Argument(..., help="Registry name, e.g. sam2.1_hiera_tiny.pt"),
    dest: Path = typer.Option(None, "--dest", help="Folder (default: $ROADMAP_HOME/checkpoints)."),
):
    """Download a checkpoint (resumable, sha256-verified)."""
    from ..weights import download_weights

    typer.echo(str(download_weights(name, dest)))
