"""The ``roadmap`` application: global flags, the commands, and the error convention of the entry point."""
from __future__ import annotations

import logging
import os
import sys
import warnings

# OpenMP threads that find no work spin before they sleep; on a machine shared with other jobs that spinning stole
# the CPU their partner thread needed (adapt's training step cost 1.8-3.6x its quiet CPU time).  A short spin keeps
# the quiet speed and the busy cost within 1.5x (BENCHMARKS.md "A busy machine").  Set before torch loads libgomp;
# a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.  The wait policy changes no result, only who waits how.
GOMP_SPINCOUNT = "10000"
if not any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT
from typing import List, Optional

import typer

from .. import __version__
from ..errors import UserError
from . import adapt, compare, datasets, extract, info, models, score, train
from .state import STATE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Road networks from georeferenced aerial and satellite images (Anchor-SAM).")


def _plain_usage_names() -> None:
    """Help reads as click's (no ``<bool>`` after flags: plain help mode), and a required argument is written
    ``SCENE`` in the usage line, not typer's ``{scene}``, which reads like a set of choices."""
    from typer.core import TyperArgument

    if hasattr(TyperArgument, "_usage_display_name"):
        def usage_name(self) -> str:
            name = self.display_name_raw.upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = usage_name


def _plain_types() -> None:
    """Help names values in words (``PATH``, ``TEXT``, ``INTEGER``, ``NUMBER``, ``a|b`` for choices, ``...`` for
    several), not Python types (``<list[Path]>``, ``<int range>``)."""
    from typer.core import _TyperParameter

    if not hasattr(_TyperParameter, "display_type"):
        return
    words = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "bool": "", "Path": "PATH"}

    def display_type(self, ctx) -> str:
        desc = getattr(self, "type_descriptor", None)
        if desc is None:
            return ""
        if desc.is_choice and desc.choices:
            word = "|".join(str(getattr(c, "value", c)) for c in desc.choices)
        elif desc.is_path:
            word = "PATH"
        elif desc.is_ranged:
            word = "INTEGER" if "int" in str(desc.ranged_type_name).lower() else "NUMBER"
        else:
            annotation = desc.annotation
            if desc.is_list:
                from typing import get_args

                annotation = (get_args(annotation) or (str,))[0]
            word = words.get(getattr(annotation, "__name__", str(annotation)), "VALUE")
        return f"{word}..." if word and desc.is_list else word

    _TyperParameter.display_type = display_type


_plain_usage_names()
_plain_types()
app.add_typer(models.app, name="models")
app.add_typer(datasets.app, name="datasets")
app.command()(info.info)
app.command()(extract.extract)
app.command()(score.score)
app.command()(train.train)
app.command()(adapt.adapt)
app.command()(compare.compare)


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
    # -v / -vv speak for roadmap itself (each stage, its timing and sizes); other libraries stay at warnings
    logging.basicConfig(level=max(level, logging.WARNING), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    logging.getLogger("roadmap_cli").setLevel(level)
    # rasters without georeferencing are refused unless --allow-pixel-coords: GDAL's warning adds nothing
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    STATE.debug = debug
    STATE.quiet = quiet


def _interrupted(argv) -> int:
    """Ctrl-C: one line, and how to continue a run that keeps its work."""
    words = list(sys.argv[1:] if argv is None else argv)
    if ("extract" in words or "train" in words or "adapt" in words) and "--dry-run" not in words:
        again = "" if "--resume" in words else " with --resume"
        print(f"roadmap: interrupted; run the same command{again} to continue where it stopped", file=sys.stderr)
    else:
        print("roadmap: interrupted", file=sys.stderr)
    return 130


GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "-q", "--quiet", "--debug")


def global_flags_first(args: list[str]) -> list[str]:
    """``-v/-q/--debug`` may stand before or after the command's name: they are moved to the front (not after a
    ``--``)."""
    cut = args.index("--") if "--" in args else len(args)
    head = args[:cut]
    return [a for a in head if a in GLOBAL_FLAGS] + [a for a in head if a not in GLOBAL_FLAGS] + args[cut:]


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point: runs the app under the error convention."""
    args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not args:  # a bare `roadmap` is a request for help: on stdout, exit 0, as --help
        args = ["--help"]
    args = global_flags_first(args)
    try:
        rc = app(args=args, standalone_mode=False, prog_name="roadmap")
        if rc == 130:  # typer turns Ctrl-C into Exit(130), which click returns in this mode
            return _interrupted(argv)
        return rc if isinstance(rc, int) else 0
    except UserError as e:
        if STATE.debug:
            import traceback
            traceback.print_exc()
        print(f"roadmap: error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        if e.exit_code == 130:  # typer turns Ctrl-C into Exit(130)
            return _interrupted(argv)
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(argv)
    except Exception as e:  # click usage errors, the machine's errors (a full disk, a read-only folder) and bugs
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):  # click usage errors
            e.show()
            return e.exit_code
        from ..io.atomic import environment_error

        machine = environment_error(e)
        if machine is not None and not STATE.debug:  # the outputs were written to temporary files: none is left
            print(f"roadmap: error: {machine}", file=sys.stderr)
            return 2
        if STATE.debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"roadmap: internal error: {type(e).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
