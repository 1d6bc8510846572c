"""Atomic output writes: everything a command writes goes to a temp file beside the target, then is renamed."""
from __future__ import annotations

import contextlib
import os
import re
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
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".part{path.suffix}",
                               dir=path.parent or ".")
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
    except OSError as e:
        _remove_temp(tmp)
        if e.filename is None and e.errno is not None:  # a write that failed (full disk): name the output
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        _remove_temp(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", overwrite: bool = True, **kw):
    """``open()`` that only ever leaves the complete file at ``path``."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, mode, **kw) as f:
            yield f


_SIDECARS = ("", "-journal", "-wal", "-shm", ".aux.xml")  # SQLite (GeoPackage) and GDAL companions of a temp file


def _remove_temp(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    for side in _SIDECARS:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            Path(str(tmp) + side).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and their SQLite/GDAL sidecars) that an earlier, killed writer of ``path`` left
    beside it; a temp file's name carries its writer's pid, so a live writer's files are kept."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    removed = []
    if not folder.is_dir():
        return removed
    pattern = re.compile(re.escape(f".{path.stem}.") + r"(\d+)\.[^/]*" + re.escape(f".part{path.suffix}") + "$")
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m and not _alive(int(m.group(1))):
            _remove_temp(entry)
            removed.append(entry)
    return removed


_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.\d+\.[^.]+\.part(?P<suffix>\.[^./]*)?$")


def target_of(path: str | os.PathLike) -> Path:
    """The output a temporary file of :func:`atomic_path` stands for (``.roads.123.abc.part.gpkg`` ->
    ``roads.gpkg``); any other path as it is."""
    p = Path(path)
    m = _TEMP_NAME.match(p.name)
    return p.with_name(m["stem"] + (m["suffix"] or "")) if m else p


def environment_error(exc: BaseException) -> str | None:
    """A one-line message for an error of the machine rather than of roadmap: a full disk (ENOSPC, EDQUOT, or a
    library's words for it), a read-only file system or a permission refused, naming the output; None otherwise."""
    import errno

    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}
    words = ((r"no space left|disk is full|disk full", "the disk is full"),
             (r"read-only file system", "the file system is read-only"), (r"permission denied", "permission denied"))
    seen = set()
    e = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in why:
            where = f" writing {target_of(e.filename)}" if e.filename else ""
            return f"{why[e.errno]}{where}; free some space or choose a writable folder, then run the command again"
        text = str(e)
        for pattern, reason in words:
            if re.search(pattern, text, re.I):
                m = re.search(r"(/[^\s:'\"]+)", text)
                where = f" writing {target_of(m.group(1))}" if m else ""
                return (f"{reason}{where} ({' '.join(text.split())[:120]}); free some space or choose a writable "
                        "folder, then run the command again")
        e = e.__cause__ or e.__context__
    return None


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether an error comes from a full disk: ENOSPC (or EDQUOT), a library's message for it, or (for the
    misleading messages of some writers) less than 1 MB left in ``folder``."""
    import errno

    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if e is not None and re.search(r"no space left|disk is full|disk full", str(e), re.I):
            return True
    if folder is not None:
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < 1 << 20
    return False


@contextlib.contextmanager
def run_lock(path: str | os.PathLike):
    """Hold ``<path>.roadmap-lock`` for the duration of a run; a second run on the same output fails at once with
    an :class:`OutputExistsError` naming the running process (the lock dies with its process, even on kill -9)."""
    import fcntl

    lock = Path(str(path) + ".roadmap-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise OutputExistsError(f"another roadmap run (pid {holder}) is writing {path}; wait for it to finish or "
                                "stop it first") from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as e:  # a full disk: name the file (os.write does not)
            raise OSError(e.errno, e.strerror, str(lock)) from e
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)
