"""Segmentation data: generated scenes (seeded, masks match the drawn objects) and real-set folder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab4f.errors import ConfigError, DataError
from lab4f.segmentation.data import (
    DIGIT_THRESHOLD,
    IGNORE_INDEX,
    SHAPE_CLASSES,
    generate_scenes,
    generated_splits,
    load_carvana,
    load_voc2012,
)


def test_shapes_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    a, b = generate_scenes(20, 48, seed=3), generate_scenes(20, 48, seed=3)
    c = generate_scenes(20, 48, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)
    assert a.images.shape == (20, 1, 48, 48) and a.masks.shape == (20, 48, 48)
    assert a.class_names == SHAPE_CLASSES and a.images.dtype == torch.float32


def test_shape_masks_cover_exactly_the_bright_objects() -> None:
    s = generate_scenes(30, 48, seed=0, noise_std=0.0)
    img, mask = s.images[:, 0], s.masks
    # objects have intensity >= 0.5, the background is exactly 0 without noise
    assert torch.equal(mask > 0, img > 0)
    assert float(img[mask > 0].min()) >= 0.5 - 1e-6
    assert set(mask.unique().tolist()) == {0, 1, 2, 3}
    # each object (a connected component): a square fills its bounding box, a disc ~pi/4 of it, a triangle ~1/2
    from scipy import ndimage

    fills: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for i in range(len(s)):
        for cls in (1, 2, 3):
            labels, n = ndimage.label((mask[i] == cls).numpy())
            for box in ndimage.find_objects(labels):
                area = (box[0].stop - box[0].start) * (box[1].stop - box[1].start)
                fills[cls].append(float((labels[box] > 0).sum()) / area)
    assert min(fills[1]) == 1.0
    assert 0.70 <= np.median(fills[2]) <= 0.86
    assert 0.45 <= np.median(fills[3]) <= 0.62


def test_digit_scenes_use_real_digits_with_thresholded_masks() -> None:
    digits = torch.zeros(2, 1, 28, 28)
    digits[0, 0, 4:24, 10:18] = 1.0  # a bar labelled 7
    digits[1, 0, 6:22, 6:22] = 0.8  # a block labelled 2
    s = generate_scenes(10, 64, seed=1, kind="digits", noise_std=0.0, digit_images=digits,
                        digit_labels=torch.tensor([7, 2]))
    assert set(s.masks.unique().tolist()) <= {0, 3, 8} and len(s.class_names) == 11
    assert torch.all(s.images[:, 0][s.masks > 0] > DIGIT_THRESHOLD)
    assert torch.all(s.images[:, 0][s.images[:, 0] > 0.95] > 0)


def test_generated_splits_differ_and_bad_kind_is_config_error() -> None:
    sp = generated_splits("shapes", 8, 4, 4, 32, seed=0)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (8, 4, 4)
    assert not torch.equal(sp.train.images[:4], sp.val.images)
    with pytest.raises(ConfigError, match="shapes, digits"):
        generate_scenes(2, 48, kind="cars")


def _write_rgb(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_carvana_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train_masks").mkdir()
    for i, ext in ((0, ".gif"), (1, ".png")):
        _write_rgb(tmp_path / "train" / f"car{i}.jpg", 100 + 50 * i)
        m = np.zeros((10, 12), np.uint8)
        m[2:6, 3:9] = 255 if ext == ".png" else 1
        Image.fromarray(m).save(tmp_path / "train_masks" / f"car{i}_mask{ext}")
    s = load_carvana(tmp_path)
    assert s.images.shape == (2, 1, 10, 12) and s.class_names == ("background", "car")
    assert int(s.masks.sum()) == 2 * 4 * 6 and s.masks[:, 2:6, 3:9].eq(1).all()
    assert abs(float(s.images[0].mean()) - 100 / 255) < 0.02  # JPEG of a flat gray
    small = load_carvana(tmp_path, image_size=5)
    assert small.images.shape == (2, 1, 5, 5) and small.masks.shape == (2, 5, 5)
    (tmp_path / "train" / "car2.jpg").write_bytes((tmp_path / "train" / "car0.jpg").read_bytes())
    with pytest.raises(DataError, match="car2_mask.gif"):
        load_carvana(tmp_path)


def test_carvana_missing_folder_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train_masks"):
        (tmp_path / "train").mkdir()
        load_carvana(tmp_path)


def _voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    ids = ["2007_000032", "2007_000039"]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[1] + "\n")
    for k, i in enumerate(ids):
        _write_rgb(root / "JPEGImages" / f"{i}.jpg", 80)
        idx = np.zeros((10, 12), np.uint8)
        idx[1:4, 1:5] = 15 if k == 0 else 1  # person / aeroplane
        idx[0, :] = 255  # void border
        pal = Image.fromarray(idx, mode="P")
        pal.putpalette([0, 0, 0, 128, 0, 0] + [64] * (3 * 254))
        pal.save(root / "SegmentationClass" / f"{i}.png")
    return tmp_path / "VOCdevkit"


def test_voc_layout_reads_palette_indices_and_void(tmp_path: Path) -> None:
    devkit = _voc(tmp_path)
    s = load_voc2012(devkit, "train")
    assert len(s) == 2 and s.num_classes == 21 and s.class_names[15] == "person"
    assert s.masks[0, 1:4, 1:5].eq(15).all() and s.masks[1, 1:4, 1:5].eq(1).all()
    assert s.masks[:, 0].eq(IGNORE_INDEX).all()
    assert int((s.masks == 0).sum()) == 2 * (9 * 12 - 12)
    assert len(load_voc2012(devkit / "VOC2012", "val")) == 1


def test_voc_missing_files_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ImageSets/Segmentation/train.txt"):
        load_voc2012(tmp_path)
    devkit = _voc(tmp_path)
    (devkit / "VOC2012/SegmentationClass/2007_000039.png").unlink()
    with pytest.raises(DataError, match="2007_000039.png"):
        load_voc2012(devkit)
