"""Segmentation data: seeded generated scenes (shapes or real MNIST digits on a canvas) and real-set folders.

Images are light intensity in [0, 1] (what the input display shows), masks are int64 class indices per
pixel with ``IGNORE_INDEX`` (255, VOC's "void" border) for pixels no metric or loss counts.

* ``generate_scenes(kind="shapes")`` — background + square, disc, triangle (4 classes; the default, it
  trains in the time budget on CPU); ``kind="digits"`` — background + the 10 MNIST digits from mnist5k
  (11 classes; a digit's mask is its pixels brighter than ``DIGIT_THRESHOLD``).
* ``load_carvana(root)`` — ``train/<id>.jpg|png`` with ``train_masks/<id>_mask.gif|png`` (background, car).
* ``load_voc2012(root, split)`` — ``JPEGImages/``, ``SegmentationClass/`` palette PNGs,
  ``ImageSets/Segmentation/<split>.txt`` (21 classes, 255 = void).
* ``folder_splits(dataset, data_dir, image_size, seed)`` — seeded train/val/test splits of ``carvana`` or
  ``voc2012`` found in the data directory (``data_dir``, else ``$LAB4F_DATA``, else ``~/.lab4f/data``, as for
  classification in :mod:`lab4f.data`), grayscale at image_size×image_size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.data import DEFAULT_DATA_DIR, ENV_VAR, resolve_data_dir
from lab4f.errors import ConfigError, DataError

IGNORE_INDEX = 255
SHAPE_CLASSES = ("background", "square", "disc", "triangle")
DIGIT_CLASSES = ("background", *(f"digit {d}" for d in range(10)))
CARVANA_CLASSES = ("background", "car")
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
DIGIT_THRESHOLD = 0.5
SCENE_KINDS = ("shapes", "digits")


@dataclass(frozen=True)
class SegmentationSet:
    """Images (N, C, H, W) float32 in [0, 1], masks (N, H, W) int64 and what the classes are."""

    images: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.masks.shape != (
            self.images.shape[0],
            *self.images.shape[-2:],
        ):
            raise DataError(
                f"images {tuple(self.images.shape)} and masks {tuple(self.masks.shape)} do not "
                "match: need (N, C, H, W) and (N, H, W)"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: torch.Tensor | slice) -> SegmentationSet:
        return SegmentationSet(self.images[index], self.masks[index], self.class_names, self.source)


# -- generated scenes ------------------------------------------------------------------------------------
def _shape_mask(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A filled square (1), disc (2) or triangle (3) in a size×size box, as a boolean mask."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if kind == 1:
        return np.ones((size, size), bool)
    if kind == 2:
        r = size / 2
        return (yy - r) ** 2 + (xx - r) ** 2 <= r * r
    # isosceles triangle, apex up or down at random
    up = rng.random() < 0.5
    rows = yy if up else size - yy
    return np.abs(xx - size / 2) <= rows / 2


def _place(
    occupied: np.ndarray, size: int, rng: np.random.Generator, tries: int = 30
) -> tuple[int, int] | None:
    """Top-left of a free size×size box (1-pixel margin between objects), or None if none was found."""
    canvas = occupied.shape[0]
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(0, canvas - size + 1, 2))
        if not occupied[max(y - 1, 0) : y + size + 1, max(x - 1, 0) : x + size + 1].any():
            return y, x
    return None


def generate_scenes(
    n: int,
    canvas_size: int = 64,
    seed: int = 0,
    kind: str = "shapes",
    objects: tuple[int, int] = (1, 3),
    noise_std: float = 0.05,
    digit_images: torch.Tensor | None = None,
    digit_labels: torch.Tensor | None = None,
) -> SegmentationSet:
    """``n`` scenes of 1–3 non-overlapping objects on a dark canvas; same seed → same scenes.

    Shapes are 8–16 px with intensity 0.5–1; digits are 28 px mnist5k digits scaled 0.7–1.0 (pass
    ``digit_images``/``digit_labels`` to draw from a given pool, e.g. a train split only). Gaussian noise
    of ``noise_std`` is added to the image (not the mask) and the result clipped to [0, 1].
    """
    if kind not in SCENE_KINDS:
        raise ConfigError(f"scene kind {kind!r} is unknown; choose one of {', '.join(SCENE_KINDS)}")
    if n < 1 or canvas_size < 32:
        raise ConfigError(
            f"need n >= 1 scenes on a canvas of >= 32 px (got n={n}, canvas {canvas_size})"
        )
    rng = np.random.default_rng(seed)
    if kind == "digits" and digit_images is None:
        from lab4f.data import load_mnist5k

        raw = load_mnist5k()
        digit_images, digit_labels = raw.images, raw.labels
    images = np.zeros((n, canvas_size, canvas_size), np.float32)
    masks = np.zeros((n, canvas_size, canvas_size), np.int64)
    for i in range(n):
        occupied = np.zeros((canvas_size, canvas_size), bool)
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            if kind == "shapes":
                cls, size = int(rng.integers(1, 4)), int(rng.integers(10, 21))
                shape = _shape_mask(cls, size, rng)
                patch = shape * np.float32(rng.uniform(0.5, 1.0))
            else:
                j = int(rng.integers(0, len(digit_images)))
                size = int(round(28 * rng.uniform(0.7, 1.0)))
                digit = (
                    F.interpolate(
                        digit_images[j : j + 1].float(),
                        size=(size, size),
                        mode="bilinear",
                        antialias=True,
                        align_corners=False,
                    )[0, 0]
                    .clamp(0, 1)
                    .numpy()
                )
                cls, patch, shape = int(digit_labels[j]) + 1, digit, digit > DIGIT_THRESHOLD
            where = _place(occupied, size, rng)
            if where is None:
                continue
            y, x = where
            occupied[y : y + size, x : x + size] = True
            region = images[i, y : y + size, x : x + size]
            np.maximum(region, patch, out=region)
            masks[i, y : y + size, x : x + size][shape] = cls
    if noise_std > 0:
        images += rng.normal(0.0, noise_std, images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    names = SHAPE_CLASSES if kind == "shapes" else DIGIT_CLASSES
    return SegmentationSet(
        torch.from_numpy(images[:, None]),
        torch.from_numpy(masks),
        names,
        f"generated {kind} scenes, {canvas_size}x{canvas_size}, seed {seed}",
    )


@dataclass(frozen=True)
class SceneSplits:
    """Train / val / test scene sets, each from its own seed (and, for digits, its own digit pool)."""

    train: SegmentationSet
    val: SegmentationSet
    test: SegmentationSet
    kind: str
    canvas_size: int
    seed: int


def generated_splits(
    kind: str = "shapes",
    n_train: int = 1200,
    n_val: int = 200,
    n_test: int = 400,
    canvas_size: int = 64,
    seed: int = 0,
) -> SceneSplits:
    """Disjoint seeded splits; digit scenes draw train/val/test digits from disjoint mnist5k pools."""
    pools: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * 3
    if kind == "digits":
        from lab4f.data import load_mnist5k

        raw = load_mnist5k()
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(raw.labels)))
        cut = [0, int(0.7 * len(order)), int(0.8 * len(order)), len(order)]
        pools = [
            (raw.images[order[a:b]], raw.labels[order[a:b]])
            for a, b in zip(cut, cut[1:], strict=False)
        ]
    sets = [
        generate_scenes(m, canvas_size, seed * 3 + k, kind, digit_images=p[0], digit_labels=p[1])
        for k, (m, p) in enumerate(zip((n_train, n_val, n_test), pools, strict=True))
    ]
    return SceneSplits(*sets, kind=kind, canvas_size=canvas_size, seed=seed)


# -- real data sets from folders ---------------------------------------------------------------------------
def _pil():  # noqa: ANN202 — the PIL.Image module
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover — matplotlib depends on pillow
        raise DataError("reading image folders needs pillow: `pip install pillow`") from exc
    return Image


def _read_image(path: Path, grayscale: bool, size: tuple[int, int] | None) -> torch.Tensor:
    image = _pil()
    try:
        with image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
            if size is not None:
                im = im.resize((size[1], size[0]), image.BILINEAR)
            arr = np.asarray(im, np.float32) / 255.0
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc}); re-download or remove it") from None
    return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())


def _read_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Class indices of a mask image (palette indices for P images, the gray value otherwise)."""
    image = _pil()
    try:
        with image.open(path) as im:
            if im.mode not in ("P", "L", "1"):
                im = im.convert("L")
            if size is not None:
                im = im.resize((size[1], size[0]), image.NEAREST)
            return np.asarray(im).astype(np.int64)
    except OSError as exc:
        raise DataError(
            f"{path}: not a readable mask image ({exc}); re-download or remove it"
        ) from None


