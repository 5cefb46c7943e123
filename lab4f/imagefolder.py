"""Images from a plain folder for `lab4f run --images`: grayscale intensity in [0, 1] at the model's size.

``FOLDER/*.png`` gives unlabelled images (label −1); ``FOLDER/<class>/*.png`` (ImageFolder layout) labels each
image with its subfolder's index in the given class names — `lab4f run` passes the checkpoint's, so ``7/`` holds
class "7" whatever other subfolders exist — or, without names, in the sorted subfolder names. A subfolder that
is not one of the given names is unlabelled (−1).

**Bit depth.** Every image is read at the depth the file stores and normalised by that depth's full scale
(value / (2^bits − 1)): 1-, 8- and 16-bit integer PNG/TIFF (also 16-bit gray that Pillow hands over as 32-bit
integers), 12-bit data declared by the file (a TIFF ``MaxSampleValue`` of 4095 in 16-bit samples is divided by
4095; a PNG ``sBIT`` of 12 stores the values scaled to 16 bits, so they are divided by 65535), and 32-bit float
TIFF, which must already hold intensities in [0, 1]. The depth read is reported per image
(:attr:`ImageFolder.depths`). A 16-bit file whose largest value is below 1/16 of full scale is reported too: it
is probably 12-bit (or lower) data written without saying so, and looks dark.

**Colour.** An RGB image whose channels are equal is read as the gray image it is. A true colour image is
converted to luminance with the ITU-R BT.601 weights Y = 0.299 R + 0.587 G + 0.114 B (what Pillow's ``convert("L")``
used here before, now without rounding to 8 bits), and counted as converted. Refused, because they cannot be read
faithfully: colour with more than 8 bits per channel (Pillow reads it only at 8 bits), transparency (the
background it would be shown on is unknown), CMYK and other colour spaces, 32-bit integer images (no full scale),
float images outside [0, 1].

**Unreadable images** are skipped, counted and named (:attr:`ImageFolder.skipped`) so that one bad file does not end
a long run; ``strict=True`` (`lab4f run --strict-images`) makes the first one an error.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lab4f.data_io import resize
from lab4f.errors import DataError

log = logging.getLogger(__name__)

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"}
#: ITU-R BT.601 luma weights for R, G, B (the conversion of colour images; see the module docstring)
LUMA_BT601 = (0.299, 0.587, 0.114)


class ImageReadError(DataError):
    """One image file cannot be read faithfully (unreadable, or a format whose intensities are not defined)."""


@dataclass
class ImageFolder:
    """What :func:`read_image_folder` read: images (B, 1, S, S) in [0, 1], labels (B,), file names relative to the
    folder, the files skipped with the reason, and how many images were read at each depth."""

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    depths: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """For the run's summary: images read, per depth, and the files skipped (each with why)."""
        return {
            "read": len(self.files),
            "depths": dict(self.depths),
            "skipped": len(self.skipped),
            "skipped_files": list(self.skipped),
            "warnings": list(self.warnings),
        }


def _png_header(path: Path) -> tuple[int, int, int | None] | None:
    """(bit depth, colour type, significant bits or None) from a PNG's IHDR and sBIT chunks; None if not a PNG."""
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        depth = colour = None
        sbit = None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            data = fh.read(length)
            fh.read(4)  # CRC
            if kind == b"IHDR":
                depth, colour = data[8], data[9]
            elif kind == b"sBIT":
                sbit = max(data)
            elif kind in (b"IDAT", b"IEND"):
                break
    return None if depth is None or colour is None else (depth, colour, sbit)


