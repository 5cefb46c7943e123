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
    folder_split,
    folder_splits,
    generate_scenes,
    generated_splits,
    load_carvana,
    load_voc2012,
    parse_folder_source,
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
    s = generate_scenes(
        10,
        64,
        seed=1,
        kind="digits",
        noise_std=0.0,
        digit_images=digits,
        digit_labels=torch.tensor([7, 2]),
    )
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


# -- seeded splits of folder data sets --------------------------------------------------------------------------
def _carvana_cars(
    root: Path, cars: int = 10, views: int = 2, split: str = "train", first: int = 0
) -> list[int]:
    """``cars`` × ``views`` PNGs ``car<k>_<v>.png``, each a flat gray whose level (5 per image) names it, with a
    white 4×6 car matching its mask. Returns the levels written."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}_masks").mkdir(exist_ok=True)
    levels = []
    for c in range(first, first + cars):
        for v in range(views):
            level = 5 + 5 * len(levels) + 5 * first * views
            img = np.full((30, 40), level, np.uint8)
            img[10:20, 12:30] = 255
            Image.fromarray(img).save(root / split / f"car{c:02d}_{v + 1:02d}.png")
            m = np.zeros((30, 40), np.uint8)
            m[10:20, 12:30] = 1
            Image.fromarray(m).save(root / f"{split}_masks" / f"car{c:02d}_{v + 1:02d}_mask.gif")
            levels.append(level)
    return levels


def _levels(s) -> list[int]:  # noqa: ANN001 — which written images a loaded set holds (by their gray level)
    return [int(round(float(x) * 255)) for x in s.images[:, 0, 0, 0]]


def test_carvana_splits_80_10_10_by_car_seeded_and_capped_by_prefix(tmp_path: Path) -> None:
    _carvana_cars(tmp_path / "carvana")
    sp = folder_splits(
        "carvana", tmp_path, image_size=16, seed=0
    )  # found in the carvana/ subfolder
    assert (len(sp.train), len(sp.val), len(sp.test)) == (16, 2, 2) and sp.available == (16, 2, 2)
    assert sp.root == (tmp_path / "carvana").resolve()
    assert sp.train.images.shape == (16, 1, 16, 16) and set(sp.train.masks.unique().tolist()) == {
        0,
        1,
    }
    cars = {k: {(lv - 5) // 10 for lv in _levels(getattr(sp, k))} for k in ("train", "val", "test")}
    assert (len(cars["val"]), len(cars["test"])) == (1, 1)  # both views of one car
    assert not (
        cars["train"] & cars["val"] or cars["train"] & cars["test"] or cars["val"] & cars["test"]
    )
    again, other = (
        folder_splits("carvana", tmp_path, 16, 0),
        folder_splits("carvana", tmp_path, 16, 5),
    )
    assert _levels(again.test) == _levels(sp.test) and _levels(again.train) == _levels(sp.train)
    assert _levels(other.train) != _levels(sp.train)
    capped = folder_splits("carvana", tmp_path, 16, 0, limit=(5, 0, 1))
    assert _levels(capped.train) == _levels(sp.train)[:5] and _levels(capped.val) == _levels(sp.val)
    assert _levels(capped.test) == _levels(sp.test)[:1]
    assert "10% of the cars each for val and test" in sp.scheme
    assert parse_folder_source(sp.test.source) == ("carvana", str(sp.root), 16, 0, "test")
    assert torch.equal(folder_split("carvana", sp.root, 16, 0, "test").images, sp.test.images)


def test_carvana_uses_its_own_test_folder(tmp_path: Path) -> None:
    _carvana_cars(tmp_path)
    test_levels = _carvana_cars(tmp_path, cars=3, views=1, split="test", first=20)
    sp = folder_splits("carvana", tmp_path, 8, seed=1)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (18, 2, 3)
    assert sorted(_levels(sp.test)) == sorted(test_levels)
    assert "test/ as test" in sp.scheme and "for val," in sp.scheme


def test_voc_splits_hold_out_val_from_train_and_test_on_val_txt(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    ids = [f"2008_{i:06d}" for i in range(25)]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:20]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[20:]) + "\n")
    for k, i in enumerate(ids):
        Image.fromarray(np.full((10, 12), 5 + 5 * k, np.uint8)).save(
            root / "JPEGImages" / f"{i}.jpg", quality=100
        )
        Image.fromarray(np.full((10, 12), k % 21, np.uint8), mode="L").convert("P").save(
            root / "SegmentationClass" / f"{i}.png"
        )
    sp = folder_splits("voc2012", tmp_path, 8, seed=0)  # found in VOCdevkit/VOC2012
    assert (len(sp.train), len(sp.val), len(sp.test)) == (18, 2, 5) and sp.train.num_classes == 21
    mask_ids = {k: set(getattr(sp, k).masks[:, 0, 0].tolist()) for k in ("train", "val", "test")}
    assert mask_ids["test"] == {20, 0, 1, 2, 3} and not (mask_ids["train"] & mask_ids["val"])
    assert "val.txt as test" in sp.scheme


def test_folder_data_dir_follows_lab4f_data_and_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    _carvana_cars(tmp_path / "env" / "carvana", cars=4, views=1)
    monkeypatch.setenv("LAB4F_DATA", str(tmp_path / "env"))
    assert len(folder_splits("carvana", None, 8).train) == 2
    with pytest.raises(
        DataError, match=r"voc2012 data set not found .*\$LAB4F_DATA\).*--data-dir DIR"
    ):
        folder_splits("voc2012", None, 8)
    with pytest.raises(DataError, match=r"\(--data-dir\).*train_masks/"):
        folder_splits("carvana", tmp_path / "nowhere", 8)
    with pytest.raises(DataError, match="too few"):
        _carvana_cars(tmp_path / "two", cars=2, views=1)
        folder_splits("carvana", tmp_path / "two", 8)
    with pytest.raises(ConfigError, match="carvana, voc2012"):
        folder_splits("cityscapes", tmp_path, 8)
