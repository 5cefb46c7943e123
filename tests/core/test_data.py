"""Dataset loaders: real file formats written to tmp_path and read back, offline datasets, splits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lab4f.data import (
    DATASETS,
    NORMALISATION,
    available_datasets,
    load_dataset,
    make_loaders,
    read_idx,
    resolve_data_dir,
    stratified_split,
)
from lab4f.errors import ConfigError, DataError

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """Write ``array`` in the IDX format of the MNIST files (big-endian header and data)."""
    dtype = np.dtype(">i4") if array.dtype.kind == "i" else np.dtype(np.uint8)
    payload = bytes([0, 0, IDX_CODES[dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload += array.astype(dtype).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def tiny_images(n: int, seed: int, h: int = 5, w: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def write_mnist(
    folder: Path, gz: bool, n_train: int = 20, n_test: int = 7
) -> dict[str, np.ndarray]:
    """A tiny MNIST-format dataset with two of each label 0..9 in train; returns what was written."""
    arrays = {
        "train-images-idx3-ubyte": tiny_images(n_train, 1),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": tiny_images(n_test, 2),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 1, 0, 4, 1, 4][:n_test], dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip_uint8_and_int32(tmp_path: Path, gz: bool) -> None:
    images = tiny_images(3, 0)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", images, gz)), images)
    ints = np.array([[-5, 70000], [1, 2**31 - 1]], dtype=np.int64)
    back = read_idx(write_idx(tmp_path / "b-idx2-int", ints, gz))
    assert back.dtype == np.int32 and back.tolist() == ints.tolist()


@pytest.mark.parametrize(("subdir", "gz"), [("", False), ("mnist", True), ("MNIST/raw", False)])
def test_mnist_loads_exact_pixels_and_labels(tmp_path: Path, subdir: str, gz: bool) -> None:
    written = write_mnist(tmp_path / subdir, gz)
    splits = load_dataset("mnist", data_dir=tmp_path, val_fraction=0.5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 10, 7)
    assert splits.train.images.shape == (10, 1, 5, 6) and splits.train.images.dtype == torch.float32
    assert splits.train.labels.dtype == torch.int64
    assert sorted(splits.train.labels.tolist()) == list(
        range(10)
    )  # stratified: one of each of 2 per class
    # official test split kept whole and in file order, pixels scaled by exactly 1/255
    expected_test = torch.from_numpy(written["t10k-images-idx3-ubyte"]).float()[:, None] / 255
    assert torch.equal(splits.test.images, expected_test)
    assert splits.test.labels.tolist() == [7, 2, 1, 0, 4, 1, 4]
    # every train/val image is a written train image with its own label
    source = {
        written["train-images-idx3-ubyte"][i].tobytes(): int(written["train-labels-idx1-ubyte"][i])
        for i in range(20)
    }
    for ds in (splits.train, splits.val):
        for img, lab in zip(ds.images, ds.labels, strict=True):
            assert source[(img[0] * 255).round().to(torch.uint8).numpy().tobytes()] == int(lab)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, (5, 6))
    assert splits.source == str(tmp_path / subdir if subdir else tmp_path)


def test_fashion_mnist_from_env_var_with_class_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    monkeypatch.setenv("LAB4F_DATA", str(tmp_path))
    splits = load_dataset("fashion-mnist", val_fraction=0.1)
    assert (
        len(splits.train) + len(splits.val) == 20 and len(splits.val) == 0
    )  # round(0.1 * 2) == 0 per class
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"


def test_data_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB4F_DATA", raising=False)
    assert resolve_data_dir() == Path("~/.lab4f/data").expanduser()
    monkeypatch.setenv("LAB4F_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic_names_the_file(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, gz)
    path = tmp_path / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")
    payload = b"\x1f\x8b\x08\x03" + b"\x00" * 100  # neither IDX (0x0000..) nor, decompressed, gzip
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(
        DataError,
        match="train-images-idx3-ubyte.*bad IDX magic number 1f8b0803.*Get it from "
        "https://yann.lecun.com",
    ):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file_and_the_expected_size(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    payload = path.read_bytes()[:-3]
    path.unlink()
    if gz:
        path = path.with_name(path.name + ".gz")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    expected = 16 + 7 * 5 * 6
    with pytest.raises(
        DataError, match=rf"t10k-images-idx3-ubyte.*{expected - 3} bytes.*needs {expected}.*Get it"
    ):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_gzip_stream_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*gzip.*Get it from https://"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert (
        "train-labels-idx1-ubyte[.gz] not found" in message
        and str(tmp_path / "MNIST" / "raw") in message
    )
    assert "yann.lecun.com" in message and "LAB4F_DATA" in message and "data_dir" in message


def test_label_count_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, np.uint8), gz=False)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: expected 20 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"tiny",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def write_cifar(root: Path, n: int = 4) -> dict[str, dict[bytes, object]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)} | {
        "test_batch": cifar_batch(n, 9)
    }
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    for name, batch in {**batches, "batches.meta": {b"label_names": names}}.items():
        # the real files come from numpy 1.x, whose arrays pickle via numpy.core.multiarray
        payload = pickle.dumps(batch, protocol=2).replace(
            b"numpy._core.multiarray", b"numpy.core.multiarray"
        )
        (folder / name).write_bytes(payload)
    return batches


def test_cifar10_reads_channel_planes_exactly(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path)
    splits = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.0)
    assert (
        splits.in_channels == 3
        and splits.image_size == (32, 32)
        and splits.class_names[1] == "automobile"
    )
    test = batches["test_batch"]
    row = test[b"data"][2]
    img = splits.test.images[2]
    # a CIFAR row is the red plane, then green, then blue, each 32x32 row-major
    for c, h, w in [(0, 0, 0), (0, 31, 5), (1, 3, 17), (2, 30, 31)]:
        assert img[c, h, w].item() == pytest.approx(row[c * 1024 + h * 32 + w] / 255, abs=1e-7)
    assert splits.test.labels.tolist() == test[b"labels"]
    assert len(splits.train) == 20
    all_train = sorted(sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), []))
    assert sorted(splits.train.labels.tolist()) == all_train


def test_cifar10_wrong_keys_and_foreign_pickles_are_data_errors(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(pickle.dumps({b"pixels": np.zeros((1, 3072), np.uint8)}, protocol=2))
    with pytest.raises(
        DataError, match="data_batch_3: expected keys 'data' and 'labels'.*cs.toronto.edu"
    ):
        load_dataset("cifar10", data_dir=tmp_path)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    path.write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()  # the unpickler refused to call os.mkdir


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch not found.*cifar-10-python.tar.gz.*LAB4F_DATA"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_mnist5k_is_real_mnist() -> None:
    splits = load_dataset("mnist5k")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3500, 500, 1000)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, (28, 28))
    for ds, per_class in ((splits.train, 350), (splits.val, 50), (splits.test, 100)):
        assert ds.labels.bincount(minlength=10).tolist() == [per_class] * 10
    x = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    y = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels])
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    # the full MNIST training set has mean 0.1307 and std 0.3081 at this scaling
    assert x.mean().item() == pytest.approx(0.1307, abs=0.003)
    assert x.std().item() == pytest.approx(0.3081, abs=0.003)
    zero, one = x[y == 0].mean(0)[0], x[y == 1].mean(0)[0]
    assert zero[6:8, 12:16].mean() > 0.5 > 0.1 > zero[12:16, 12:16].mean()  # a ring with a hole
    assert one[6:22, 13:15].mean() > 0.4 > 0.05 > one[:, :6].mean()  # an upright stroke, centred
    assert "[0, 1]" in splits.normalisation and NORMALISATION == splits.normalisation


def test_splits_are_deterministic_per_seed_and_disjoint() -> None:
    a, b, c = (load_dataset("mnist5k", split_seed=s) for s in (3, 3, 4))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    keys = [{img.numpy().tobytes() for img in ds.images} for ds in (a.train, a.val, a.test)]
    assert sum(map(len, keys)) == 5000  # the 5,000 digits are all distinct
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_stratified_split_covers_every_index_once() -> None:
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 5)
    parts = stratified_split(labels, (0.2, 0.4), seed=1)
    assert sorted(torch.cat(parts).tolist()) == list(range(45))
    assert [labels[p].bincount(minlength=3).tolist() for p in parts] == [
        [4, 12, 2],
        [2, 6, 1],
        [4, 12, 2],
    ]


def test_digits8_and_resize_and_limit() -> None:
    splits = load_dataset("digits8", split_seed=0)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert splits.image_size == (8, 8) and splits.train.images.max().item() == 1.0
    assert torch.equal(splits.train.images * 16, (splits.train.images * 16).round())  # 0..16 / 16
    big = load_dataset("digits8", image_size=28, limit=50)
    assert (len(big.train), len(big.val), len(big.test)) == (50, 50, 50)
    image, label = big.train[0]
    assert image.shape == (1, 28, 28) and label.dtype == torch.int64
    x, _ = big.train.tensors
    assert x.shape == (50, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    # resizing keeps brightness: mean intensity within 2 % of the 8x8 original
    assert x.mean().item() == pytest.approx(big.train.images.mean().item(), rel=0.02)


def test_make_loaders_shuffle_is_seeded() -> None:
    splits = load_dataset("digits8", limit=200)
    first = [next(iter(make_loaders(splits, 32, seed=s)[0]))[1] for s in (5, 5, 6)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    _, val, test = make_loaders(splits, 32, seed=5)
    assert torch.equal(torch.cat([y for _, y in test]), splits.test.labels)  # val/test in order
    assert sum(len(y) for _, y in val) == len(splits.val)


def test_names_and_unknown_name() -> None:
    assert (
        available_datasets()
        == ["mnist5k", "digits8", "mnist", "fashion-mnist", "cifar10", "clutter-digits"]
        == list(DATASETS)
    )
    with pytest.raises(
        ConfigError, match="unknown dataset 'imagenet'; available: mnist5k, digits8, mnist"
    ):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="val_fraction"):
        load_dataset("digits8", val_fraction=0.5, test_fraction=0.5)


def test_splits_without_duplicates_are_those_of_the_per_image_split() -> None:
    """Keeping duplicates together changes nothing for data without any: checkpoints trained on a split seed
    before get the same test split now (the per-image split is spelled out here as it was)."""
    splits = load_dataset("mnist5k", split_seed=3)
    raw = DATASETS["mnist5k"](None)
    rng = np.random.default_rng(3)
    y = raw.labels.numpy()
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        counts = [int(round(f * len(idx))) for f in (0.1, 0.2)]
        for part, chunk in zip(
            parts, np.split(idx, np.cumsum([len(idx) - sum(counts), *counts])[:-1]), strict=True
        ):
            part.append(chunk)
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    assert torch.equal(splits.train.images, raw.images[train]) and torch.equal(
        splits.val.labels, raw.labels[val]
    )
    assert torch.equal(splits.test.images, raw.images[test])
    assert splits.identity["duplicates"] == {
        "copies": 0,
        "conflicting_label_groups": 0,
        "left_out_of_train": 0,
        "left_out_of_val": 0,
    }
