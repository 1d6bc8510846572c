"""Atomic output writes: everything a command writes goes to a temp file beside the target, then is renamed."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import OutputError, OutputExistsError


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any work) when ``path`` exists without ``overwrite`` or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True):
    """Yield a temporary path in the target's folder; on success rename it onto ``path``, on error remove it.

    The temp name keeps the target's suffix, so format-sniffing writers (GDAL, pyogrio, PIL) behave the same.
    """
    path = Path(path)
    check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent or ".")
    os.close(fd)
    os.unlink(tmp)  # writers that refuse to overwrite (GDAL drivers) get a free name
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced no file for {path}")
        if tmp.is_dir():
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", overwrite: bool = True, **kw):
    """``open()`` that only ever leaves the complete file at ``path``."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, mode, **kw) as f:
            yield f
