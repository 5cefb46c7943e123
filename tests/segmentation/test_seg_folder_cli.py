"""`lab4f segment train|reproduce --dataset carvana|voc2012 --data-dir DIR` on tiny folders written here, the
errors a missing folder gives, the generated default unchanged, and a folder-trained student on the bench."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab4f.cli import main
from lab4f.segmentation.data import folder_splits, generated_splits

TINY = [
    "--canvas",
    "32",
    "--epochs",
    "1",
    "--widths",
    "4",
    "--decoder-width",
    "4",
    "--batch-size",
    "8",
]


def write_carvana(root: Path, cars: int = 10, views: int = 2) -> Path:
    """Kaggle layout: train/<car>_<view>.jpg and train_masks/<car>_<view>_mask.gif, a bright box = the car."""
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    rng = np.random.default_rng(0)
    for c in range(cars):
        for v in range(views):
            y, x = (int(t) for t in rng.integers(4, 20, 2))
            img = np.full((36, 48, 3), 30 + 3 * c, np.uint8)
            img[y : y + 12, x : x + 20] = 220
            stem = f"{c:04x}deadbeef_{v + 1:02d}"
            Image.fromarray(img).save(root / "train" / f"{stem}.jpg")
            m = np.zeros((36, 48), np.uint8)
            m[y : y + 12, x : x + 20] = 1
            Image.fromarray(m).save(root / "train_masks" / f"{stem}_mask.gif")
    return root


def write_voc(devkit: Path, n_train: int = 20, n_val: int = 5) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, palette SegmentationClass PNGs (a void border) and the split lists."""
    root = devkit / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    ids = [f"2007_{i:06d}" for i in range(n_train + n_val)]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    for k, i in enumerate(ids):
        cls = 1 + k % 3  # aeroplane, bicycle, bird
        img = np.full((30, 40, 3), 20, np.uint8)
        img[8:22, 10:30] = 80 * cls
        Image.fromarray(img).save(root / "JPEGImages" / f"{i}.jpg")
        idx = np.zeros((30, 40), np.uint8)
        idx[8:22, 10:30] = cls
        idx[0, :] = 255
        pal = Image.fromarray(idx, mode="P")
        pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [64] * (3 * 252))
        pal.save(root / "SegmentationClass" / f"{i}.png")
    return devkit


def _json(capsys) -> dict:  # noqa: ANN001
    return json.loads(capsys.readouterr().out)


def test_segment_train_on_carvana_folder(tmp_path: Path, capsys) -> None:
    root = write_carvana(tmp_path / "data" / "carvana")
    ckpt = tmp_path / "teacher.pt"
    argv = [
        "segment",
        "train",
        "--dataset",
        "carvana",
        "--data-dir",
        str(tmp_path / "data"),
        *TINY,
        "--out",
        str(ckpt),
        "--json",
    ]
    assert main(argv) == 0
    out = _json(capsys)
    ds = out["dataset"]
    assert out["ok"] and ds["name"] == "carvana" and ds["root"] == str(root.resolve())
    assert ds["source"] == f"carvana folder {root.resolve()}, 32x32 grayscale, split seed 0 (train)"
    assert ds["sizes"] == {"train": 16, "val": 2, "test": 2}  # 10 cars × 2 views: 8 / 1 / 1 cars
    assert (
        0.0 <= out["test"]["mean_iou"] <= 1.0
        and len(out["test"]["iou"]) == 2
        and out["test"]["n"] == 2
    )
    from lab4f.segmentation.train import load_seg_checkpoint

    _, cfg, meta = load_seg_checkpoint(ckpt)
    assert meta["dataset"]["source"] == ds["source"] and (cfg.in_channels, cfg.num_classes) == (
        1,
        2,
    )
    # a student must use the teacher's data: another split seed is refused, naming the flags
    student = [
        "segment",
        "train",
        "--kind",
        "student",
        "--teacher",
        str(ckpt),
        "--dataset",
        "carvana",
        "--data-dir",
        str(root),
        *TINY,
        "--out",
        str(tmp_path / "student.pt"),
        "--json",
    ]
    assert main([*student, "--data-seed", "1"]) == 2
    assert "--dataset/--data-dir/--canvas/--data-seed" in _json(capsys)["message"]
    assert (
        main(student) == 0
    )  # the folder itself as --data-dir: the same resolved root, the same data
    assert _json(capsys)["dataset"]["source"] == ds["source"]