def _tiff_tags(im: object) -> tuple[int | None, int | None, int | None]:
    """(bits per sample, sample format, max sample value) of a TIFF (None where the tag is absent)."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None, None, None

    def first(tag: int) -> int | None:
        value = tags.get(tag)
        if value is None:
            return None
        return int(value[0] if isinstance(value, tuple) else value)

    return first(258), first(339), first(281)


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """(intensity (H, W) float32 in [0, 1], the depth read, e.g. "16-bit") of one image; :class:`ImageReadError`
    when it cannot be read faithfully (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        png = _png_header(path) if path.suffix.lower() == ".png" else None
        with Image.open(path) as im:
            im.load()
            bits, sample_format, max_value = _tiff_tags(im)
            if png is not None:
                bits = png[0]
            return _intensity(im, bits, sample_format, max_value, png[2] if png else None, path)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageReadError(
            f"{path} is not a readable image ({exc}); remove it or convert it to PNG"
        ) from exc


def _intensity(
    im: object,
    bits: int | None,
    sample_format: int | None,
    max_value: int | None,
    sbit: int | None,
    path: Path,
) -> tuple[np.ndarray, str]:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    palette = mode in ("P", "PA")
    if palette:  # a palette holds colours: look them up exactly
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode, bits = im.mode, 8
    if bits is not None and bits > 8 and mode in ("RGB", "RGBA", "LA", "L"):
        raise ImageReadError(
            f"{path} has {bits} bits per channel ({mode}), which Pillow reads only at 8 bits; "
            "save it as 16-bit grayscale PNG or TIFF"
        )
    if mode == "1":
        return np.asarray(im, dtype=np.float32), "1-bit"
    if mode == "L":  # (Pillow scales 2- and 4-bit gray to 0..255)
        return np.asarray(
            im, dtype=np.float32
        ) / 255.0, f"{bits}-bit" if bits and bits < 8 else "8-bit"
    if mode.startswith("I;16") or (mode == "I" and bits == 16):
        a = np.asarray(im).astype(np.float32)
        if max_value is not None and 255 < max_value < 65535 and int(a.max()) <= max_value:
            depth = max_value.bit_length()
            return np.clip(a / max_value, 0, 1), f"{depth}-bit (TIFF MaxSampleValue {max_value})"
        label = (
            f"{sbit}-bit (PNG sBIT, stored scaled to 16)"
            if sbit is not None and sbit < 16
            else "16-bit"
        )
        return a / 65535.0, label
    if mode == "I":
        raise ImageReadError(
            f"{path} is a {bits or 32}-bit integer image, which has no defined full scale; save it "
            "as 16-bit integer or as float in [0, 1]"
        )
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        lo, hi = (float(np.min(a)), float(np.max(a))) if a.size else (0.0, 0.0)
        if not np.all(np.isfinite(a)) or lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageReadError(
                f"{path} is a float image with values in [{lo:.4g}, {hi:.4g}]; a float image must "
                "hold intensities in [0, 1] (lab4f cannot know its full scale)"
            )
        return np.clip(a, 0, 1), f"{bits or 32}-bit float" + (
            " (TIFF)" if sample_format == 3 else ""
        )
    if mode in ("LA", "RGBA"):
        a = np.asarray(im)
        if a[..., -1].min() < 255:
            raise ImageReadError(
                f"{path} is partly transparent; lab4f cannot tell what background it is shown "
                "on: flatten it onto black or white first"
            )
        im = im.convert("L" if mode == "LA" else "RGB")
        mode = im.mode
        if mode == "L":
            return np.asarray(im, dtype=np.float32) / 255.0, "8-bit"
    if mode == "RGB":
        rgb = np.asarray(im, dtype=np.float32) / 255.0
        kind = "8-bit palette" if palette else "8-bit"
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return rgb[..., 0].copy(), f"{kind} (gray stored as RGB)"
        return rgb @ np.asarray(LUMA_BT601, np.float32), f"{kind} colour → BT.601 luminance"
    raise ImageReadError(
        f"{path} is a {mode} image; lab4f reads grayscale, RGB and 16-bit/float images: save it "
        "as grayscale PNG or TIFF"
    )


def read_image_folder(
    folder: str | Path,
    image_size: int,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> ImageFolder:
    """The images of ``folder`` (see the module docstring), resized to ``image_size``²; unreadable ones are
    skipped and listed, or with ``strict`` the first one raises :class:`ImageReadError`."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(
            f"--images {folder} is a file, not a folder: put the image(s) in a folder (or in class "
            f"subfolders of it) and pass the folder, e.g. --images {folder.parent}"
        )
    if not folder.is_dir():
        raise DataError(
            f"image folder {folder} does not exist; pass a folder of images (subfolders = class names)"
        )
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir())
    names = list(class_names) if class_names else [d.name for d in subdirs]
    files: list[tuple[Path, int]] = [
        (p, -1) for p in sorted(folder.iterdir()) if p.suffix.lower() in EXTENSIONS
    ]
    for d in subdirs:
        label = names.index(d.name) if d.name in names else -1
        files += [(p, label) for p in sorted(d.iterdir()) if p.suffix.lower() in EXTENSIONS]
    if not files:
        raise DataError(
            f"no images ({', '.join(sorted(EXTENSIONS))}) in {folder} or its subfolders"
        )
    images, labels, kept = [], [], []
    skipped: list[dict[str, str]] = []
    depths: Counter[str] = Counter()
    dim16: list[str] = []
    for p, label in files:
        rel = str(p.relative_to(folder))
        try:
            a, depth = read_image(p)
        except ImageReadError as exc:
            if strict:
                raise ImageReadError(
                    f"{exc} (--strict-images: one unreadable image is an error; without it, "
                    "unreadable images are skipped and listed)"
                ) from exc
            log.warning("skipping %s: %s", p, exc)
            skipped.append({"file": rel, "reason": str(exc)})
            continue
        if depth == "16-bit" and a.size and float(a.max()) < 1 / 16:
            dim16.append(rel)
        depths[depth] += 1
        images.append(
            resize(
                torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None],
                (image_size, image_size),
            )[0]
        )
        labels.append(label)
        kept.append(rel)
    if not images:
        raise DataError(
            f"none of the {len(files)} images in {folder} could be read: "
            + "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        )
    warnings = []
    if dim16:
        warnings.append(
            f"{len(dim16)} 16-bit image(s) use less than 1/16 of the 16-bit range (e.g. {dim16[0]}): "
            "12-bit (or lower) data saved without saying so is read as 16-bit and looks dark; save it "
            "scaled to 16 bits, or declare the depth (TIFF MaxSampleValue, PNG sBIT)"
        )
    return ImageFolder(
        torch.stack(images),
        torch.tensor(labels, dtype=torch.int64),
        kept,
        skipped,
        depths,
        warnings,
    )


def load_image_folder(
    folder: str | Path,
    image_size: int,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images (B, 1, S, S), labels (B,), file names) from ``folder`` (:func:`read_image_folder`; the files it
    skipped are logged as warnings)."""
    result = read_image_folder(folder, image_size, class_names, strict)
    return result.images, result.labels, result.files
