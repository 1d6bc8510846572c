"""Training datasets: Massachusetts Roads, DeepGlobe Road, and any image/mask folder pair."""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

Image.MAX_IMAGE_PIXELS = None
IMAGE_EXT = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

# Massachusetts 1500x1500 images are cut into 1024x1024 patches at offsets 0 and 476 per axis (stride 476,
# 4 patches per image, 548 px overlap), so every pixel is seen at native 1 m resolution.
MASS_PATCH, MASS_STRIDE = 1024, 476

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
    stem: str
    image: Path
    label: Path


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}") from e


def read_label(path: Path) -> np.ndarray:
    """Binary road mask: grey value > 127 (robust to JPEG-compressed and anti-aliased labels)."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read label {path}: {e}") from e
    return a > 127


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXT} if folder.is_dir() else {}


def pair_folders(images: Path, labels: Path) -> list[Pair]:
    imgs, labs = _files(images), _files(labels)
    if not imgs:
        raise UserError(f"no images (.tif/.png/.jpg) in {images}")
    pairs, missing = [], []
    for stem, p in imgs.items():
        if stem in labs:
            pairs.append(Pair(stem, p, labs[stem]))
        else:
            missing.append(p.name)
    if missing:
        raise UserError(f"{len(missing)} image(s) in {images} have no label in {labels} (e.g. {missing[0]})")
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
    raise UserError(f"{root} is not a Massachusetts Roads folder: expected {official} (official layout) or "
                    f"{root / 'tiff' / kaggle_split} (Kaggle layout)")


def deepglobe_split(root: Path, seed: int = 0) -> dict[str, list[str]]:
    """Seeded 8:1:1 split of ROOT/train/*_sat.jpg, saved to ROOT/roadmap_split.json (reused when present)."""
    root = Path(root)
    split_file = root / "roadmap_split.json"
    if split_file.is_file():
        return json.loads(split_file.read_text())
    folder = root / "train"
    sats = {p.name[: -len("_sat.jpg")] for p in folder.glob("*_sat.jpg")}
    masks = {p.name[: -len("_mask.png")] for p in folder.glob("*_mask.png")}
    if not sats:
        raise UserError(f"no *_sat.jpg images in {folder}")
    missing = sorted(sats - masks)
    if missing:
        raise UserError(f"{len(missing)} DeepGlobe image(s) in {folder} have no *_mask.png (e.g. {missing[0]}_sat.jpg)")
    stems = sorted(sats)
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
    root = Path(root)
    if not (root / "train").is_dir():
        raise UserError(f"{root} is not a DeepGlobe Road folder: expected {root / 'train'}/*_sat.jpg")
    names = deepglobe_split(root, seed)[{"valid": "val"}.get(split, split)]
    return [Pair(s, root / "train" / f"{s}_sat.jpg", root / "train" / f"{s}_mask.png") for s in names]


def folder_pairs(root: Path) -> list[Pair]:
    """ROOT/images + ROOT/labels (or ROOT/masks), paired by file stem."""
    root = Path(root)
    for lab in ("labels", "masks", "gt"):
        if (root / lab).is_dir():
            return pair_folders(root / "images", root / lab)
    raise UserError(f"{root} needs images/ and labels/ (or masks/) sub-folders")


def check_pairs(pairs: list[Pair]) -> None:
    for p in pairs:
        with Image.open(p.image) as a, Image.open(p.label) as b:
            if a.size != b.size:
                raise UserError(f"image {p.image.name} is {a.size[0]}x{a.size[1]} but its label "
                                f"{p.label.name} is {b.size[0]}x{b.size[1]}")


def patch_origins(h: int, w: int, patch: int, stride: int) -> list[tuple[int, int]]:
    from .infer import tile_starts
    ys = tile_starts(h, patch, patch - stride) if h > patch else [0]
    xs = tile_starts(w, patch, patch - stride) if w > patch else [0]
    return [(y, x) for y in ys for x in xs]


def parse_scale_aug(value) -> tuple[float, float] | None:
    """``"1,3"`` / ``[1, 3]`` / ``None`` -> (min zoom, max zoom).  Each draw zooms by a factor drawn log-uniformly
    from that range: above 1 roads look wider (finer imagery, wide urban roads), below 1 narrower."""
    if value is None or value == "":
        return None
    try:
        lo, hi = (float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise UserError(f"scale augmentation must be two numbers MIN,MAX, got {value!r}") from None
    if not (0 < lo <= hi <= 8):
        raise UserError(f"scale augmentation needs 0 < MIN <= MAX <= 8, got {lo:g},{hi:g}")
    return (lo, hi)


class RoadDataset:
    """Samples = (image index, patch origin).  With ``crop`` set, each draw is a random crop of its image.  Crop
    position and augmentation come from a generator seeded by (seed, epoch, draw position in the epoch, index), so
    every draw differs and the data stream is a pure function of those, which makes ``--resume`` exact."""

    def __init__(self, pairs: list[Pair], patch: int = MASS_PATCH, stride: int = MASS_STRIDE,
                 crop: int | None = None, augment: bool = True, seed: int = 0, cache: bool = True,
                 color_aug: str = "basic", scale_aug: tuple[float, float] | None = None):
        if color_aug not in ("basic", "strong"):
            raise UserError(f"color_aug must be 'basic' or 'strong', got {color_aug!r}")
        self.color_aug = color_aug
        self.scale_aug = parse_scale_aug(scale_aug)
        if not pairs:
            raise UserError("the dataset is empty")
        check_pairs(pairs)
        self.pairs, self.crop, self.augment, self.seed = pairs, crop, augment, seed
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.use_cache = cache
        self.samples = []
        for i, p in enumerate(pairs):
            with Image.open(p.image) as im:
                w, h = im.size
            if crop:
                self.samples.append((i, 0, 0))
            else:
                self.samples += [(i, y, x) for y, x in patch_origins(h, w, patch, stride)]
        self.patch = patch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            return self._cache[i]
        item = read_image(self.pairs[i].image), read_label(self.pairs[i].label)
        if self.use_cache:
            self._cache[i] = item
        return item

    def get(self, idx: int, epoch: int, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
        i, y, x = self.samples[idx]
        img, lab = self.load(i)
        rng = np.random.default_rng([self.seed, epoch, draw, idx])
        size = self.crop or self.patch
        src = size  # side of the region read from the image, resized to ``size`` when scale augmentation is on
        if self.scale_aug and self.augment:
            lo, hi = self.scale_aug
            zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            src = max(8, int(round(size / zoom)))
            if not self.crop:  # a fixed patch keeps its centre
                y, x = y + (size - src) // 2, x + (size - src) // 2
        h, w = lab.shape
        if self.crop:
            y = int(rng.integers(0, max(1, h - src + 1)))
            x = int(rng.integers(0, max(1, w - src + 1)))
        y, x = min(max(0, y), max(0, h - src)), min(max(0, x), max(0, w - src))
        img, lab = img[y:y + src, x:x + src], lab[y:y + src, x:x + src]
        if img.shape[0] < src or img.shape[1] < src:  # small images: pad with zeros
            ph, pw = src - img.shape[0], src - img.shape[1]
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            lab = np.pad(lab, ((0, ph), (0, pw)))
        if src != size:
            img = np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((size, size), Image.BILINEAR))
            lab8 = Image.fromarray(np.asarray(lab, np.uint8) * 255).resize((size, size), Image.BILINEAR)
            lab = np.asarray(lab8) > 127
        if self.augment:
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            if rng.random() < 0.5:
                img, lab = img[::-1], lab[::-1]
            k = int(rng.integers(0, 4))
            img, lab = np.rot90(img, k), np.rot90(lab, k)
            if rng.random() < 0.5:  # brightness / contrast jitter
                a, b = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
                img = np.clip(img.astype(np.float32) * a + b, 0, 255)
            if self.color_aug == "strong":  # appearance far from the training region (other climates, sensors)
                img = img.astype(np.float32)
                if rng.random() < 0.3:  # dark roads on bright ground and the reverse
                    img = 255.0 - img
                if rng.random() < 0.2:
                    img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
                if rng.random() < 0.5:
                    img = img * rng.uniform(0.6, 1.4, size=3).astype(np.float32)
                if rng.random() < 0.5:
                    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.5, 2.0)
                img = np.clip(img, 0, 255)
        return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab, dtype=np.float32)


def build_pairs(dataset: str, root: Path | None, split: str, seed: int = 0, val_names=None) -> list[Pair]:
    name = dataset.lower()
    if root is None:
        raise UserError(f"--root is required for --dataset {dataset}")
    if not Path(root).is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    if name == "massachusetts":
        if val_names:  # any-layout variant: explicit hold-out list over all files of one folder
            return _split_by_names(folder_pairs_or_mass(root), split, val_names)
        return massachusetts_pairs(root, split)
    if name == "deepglobe":
        return deepglobe_pairs(root, split, seed)
    if name == "folder":
        pairs = folder_pairs(root)
        if not val_names:
            raise UserError("--dataset folder needs --val NAME[,NAME] to name the validation files")
        return _split_by_names(pairs, split, val_names)
    raise UserError(f"unknown dataset {dataset!r}: use massachusetts, deepglobe or folder")


def folder_pairs_or_mass(root: Path) -> list[Pair]:
    root = Path(root)
    if (root / "images").is_dir():
        return folder_pairs(root)
    pairs = []
    for split in ("train", "valid", "test"):
        try:
            pairs += massachusetts_pairs(root, split)
        except UserError:
            continue
    if not pairs:
        raise UserError(f"{root} holds no Massachusetts images")
    return pairs


def _split_by_names(pairs: list[Pair], split: str, val_names) -> list[Pair]:
    names = [n.strip() for n in (val_names.split(",") if isinstance(val_names, str) else val_names) if n.strip()]
    unknown = set(names) - {p.stem for p in pairs}
    if unknown:
        raise UserError(f"--val names not in the dataset: {', '.join(sorted(unknown))}")
    if split == "train":
        return [p for p in pairs if p.stem not in names]
    return [p for p in pairs if p.stem in names]


def download_dataset(name: str, root: Path) -> Path:
    from .download import download, safe_extract
    from .errors import OfflineError

    name = name.lower()
    if name not in DATASET_SOURCES:
        raise UserError(f"unknown dataset {name!r}: use massachusetts or deepglobe")
    src = DATASET_SOURCES[name]
    root = Path(root)
    if name == "deepglobe":  # no public URL: extract an archive the user placed in ROOT, safely
        archives = sorted(root.glob("*.zip")) if root.is_dir() else []
        if not archives:
            raise UserError(src["manual"].replace("ROOT", str(root)) + f" (or put the .zip in {root} and re-run)")
        for a in archives:
            safe_extract(a, root)
        return root
    import re
    import urllib.parse

    from .download import Ledger
    ledger = Ledger(root)  # Mnih's pages publish no checksums: recorded at the first download, verified after
    index_tpl = src["index"]
    mirror = os.environ.get("ROADMAP_MASS_MIRROR", "").rstrip("/")
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


def pairs_from_vectors(scene: Path, roads: Path, out: Path, name: str | None = None, gsd: float = 1.0,
                       road_width_m: float = 7.0, bands: str | None = None, tile: int = 1500,
                       overwrite: bool = False) -> list[Pair]:
    """Training pairs from a georeferenced scene and road centre lines: ``OUT/images/NAME[_rI_cJ].png`` (8-bit RGB)
    and ``OUT/labels/...png`` (roads 255, buffered to ``road_width_m``), on the same working grid and with the same
    band choice and stretch that ``roadmap extract`` feeds the model, so the pairs look like inference inputs.
    Scenes larger than ``tile`` working pixels are cut into tiles, read by windows."""
    from rasterio.features import rasterize
    from shapely import STRtree, affinity, box

    from .graph import tile_ranges
    from .io_utils import atomic_path
    from .raster import (StretchStats, is_georeferenced, open_raster, parse_bands, read_window, working_grid)
    from .score import read_lines

    if gsd <= 0 or road_width_m <= 0 or tile < 64:
        raise UserError("--gsd and --road-width-m must be positive and --tile at least 64")
    name = name or Path(scene).stem
    with open_raster(scene) as ds:
        if not is_georeferenced(ds):
            raise UserError(f"{scene} has no georeferencing; road vectors cannot be placed on it")
        b = parse_bands(bands, ds.count)
        grid = working_grid(ds, gsd)
        lines = read_lines(Path(roads))
        if lines.empty:
            raise UserError(f"{roads} holds no LineString features")
        if lines.crs is None:
            raise UserError(f"{roads} has no CRS")
        inv = ~grid.transform
        half = road_width_m / 2 / grid.gsd  # in working pixels
        px = [affinity.affine_transform(g, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff]).buffer(half)
              for g in lines.to_crs(grid.crs).geometry]
        tree = STRtree(px)  # per tile, only the roads that reach it are moved and burnt in
        stretch = StretchStats(ds, b)
        rows, cols = tile_ranges(grid.height, tile), tile_ranges(grid.width, tile)
        multi = len(rows) * len(cols) > 1
        jobs = [(f"{name}_r{i}_c{j}" if multi else name, r0, r1, c0, c1)
                for i, (r0, r1) in enumerate(rows) for j, (c0, c1) in enumerate(cols)]
        out = Path(out)
        for stem, *_ in jobs:
            for sub in ("images", "labels"):
                if (out / sub / f"{stem}.png").exists() and not overwrite:
                    raise UserError(f"{out / sub / (stem + '.png')} exists (use --overwrite)")
        pairs = []
        for stem, r0, r1, c0, c1 in jobs:
            img, valid = read_window(ds, grid, b, stretch, r0, r1, c0, c1)
            shifted = [affinity.translate(px[k], -c0, -r0) for k in tree.query(box(c0, r0, c1, r1))]
            lab = rasterize(((g, 255) for g in shifted if not g.is_empty), out_shape=(r1 - r0, c1 - c0),
                            dtype="uint8", all_touched=False)
            lab[~valid] = 0
            if not lab.any():
                continue  # a tile without roads teaches nothing about them; skip it
            ip, lp = out / "images" / f"{stem}.png", out / "labels" / f"{stem}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ip, overwrite=True) as tmp:
                Image.fromarray(np.round(img).astype(np.uint8)).save(tmp)
            with atomic_path(lp, overwrite=True) as tmp:
                Image.fromarray(lab).save(tmp)
            pairs.append(Pair(stem, ip, lp))
    if not pairs:
        raise UserError(f"no road of {roads} falls inside {scene}")
    return pairs
