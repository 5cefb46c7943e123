"""Images from a plain folder for `lab4f run --images`: grayscale intensity in [0, 1] at the model's size.

``FOLDER/*.png`` gives unlabelled images (label −1); ``FOLDER/<class>/*.png`` (ImageFolder layout) labels each
image with its subfolder's index in the given class names — `lab4f run` passes the checkpoint's, so ``7/`` holds
class "7" whatever other subfolders exist — or, without names, in the sorted subfolder names. A subfolder that
is not one of the given names is unlabelled (−1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lab4f.data import resize
from lab4f.errors import DataError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"}


def _read(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path} is not a readable image ({exc}); remove it or convert it to PNG") from exc


def load_image_folder(folder: str | Path, image_size: int,
                      class_names: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images (B, 1, S, S), labels (B,), file names) from ``folder``."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"--images {folder} is a file, not a folder: put the image(s) in a folder (or in class "
                        f"subfolders of it) and pass the folder, e.g. --images {folder.parent}")
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; pass a folder of images (subfolders = class names)")
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir())
    names = list(class_names) if class_names else [d.name for d in subdirs]
    files: list[tuple[Path, int]] = [(p, -1) for p in sorted(folder.iterdir()) if p.suffix.lower() in EXTENSIONS]
    for d in subdirs:
        label = names.index(d.name) if d.name in names else -1
        files += [(p, label) for p in sorted(d.iterdir()) if p.suffix.lower() in EXTENSIONS]
    if not files:
        raise DataError(f"no images ({', '.join(sorted(EXTENSIONS))}) in {folder} or its subfolders")
    images = [resize(torch.from_numpy(_read(p))[None, None], (image_size, image_size))[0] for p, _ in files]
    labels = torch.tensor([lab for _, lab in files], dtype=torch.int64)
    return torch.stack(images), labels, [str(p.relative_to(folder)) for p, _ in files]