def _stack(
    images: list[torch.Tensor],
    masks: list[np.ndarray],
    names: tuple[str, ...],
    source: str,
    root: Path,
) -> SegmentationSet:
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"images under {root} differ in size ({sorted(shapes)[:3]} ...); pass image_size"
        )
    return SegmentationSet(torch.stack(images), torch.from_numpy(np.stack(masks)), names, source)


def _size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    return (
        (image_size, image_size)
        if isinstance(image_size, int)
        else (int(image_size[0]), int(image_size[1]))
    )


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _carvana_files(root: Path, split: str) -> list[Path]:
    """The sorted images of ``<root>/<split>/`` (checking that ``<split>_masks/`` exists too)."""
    img_dir, mask_dir = root / split, root / f"{split}_masks"
    for folder in (img_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"Carvana folder {folder} not found: expected {img_dir}/<id>.jpg and "
                f"{mask_dir}/<id>_mask.gif (the Kaggle carvana-image-masking-challenge layout)"
            )
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no .jpg/.png images in {img_dir}; expected <id>.jpg files")
    return files


def _load_carvana_files(
    files: list[Path], size: tuple[int, int] | None, grayscale: bool, source: str, root: Path
) -> SegmentationSet:
    images, masks = [], []
    for f in files:
        mask_dir = f.parent.with_name(f"{f.parent.name}_masks")
        candidates = [mask_dir / f"{f.stem}_mask{ext}" for ext in (".gif", ".png")]
        mask_path = next((c for c in candidates if c.is_file()), None)
        if mask_path is None:
            raise DataError(
                f"no mask for {f.name}: expected {candidates[0]} or {candidates[1].name}"
            )
        images.append(_read_image(f, grayscale, size))
        masks.append((_read_mask(mask_path, size) > 0).astype(np.int64))
    return _stack(images, masks, CARVANA_CLASSES, source, root)


