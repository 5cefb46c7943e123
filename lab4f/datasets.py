"""Your own data as a data set: ``--dataset folder:PATH``, ``idx:PATH`` or ``npz:FILE``.

**folder:PATH** — class subfolders of images, ``PATH/<class>/*.png`` (any format and bit depth
:func:`lab4f.imagefolder.read_image` reads: 1/8/12/16-bit integer, float in [0, 1]; colour → BT.601 luminance).
Given splits: ``PATH/train/<class>/``, with ``PATH/test/<class>/`` and/or ``PATH/val/<class>/``. The class names
are the subfolder names (sorted; numerically when they are all integers), or the list in ``PATH/classes.json``,
which fixes their order (index = label) and may name classes with no images. Images of different sizes are
resized to the most common size (and said so); an unreadable image is skipped and named in a warning.

**idx:PATH** — a folder of IDX files as MNIST ships them: ``*train-images-idx3-ubyte[.gz]`` and
``*train-labels-idx1-ubyte[.gz]``, optionally ``*t10k-…`` or ``*test-…`` for the test split. Labels are class
indices 0..K-1; the names are in ``PATH/classes.json``, else "0".."K-1".

**npz:FILE** — a NumPy ``.npz`` (read without pickle) with ``x_train``/``y_train`` and optionally
``x_test``/``y_test``, ``x_val``/``y_val`` (Keras' layout), or one pool ``x``/``y`` (also ``images``/``labels``).
Images (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W): uint8 (/255), uint16 (/65535), bool, or float in [0, 1].
Class names: a ``class_names`` array in the file, else ``FILE.classes.json`` or ``classes.json`` beside it, else
"0".."K-1".

A relative PATH is looked up from the working directory, then under the data directory (``--data-dir``,
``$LAB4F_DATA``). Without a test split of its own, the test split is carved from the training files (seeded,
stratified by class) — see :func:`lab4f.data.load_dataset`, which also keeps exact duplicates on one side of
every split and records the data's identity.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lab4f.data_io import (
    RawData,
    check_labels,
    read_classes_json,
    read_idx,
    resize,
    resolve_data_dir,
)
from lab4f.errors import DataError

SPEC_KINDS = ("folder", "idx", "npz")
SPLIT_DIRS = ("train", "val", "test")


def parse_spec(name: str) -> tuple[str, str] | None:
    """("folder", "PATH") for "folder:PATH" (likewise idx:, npz:); None for a built-in data set's name."""
    kind, sep, path = name.partition(":")
    if not sep or kind not in SPEC_KINDS:
        return None
    if not path.strip():
        raise DataError(f"--dataset {name}: say where the data are, e.g. {kind}:data/my-set")
    return kind, path


def _locate(kind: str, path: str, data_dir: str | os.PathLike[str] | None) -> Path:
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        found = p
    else:
        found = resolve_data_dir(data_dir) / p
    if kind == "npz" and not found.is_file() or kind != "npz" and not found.is_dir():
        where = f"{p.resolve()}" + (
            "" if p.is_absolute() else f" (nor {resolve_data_dir(data_dir) / p})"
        )
        want = "a .npz file" if kind == "npz" else "a folder"
        raise DataError(f"--dataset {kind}:{path}: {want} was not found at {where}; {_HELP[kind]}")
    return found.resolve()


_HELP = {
    "folder": "it must hold one subfolder of images per class (PATH/<class>/*.png), or train/ and test/ (val/) "
    "with class subfolders",
    "idx": "it must hold train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] (t10k-… for a test split)",
    "npz": "it must hold x_train and y_train (optionally x_test, y_test), or x and y",
}


def load_spec(
    spec: tuple[str, str], data_dir: str | os.PathLike[str] | None = None
) -> tuple[str, RawData]:
    """(the canonical name ``kind:/absolute/path``, the data) of a parsed ``--dataset kind:PATH``."""
    kind, path = spec
    found = _locate(kind, path, data_dir)
    loader = {"folder": load_folder, "idx": load_idx_set, "npz": load_npz}[kind]
    return f"{kind}:{found}", loader(found)


# -- folder:PATH -------------------------------------------------------------------------------------------------
def _visible_dirs(folder: Path) -> list[Path]:
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]


def _sorted_names(names: list[str]) -> list[str]:
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _split_layout(folder: Path) -> bool:
    subdirs = {d.name for d in _visible_dirs(folder)}
    return "train" in subdirs and subdirs <= set(SPLIT_DIRS) and len(subdirs) > 1