def test_segment_train_on_voc_folder_with_caps(tmp_path: Path, capsys, monkeypatch) -> None:
    devkit = write_voc(tmp_path / "VOCdevkit")
    monkeypatch.setenv(
        "LAB4F_DATA", str(devkit)
    )  # no --data-dir: $LAB4F_DATA, as for classification
    argv = [
        "segment",
        "train",
        "--dataset",
        "voc2012",
        *TINY,
        "--out",
        str(tmp_path / "voc.pt"),
        "--json",
    ]
    assert main(argv) == 0
    ds = _json(capsys)["dataset"]
    assert ds["name"] == "voc2012" and ds["source"].startswith(
        f"voc2012 folder {(devkit / 'VOC2012').resolve()}"
    )
    assert ds["sizes"] == {
        "train": 18,
        "val": 2,
        "test": 5,
    }  # train.txt 20 − 10 % val; val.txt → test
    assert "val.txt as test" in ds["scheme"]
    assert (
        main([*argv[:-1], "--n-train", "6", "--n-test", "0", "--json"]) == 0
    )  # caps; 0 = the whole split
    out = _json(capsys)
    assert out["dataset"]["sizes"] == {"train": 6, "val": 2, "test": 5}
    assert len(out["test"]["iou"]) == 21 and math.isfinite(out["test"]["mean_iou"])


def test_segment_reproduce_on_carvana_folder(tmp_path: Path, capsys) -> None:
    root = write_carvana(tmp_path / "carvana")
    out_dir = tmp_path / "res"
    assert (
        main(
            [
                "segment",
                "reproduce",
                "--dataset",
                "carvana",
                "--data-dir",
                str(root),
                *TINY,
                "--seeds",
                "0",
                "--out",
                str(out_dir),
                "--json",
            ]
        )
        == 0
    )
    out = _json(capsys)
    assert out["dataset"]["name"] == "carvana" and out["dataset"]["sizes"] == {
        "train": 16,
        "val": 2,
        "test": 2,
    }
    assert sorted(r["model"] for r in out["rows"]) == ["linear", "student", "teacher"]
    assert all(0.0 <= r["mean_iou"] <= 1.0 for r in out["rows"])
    table = (out_dir / "table.md").read_text()
    assert f"carvana from {root.resolve()}" in table and "16 train / 2 val / 2 test" in table
    summary = json.loads((out_dir / "summary.json").read_text())
    assert (
        summary["config"]["dataset"] == "carvana"
        and summary["dataset"]["source"] == out["dataset"]["source"]
    )