def load_carvana(
    root: str | Path,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    limit: int | None = None,
) -> SegmentationSet:
    """Carvana layout: ``<root>/<split>/<id>.jpg|png`` and ``<root>/<split>_masks/<id>_mask.gif|png``.

    Mask pixels > 0 are the car (class 1). Images are resized bilinearly, masks by nearest neighbour.
    """
    root = Path(root)
    files = _carvana_files(root, split)[:limit]
    return _load_carvana_files(
        files, _size(image_size), grayscale, f"Carvana {root} ({split})", root
    )


def _voc_root(root: Path) -> Path:
    if not (root / "ImageSets").is_dir() and (root / "VOC2012" / "ImageSets").is_dir():
        return root / "VOC2012"
    return root


def _voc_ids(root: Path, split: str) -> list[str]:
    list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(
            f"VOC 2012 split list {list_file} not found: expected JPEGImages/, SegmentationClass/ "
            f"and ImageSets/Segmentation/{split}.txt under {root} (unpack VOCtrainval_11-May-2012.tar)"
        )
    return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]


def _load_voc_ids(
    root: Path,
    ids: list[str],
    list_name: str,
    size: tuple[int, int] | None,
    grayscale: bool,
    source: str,
) -> SegmentationSet:
    images, masks = [], []
    for i in ids:
        img_path, mask_path = (
            root / "JPEGImages" / f"{i}.jpg",
            root / "SegmentationClass" / f"{i}.png",
        )
        for p in (img_path, mask_path):
            if not p.is_file():
                raise DataError(
                    f"{p} is listed in {list_name} but missing; re-extract the VOC archive"
                )
        mask = _read_mask(mask_path, size)
        bad = (mask >= len(VOC_CLASSES)) & (mask != IGNORE_INDEX)
        if bad.any():
            raise DataError(
                f"{mask_path}: class indices {sorted(set(mask[bad].tolist()))[:5]} outside 0–20/255; "
                "is it a SegmentationObject (instance) mask?"
            )
        images.append(_read_image(img_path, grayscale, size))
        masks.append(mask)
    return _stack(images, masks, VOC_CLASSES, source, root)


