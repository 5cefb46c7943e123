"""Segmentation data: seeded generated scenes (shapes or real MNIST digits on a canvas) and real-set folders.

Images are light intensity in [0, 1] (what the input display shows), masks are int64 class indices per
pixel with ``IGNORE_INDEX`` (255, VOC's "void" border) for pixels no metric or loss counts.

* ``generate_scenes(kind="shapes")`` — background + square, disc, triangle (4 classes; the default, it
  trains in the time budget on CPU); ``kind="digits"`` — background + the 10 MNIST digits from mnist5k
  (11 classes; a digit's mask is its pixels brighter than ``DIGIT_THRESHOLD``).
* ``load_carvana(root)`` — ``train/<id>.jpg|png`` with ``train_masks/<id>_mask.gif|png`` (background, car).
* ``load_voc2012(root, split)`` — ``JPEGImages/``, ``SegmentationClass/`` palette PNGs,
  ``ImageSets/Segmentation/<split>.txt`` (21 classes, 255 = void).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.errors import ConfigError, DataError

IGNORE_INDEX = 255
SHAPE_CLASSES = ("background", "square", "disc", "triangle")
DIGIT_CLASSES = ("background", *(f"digit {d}" for d in range(10)))
CARVANA_CLASSES = ("background", "car")
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
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
        if self.images.ndim != 4 or self.masks.shape != (self.images.shape[0], *self.images.shape[-2:]):
            raise DataError(f"images {tuple(self.images.shape)} and masks {tuple(self.masks.shape)} do not "
                            "match: need (N, C, H, W) and (N, H, W)")

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


def _place(occupied: np.ndarray, size: int, rng: np.random.Generator, tries: int = 30) -> tuple[int, int] | None:
    """Top-left of a free size×size box (1-pixel margin between objects), or None if none was found."""
    canvas = occupied.shape[0]
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(0, canvas - size + 1, 2))
        if not occupied[max(y - 1, 0) : y + size + 1, max(x - 1, 0) : x + size + 1].any():
            return y, x
    return None


def generate_scenes(n: int, canvas_size: int = 64, seed: int = 0, kind: str = "shapes",
                    objects: tuple[int, int] = (1, 3), noise_std: float = 0.05,
                    digit_images: torch.Tensor | None = None,
                    digit_labels: torch.Tensor | None = None) -> SegmentationSet:
    """``n`` scenes of 1–3 non-overlapping objects on a dark canvas; same seed → same scenes.

    Shapes are 8–16 px with intensity 0.5–1; digits are 28 px mnist5k digits scaled 0.7–1.0 (pass
    ``digit_images``/``digit_labels`` to draw from a given pool, e.g. a train split only). Gaussian noise
    of ``noise_std`` is added to the image (not the mask) and the result clipped to [0, 1].
    """
    if kind not in SCENE_KINDS:
        raise ConfigError(f"scene kind {kind!r} is unknown; choose one of {', '.join(SCENE_KINDS)}")
    if n < 1 or canvas_size < 32:
        raise ConfigError(f"need n >= 1 scenes on a canvas of >= 32 px (got n={n}, canvas {canvas_size})")
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
                digit = F.interpolate(digit_images[j : j + 1].float(), size=(size, size), mode="bilinear",
                                      antialias=True, align_corners=False)[0, 0].clamp(0, 1).numpy()
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
    return SegmentationSet(torch.from_numpy(images[:, None]), torch.from_numpy(masks), names,
                           f"generated {kind} scenes, {canvas_size}x{canvas_size}, seed {seed}")


@dataclass(frozen=True)
class SceneSplits:
    """Train / val / test scene sets, each from its own seed (and, for digits, its own digit pool)."""

    train: SegmentationSet
    val: SegmentationSet
    test: SegmentationSet
    kind: str
    canvas_size: int
    seed: int


def generated_splits(kind: str = "shapes", n_train: int = 1200, n_val: int = 200, n_test: int = 400,
                     canvas_size: int = 64, seed: int = 0) -> SceneSplits:
    """Disjoint seeded splits; digit scenes draw train/val/test digits from disjoint mnist5k pools."""
    pools: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * 3
    if kind == "digits":
        from lab4f.data import load_mnist5k

        raw = load_mnist5k()
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(raw.labels)))
        cut = [0, int(0.7 * len(order)), int(0.8 * len(order)), len(order)]
        pools = [(raw.images[order[a:b]], raw.labels[order[a:b]]) for a, b in zip(cut, cut[1:], strict=False)]
    sets = [generate_scenes(m, canvas_size, seed * 3 + k, kind, digit_images=p[0], digit_labels=p[1])
            for k, (m, p) in enumerate(zip((n_train, n_val, n_test), pools, strict=True))]
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
        raise DataError(f"{path}: not a readable mask image ({exc}); re-download or remove it") from None


def _stack(images: list[torch.Tensor], masks: list[np.ndarray], names: tuple[str, ...], source: str,
           root: Path) -> SegmentationSet:
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise DataError(f"images under {root} differ in size ({sorted(shapes)[:3]} ...); pass image_size")
    return SegmentationSet(torch.stack(images), torch.from_numpy(np.stack(masks)), names, source)


def _size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def load_carvana(root: str | Path, split: str = "train", image_size: int | tuple[int, int] | None = None,
                 grayscale: bool = True, limit: int | None = None) -> SegmentationSet:
    """Carvana layout: ``<root>/<split>/<id>.jpg|png`` and ``<root>/<split>_masks/<id>_mask.gif|png``.

    Mask pixels > 0 are the car (class 1). Images are resized bilinearly, masks by nearest neighbour.
    """
    root = Path(root)
    img_dir, mask_dir = root / split, root / f"{split}_masks"
    for folder in (img_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"Carvana folder {folder} not found: expected {img_dir}/<id>.jpg and "
                            f"{mask_dir}/<id>_mask.gif (the Kaggle carvana-image-masking-challenge layout)")
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not files:
        raise DataError(f"no .jpg/.png images in {img_dir}; expected <id>.jpg files")
    size = _size(image_size)
    images, masks = [], []
    for f in files:
        candidates = [mask_dir / f"{f.stem}_mask{ext}" for ext in (".gif", ".png")]
        mask_path = next((c for c in candidates if c.is_file()), None)
        if mask_path is None:
            raise DataError(f"no mask for {f.name}: expected {candidates[0]} or {candidates[1].name}")
        images.append(_read_image(f, grayscale, size))
        masks.append((_read_mask(mask_path, size) > 0).astype(np.int64))
    return _stack(images, masks, CARVANA_CLASSES, f"Carvana {root} ({split})", root)


def load_voc2012(root: str | Path, split: str = "train", image_size: int | tuple[int, int] | None = None,
                 grayscale: bool = True, limit: int | None = None) -> SegmentationSet:
    """Pascal VOC 2012 segmentation from ``root`` (the VOC2012 folder, or a VOCdevkit holding it).

    Masks are the palette indices of ``SegmentationClass/<id>.png`` (0–20, 255 = void → ``IGNORE_INDEX``).
    """
    root = Path(root)
    if not (root / "ImageSets").is_dir() and (root / "VOC2012" / "ImageSets").is_dir():
        root = root / "VOC2012"
    list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(f"VOC 2012 split list {list_file} not found: expected JPEGImages/, SegmentationClass/ "
                        f"and ImageSets/Segmentation/{split}.txt under {root} (unpack VOCtrainval_11-May-2012.tar)")
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()][:limit]
    size = _size(image_size)
    images, masks = [], []
    for i in ids:
        img_path, mask_path = root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png"
        for p in (img_path, mask_path):
            if not p.is_file():
                raise DataError(f"{p} is listed in {list_file.name} but missing; re-extract the VOC archive")
        mask = _read_mask(mask_path, size)
        bad = (mask >= len(VOC_CLASSES)) & (mask != IGNORE_INDEX)
        if bad.any():
            raise DataError(f"{mask_path}: class indices {sorted(set(mask[bad].tolist()))[:5]} outside 0–20/255; "
                            "is it a SegmentationObject (instance) mask?")
        images.append(_read_image(img_path, grayscale, size))
        masks.append(mask)
    return _stack(images, masks, VOC_CLASSES, f"VOC2012 {root} ({split})", root)
