"""Your own data as a data set: folder:PATH (any bit depth), idx:PATH and npz:FILE with their own class names; a
test split carved from the training files when none is given; exact duplicates on one side of every split."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab4f.data import load_dataset, pixel_hashes, stratified_split
from lab4f.errors import ConfigError, DataError
from tests.core.test_data import write_idx, write_mnist


def noise16(rng: np.random.Generator, size: int = 12) -> np.ndarray:
    return rng.integers(0, 65536, (size, size)).astype(np.uint16)


def make_folder(root: Path, classes: dict[str, int], seed: int = 0, size: int = 12) -> Path:
    """``root/<class>/<i>.png``: 16-bit random images, ``classes[name]`` of each."""
    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(noise16(rng, size)).save(root / name / f"{i}.png")
    return root


def split_keys(splits) -> list[set[bytes]]:
    return [set(pixel_hashes(ds.images)) for ds in (splits.train, splits.val, splits.test)]


def test_folder_reads_every_depth_exactly_with_the_folder_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a16, a8 = noise16(rng, 8), rng.integers(0, 256, (8, 8)).astype(np.uint8)
    a12 = rng.integers(0, 4096, (8, 8)).astype(np.uint16)
    f = rng.random((8, 8)).astype(np.float32)
    for name in ("2", "10", "1"):
        (tmp_path / name).mkdir()
    Image.fromarray(a16).save(tmp_path / "10" / "a.png")
    Image.fromarray(a8).save(tmp_path / "2" / "b.png")
    Image.fromarray(a12).save(tmp_path / "1" / "c.tif", tiffinfo={281: 4095})
    Image.fromarray(f).save(tmp_path / "1" / "d.tif")
    splits = load_dataset(f"folder:{tmp_path}", val_fraction=0.0, test_fraction=0.0)
    assert splits.class_names == ("1", "2", "10")  # integer names sort as numbers
    assert (
        splits.name == f"folder:{tmp_path.resolve()}"
        and splits.in_channels == 1
        and splits.image_size == (8, 8)
    )
    got = {int(y): [] for y in splits.train.labels}
    for x, y in zip(splits.train.images, splits.train.labels, strict=True):
        got[int(y)].append(x[0].numpy())
    np.testing.assert_allclose(got[2][0], a16 / 65535.0, atol=1e-7)  # full 16-bit depth, not 8
    np.testing.assert_allclose(got[1][0], a8 / 255.0, atol=1e-7)
    lab1 = sorted(got[0], key=lambda a: float(a.sum()))
    expected = sorted([a12 / 4095.0, f], key=lambda a: float(a.sum()))
    for a, e in zip(lab1, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6)


def test_classes_json_fixes_the_order_and_refuses_unknown_subfolders(tmp_path: Path) -> None:
    make_folder(tmp_path, {"dog": 4, "cat": 4})
    (tmp_path / "classes.json").write_text(json.dumps(["dog", "cat", "owl"]))
    splits = load_dataset(f"folder:{tmp_path}", val_fraction=0.0, test_fraction=0.0)
    assert splits.class_names == ("dog", "cat", "owl") and splits.num_classes == 3
    assert any("['owl'] have no training images" in w for w in splits.warnings)
    assert sorted(splits.train.labels.tolist()) == [0] * 4 + [1] * 4
    (tmp_path / "classes.json").write_text(json.dumps(["dog"]))
    with pytest.raises(
        DataError, match=r"subfolder\(s\) \['cat'\] are not classes in .*classes.json"
    ):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(DataError, match="classes.json: not a readable JSON file"):
        load_dataset(f"folder:{tmp_path}")


def test_a_test_split_is_carved_seeded_and_stratified_instead_of_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 20, "b": 10})
    one, again, other = (load_dataset(f"folder:{tmp_path}", split_seed=s) for s in (0, 0, 1))
    assert [ds.labels.bincount(minlength=2).tolist() for ds in (one.train, one.val, one.test)] == [
        [14, 7],
        [2, 1],
        [4, 2],
    ]
    assert torch.equal(one.test.images, again.test.images) and not torch.equal(
        one.test.images, other.test.images
    )
    assert one.identity["carved"] == {"val": 0.1, "test": 0.2}
    keys = split_keys(one)
    assert sum(map(len, keys)) == 30 and not (
        keys[0] & keys[2] or keys[1] & keys[2] or keys[0] & keys[1]
    )


def test_exact_duplicates_never_straddle_a_split(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 12, "b": 12})
    for cls in ("a", "b"):  # five extra copies of every image: a per-image split would scatter them
        for i in range(12):
            for k in range(5):
                shutil.copy(tmp_path / cls / f"{i}.png", tmp_path / cls / f"{i}-copy{k}.png")
    for seed in range(4):
        splits = load_dataset(
            f"folder:{tmp_path}", split_seed=seed, val_fraction=0.2, test_fraction=0.3
        )
        keys = split_keys(splits)
        assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
        assert (
            len(splits.train) + len(splits.val) + len(splits.test) == 144
            and len(splits.test) % 6 == 0
        )
    assert splits.identity["duplicates"]["copies"] == 120


def test_a_given_test_split_is_kept_and_its_copies_leave_training(tmp_path: Path, caplog) -> None:
    make_folder(tmp_path / "train", {"x": 8, "y": 8}, seed=1)
    make_folder(tmp_path / "test", {"x": 3, "y": 3}, seed=2)
    shutil.copy(tmp_path / "test" / "y" / "0.png", tmp_path / "train" / "y" / "leak.png")
    with caplog.at_level(logging.WARNING, logger="lab4f.data"):
        splits = load_dataset(f"folder:{tmp_path}", val_fraction=0.25)
    assert len(splits.test) == 6 and splits.test.labels.tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]  # whole, in file order
    assert (len(splits.train), len(splits.val)) == (12, 4)  # 16 training files, the copy left out
    keys = split_keys(splits)
    assert not (keys[2] & (keys[0] | keys[1]))
    assert splits.identity["duplicates"]["left_out_of_train"] == 1
    assert (
        "1 training image(s) are exact copies of test images and were left out of training (e.g. train/y/leak.png)"
        in caplog.text
    )


def test_images_of_other_sizes_are_resized_and_unreadable_ones_skipped(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 3, "b": 3}, size=10)
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(tmp_path / "b" / "wide.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    splits = load_dataset(f"folder:{tmp_path}", val_fraction=0.0, test_fraction=0.0)
    assert splits.image_size == (10, 10) and len(splits.train) == 7
    assert any(
        "1 image(s) of other sizes than the most common 10x10 were resized" in w
        for w in splits.warnings
    )
    assert any("1 unreadable image(s) skipped: a/broken.png" in w for w in splits.warnings)


def test_folder_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match="a folder was not found at .*nope.*one subfolder of images per class"
    ):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(
        ConfigError, match="unknown dataset 'flder:x'.*or your own data: folder:PATH, idx:PATH"
    ):
        load_dataset("flder:x")


def test_relative_folder_is_found_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "data" / "mine", {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    assert load_dataset("folder:data/mine", val_fraction=0, test_fraction=0).num_classes == 2
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    splits = load_dataset(
        "folder:mine", data_dir=tmp_path / "data", val_fraction=0, test_fraction=0
    )
    assert splits.source == str((tmp_path / "data" / "mine").resolve())


def test_idx_set_with_its_own_class_names_and_no_test_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    write_idx(tmp_path / "letters-train-images-idx3-ubyte", images, gz=True)
    write_idx(
        tmp_path / "letters-train-labels-idx1-ubyte", (np.arange(40) % 4).astype(np.uint8), gz=True
    )
    (tmp_path / "classes.json").write_text(json.dumps(["A", "B", "C", "D"]))
    splits = load_dataset(f"idx:{tmp_path}")
    assert splits.class_names == ("A", "B", "C", "D")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (
        28,
        4,
        8,
    )  # carved, per class 7/1/2
    assert splits.test.labels.bincount().tolist() == [2, 2, 2, 2]
    assert (
        splits.identity["carved"] == {"val": 0.1, "test": 0.2} and splits.warnings == ()
    )  # carving is no fault
    (tmp_path / "classes.json").write_text(json.dumps(["A", "B"]))
    with pytest.raises(
        DataError, match=r"label 3 but only 2 class names \('A'..'B', labels 0..1\); put a"
    ):
        load_dataset(f"idx:{tmp_path}")


def test_mnist_without_test_files_carves_a_test_split(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False, n_train=50)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
    splits = load_dataset(
        "mnist", data_dir=tmp_path
    )  # was: "t10k-images-idx3-ubyte not found ... yann.lecun.com"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 0, 10)
    assert (
        splits.test.labels.bincount().tolist() == [1] * 10
        and splits.identity["carved"]["test"] == 0.2
    )
    assert any(
        "has no test files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte): the test split is carved"
        in w
        for w in splits.warnings
    )  # MNIST comes with its test files: say that these were missing
    (tmp_path / "classes.json").write_text(json.dumps([f"k{i}" for i in range(10)]))
    assert load_dataset("mnist", data_dir=tmp_path).class_names[3] == "k3"


def test_npz_sets_channels_last_uint16_and_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 65536, (30, 7, 7, 1)).astype(np.uint16)
    xt = rng.integers(0, 65536, (6, 7, 7, 1)).astype(np.uint16)
    np.savez(
        tmp_path / "set.npz",
        x_train=x,
        y_train=np.arange(30) % 3,
        x_test=xt,
        y_test=np.arange(6) % 3,
        class_names=np.array(["zero", "one", "two"]),
    )
    splits = load_dataset(f"npz:{tmp_path / 'set.npz'}", val_fraction=0.2)
    assert (
        splits.class_names == ("zero", "one", "two")
        and splits.image_size == (7, 7)
        and splits.in_channels == 1
    )
    np.testing.assert_allclose(splits.test.images[:, 0].numpy(), xt[..., 0] / 65535.0, atol=1e-7)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 6)
    pool = rng.random((20, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "pool.npz", x=pool, y=np.arange(20) % 2)
    (tmp_path / "pool.classes.json").write_text(json.dumps(["left", "right"]))
    splits = load_dataset(f"npz:{tmp_path / 'pool.npz'}")
    assert splits.class_names == ("left", "right") and len(splits.test) == 4
    np.savez(tmp_path / "bad.npz", x=pool * 3, y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"float images must hold intensities in \[0, 1\]"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "keys.npz", pixels=pool)
    with pytest.raises(DataError, match=r"holds \['pixels'\]; it must hold x_train and y_train"):
        load_dataset(f"npz:{tmp_path / 'keys.npz'}")


def test_grouped_split_is_the_per_image_split_without_duplicates_and_keeps_groups_whole() -> None:
    labels = torch.tensor([0] * 30 + [1] * 20)
    plain = stratified_split(labels, (0.2, 0.3), seed=7)
    grouped = stratified_split(labels, (0.2, 0.3), seed=7, groups=np.arange(50))
    assert all(torch.equal(a, b) for a, b in zip(plain, grouped, strict=True))
    groups = np.arange(50) // 5 * 5  # ten groups of five, each of one class
    parts = stratified_split(labels, (0.2, 0.3), seed=7, groups=groups)
    assert sorted(torch.cat(parts).tolist()) == list(range(50))
    where = {int(i): k for k, p in enumerate(parts) for i in p}
    assert all(len({where[i] for i in range(g, g + 5)}) == 1 for g in range(0, 50, 5))


def test_training_files_that_all_copy_the_test_split_are_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path / "test", {"x": 2, "y": 2})
    shutil.copytree(tmp_path / "test", tmp_path / "train")
    with pytest.raises(
        DataError, match="no training images are left: every one is an exact copy of a test image"
    ):
        load_dataset(f"folder:{tmp_path}")


def test_given_train_val_and_test_splits_are_used_as_they_are(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", {"x": 6, "y": 6}, seed=1)
    make_folder(tmp_path / "val", {"x": 2, "y": 2}, seed=2)
    make_folder(tmp_path / "test", {"x": 3, "y": 3}, seed=3)
    shutil.copy(
        tmp_path / "test" / "x" / "1.png", tmp_path / "val" / "y" / "copy.png"
    )  # a val copy of a test image
    splits = load_dataset(
        f"folder:{tmp_path}", val_fraction=0.5, test_fraction=0.3
    )  # nothing left to carve
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 4, 6)
    assert splits.identity["carved"] == {} and splits.identity["duplicates"]["left_out_of_val"] == 1
    assert any(
        "1 validation image(s) are exact copies of test images" in w for w in splits.warnings
    )
    keys = split_keys(splits)
    assert not (keys[1] & keys[2])