def load_voc2012(
    root: str | Path,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    limit: int | None = None,
) -> SegmentationSet:
    """Pascal VOC 2012 segmentation from ``root`` (the VOC2012 folder, or a VOCdevkit holding it).

    Masks are the palette indices of ``SegmentationClass/<id>.png`` (0–20, 255 = void → ``IGNORE_INDEX``).
    """
    root = _voc_root(Path(root))
    ids = _voc_ids(root, split)[:limit]
    return _load_voc_ids(
        root, ids, f"{split}.txt", _size(image_size), grayscale, f"VOC2012 {root} ({split})"
    )


# -- seeded splits of a folder data set (what `lab4f segment --dataset carvana|voc2012` trains on) ----------
FOLDER_DATASETS = ("carvana", "voc2012")
SEG_DATASETS = ("generated", *FOLDER_DATASETS)
SPLITS = ("train", "val", "test")
HOLD_OUT = 0.1  # the fraction of the training images (Carvana: of the cars) drawn for a split the layout lacks
# where under the data directory each set may sit ("" = the data directory itself), and what must be there
_SUBDIRS = {
    "carvana": ("", "carvana", "Carvana", "carvana-image-masking-challenge"),
    "voc2012": ("", "VOC2012", "VOCdevkit/VOC2012", "VOCtrainval_11-May-2012/VOCdevkit/VOC2012"),
}
_LAYOUTS = {
    "carvana": "train/<id>.jpg and train_masks/<id>_mask.gif (Kaggle carvana-image-masking-challenge; "
    "optional val/ + val_masks/, test/ + test_masks/)",
    "voc2012": "JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/train.txt, val.txt "
    "(VOC2012 from VOCtrainval_11-May-2012.tar)",
}
_FOLDER_SOURCE = re.compile(
    r"(carvana|voc2012) folder (.+), (\d+)x(\d+) grayscale, split seed (\d+) "
    r"\((train|val|test)\)"
)


def folder_source(dataset: str, root: str | Path, image_size: int, seed: int, split: str) -> str:
    """The ``source`` of a folder split: names the data set, its folder, the size, split seed and split."""
    return (
        f"{dataset} folder {root}, {image_size}x{image_size} grayscale, split seed {seed} ({split})"
    )


def parse_folder_source(source: str) -> tuple[str, str, int, int, str] | None:
    """(dataset, root, image size, split seed, split) of a :func:`folder_source` string, else None."""
    m = _FOLDER_SOURCE.fullmatch(str(source))
    if m is None or m.group(3) != m.group(4):
        return None
    return m.group(1), m.group(2), int(m.group(3)), int(m.group(5)), m.group(6)


def _has_layout(dataset: str, folder: Path) -> bool:
    if dataset == "carvana":
        return (folder / "train").is_dir() and (folder / "train_masks").is_dir()
    return (folder / "ImageSets" / "Segmentation").is_dir()


def _check_dataset(dataset: str) -> None:
    if dataset not in FOLDER_DATASETS:
        raise ConfigError(
            f"folder data set {dataset!r} is unknown; choose one of {', '.join(FOLDER_DATASETS)}"
        )


