"""Several labelled sources as one training set (``roadmap train --dataset mix --root SOURCES.yaml``).

Sources differ in ground resolution (Massachusetts 1 m, DeepGlobe 0.5 m, EPFL about 0.5 m) and in what a label
means (Massachusetts: centre lines drawn 7 m wide; DeepGlobe and EPFL: the carriageway, 4-10 m).  Mixed as they
are, a model learns three definitions of "road" at three scales.  Here every pair is brought to one grid and one
definition before training and validation see it:

* the image is resampled to the model's ground resolution (area average when shrinking, bilinear when enlarging,
  the rule ``roadmap extract`` applies to a scene);
* the label is resampled the same way, cut to its centre line (skeleton) and drawn again ``road_width_m`` wide,
  which is what ``roadmap adapt`` and ``datasets from-vectors`` draw from road vectors.

The manifest names, per source, its folder, its ground resolution and its validation and test files; everything
else trains.  Test files are never read by ``roadmap train``; they exist in the manifest so that the split is
written down once, next to the others (``benchmarks/eval_mix.py`` scores them).  Samples are drawn in proportion to
ground area times the source's ``weight``.

    road_width_m: 7
    sources:
      massachusetts: {kind: folder, root: ../data/mass, gsd: 1.0, val: ["5", "12"], test: []}
      epfl: {kind: folder, root: ../data/epfl, gsd: 0.5, val: [satImage_081], test: [satImage_091], weight: 2}
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.morphology import skeletonize

from ..errors import InputError
from .sources import Pair, deepglobe_folder_pairs, folder_pairs

KINDS = ("folder", "deepglobe")
SPLITS = ("train", "valid", "test")


@dataclass
class Source:
    """One labelled source of a mix."""

    name: str
    kind: str
    root: Path
    gsd: float
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    weight: float = 1.0

    def pairs(self) -> list[Pair]:
        """Every pair of the source, each with its ground resolution and source name."""
        if self.kind == "deepglobe":
            pairs = deepglobe_folder_pairs(self.root / "train" if (self.root / "train").is_dir() else self.root)
        else:
            pairs = folder_pairs(self.root)
        return [replace(p, gsd=self.gsd, source=self.name) for p in pairs]

    def split(self, split: str) -> list[Pair]:
        """The pairs of ``split``: ``valid`` and ``test`` as named, ``train`` the rest."""
        pairs = self.pairs()
        stems = {p.stem for p in pairs}
        unknown = (set(self.val) | set(self.test)) - stems
        if unknown:
            raise InputError(f"source {self.name}: val/test names not in {self.root}: {', '.join(sorted(unknown))}")
        if split == "valid":
            return [p for p in pairs if p.stem in self.val]
        if split == "test":
            return [p for p in pairs if p.stem in self.test]
        return [p for p in pairs if p.stem not in self.val and p.stem not in self.test]


@dataclass
class Mix:
    """A parsed manifest."""

    road_width_m: float
    sources: list[Source]

    def split(self, split: str) -> list[Pair]:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: use {', '.join(SPLITS)}")
        return [p for s in self.sources for p in s.split(split)]

    @property
    def weights(self) -> dict[str, float]:
        """Source name -> draw weight."""
        return {s.name: s.weight for s in self.sources}


def _names(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where} must be a list of file stems")
    return [str(v) for v in value]


def _number(value, where: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value < float("inf")):
        raise InputError(f"{where} must be a number > {low:g}, got {value!r}")
    return float(value)


def load_mix(path: Path) -> Mix:
    """Read and check a mix manifest (paths relative to the manifest's folder); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--dataset mix needs --root SOURCES.yaml; {path} is not a file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not plain YAML: {' '.join(str(e).split())[:160]}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), dict) or not doc["sources"]:
        raise InputError(f"{path} needs a 'sources' mapping of source names to their folders")
    unknown = set(doc) - {"road_width_m", "sources"}
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(map(str, unknown))}")
    width = _number(doc.get("road_width_m", 7.0), f"{path}: road_width_m")
    sources = []
    for name, s in doc["sources"].items():
        where = f"{path}: source {name}"
        if not isinstance(s, dict):
            raise InputError(f"{where} must be a mapping (kind, root, gsd, val, test, weight)")
        extra = set(s) - {"kind", "root", "gsd", "val", "test", "weight"}
        if extra:
            raise InputError(f"{where}: unknown keys {sorted(map(str, extra))}")
        kind = s.get("kind", "folder")
        if kind not in KINDS:
            raise InputError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if "root" not in s or "gsd" not in s:
            raise InputError(f"{where} needs root and gsd (metres per pixel of its files)")
        root = (path.parent / str(s["root"])).resolve()
        if not root.is_dir():
            raise InputError(f"{where}: folder {root} does not exist")
        src = Source(str(name), kind, root, _number(s["gsd"], f"{where}: gsd"), _names(s.get("val"), f"{where}: val"),
                     _names(s.get("test"), f"{where}: test"), _number(s.get("weight", 1.0), f"{where}: weight"))
        both = set(src.val) & set(src.test)
        if both:
            raise InputError(f"{where}: {sorted(both)[0]} is in both val and test")
        sources.append(src)
    return Mix(width, sources)


def resize_image(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` scaled by ``factor`` (area average when shrinking, bilinear when enlarging)."""
    if factor == 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    kernel = Image.BOX if factor < 1 else Image.BILINEAR
    return np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize(size, kernel))


def centre_line_label(lab: np.ndarray, factor: float, width_px: float) -> np.ndarray:
    """A road label scaled by ``factor``, cut to its centre line and drawn ``width_px`` wide (the one definition)."""
    if factor != 1.0:
        lab = resize_image(np.asarray(lab, np.uint8) * 255, factor) > 127
    skel = skeletonize(np.asarray(lab, bool))
    if not skel.any():
        return np.zeros(skel.shape, bool)
    return distance_transform_edt(~skel) <= width_px / 2


def on_grid(img: np.ndarray, lab: np.ndarray, pair_gsd: float, grid_gsd: float,
            road_width_m: float) -> tuple[np.ndarray, np.ndarray]:
    """An image and its label on the training grid (``grid_gsd`` m/px), the label as centre lines ``road_width_m``
    wide."""
    factor = pair_gsd / grid_gsd
    return resize_image(img, factor), centre_line_label(lab, factor, road_width_m / grid_gsd)
