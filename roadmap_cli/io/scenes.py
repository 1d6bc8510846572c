"""What the user names as scenes, turned into scene paths without any heavy import: raster files, folders (their
rasters, recursively), text lists and STAC items (local, file://, http(s):// and s3:// hrefs).  Standard library
only (PIL / rasterio are imported only to tell roadmap's own earlier outputs in a scanned folder)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg", ".ntf", ".gti"}
LIST_SUFFIXES = {".txt", ".lst", ".csv"}
STAC_ASSETS = ("visual", "image", "data", "rgb")


OWN_OUTPUT_TAG = "ROADMAP_OUTPUT"  # GeoTIFF metadata / PNG text key on the rasters roadmap writes


def is_own_output(path: Path) -> bool:
    """A raster roadmap wrote (a probability or mask GeoTIFF, a preview PNG): it carries :data:`OWN_OUTPUT_TAG`."""
    try:
        if Path(path).suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                return OWN_OUTPUT_TAG in getattr(im, "text", {})
        import rasterio

        with rasterio.open(path) as ds:
            return OWN_OUTPUT_TAG in ds.tags()
    except Exception:  # unreadable: not ours
        return False


def _stac_items(doc, path: Path) -> list[dict]:
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Feature":
        items = [doc]
    elif kind == "FeatureCollection":
        items = doc.get("features")
        if not isinstance(items, list):
            raise InputError(f"{path}: a STAC item collection needs a list of features")
        if not items:
            raise InputError(f"{path}: the STAC item collection holds no items")
    else:
        raise InputError(f"{path} is not a STAC item or item collection (type {kind!r})")
    for it in items:
        if not isinstance(it, dict):
            raise InputError(f"{path}: a STAC item must be a JSON object, got {type(it).__name__}")
    return items


def _stac_href(item: dict, path: Path, asset: str | None) -> str:
    from urllib.parse import unquote, urlparse

    assets = item.get("assets") or {}
    if not isinstance(assets, dict) or not all(isinstance(v, dict) for v in assets.values()):
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r} has no assets object")
    name = asset
    if name is None:
        name = next((a for a in STAC_ASSETS if a in assets), None)
    if name is None:
        name = next((k for k, v in assets.items() if "image/tiff" in str(v.get("type", ""))), None)
    if name is None or name not in assets:
        have = ", ".join(sorted(map(str, assets))) or "none"
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r} has no asset "
                         f"{name or 'with an image'!r} (assets: {have}); choose one with --asset")
    href = assets[name].get("href")
    if not isinstance(href, str) or not href.strip():
        raise InputError(f"{path}: STAC item {item.get('id', '?')!r}, asset {name!r} has no href")
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith("file:"):  # file:///abs/path (RFC 8089), percent-encoded
        u = urlparse(href)
        if u.netloc not in ("", "localhost"):
            raise InputError(f"{path}: STAC href {href!r} names another host; give a local path or http(s)/s3")
        href = unquote(u.path)
    elif "://" in href:
        raise InputError(f"{path}: STAC href {href!r}: only local paths, file://, http(s):// and s3:// are read")
    p = Path(href)
    return str(p if p.is_absolute() else (path.parent / p))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def expand_inputs(items: list[Path], asset: str | None = None, exclude=(), _lists: tuple = ()) -> list[str]:
    """Scene paths (or GDAL paths) from what the user gave: raster files, folders (their rasters, recursively, in
    name order), text lists (one path per line, blank lines and ``#`` comments skipped, relative paths relative to
    the list; a list that names itself, directly or through others, is refused), STAC item JSON files or item
    collections (the ``asset`` href, by default ``visual``/``image``/``data``/the first GeoTIFF; relative, file://,
    http(s):// and s3:// hrefs).  A folder's files under a ``*.roadmap-work`` folder (a run's scratch) or under a
    folder in ``exclude``, and the files in ``exclude`` that roadmap wrote itself (:func:`is_own_output`), are passed
    over: an ``exclude`` file that roadmap did not write is a scene like any other."""
    skip = {Path(x).resolve() for x in exclude}
    skip_dirs = {x for x in skip if x.is_dir()}
    out: list[str] = []
    for item in items:
        p = Path(item)
        if str(p).startswith("/vsi"):
            out.append(str(p))
            continue
        if not _exists(p):
            raise InputError(f"input {str(p)[:200]} not found")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
                           and not (f.resolve() in skip and is_own_output(f))
                           and not any(d in f.resolve().parents for d in skip_dirs)
                           and not any(part.endswith(".roadmap-work") for part in f.relative_to(p).parts))
            if not found:
                raise InputError(f"folder {p} holds no raster files ({', '.join(sorted(RASTER_SUFFIXES))})")
            out += [str(f) for f in found]
        elif p.suffix.lower() in LIST_SUFFIXES:
            real = p.resolve()
            if real in _lists:
                chain = " -> ".join(str(x) for x in (*_lists, real))
                raise InputError(f"list {p} names itself ({chain}): a scene list must name scenes")
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"list {p} is not UTF-8 text (byte {e.start}); one scene path per line") from e
            lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            paths = [ln for ln in lines if ln]
            if not paths:
                raise InputError(f"list {p} names no scenes")
            if any("\x00" in x for x in paths):
                raise InputError(f"list {p} holds a NUL character; one scene path per line")
            out += expand_inputs([Path(x) if os.path.isabs(x) or x.startswith("/vsi") else p.parent / x
                                  for x in paths], asset, exclude, (*_lists, real))
        elif p.suffix.lower() == ".json":
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"{p} is not JSON ({' '.join(str(e).split())[:80]})") from e
            out += [_stac_href(it, p, asset) for it in _stac_items(doc, p)]
        else:
            out.append(str(p))
    return out