def find_folder_dataset(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``dataset``: the data directory itself or a usual subfolder of it (absolute path).

    The data directory is ``data_dir``, else ``$LAB4F_DATA``, else ``~/.lab4f/data`` (:func:`lab4f.data.
    resolve_data_dir`); Carvana may sit in ``carvana/``, VOC in ``VOC2012/`` or ``VOCdevkit/VOC2012/``.
    """
    _check_dataset(dataset)
    base = resolve_data_dir(data_dir)
    candidates = [base / sub if sub else base for sub in _SUBDIRS[dataset]]
    for folder in candidates:
        if _has_layout(dataset, folder):
            return folder.resolve()
    origin = (
        "--data-dir"
        if data_dir is not None
        else f"${ENV_VAR}"
        if os.environ.get(ENV_VAR)
        else f"the default, as neither --data-dir nor ${ENV_VAR} is set"
    )
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"{dataset} data set not found in the data directory {base} ({origin}); looked in {looked} "
        f"for {_LAYOUTS[dataset]}. Put it there, or pass --data-dir DIR (or set ${ENV_VAR}; default "
        f"{DEFAULT_DATA_DIR}) naming the folder that holds it."
    )


def _car(path: Path) -> str:
    """Carvana's car id: ``<car>_<view>.jpg`` → ``<car>`` (16 views per car must stay in one split)."""
    return path.stem.rsplit("_", 1)[0] if "_" in path.stem else path.stem


def _hold_out(n: int, what: str, where: Path, parts: int) -> int:
    """How many of ``n`` items (cars, ids) each drawn split gets: HOLD_OUT of them, at least one."""
    k = max(1, int(round(HOLD_OUT * n)))
    if n - parts * k < 1:
        raise DataError(
            f"{where} holds only {n} {what}: too few to draw {parts} hold-out split(s) of "
            f"{HOLD_OUT:.0%} and keep some for training; add images or folders for val/test"
        )
    return k


def _plan(dataset: str, root: Path, seed: int) -> tuple[dict[str, list[Any]], str]:
    """Which items (Carvana image files, VOC ids) each split holds, in a seeded order, and the scheme in words.

    The split depends only on the folder's file listing and ``seed``; a cap takes a prefix of each split.
    """
    rng = np.random.default_rng(seed)
    if dataset == "carvana":
        own = {
            s: _carvana_files(root, s)
            for s in ("val", "test")
            if (root / s).is_dir() and (root / f"{s}_masks").is_dir()
        }
        train = _carvana_files(root, "train")
        drawn = [s for s in ("val", "test") if s not in own]
        plan: dict[str, list[Any]] = {}
        if drawn:
            cars = sorted({_car(f) for f in train})
            k = _hold_out(len(cars), "cars", root / "train", len(drawn))
            order = [cars[i] for i in rng.permutation(len(cars))]
            which = {c: drawn[j // k] for j, c in enumerate(order[: k * len(drawn)])}
            for s in drawn:
                plan[s] = [f for f in train if which.get(_car(f)) == s]
            train = [f for f in train if _car(f) not in which]
        plan["train"] = train
        plan.update(own)
        scheme = (
            f"train/ split by car (<car>_<view> ids; seed {seed}): {HOLD_OUT:.0%} of the cars each for "
            f"{' and '.join(drawn)}, the rest train"
            if drawn
            else "train/ as train"
        )
        scheme += "".join(f"; {s}/ as {s}" for s in own)
    else:
        ids = _voc_ids(root, "train")
        k = _hold_out(len(ids), "images", root / "ImageSets/Segmentation/train.txt", 1)
        order = [ids[i] for i in rng.permutation(len(ids))]
        plan = {"train": order[k:], "val": order[:k], "test": _voc_ids(root, "val")}
        scheme = (
            f"ImageSets/Segmentation/train.txt minus a {HOLD_OUT:.0%} val hold-out (seed {seed}) as train, "
            "val.txt as test"
        )
    # a seeded order within every split, so that a cap draws a random subset rather than the first cars/years
    out = {s: [plan[s][i] for i in rng.permutation(len(plan[s]))] for s in SPLITS}
    return out, scheme


def _caps(limit: int | Sequence[int | None] | None) -> tuple[int | None, int | None, int | None]:
    caps = tuple(limit) if isinstance(limit, (tuple, list)) else (limit,) * 3
    if len(caps) != 3 or any(c is not None and c < 0 for c in caps):
        raise ConfigError(
            f"limit must be a cap >= 0 (0 or None = the whole split) or three of them, got {limit}"
        )
    return tuple(c or None for c in caps)  # type: ignore[return-value]


def _load_items(
    dataset: str, root: Path, items: list[Any], size: int, source: str
) -> SegmentationSet:
    if not items:
        raise DataError(f"{source}: the split is empty; check the folder's images and split lists")
    if dataset == "carvana":
        return _load_carvana_files(items, (size, size), True, source, root)
    return _load_voc_ids(root, items, "the split lists", (size, size), True, source)


@dataclass(frozen=True)
class FolderSplits:
    """Train / val / test of a folder data set (images grayscale at image_size², masks nearest-neighbour)."""

    train: SegmentationSet
    val: SegmentationSet
    test: SegmentationSet
    dataset: str
    root: Path
    image_size: int
    seed: int
    scheme: str  # how the three splits were made, in words
    available: tuple[int, int, int]  # images in each split before the caps


def folder_split(
    dataset: str, root: str | Path, image_size: int, seed: int, split: str, limit: int | None = None
) -> SegmentationSet:
    """One split of :func:`folder_splits` (``root`` is the folder holding the set); loads only that split."""
    _check_dataset(dataset)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is unknown; choose one of {', '.join(SPLITS)}")
    root = Path(root)
    if not _has_layout(dataset, root):
        raise DataError(f"{root} holds no {dataset} data set: expected {_LAYOUTS[dataset]}")
    plan, _ = _plan(dataset, root, seed)
    cap = _caps(limit)[0]
    return _load_items(
        dataset,
        root,
        plan[split][:cap],
        image_size,
        folder_source(dataset, root, image_size, seed, split),
    )


def folder_splits(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int = 48,
    seed: int = 0,
    limit: int | Sequence[int | None] | None = None,
) -> FolderSplits:
    """Seeded, disjoint train/val/test splits of a real data set found in the data directory.

    ``data_dir`` (else ``$LAB4F_DATA``, else ``~/.lab4f/data``) holds the set, itself or in a usual subfolder
    (:func:`find_folder_dataset`). Splits:

    * ``carvana`` — the Kaggle layout has only ``train/`` + ``train_masks/``: its cars (``<car>_<view>``, all 16
      views of a car in one split) are split 80/10/10 into train/val/test by ``seed``. Where ``val/`` +
      ``val_masks/`` or ``test/`` + ``test_masks/`` exist they are that split and only the missing one is drawn
      (10 % of the cars). Kaggle's ``test/`` has no masks and is not used.
    * ``voc2012`` — ``train.txt`` minus a seeded 10 % validation hold-out is train, ``val.txt`` is test.

    Each split is in a seeded order; ``limit`` caps each split (an int, or (train, val, test); 0 or None = the
    whole split) by taking a prefix, so a cap never changes which images belong to which split. Images are
    grayscale (the display shows intensity) resized bilinearly to image_size×image_size, masks by nearest
    neighbour.
    """
    _check_dataset(dataset)
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    caps = _caps(limit)
    root = find_folder_dataset(dataset, data_dir)
    plan, scheme = _plan(dataset, root, seed)
    sets = [
        _load_items(
            dataset,
            root,
            plan[s][:cap],
            image_size,
            folder_source(dataset, root, image_size, seed, s),
        )
        for s, cap in zip(SPLITS, caps, strict=True)
    ]
    return FolderSplits(
        *sets,
        dataset=dataset,
        root=root,
        image_size=image_size,
        seed=seed,
        scheme=scheme,
        available=tuple(len(plan[s]) for s in SPLITS),
    )  # type: ignore[arg-type]