def load_folder(folder: Path) -> RawData:
    """The images of ``folder`` (see the module docstring) at full depth, gray, one size."""
    from lab4f.imagefolder import EXTENSIONS

    split_layout = _split_layout(folder)
    roots = (
        {s: folder / s for s in SPLIT_DIRS if (folder / s).is_dir()}
        if split_layout
        else {"train": folder}
    )
    class_dirs = {s: {d.name: d for d in _visible_dirs(r)} for s, r in roots.items()}
    found = _sorted_names(sorted(set().union(*(set(c) for c in class_dirs.values()))))
    given = read_classes_json(folder / "classes.json")
    warnings: list[str] = []
    if given is not None:
        unknown = [n for n in found if n not in given]
        if unknown:
            raise DataError(
                f"{folder}: subfolder(s) {unknown} are not classes in {folder / 'classes.json'} "
                f"({list(given)}); add them there or remove them"
            )
        names = given
    else:
        names = tuple(found)
    if not names:
        raise DataError(f"--dataset folder:{folder}: no class subfolders; {_HELP['folder']}")
    loose = [
        p.name
        for r in roots.values()
        for p in r.iterdir()
        if p.is_file() and p.suffix.lower() in EXTENSIONS
    ]
    if loose:
        warnings.append(
            f"{len(loose)} image(s) directly in {folder} (not in a class subfolder) are not used, e.g. "
            f"{loose[0]}"
        )
    read: dict[str, tuple[list[np.ndarray], list[int], list[str]]] = {}
    skipped: list[str] = []
    for split, dirs in class_dirs.items():
        arrays, labels, files = [], [], []
        for name in names:
            d = dirs.get(name)
            if d is None:
                continue
            for p in sorted(d.iterdir()):
                if not p.is_file() or p.suffix.lower() not in EXTENSIONS or p.name.startswith("."):
                    continue
                a = _read(p, skipped, folder)
                if a is not None:
                    arrays.append(a)
                    labels.append(names.index(name))
                    files.append(str(p.relative_to(folder)))
        read[split] = (arrays, labels, files)
    if skipped:
        warnings.append(
            f"{len(skipped)} unreadable image(s) skipped: "
            + "; ".join(skipped[:3])
            + ("; …" if len(skipped) > 3 else "")
        )
    if not read["train"][0]:
        raise DataError(
            f"--dataset folder:{folder}: no readable training images; {_HELP['folder']}"
        )
    empty = [n for i, n in enumerate(names) if i not in set(read["train"][1])]
    if empty:
        warnings.append(f"class(es) {empty} have no training images")
    sizes = Counter(a.shape for arrays, _, _ in read.values() for a in arrays)
    size = max(sizes, key=lambda s: (sizes[s], s))
    if len(sizes) > 1:
        other = sum(n for s, n in sizes.items() if s != size)
        warnings.append(
            f"{other} image(s) of other sizes than the most common {size[0]}x{size[1]} were resized to "
            f"it (sizes found: {', '.join(f'{s[0]}x{s[1]}' for s in sorted(sizes))})"
        )

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        if split not in read:
            return None, None
        arrays, labels, _ = read[split]
        x = torch.zeros((len(arrays), 1, *size), dtype=torch.float32)
        for i, a in enumerate(arrays):
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
            x[i] = resize(t, size)[0] if a.shape != size else t[0]
        return x, torch.tensor(labels, dtype=torch.int64)

    x, y = stack("train")
    xt, yt = stack("test")
    xv, yv = stack("val")
    for split, (xs, _) in (("test", (xt, yt)), ("val", (xv, yv))):
        if xs is not None and len(xs) == 0:
            raise DataError(f"--dataset folder:{folder}: {folder / split} holds no readable images")
    return RawData(
        x, y, tuple(names), str(folder), xt, yt, xv, yv, tuple(read["train"][2]), tuple(warnings)
    )


def _read(path: Path, skipped: list[str], folder: Path) -> np.ndarray | None:
    from lab4f.imagefolder import ImageReadError, read_image

    try:
        return read_image(path)[0]
    except ImageReadError as exc:
        skipped.append(f"{path.relative_to(folder)}: {exc}")
        return None


