"""The ``roadmap`` application: global flags, the commands, and the error convention of the entry point."""
from __future__ import annotations

import logging
import sys
import warnings
from typing import List, Optional

import typer

from .. import __version__
from ..errors import UserError
from . import datasets, extract, info, models, score, train
from .state import STATE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Road networks from georeferenced aerial and satellite images (Anchor-SAM).")
app.add_typer(models.app, name="models")
app.add_typer(datasets.app, name="datasets")
app.command()(info.info)
app.command()(extract.extract)
app.command()(score.score)
app.command()(train.train)


def _version(value: bool):
    if value:
        typer.echo(f"roadmap {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("rasterio", "pyogrio", "fiona", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # rasters without georeferencing are refused unless --allow-pixel-coords: GDAL's warning adds nothing
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    STATE.debug = debug
    STATE.quiet = quiet


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point: runs the app under the error convention."""
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="roadmap")
        return rc if isinstance(rc, int) else 0
    except UserError as e:
        if STATE.debug:
            import traceback
            traceback.print_exc()
        print(f"roadmap: error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("roadmap: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("roadmap: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors and bugs
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):  # click usage errors
            e.show()
            return e.exit_code
        if STATE.debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"roadmap: internal error: {type(e).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
