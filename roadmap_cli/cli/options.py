"""Options shared by several commands (one definition each)."""
from __future__ import annotations

import typer

BANDS = typer.Option(None, "--bands", help="1-based band indices, e.g. 4,3,2 (default 1,2,3).")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing outputs.")
MODEL_GSD = typer.Option(None, "--model-gsd", "--gsd",
                         help="Ground resolution the model works at, m/px (default: the model's own, 1.0 for the "
                              "bundled model). Not the scene's resolution: see --scene-gsd.")
SCENE_GSD = typer.Option(None, "--scene-gsd",
                         help="The scene's own ground resolution, m/px: needed for images without "
                              "georeferencing, overrides a wrong one (default: from the georeferencing).")