def test_missing_folder_and_scenes_with_a_folder_dataset_are_refused(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("LAB4F_DATA", raising=False)
    base = ["segment", "train", "--dataset", "carvana", *TINY, "--json"]
    assert main([*base, "--data-dir", str(tmp_path / "nothing")]) == 2
    err = _json(capsys)
    assert err["ok"] is False and err["error"] == "DataError"
    assert (
        "train_masks" in err["message"]
        and "--data-dir" in err["message"]
        and "$LAB4F_DATA" in err["message"]
    )
    assert (
        main(
            [
                "segment",
                "reproduce",
                "--dataset",
                "voc2012",
                "--data-dir",
                str(tmp_path),
                *TINY,
                "--json",
            ]
        )
        == 2
    )
    assert "ImageSets/Segmentation/train.txt" in _json(capsys)["message"]
    write_carvana(tmp_path / "c")
    assert main([*base, "--data-dir", str(tmp_path / "c"), "--scenes", "digits"]) == 2
    err = _json(capsys)
    assert err["error"] == "ConfigError" and "--scenes digits" in err["message"]
    assert main([*base, "--data-dir", str(tmp_path / "c"), "--n-val", "-1"]) == 2


def test_generated_default_is_unchanged(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LAB4F_DATA", str(tmp_path / "not-used"))  # generated scenes never read it
    ckpt = tmp_path / "g.pt"
    assert (
        main(
            [
                "segment",
                "train",
                *TINY,
                "--n-train",
                "8",
                "--n-val",
                "4",
                "--n-test",
                "4",
                "--out",
                str(ckpt),
                "--json",
            ]
        )
        == 0
    )
    out = _json(capsys)
    expected = generated_splits("shapes", 8, 4, 4, 32, seed=0)
    assert (
        out["dataset"]["name"] == "generated" and out["dataset"]["source"] == expected.train.source
    )
    assert (
        out["dataset"]["sizes"] == {"train": 8, "val": 4, "test": 4}
        and len(out["test"]["iou"]) == 4
    )
    from lab4f.bench.segrun import load_seg_for_bench

    _, cfg, _ = load_seg_for_bench(ckpt)
    assert (cfg.scenes, cfg.image_size, cfg.data_seed, cfg.dataset) == ("shapes", 32, 0, None)


def test_folder_trained_student_on_the_bench(tmp_path: Path, capsys, monkeypatch) -> None:
    from lab4f.bench.segrun import bench_scenes, load_seg_for_bench
    from lab4f.errors import ConfigError, DataError

    root = write_carvana(tmp_path / "carvana")
    teacher, student = tmp_path / "t.pt", tmp_path / "s.pt"
    common = ["--dataset", "carvana", "--data-dir", str(root), *TINY]
    assert main(["segment", "train", *common, "--out", str(teacher), "--json"]) == 0
    assert (
        main(
            [
                "segment",
                "train",
                "--kind",
                "student",
                "--teacher",
                str(teacher),
                "--detection",
                "incoherent",
                *common,
                "--out",
                str(student),
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    _, cfg, _ = load_seg_for_bench(student)
    assert (cfg.dataset, cfg.data_root, cfg.image_size, cfg.data_seed, cfg.scenes) == (
        "carvana",
        str(root.resolve()),
        32,
        0,
        None,
    )
    trained_on = folder_splits("carvana", root, 32, 0)
    got = bench_scenes(cfg, "test")
    assert torch.equal(got.images, trained_on.test.images) and torch.equal(
        got.masks, trained_on.test.masks
    )
    assert torch.equal(bench_scenes(cfg, "train", limit=3).images, trained_on.train.images[:3])
    with pytest.raises(ConfigError, match="drop --scenes"):
        bench_scenes(cfg, "test", scenes="shapes")
    with pytest.raises(ConfigError, match="different split"):
        bench_scenes(cfg, "test", data_seed=4)
    moved = root.rename(tmp_path / "moved")
    monkeypatch.delenv("LAB4F_DATA", raising=False)
    with pytest.raises(DataError, match="restore it there, or set \\$LAB4F_DATA"):
        bench_scenes(cfg, "test")
    monkeypatch.setenv("LAB4F_DATA", str(moved))
    assert torch.equal(bench_scenes(cfg, "test").masks, trained_on.test.masks)
    # the whole `lab4f run` on a simulated 32×32 bench (no calibration: only that it runs the folder's test split)
    toml = tmp_path / "bench32.toml"
    toml.write_text(
        '[display]\ndriver = "SimulatedDisplay"\nsettings = { shape = [32, 32], black_level = 1e-4 }\n'
    )
    run = tmp_path / "run.h5"
    assert (
        main(
            [
                "run",
                "--checkpoint",
                str(student),
                "--config",
                str(toml),
                "--out",
                str(run),
                "--json",
            ]
        )
        == 0
    )
    m = _json(capsys)
    assert m["task"] == "segmentation" and m["n"] == 2 and m["scenes"].startswith("carvana folder ")
    assert m["scenes"].endswith("split seed 0 (test)") and run.is_file()
