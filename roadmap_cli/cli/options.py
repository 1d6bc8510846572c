"""Options shared by several commands (one definition each)."""
from __future__ import annotations

import typer

BANDS = typer.Option(None, "--bands", help="1-based band indices, e.g. 4,3,2 (default 1,2,3).")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing outputs.")
GSD_MODEL = typer.Option(None, "--gsd", help="Model ground resolution in m/px (default: model's).")
