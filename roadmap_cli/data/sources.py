"""Training data sources: Massachusetts Roads, DeepGlobe Road and any image/label folder pair, their splits, and
their download."""
from __future__ import annotations

import json
import random
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import InputError, OfflineError
from ..io.download import Ledger, download, safe_extract
from ..io.images import IMAGE_EXT, image_size

DATASET_SOURCES = {
    # Mnih's original Massachusetts Roads pages (U. Toronto), one file per tile; listed by the dataset's index pages.
    "massachusetts": {
        "index": "https://www.cs.toronto.edu/~vmnih/data/mass_roads/{split}/{kind}/index.html",
        "manual": "download the Massachusetts Roads dataset (https://www.cs.toronto.edu/~vmnih/data/) and arrange "
                  "it as ROOT/{train,valid,test}/{sat,map}/",
    },
    "deepglobe": {
        "manual": "DeepGlobe Road needs a Kaggle/CodaLab login: download 'deepglobe-road-extraction-dataset' "
                  "yourself and unzip it so that ROOT/train/*_sat.jpg and *_mask.png exist",
    },
}


@dataclass
class Pair:
    """An image file and its label file."""

    stem: str
    image: Path
    label: Path
    gsd: float | None = None  # metres per pixel of the files, when a mix says (None: already on the model's grid)
    source: str | None = None  # the mix source it belongs to


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXT} if folder.is_dir() else {}


def pair_folders(images: Path, labels: Path) -> list[Pair]:
    """Pairs of ``images`` and ``labels`` files with the same stem; an image without a label is refused."""
    imgs, labs = _files(images), _files(labels)
    if not imgs:
        raise InputError(f"no images (.tif/.png/.jpg) in {images}")
    pairs, missing = [], []
    for stem, p in imgs.items():
        if stem in labs:
            pairs.append(Pair(stem, p, labs[stem]))
        else:
            missing.append(p.name)
    if missing:
        raise InputError(f"{len(missing)} image(s) in {images} have no label in {labels} (e.g. {missing[0]})")
    return pairs


def massachusetts_pairs(root: Path, split: str) -> list[Pair]:
    """Official layout ROOT/{train,valid,test}/{sat,map}; Kaggle layout ROOT/tiff/{train,val,test}{,_labels}."""
    root = Path(root)
    official = root / split / "sat"
    if official.is_dir():
        return pair_folders(official, root / split / "map")
    kaggle_split = {"valid": "val"}.get(split, split)
    for base in (root / "tiff", root):
        if (base / kaggle_split).is_dir():
            return pair_folders(base / kaggle_split, base / f"{kaggle_split}_labels")
    raise InputError(f"{root} is not a Massachusetts Roads folder: expected {official} (official layout) or "
                    f"{root / 'tiff' / kaggle_split} (Kaggle layout)")


def deepglobe_folder_pairs(folder: Path) -> list[Pair]:
    """Every ``STEM_sat.jpg`` / ``STEM_mask.png`` pair of a DeepGlobe folder, sorted by stem; an image without its
    mask is refused."""
    folder = Path(folder)
    sats = {p.name[: -len("_sat.jpg")] for p in folder.glob("*_sat.jpg")}
    masks = {p.name[: -len("_mask.png")] for p in folder.glob("*_mask.png")}
    if not sats:
        raise InputError(f"no *_sat.jpg images in {folder}")
    missing = sorted(sats - masks)
    if missing:
        raise InputError(f"{len(missing)} DeepGlobe image(s) in {folder} have no *_mask.png (e.g. {missing[0]}_sat.jpg)")
    return [Pair(s, folder / f"{s}_sat.jpg", folder / f"{s}_mask.png") for s in sorted(sats)]


def deepglobe_split(root: Path, seed: int = 0) -> dict[str, list[str]]:
    """Seeded 8:1:1 split of ROOT/train/*_sat.jpg, saved to ROOT/roadmap_split.json (reused when present)."""
    root = Path(root)
    split_file = root / "roadmap_split.json"
    if split_file.is_file():
        return json.loads(split_file.read_text())
    stems = [p.stem for p in deepglobe_folder_pairs(root / "train")]
    rng = random.Random(seed)
    rng.shuffle(stems)
    n = len(stems)
    n_val = round(n * 0.1)
    n_test = n - round(n * 0.8) - n_val
    split = {"train": sorted(stems[: n - n_val - n_test]), "val": sorted(stems[n - n_val - n_test: n - n_test]),
             "test": sorted(stems[n - n_test:])}
    split_file.write_text(json.dumps(split, indent=1))
    return split


def deepglobe_pairs(root: Path, split: str, seed: int = 0) -> list[Pair]:
    """DeepGlobe pairs of one split (``train``, ``valid``/``val``, ``test``)."""
    root = Path(root)
    if not (root / "train").is_dir():
        raise InputError(f"{root} is not a DeepGlobe Road folder: expected {root / 'train'}/*_sat.jpg")
    names = deepglobe_split(root, seed)[{"valid": "val"}.get(split, split)]
    return [Pair(s, root / "train" / f"{s}_sat.jpg", root / "train" / f"{s}_mask.png") for s in names]


