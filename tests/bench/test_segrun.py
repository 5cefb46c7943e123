"""The segmentation student on the simulated bench: checkpoint dispatch, scenes, overlays, and a full run —
train a tiny student (pixel KD), compile, calibrate on a 48×48 display, stream 40 test scenes — whose optical
mean IoU stays within a measured tolerance of the digital student's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.hybrid import load_bench_checkpoint
from lab4f.bench.segrun import (
    SegBenchConfig,
    bench_scenes,
    class_palette,
    overlay,
    run_segmentation,
    scene_spec,
)
from lab4f.checkpoint import make_metadata, save_checkpoint
from lab4f.errors import CompileError, ConfigError, MismatchError
from lab4f.segmentation import (
    SegConfig,
    SegTrainConfig,
    build_seg_model,
    generated_splits,
    train_segmentation,
)

CANVAS = 48
# The display's black level is 1e-4 (a 10,000:1 DMD), not the default 1e-3: with 48×48 pixels at black level
# the dim square under the calibration's point source biases the Fourier step's spot centroids (measured
# 0.95–1.15 px RMS at 1e-3, over its 0.5 px limit; 0.18 px at 1e-4).
BENCH48_TOML = f"""name = "simulated bench, {CANVAS}x{CANVAS} display"
[display]
driver = "SimulatedDisplay"
settings = {{ shape = [{CANVAS}, {CANVAS}], black_level = 1e-4 }}
"""
# measured on 40 scenes: optical − digital mean IoU −0.0002 and 0.0000 (pixel agreement 0.9994, 0.9968) in two
# calibrations; the bound leaves room for the camera noise's unseeded draw
IOU_TOLERANCE = 0.01


def _bench48() -> BenchConfig:
    return BenchConfig(
        display=DeviceConfig(
            driver="SimulatedDisplay", settings={"shape": (CANVAS, CANVAS), "black_level": 1e-4}
        )
    )


def _save_untrained(path: Path, kind: str, source: str) -> Path:
    cfg = SegConfig(kind=kind, widths=(4, 4), decoder_width=4)
    torch.manual_seed(0)
    meta = make_metadata(
        cfg,
        dataset={"source": source, "class_names": ["background", "square", "disc", "triangle"]},
        extra={"task": "segmentation"},
    )
    return save_checkpoint(path, build_seg_model(cfg), meta)


def test_scene_spec_reads_kind_canvas_and_data_seed() -> None:
    data = generated_splits("shapes", 2, 1, 1, canvas_size=40, seed=5)
    assert scene_spec({"dataset": {"source": data.train.source}}) == ("shapes", 40, 5)
    assert scene_spec({"dataset": {"source": "Carvana /data (train)"}}) is None
    assert scene_spec({}) is None


def test_segmentation_checkpoint_loads_for_the_bench(tmp_path) -> None:
    source = generated_splits("shapes", 2, 1, 1, canvas_size=CANVAS, seed=1).train.source
    model, cfg, meta = load_bench_checkpoint(_save_untrained(tmp_path / "s.pt", "student", source))
    assert isinstance(cfg, SegBenchConfig)
    assert (cfg.image_size, cfg.scenes, cfg.data_seed, cfg.kind, cfg.num_classes) == (
        CANVAS,
        "shapes",
        1,
        "student",
        4,
    )
    assert model.kernel_bank().to_numpy().shape == (4, 1, 5, 5)
    assert meta["task"] == "segmentation"
    with pytest.raises(ConfigError, match="generated scenes"):
        load_bench_checkpoint(
            _save_untrained(tmp_path / "c.pt", "student", "Carvana /data (train)")
        )


def test_compile_refuses_a_segmentation_teacher(tmp_path) -> None:
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.devices import Bench

    source = generated_splits("shapes", 2, 1, 1, canvas_size=CANVAS, seed=0).train.source
    with (
        Bench() as bench,
        pytest.raises(CompileError, match="teacher checkpoint with a nonlinear front end"),
    ):
        compile_checkpoint(
            _save_untrained(tmp_path / "t.pt", "teacher", source), bench, progress=False
        )


def test_bench_scenes_are_the_checkpoint_test_scenes() -> None:
    cfg = SegBenchConfig(SegConfig(kind="student"), CANVAS, "shapes", 2)
    trained_on = generated_splits(
        "shapes", 1000, 200, 400, CANVAS, seed=2
    ).test  # lab4f segment's default sizes
    got = bench_scenes(cfg, "test", limit=10)
    assert torch.equal(got.images, trained_on.images[:10]) and torch.equal(
        got.masks, trained_on.masks[:10]
    )
    assert len(bench_scenes(cfg, "val", data_seed=3)) == 200
    with pytest.raises(MismatchError, match="11 classes"):
        bench_scenes(cfg, "test", scenes="digits", limit=2)


def test_run_refuses_scenes_the_display_cannot_show() -> None:
    setup = SimpleNamespace(bench=SimpleNamespace(display=SimpleNamespace(shape=(28, 28))))
    data = generated_splits("shapes", 1, 1, 2, CANVAS, seed=0).test
    with pytest.raises(MismatchError, match=r"settings.shape = \[48, 48\]"):
        run_segmentation(setup, data)  # type: ignore[arg-type]


def test_overlay_tints_classes_and_leaves_background_gray() -> None:
    images = np.full((1, 2, 2), 0.5, np.float32)
    masks = np.array([[[0, 1], [2, 255]]], np.uint8)
    rgb = overlay(images, masks, 4, alpha=0.5)
    palette = class_palette(4)
    assert rgb.shape == (1, 2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0].tolist() == [128, 128, 128] and rgb[0, 1, 1].tolist() == [
        128,
        128,
        128,
    ]  # bg, ignored
    np.testing.assert_allclose(rgb[0, 0, 1], np.rint(255 * (0.25 + 0.5 * palette[1])), atol=0)
    np.testing.assert_allclose(rgb[0, 1, 0], np.rint(255 * (0.25 + 0.5 * palette[2])), atol=0)


@pytest.fixture(scope="module")
def seg_bench(tmp_path_factory) -> dict[str, Path]:
    """A tiny SCLC+KD segmentation student, compiled and the 48×48 bench calibrated for it (~40 s on 2 cores)."""
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.devices import Bench
    from lab4f.calibration import run_calibration
    from lab4f.optics.program import OpticalProgram

    folder = tmp_path_factory.mktemp("segbench")
    data = generated_splits("shapes", n_train=300, n_val=40, n_test=40, canvas_size=CANVAS, seed=0)
    arch = {
        "in_channels": 1,
        "num_classes": data.train.num_classes,
        "widths": (8, 8),
        "decoder_width": 12,
    }
    teacher = train_segmentation(
        SegConfig(kind="teacher", **arch),
        data.train,
        data.val,
        data.test,
        SegTrainConfig(epochs=3, seed=0),
    ).model
    train_segmentation(
        SegConfig(kind="student", detection="incoherent", **arch),
        data.train,
        data.val,
        data.test,
        SegTrainConfig(epochs=3, seed=0),
        teacher=teacher,
        checkpoint_path=folder / "student.pt",
    )
    (folder / "bench48.toml").write_text(BENCH48_TOML)
    with Bench(_bench48()) as bench:
        _, program_path, _ = compile_checkpoint(
            folder / "student.pt", bench, folder / "p.h5", progress=False
        )
        run_calibration(
            bench,
            "all",
            program=OpticalProgram.load(program_path),
            program_path=program_path,
            out_dir=folder / "cal",
        )
    return {
        "checkpoint": folder / "student.pt",
        "program": program_path,
        "calibration": folder / "cal",
        "config": folder / "bench48.toml",
        "folder": folder,
    }


@pytest.mark.slow
def test_segmentation_student_on_the_calibrated_bench(seg_bench) -> None:
    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import prepare
    from lab4f.bench.segrun import save_overlay_pngs, save_seg_run
    from lab4f.calibration import latest_record
    from lab4f.segmentation import evaluate_segmentation

    with Bench(_bench48()) as bench:
        record = latest_record(seg_bench["calibration"], bench=bench)
        record.apply(bench)
        setup = prepare(bench, seg_bench["checkpoint"], record=record, program=seg_bench["program"])
        data = bench_scenes(setup.model_cfg, "test", limit=40)
        result = run_segmentation(setup, data)
        path = save_seg_run(
            seg_bench["folder"] / "run.h5", result, setup, str(seg_bench["checkpoint"])
        )
        pngs = save_overlay_pngs(path, result)
    m = result.metrics()
    print(
        f"40 scenes: digital mean IoU {m['digital_mean_iou']:.4f}, optical {m['optical_mean_iou']:.4f}, "
        f"gap {m['mean_iou_gap']:+.4f}, pixel agreement {m['pixel_agreement']:.4f}, dice optical "
        f"{m['optical_mean_dice']:.4f} digital {m['digital_mean_dice']:.4f}, {m['frames_per_s']:.0f} frames/s"
    )
    assert m["processed"] == 40 and m["dropped"] == 0 and m["error"] is None
    # the digital side is the student itself: the same score lab4f's evaluation gives on these scenes
    assert m["digital_mean_iou"] == pytest.approx(
        evaluate_segmentation(setup.student, data)["mean_iou"], abs=1e-12
    )
    background_only = result.scores(np.zeros_like(result.truth))["mean_iou"]
    assert m["digital_mean_iou"] > background_only + 0.05, (
        background_only
    )  # the tiny student does segment
    assert abs(m["mean_iou_gap"]) <= IOU_TOLERANCE, m["mean_iou_gap"]
    assert m["pixel_agreement"] >= 0.99
    with h5py.File(path) as f:
        assert f.attrs["kind"] == "segmentation_run"
        for name in ("truth_masks", "optical_masks", "digital_masks"):
            assert f[name].shape == (40, CANVAS, CANVAS) and f[name].dtype == np.uint8
        np.testing.assert_array_equal(f["optical_masks"][:], result.optical)
        overlays = f["overlays"][:]
        assert overlays.shape == (40, CANVAS, CANVAS, 3)
        tinted = np.any(overlays != overlays[..., :1], axis=-1)  # gray pixels have R = G = B
        np.testing.assert_array_equal(tinted, result.optical > 0)
        assert json.loads(f.attrs["metrics"])["optical_mean_iou"] == pytest.approx(
            m["optical_mean_iou"]
        )
    assert [p.name for p in pngs[:2]] == ["run_overlay.png", "run_0000_overlay.png"] and len(
        pngs
    ) == 9
    assert all(p.stat().st_size > 2000 for p in pngs)


@pytest.mark.slow
def test_lab4f_run_with_a_segmentation_checkpoint(seg_bench, capsys) -> None:
    from lab4f.cli import main

    out = seg_bench["folder"] / "cli" / "seg.h5"
    argv = [
        "run",
        "--checkpoint",
        str(seg_bench["checkpoint"]),
        "--calibration",
        str(seg_bench["calibration"]),
        "--program",
        str(seg_bench["program"]),
        "--config",
        str(seg_bench["config"]),
        "--limit",
        "12",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (
        payload["task"] == "segmentation" and payload["n"] == 12 and payload["run_file"] == str(out)
    )
    assert (
        "seed 2" in payload["scenes"]
    )  # the test split of the checkpoint's data seed 0 (generated_splits: 3·0+2)
    assert out.is_file() and (out.parent / "seg_overlay.png").is_file()
    assert len(list(out.parent.glob("seg_0*_overlay.png"))) == 8  # one per scene, beside the panel
    assert main([*argv[:-1], "--overwrite", "--images", "somewhere", "--json"]) == 2
    assert "the scenes it was trained on" in json.loads(capsys.readouterr().out)["message"]


@pytest.mark.slow
def test_lab4f_finetune_retrains_a_segmentation_decoder(seg_bench, capsys) -> None:
    """HIL fine-tuning of the decoder on captured features, scored by mean IoU, then used by `lab4f run --back`."""
    from lab4f.cli import main

    back = seg_bench["folder"] / "cli" / "seg_back.pt"
    common = [
        "--checkpoint",
        str(seg_bench["checkpoint"]),
        "--calibration",
        str(seg_bench["calibration"]),
        "--program",
        str(seg_bench["program"]),
        "--config",
        str(seg_bench["config"]),
    ]
    assert (
        main(
            [
                "finetune",
                *common,
                "--train-images",
                "300",
                "--epochs",
                "8",
                "--out",
                str(back),
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(
            "segmentation fine-tuning, optical test mean IoU",
            round(payload["test_mean_iou_before"], 4),
            "→",
            round(payload["test_mean_iou_after"], 4),
            "(val",
            round(payload["val_mean_iou_before"], 4),
            "→",
            round(payload["val_mean_iou_after"], 4),
            ")",
        )
    assert payload["metric"] == "mean_iou" and payload["train_images"] == 300
    history = payload["history"]
    assert len(history) == 8 and all("val_mean_iou" in h for h in history)
    assert (
        history[-1]["loss"] < history[0]["loss"]
    )  # the decoder does train on the captured features
    # the undertrained tiny student gains from more decoder training (validation: the checkpoint's 200 scenes)
    assert payload["val_mean_iou_after"] > payload["val_mean_iou_before"]
    tuned = torch.load(back, weights_only=True)
    original = load_bench_checkpoint(seg_bench["checkpoint"])[0].back.state_dict()
    assert any(not torch.equal(tuned[k], original[k]) for k in original)
    runs = {}
    for name, extra in (("plain", []), ("tuned", ["--back", str(back)])):
        out = seg_bench["folder"] / "cli" / f"seg_{name}.h5"
        assert main(["run", *common, *extra, "--limit", "12", "--out", str(out), "--json"]) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    assert runs["tuned"]["task"] == "segmentation" and runs["tuned"]["n"] == 12
    assert (
        runs["tuned"]["optical_mean_iou"] != runs["plain"]["optical_mean_iou"]
    )  # the fine-tuned decoder ran
    assert (
        main(["finetune", *common, "--dataset", "mnist5k", "--json"]) == 2
    )  # scenes, not a dataset
    assert "the scenes it was trained on" in json.loads(capsys.readouterr().out)["message"]
