"""The checks a command can make before any heavy import (torch, GDAL, geopandas): inputs that exist and look like
what they claim, output names, formats and folders, outputs that exist without ``--overwrite``, and that no output is
an input.  The CLI runs them first, so the first-hour mistakes are answered at once; the library runs them again
(they are cheap), so Python callers get the same answers.  Imports only ``errors`` and ``io.atomic`` / ``io.guard``
(standard library only)."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError, OutputError
from .io.atomic import check_output_path

FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".graphml": "GraphML"}
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def output_format(path) -> str:
    """The vector format of an output path, from its suffix."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"output {path}: unknown format; use .gpkg, .geojson or .graphml")
    return fmt


def _remote(p) -> bool:
    return str(p).startswith("/vsi") or "://" in str(p)


def check_scenes(scenes) -> None:
    """Each scene exists; a ``.tif`` file starts as a TIFF does (a text or HTML page saved as ``.tif`` is caught
    here, not after the model has loaded)."""
    for s in scenes if isinstance(scenes, (list, tuple)) else [scenes]:
        if _remote(s):
            continue
        p = Path(s)
        try:
            exists = p.exists()
        except (OSError, ValueError):
            exists = False
        if not exists:
            raise InputError(f"input {str(p)[:200]} not found")
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff"):
            with open(p, "rb") as f:
                head = f.read(4)
            if head not in TIFF_MAGIC:
                raise InputError(f"{p} is not a GeoTIFF: it does not start as a TIFF file does "
                                 f"({'empty' if not head else 'first bytes ' + head.hex()})")


def check_crs(crs, flag: str = "--crs"):
    """A CRS the user named (``EPSG:32611``, WKT, PROJ string), checked: an unknown one is an :class:`InputError`."""
    if crs is None:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as e:
        raise InputError(f"{flag} {crs}: not a CRS ({' '.join(str(e).split())[:100]})") from e


def check_suffix(flag: str, path, suffixes: tuple, what: str) -> None:
    """An output's name ends in one of ``suffixes``."""
    if path is not None and Path(path).suffix.lower() not in suffixes:
        raise InputError(f"{flag} {path}: {what}")


def extract_work_folder(output) -> Path:
    """Where ``extract`` keeps its tiles while it runs (``--resume`` continues from it)."""
    return Path(str(output) + ".roadmap-work")


def check_extract_paths(scene, output, prob_out=None, mask_out=None, preview=None, report=None,
                        overwrite: bool = False, resume: bool = False) -> None:
    """``extract``'s inputs exist and its outputs can be written (suffixes, folders, existing files)."""
    check_scenes(scene)
    output_format(output)
    check_suffix("--prob-out", prob_out, (".tif", ".tiff"), "raster outputs must end in .tif")
    check_suffix("--mask-out", mask_out, (".tif", ".tiff"), "raster outputs must end in .tif")
    check_suffix("--report", report, (".html", ".htm"), "must end in .html")
    check_suffix("--preview", preview, (".png",), "must end in .png")
    again = overwrite or (resume and (extract_work_folder(output) / "manifest.json").is_file())
    for p in (output, prob_out, mask_out, report, preview):
        if p is not None:
            check_output_path(p, again)


def check_adapt_paths(scene, roads, output, json_out=None, init=None, overwrite: bool = False,
                      resume: bool = False) -> None:
    """``adapt``'s inputs exist and its checkpoint can be written."""
    check_scenes(scene)
    if not Path(roads).exists():
        raise InputError(f"road vectors {roads} not found")
    if init is not None and not Path(init).is_file():
        raise InputError(f"--init {init} not found")
    check_suffix("-o", output, (".pt", ".pth", ".ckpt"), "the adapted model is a checkpoint; name it .pt")
    if Path(output).exists() and not overwrite and not resume:
        raise InputError(f"output {output} exists; pass --overwrite to replace it")
    check_output_path(output, overwrite=True)
    if json_out is not None:
        check_output_path(json_out, overwrite=True)


def check_train_paths(root=None, config=None, init=None, sam2_checkpoint=None) -> None:
    """``train``'s named files and folders exist."""
    for flag, p in (("--config", config), ("--init", init), ("--sam2-checkpoint", sam2_checkpoint)):
        if p is not None and not Path(p).is_file():
            raise InputError(f"{flag} {p} not found")
    if root is not None and not Path(root).exists():
        raise InputError(f"--root {root} not found")


def guard_extract(scene, outputs: dict, model=None, weights=None, asset=None, sources=None) -> None:
    """No output of ``extract`` is an input and its work folder holds none: the scenes as given, the scenes their
    folders, lists and STAC items name (``sources``, else expanded here), the weights."""
    from .io.guard import Inputs, guard_outputs
    from .io.scenes import LIST_SUFFIXES, expand_inputs

    scenes = [Path(x) for x in (scene if isinstance(scene, (list, tuple)) else [scene])]
    if sources is None:
        named = [x for x in scenes if x.is_dir() or x.suffix.lower() in (*LIST_SUFFIXES, ".json")]
        sources = expand_inputs(named, asset, exclude=[p for p in outputs.values() if p]) if named else ()
    ins = Inputs().add("the scene {}", scenes).add("the scene {}", list(sources)).add("--weights {}", weights)
    if model is not None and Path(model).suffix:  # a checkpoint file, not a variant name
        ins.add("--model {}", model)
    guard_outputs(outputs, ins, removes={"the work folder": extract_work_folder(outputs["-o"])})


def adapt_work_folder(output) -> Path:
    """``adapt``'s work folder beside its checkpoint: ``roads.pt`` -> ``roads.adapt/``."""
    output = Path(output)
    return output.with_name(output.stem + ".adapt")


def adapt_json_path(output, json_out=None) -> Path:
    """``adapt``'s JSON report: ``--json``, else the checkpoint's name with ``.json``."""
    return Path(json_out) if json_out else Path(output).with_suffix(".json")


def guard_adapt(scene, roads, output, json_out=None, init=None, sam2_checkpoint=None, asset=None,
                sources=None) -> None:
    """Neither output of ``adapt`` nor its work folder (removed when a run starts again) may be or hold an input:
    the scenes (as given and as their folders, lists and STAC items name them), the road vectors, the starting
    checkpoints."""
    from .io.guard import Inputs, guard_outputs
    from .io.scenes import LIST_SUFFIXES, expand_inputs

    scenes = [Path(x) for x in (scene if isinstance(scene, (list, tuple)) else [scene])]
    report, work = adapt_json_path(output, json_out), adapt_work_folder(output)
    if sources is None:
        named = [x for x in scenes if x.is_dir() or x.suffix.lower() in (*LIST_SUFFIXES, ".json")]
        sources = expand_inputs(named, asset, exclude=[output, report, work]) if named else ()
    ins = Inputs().add("the scene {}", scenes).add("the scene {}", list(sources))
    ins.add("the road vectors {}", roads).add("--init {}", init).add("--sam2-checkpoint {}", sam2_checkpoint)
    guard_outputs({"-o": output, "--json": report}, ins, removes={"the work folder": work})