# -- idx:PATH ----------------------------------------------------------------------------------------------------
def _one(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    hits = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    if len(hits) > 1:
        raise DataError(
            f"{folder}: more than one file matches {patterns[0]}: {[h.name for h in hits]}; keep one set "
            "of IDX files per folder"
        )
    return hits[0] if hits else None


def _idx_images(path: Path) -> torch.Tensor:
    a = read_idx(path)
    if a.ndim != 3:
        raise DataError(f"{path}: expected images of shape (N, H, W), got {a.shape}")
    return _scaled(a, path)[:, None]


def load_idx_set(folder: Path) -> RawData:
    """IDX images and labels from ``folder`` (see the module docstring)."""
    pairs = {}
    for split, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
        images = _one(
            folder, tuple(f"*{p}-images-idx3-ubyte{z}" for p in prefixes for z in ("", ".gz"))
        )
        labels = _one(
            folder, tuple(f"*{p}-labels-idx1-ubyte{z}" for p in prefixes for z in ("", ".gz"))
        )
        if (images is None) != (labels is None):
            have, missing = (images, "labels") if labels is None else (labels, "images")
            raise DataError(
                f"{folder}: {have.name} has no {missing} file beside it ({split} split); "
                f"{_HELP['idx']}"
            )
        if images is not None and labels is not None:
            x, y = _idx_images(images), read_idx(labels)
            if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
                raise DataError(
                    f"{labels}: expected {len(x)} integer labels to match {images.name}, got {y.dtype} "
                    f"{y.shape}"
                )
            pairs[split] = (x, torch.from_numpy(y.astype(np.int64)))
    if "train" not in pairs:
        raise DataError(f"--dataset idx:{folder}: no training files; {_HELP['idx']}")
    names = read_classes_json(folder / "classes.json")
    y_all = torch.cat([p[1] for p in pairs.values()])
    names = check_labels(y_all, names, str(folder))
    x, y = pairs["train"]
    xt, yt = pairs.get("test", (None, None))
    return RawData(
        x, y, names, str(folder), xt, yt
    )  # no test files: load_dataset carves a test split


# -- npz:FILE ----------------------------------------------------------------------------------------------------
def _scaled(a: np.ndarray, where: Path) -> torch.Tensor:
    """uint8/uint16/bool/float-in-[0, 1] pixels as float32 intensity in [0, 1]."""
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / np.float32(255)
    elif a.dtype == np.uint16:
        out = a.astype(np.float32) / np.float32(65535)
    elif a.dtype == np.bool_:
        out = a.astype(np.float32)
    elif a.dtype.kind == "f":
        out = a.astype(np.float32)
        if out.size and (not np.all(np.isfinite(out)) or out.min() < 0 or out.max() > 1):
            raise DataError(
                f"{where}: float images must hold intensities in [0, 1] (lab4f cannot know their full "
                f"scale); found values in [{np.nanmin(out):.4g}, {np.nanmax(out):.4g}]"
            )
    else:
        raise DataError(
            f"{where}: images of type {a.dtype} have no defined full scale; store them as uint8, "
            "uint16 or float in [0, 1]"
        )
    return torch.from_numpy(np.ascontiguousarray(out))


def _nchw(a: np.ndarray, where: Path, key: str) -> np.ndarray:
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        return np.moveaxis(a, -1, 1)
    if a.ndim == 4 and a.shape[1] in (1, 3):
        return a
    raise DataError(
        f"{where}: {key} has shape {a.shape}; expected (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W)"
    )


def load_npz(path: Path) -> RawData:
    """Images and labels from a ``.npz`` (see the module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); {_HELP['npz']}") from None
    keys = next(
        (
            (x, y)
            for x, y in (("x_train", "y_train"), ("x", "y"), ("images", "labels"))
            if x in arrays and y in arrays
        ),
        None,
    )
    if keys is None:
        raise DataError(f"{path} holds {sorted(arrays)}; {_HELP['npz']}")
    splits = {"train": keys} | {
        s: (f"x_{s}", f"y_{s}") for s in ("test", "val") if f"x_{s}" in arrays
    }
    data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, (kx, ky) in splits.items():
        if ky not in arrays:
            raise DataError(f"{path}: {kx} has no {ky} beside it")
        x, y = _nchw(arrays[kx], path, kx), arrays[ky]
        if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{path}: {ky} must be {len(x)} integer class indices (one per image of {kx}), got "
                f"{y.dtype} {y.shape}"
            )
        data[split] = (_scaled(x, path), torch.from_numpy(y.astype(np.int64)))
    shapes = {tuple(x.shape[1:]) for x, _ in data.values()}
    if len(shapes) > 1:
        raise DataError(f"{path}: the splits' images differ in shape {sorted(shapes)}")
    names = None
    if "class_names" in arrays:
        names = tuple(str(n) for n in np.asarray(arrays["class_names"]).reshape(-1).tolist())
        if len(set(names)) != len(names) or not all(names):
            raise DataError(
                f"{path}: class_names must be distinct, non-empty names; got {list(names)}"
            )
    names = (
        names
        or read_classes_json(path.with_name(path.stem + ".classes.json"))
        or read_classes_json(path.with_name("classes.json"))
    )
    names = check_labels(torch.cat([y for _, y in data.values()]), names, str(path))
    x, y = data["train"]
    xt, yt = data.get("test", (None, None))
    xv, yv = data.get("val", (None, None))
    return RawData(
        x, y, names, str(path), xt, yt, xv, yv
    )  # no x_test: load_dataset carves a test split
