"""The readers under every data set: the loaders' result (:class:`RawData`), IDX files, ``classes.json``, label
checks, resizing and the data directory. Kept apart from :mod:`lab4f.data` so that the own-data loaders
(:mod:`lab4f.datasets`, :mod:`lab4f.imagefolder`) and the built-in ones share them without importing each other."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.errors import DataError

ENV_VAR = "LAB4F_DATA"
DEFAULT_DATA_DIR = Path("~/.lab4f/data")

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class RawData:
    """What a loader returns: uint8-scaled images as [0, 1] float32 (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    test_images: torch.Tensor | None = None  # the official test split, where the dataset has one
    test_labels: torch.Tensor | None = None
    val_images: torch.Tensor | None = None  # a given validation split (a folder set's val/)
    val_labels: torch.Tensor | None = None
    files: tuple[str, ...] | None = (
        None  # the file of each pool image, where there is one (names duplicates)
    )
    warnings: tuple[
        str, ...
    ] = ()  # what the loader had to say (skipped files, a carved test split, ...)


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (N, C, H, W) images, clipped to [0, 1]; a no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the argument, else ``$LAB4F_DATA``, else ``~/.lab4f/data``."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain), checking its magic number and its exact length."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); re-download it.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path}: bad IDX magic number {raw[:4].hex() or 'none'} (expected 0000TTDD: "
            f"type 08..0e, ndim >= 1); this is not an IDX file, re-download it."
        )
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: truncated IDX header ({len(raw)} bytes, expected {header}); re-download."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes but shape {shape} of {dtype.name} needs {expected}; "
            "the file is truncated or corrupt, re-download it."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_classes_json(path: Path) -> tuple[str, ...] | None:
    """The class names in ``path`` (a JSON list of distinct names, index = label; or ``{"class_names": [...]}``),
    None when there is no such file."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable JSON file ({exc}); it must hold the class names as a list, "
            'e.g. ["cat", "dog"] (index = label)'
        ) from None
    names = obj.get("class_names") if isinstance(obj, dict) else obj
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n.strip() for n in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(
            f"{path}: expected a list of distinct, non-empty class names (index = label), e.g. "
            f'["cat", "dog"]; got {str(obj)[:120]}'
        )
    return tuple(names)


def check_labels(
    labels: torch.Tensor, names: tuple[str, ...] | None, where: str
) -> tuple[str, ...]:
    """The class names of integer ``labels``: ``names`` (which must cover every label), else "0".."K-1"."""
    if labels.numel() == 0:
        raise DataError(f"{where}: no labelled images")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise DataError(f"{where}: label {lo} is negative; labels must be 0..K-1 (class indices)")
    if names is None:
        return tuple(str(i) for i in range(hi + 1))
    if hi >= len(names):
        raise DataError(
            f"{where}: label {hi} but only {len(names)} class names ({names[0]!r}..{names[-1]!r}, labels "
            f"0..{len(names) - 1}); put a classes.json naming every class beside the files"
        )
    return names
