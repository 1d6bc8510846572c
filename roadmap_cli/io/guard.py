"""No command writes over what it reads: every path a command writes (or removes) is checked against every file it
reads, before any work, and refused with one line (exit 2) when they meet.  ``--overwrite`` never changes that.

Two paths meet when they resolve to the same file (symbolic links followed, ``..`` and relative paths resolved) or
are hard links of one file (same device and inode).  A folder the command removes (a run's work folder) meets every
input inside it.  Remote inputs (``/vsi...``, URLs) are never local files and are passed over.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InputError


def _remote(p) -> bool:
    s = str(p)
    return s.startswith("/vsi") or "://" in s


def _identity(p: Path):
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _flatten(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    if isinstance(value, Iterable):
        return [v for v in value if v is not None]
    return [value]


class Inputs:
    """The local files a command reads, each with a label for the message (``the scene a.tif``, ``--init m.pt``)."""

    def __init__(self, inputs: Mapping[str, object] | None = None):
        self.items: list[tuple[str, Path, tuple | None]] = []
        for label, value in (inputs or {}).items():
            self.add(label, value)

    def add(self, label: str, value) -> "Inputs":
        """Add one path or several under ``label`` (``{}`` in it is replaced by each path)."""
        for p in _flatten(value):
            if _remote(p):
                continue
            self.items.append((label.format(p) if "{}" in label else label, Path(os.path.realpath(p)),
                               _identity(Path(p))))
        return self

    def meets(self, path) -> str | None:
        """The label of the input ``path`` would write over, or None."""
        real, ident = Path(os.path.realpath(path)), _identity(Path(path))
        for label, rp, iid in self.items:
            if real == rp or (ident is not None and ident == iid):
                return label
        return None

    def inside(self, folder) -> str | None:
        """The label of an input that lies in ``folder`` (or is it), or None."""
        rf = Path(os.path.realpath(folder))
        for label, rp, _ in self.items:
            if rp == rf or rf in rp.parents:
                return label
        return None


def guard_outputs(outputs: Mapping[str, object], inputs: Inputs | Mapping[str, object],
                  removes: Mapping[str, object] | None = None) -> None:
    """Refuse (:class:`InputError`, exit 2) any output that is an input, any folder to be removed that holds an input,
    and two outputs that are one file.  ``outputs``/``removes`` map a flag to a path (or None: not written)."""
    ins = inputs if isinstance(inputs, Inputs) else Inputs(inputs)
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None or _remote(path):
            continue
        what = ins.meets(path)
        if what is not None:
            raise InputError(f"{flag} {path} is {what}: roadmap never writes over an input (--overwrite does not "
                             "change that); choose another output path")
        real = Path(os.path.realpath(path))
        if real in seen:
            raise InputError(f"{flag} and {seen[real]} are the same file {path}")
        seen[real] = flag
    for flag, folder in (removes or {}).items():
        if folder is None:
            continue
        what = ins.inside(folder)
        if what is not None:
            raise InputError(f"{flag} {folder} is removed when the run ends, and {what} lies in it: roadmap never "
                             "removes an input; choose another output path")