def folder_pairs(root: Path) -> list[Pair]:
    """ROOT/images + ROOT/labels (or ROOT/masks), paired by file stem."""
    root = Path(root)
    for lab in ("labels", "masks", "gt", "groundtruth"):
        if (root / lab).is_dir():
            return pair_folders(root / "images", root / lab)
    raise InputError(f"{root} needs images/ and labels/ (or masks/, gt/, groundtruth/) sub-folders")


def check_pairs(pairs: list[Pair]) -> None:
    """Refuse a pair whose image and label differ in size."""
    for p in pairs:
        a, b = image_size(p.image), image_size(p.label)
        if a != b:
            raise InputError(f"image {p.image.name} is {a[0]}x{a[1]} but its label "
                             f"{p.label.name} is {b[0]}x{b[1]}")


def build_pairs(dataset: str, root: Path | None, split: str, seed: int = 0, val_names=None) -> list[Pair]:
    """The pairs of one split of a dataset (``massachusetts``, ``deepglobe`` or ``folder``)."""
    name = dataset.lower()
    if root is None:
        raise InputError(f"--root is required for --dataset {dataset}")
    if name == "mix":
        from .mix import load_mix
        return load_mix(root).split(split)
    if not Path(root).is_dir():
        raise InputError(f"dataset folder {root} does not exist")
    if name == "massachusetts":
        if val_names:  # any-layout variant: explicit hold-out list over all files of one folder
            return _split_by_names(folder_pairs_or_mass(root), split, val_names)
        return massachusetts_pairs(root, split)
    if name == "deepglobe":
        return deepglobe_pairs(root, split, seed)
    if name == "folder":
        pairs = folder_pairs(root)
        if not val_names:
            raise InputError("--dataset folder needs --val NAME[,NAME] to name the validation files")
        return _split_by_names(pairs, split, val_names)
    raise InputError(f"unknown dataset {dataset!r}: use massachusetts, deepglobe, folder or mix")


def folder_pairs_or_mass(root: Path) -> list[Pair]:
    """All pairs of a folder dataset, or of every split of a Massachusetts folder."""
    root = Path(root)
    if (root / "images").is_dir():
        return folder_pairs(root)
    pairs = []
    for split in ("train", "valid", "test"):
        try:
            pairs += massachusetts_pairs(root, split)
        except InputError:
            continue
    if not pairs:
        raise InputError(f"{root} holds no Massachusetts images")
    return pairs


def _split_by_names(pairs: list[Pair], split: str, val_names) -> list[Pair]:
    names = [n.strip() for n in (val_names.split(",") if isinstance(val_names, str) else val_names) if n.strip()]
    unknown = set(names) - {p.stem for p in pairs}
    if unknown:
        raise InputError(f"--val names not in the dataset: {', '.join(sorted(unknown))}")
    if split == "train":
        return [p for p in pairs if p.stem not in names]
    return [p for p in pairs if p.stem in names]


def download_dataset(name: str, root: Path) -> Path:
    """Download Massachusetts Roads (resumable, sha256 ledger) or extract a user-placed DeepGlobe zip into
    ``root``."""
    name = name.lower()
    if name not in DATASET_SOURCES:
        raise InputError(f"unknown dataset {name!r}: use massachusetts or deepglobe")
    src = DATASET_SOURCES[name]
    root = Path(root)
    if name == "deepglobe":  # no public URL: extract an archive the user placed in ROOT, safely
        archives = sorted(root.glob("*.zip")) if root.is_dir() else []
        if not archives:
            raise InputError(src["manual"].replace("ROOT", str(root)) + f" (or put the .zip in {root} and re-run)")
        for a in archives:
            safe_extract(a, root)
        return root
    ledger = Ledger(root)  # Mnih's pages publish no checksums: recorded at the first download, verified after
    index_tpl = src["index"]
    mirror = settings.massachusetts_mirror()
    if mirror:  # a copy with the same {split}/{kind}/ layout (index.html + files)
        index_tpl = mirror + "/{split}/{kind}/index.html"
    for split in ("train", "valid", "test"):
        for kind, ext in (("sat", ".tiff"), ("map", ".tif")):
            index_url = index_tpl.format(split=split, kind=kind)
            idx = root / split / kind / "index.html"
            try:
                download(index_url, idx, progress=False)
            except OfflineError as e:
                raise OfflineError(f"{e} Offline: {src['manual'].replace('ROOT', str(root))}") from e
            names = sorted(set(re.findall(r'href="([^"]+' + re.escape(ext) + ')"', idx.read_text())))
            for n in names:
                rel = f"{split}/{kind}/{Path(n).name}"
                dest = download(urllib.parse.urljoin(index_url, n), root / rel, sha256=ledger.expected(rel))
                ledger.record(rel, dest)
            idx.unlink()
    return root


