"""Resumable, checksum-verified downloads and safe archive extraction (stdlib only)."""
from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..errors import DownloadError, InputError, OfflineError

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Ledger:
    """``SHA256SUMS`` in a download folder (``sha256  relative/path`` lines, as ``sha256sum`` writes them).

    For files whose publisher gives no checksum: the sum is recorded at the first complete download (trust on first
    use) and every later download or re-run verifies the file against it, so corruption or a changed upstream file
    is caught.  ``sha256sum -c SHA256SUMS`` in that folder checks the files by hand."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "SHA256SUMS"
        self.sums: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2:
                    self.sums[parts[1].strip().lstrip("*")] = parts[0]

    def expected(self, rel: str) -> str | None:
        """The recorded sum of ``rel``, or None."""
        return self.sums.get(rel)

    def record(self, rel: str, file: Path) -> None:
        """Record ``file``'s sum under ``rel`` unless one is recorded already."""
        if rel in self.sums:
            return
        self.sums[rel] = sha256_file(file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(f"{self.sums[rel]}  {rel}\n")


def download(url: str, dest: Path, sha256: str | None = None, size: int | None = None,
             manual_hint: str = "", progress: bool = True) -> Path:
    """Download ``url`` to ``dest``.

    Data goes to ``dest.part``; an interrupted download resumes from there with an HTTP Range request (and starts
    over when the server ignores the range).  The file is renamed onto ``dest`` only once its sha256 (when given)
    matches; a mismatch deletes the partial file and fails.  ``file://`` URLs work too (used by the tests).
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        raise DownloadError(f"{dest} exists but its sha256 does not match the expected one; delete it and retry")
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "roadmap"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # already complete
            resp = None
        else:
            raise DownloadError(f"download of {url} failed: HTTP {e.code}. {manual_hint}".strip()) from e
    except (urllib.error.URLError, OSError) as e:
        raise OfflineError(f"cannot reach {url} ({getattr(e, 'reason', e)}). {manual_hint}".strip()) from e
    if resp is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        with resp:
            resumed = bool(have) and resp.getcode() == 206
            if have and not resumed:
                if url.startswith("file:"):
                    resp.read(have)  # file:// ignores Range: skip what we already have
                    resumed = True
                else:  # the server ignored the range: start over
                    have = 0
            total = resp.headers.get("Content-Length")
            total = (int(total) + (have if resumed else 0)) if total else size
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, leave=False)
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    if bar:
                        bar.update(len(block))
            if bar:
                bar.close()
    if size is not None and part.stat().st_size != size:
        raise DownloadError(f"download of {url} is incomplete ({part.stat().st_size} of {size} bytes); run again to "
                        "resume")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: sha256 {got[:16]}..., expected {sha256[:16]}...")
    os.replace(part, dest)
    return dest


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(root.resolve()):
        raise InputError(f"archive member {name!r} would be written outside {root}; refusing to extract")
    return target


MAX_EXTRACT_BYTES = 64 << 30  # 64 GiB: far above any road dataset, far below a zip bomb's claims
MAX_RATIO = 200  # uncompressed / compressed beyond this is a bomb, not imagery


def _plan_members(root: Path, members: list[tuple[str, bool, int, int]], archive: Path, max_bytes: int) -> None:
    """Check every member (name, is_dir, size, compressed size) before the first byte is written: inside ``root``,
    no two members (nor a file and a folder) on one path, the total size under ``max_bytes``."""
    files: dict[Path, str] = {}
    dirs: set[Path] = set()
    total = packed = 0
    for name, is_dir, size, csize in members:
        target = _safe_target(root, name)
        if is_dir:
            dirs.add(target)
            continue
        if target in files:
            raise InputError(f"archive {archive.name} holds {name!r} twice ({files[target]!r}); refusing to extract")
        files[target] = name
        total, packed = total + size, packed + csize
    if any(d in files for d in dirs) or any(parent in files for f in files for parent in f.parents):
        raise InputError(f"archive {archive.name} has a file and a folder on one path; refusing to extract")
    if total > max_bytes:
        raise InputError(f"archive {archive.name} would unpack to {total / 2**30:.1f} GiB, more than "
                         f"{max_bytes / 2**30:.0f} GiB; refusing to extract")
    if packed and total / packed > MAX_RATIO and total > 1 << 30:
        raise InputError(f"archive {archive.name} unpacks {total / packed:.0f} times its size (a zip bomb?); "
                         "refusing to extract")


def safe_extract(archive: Path, root: Path, max_bytes: int = MAX_EXTRACT_BYTES) -> Path:
    """Extract a .zip or .tar(.gz) into ``root``.  Every member is checked before anything is written (absolute
    paths, ``..``, links, devices, duplicate names, a file and a folder on one path, the total size); while
    writing, the bytes actually unpacked are counted too (headers can lie)."""
    archive, root = Path(archive), Path(root)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            for info in infos:
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InputError(f"archive member {info.filename!r} is a link; refusing to extract")
            _plan_members(root, [(i.filename, i.is_dir(), i.file_size, i.compress_size) for i in infos], archive,
                          max_bytes)
            root.mkdir(parents=True, exist_ok=True)
            written = 0
            for info in infos:
                target = _safe_target(root, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > max_bytes:
                            raise InputError(f"archive {archive.name} unpacks to more than its headers say; "
                                             "stopped extracting")
                        dst.write(block)
        return root
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                _safe_target(root, m.name)
                if m.issym() or m.islnk():
                    raise InputError(f"archive member {m.name!r} is a link; refusing to extract")
                if not (m.isfile() or m.isdir()):
                    raise InputError(f"archive member {m.name!r} is not a regular file")
            _plan_members(root, [(m.name, m.isdir(), m.size, m.size) for m in members], archive, max_bytes)
            root.mkdir(parents=True, exist_ok=True)
            t.extractall(root, filter="data")
        return root
    raise InputError(f"{archive} is not a zip or tar archive")
