"""Pixel-wise KD math, IoU/Dice on hand-made masks, the SCLC front end, checkpoints and a tiny reproduce run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lab4f.errors import CheckpointError, ConfigError
from lab4f.segmentation.data import IGNORE_INDEX, generated_splits
from lab4f.segmentation.models import SegConfig, SegSCLC, build_seg_model
from lab4f.segmentation.reproduce import SegReproduceConfig, ordering_statement, reproduce
from lab4f.segmentation.train import (
    SegTrainConfig,
    confusion_matrix,
    load_seg_checkpoint,
    pixel_kd_loss,
    scores_from_confusion,
    train_segmentation,
)
from lab4f.spectral import stack_full


def test_pixel_kd_loss_equals_hand_computed_per_pixel_formula() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    y = torch.randint(0, 3, (2, 4, 5), generator=g)
    y[0, 0, :2] = IGNORE_INDEX
    T, alpha = 4.0, 0.3
    keep = y != IGNORE_INDEX
    kl_sum, ce_sum, n = 0.0, 0.0, int(keep.sum())
    for b in range(2):
        for i in range(4):
            for j in range(5):
                if not keep[b, i, j]:
                    continue
                p_t = torch.softmax(t[b, :, i, j] / T, 0)
                log_p_s = torch.log_softmax(s[b, :, i, j] / T, 0)
                kl_sum += float((p_t * (p_t.log() - log_p_s)).sum())
                ce_sum += -float(torch.log_softmax(s[b, :, i, j], 0)[y[b, i, j]])
    expected = alpha * T * T * kl_sum / n + (1 - alpha) * ce_sum / n
    assert float(pixel_kd_loss(s, t, y, T, alpha)) == pytest.approx(expected, rel=1e-5)
    # alpha = 0 is the plain pixel cross-entropy; a student equal to its teacher has zero KL
    ce = F.cross_entropy(s, y, ignore_index=IGNORE_INDEX)
    assert float(pixel_kd_loss(s, t, y, T, 0.0)) == pytest.approx(float(ce), rel=1e-6)
    assert float(pixel_kd_loss(t, t, y, T, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_iou_and_dice_on_hand_made_masks() -> None:
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [2, 2, 0, 1]])
    cm = confusion_matrix(pred, truth, 4)
    assert int(cm.sum()) == 11  # the void pixel is skipped
    sc = scores_from_confusion(cm)
    # class 0: TP 3, FP 2 (truth 1 at (1,3), truth 2 at (2,2)), FN 1 ((0,1)) → IoU 3/6, Dice 6/9
    # class 1: TP 3, FP 1, FN 1 → IoU 3/5, Dice 6/8; class 2: TP 2, FP 0, FN 1 → 2/3, 4/5; class 3 absent → NaN
    assert sc["iou"][:3] == pytest.approx([3 / 6, 3 / 5, 2 / 3])
    assert sc["dice"][:3] == pytest.approx([6 / 9, 6 / 8, 4 / 5])
    assert math.isnan(sc["iou"][3]) and math.isnan(sc["dice"][3])
    assert sc["mean_iou"] == pytest.approx((3 / 6 + 3 / 5 + 2 / 3) / 3)
    assert sc["pixel_accuracy"] == pytest.approx(8 / 11)


def test_sclc_front_equals_layer_stack_and_keeps_size() -> None:
    torch.manual_seed(0)
    m = SegSCLC(SegConfig(kind="student", widths=(4, 5), kernel_size=3))
    x = torch.rand(2, 1, 16, 16)
    full = stack_full(x, list(m.layers))  # layer-by-layer linear correlation, 'full' size 20x20
    assert m.features(x).shape == (2, 5, 16, 16)
    torch.testing.assert_close(m.features(x), full[..., 2:18, 2:18], atol=1e-5, rtol=1e-4)
    assert m.kernel_bank().kernel_size == 5
    for kind in ("teacher", "linear", "student"):
        assert build_seg_model(SegConfig(kind=kind, num_classes=3))(x).shape == (2, 3, 16, 16)


def test_student_needs_teacher_and_checkpoint_round_trip(tmp_path: Path) -> None:
    sp = generated_splits("shapes", 16, 8, 8, 32, seed=0)
    with pytest.raises(ConfigError, match="teacher"):
        train_segmentation(SegConfig(kind="student"), sp.train, sp.val, sp.test)
    tc = SegTrainConfig(epochs=1, batch_size=8)
    res = train_segmentation(
        SegConfig(kind="linear", widths=(4,), decoder_width=4),
        sp.train,
        sp.val,
        sp.test,
        tc,
        checkpoint_path=tmp_path / "lin.pt",
    )
    model, cfg, meta = load_seg_checkpoint(tmp_path / "lin.pt")
    assert cfg.kind == "linear" and meta["task"] == "segmentation"
    assert meta["metrics"]["test_mean_iou"] == pytest.approx(res.test["mean_iou"])
    torch.testing.assert_close(model(sp.test.images), res.model(sp.test.images))
    from lab4f.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "cls.pt", model, {"kind": "linear", "model_config": {}})
    with pytest.raises(CheckpointError, match="not a segmentation checkpoint"):
        load_seg_checkpoint(tmp_path / "cls.pt")


def test_ordering_statement_says_what_was_found() -> None:
    aggs = [
        {"model": "teacher", "mean_iou": 0.9},
        {"model": "student", "mean_iou": 0.5},
        {"model": "linear", "mean_iou": 0.7},
    ]
    o = ordering_statement(aggs)
    assert not o["holds"] and o["found"] == ["teacher", "linear", "student"]
    assert "does NOT hold" in o["statement"]


def test_tiny_reproduce_writes_all_files(tmp_path: Path) -> None:
    cfg = SegReproduceConfig(
        canvas_size=32, n_train=16, n_val=8, n_test=8, widths=(4,), decoder_width=4
    )
    res = reproduce(
        (0, 1, 2), tmp_path, cfg, SegTrainConfig(epochs=1, batch_size=8), log=lambda m: None
    )
    for key in ("table_md", "table_csv", "plot", "summary"):
        assert Path(res.files[key]).is_file()
    assert sorted(p.name for p in (tmp_path / "overlays").glob("*.png")) == [
        "linear-seed0.png",
        "student-seed0.png",
        "teacher-seed0.png",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["rows"]) == 9 and "lab4f run" in summary["bench"]
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    means = {r["model"]: float(r["mean_iou"]) for r in rows if r["seed"] == "mean"}
    for a in res.aggregates:
        per_seed = [r["mean_iou"] for r in res.rows if r["model"] == a["model"]]
        assert means[a["model"]] == pytest.approx(sum(per_seed) / 3, abs=1e-9)
    assert res.ordering["statement"] in (tmp_path / "table.md").read_text()


def test_tiny_reproduce_reports_the_paired_test_of_kd_vs_linear(tmp_path: Path) -> None:
    cfg = SegReproduceConfig(
        canvas_size=32, n_train=16, n_val=8, n_test=8, widths=(4,), decoder_width=4
    )
    res = reproduce(
        (0, 1, 2), tmp_path, cfg, SegTrainConfig(epochs=1, batch_size=8), log=lambda m: None
    )
    (t,) = res.tests
    kd = [
        r["mean_iou"] for r in sorted(res.rows, key=lambda r: r["seed"]) if r["model"] == "student"
    ]
    lin = [
        r["mean_iou"] for r in sorted(res.rows, key=lambda r: r["seed"]) if r["model"] == "linear"
    ]
    assert t["seeds"] == [0, 1, 2] and t["mean_diff"] == pytest.approx(sum(kd) / 3 - sum(lin) / 3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["paired_tests"][0]["verdict"] == t["verdict"]
    assert "Paired t-test" in (tmp_path / "table.md").read_text()


def test_segmentation_resumes_and_trains_to_plateau_through_the_one_loop(tmp_path: Path) -> None:
    sp = generated_splits("shapes", 16, 8, 8, 32, seed=0)
    cfg = SegConfig(kind="linear", widths=(4,), decoder_width=4)
    full = train_segmentation(
        cfg,
        sp.train,
        sp.val,
        sp.test,
        SegTrainConfig(epochs=2, batch_size=8),
        checkpoint_path=tmp_path / "full.pt",
    )

    def interrupt(msg: str) -> None:  # the per-epoch log line comes after the epoch's checkpoint
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_segmentation(
            cfg,
            sp.train,
            sp.val,
            sp.test,
            SegTrainConfig(epochs=2, batch_size=8),
            checkpoint_path=tmp_path / "part.pt",
            log=interrupt,
        )
    resumed = train_segmentation(
        cfg,
        sp.train,
        sp.val,
        sp.test,
        SegTrainConfig(epochs=2, batch_size=8),
        checkpoint_path=tmp_path / "part.pt",
        resume=True,
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[-1]["train_loss"] == pytest.approx(
        full.history[-1]["train_loss"], rel=1e-5
    )
    plateau = train_segmentation(
        cfg,
        sp.train,
        sp.val,
        sp.test,
        SegTrainConfig(epochs=40, batch_size=8, lr=1e-7, schedule="constant", patience=2),
    )
    assert plateau.stopped_reason == "plateau" and plateau.epochs_completed < 40


def test_balanced_pixel_kd_weights_every_present_class_equally() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[0, 0, 0] = 1  # one foreground pixel of class 1 among 31 background pixels
    hard = pixel_kd_loss(s, t, masks, T=2.0, alpha=0.0, balanced=True)
    assert hard == pytest.approx(
        float(pixel_kd_loss(s, t, masks, T=2.0, alpha=0.0))
    )  # CE term unchanged
    soft = pixel_kd_loss(s, t, masks, T=2.0, alpha=1.0, balanced=True)
    ls, lt = F.log_softmax(s / 2, 1), F.log_softmax(t / 2, 1)
    kl = (lt.exp() * (lt - ls)).sum(1)  # (2, 4, 4)
    fg, bg = kl[masks == 1].mean(), kl[masks == 0].mean()
    assert float(soft) == pytest.approx(float(4.0 * (fg + bg) / 2), rel=1e-5)
    # the unbalanced soft term is dominated by background: 31 of 32 pixels
    plain = pixel_kd_loss(s, t, masks, T=2.0, alpha=1.0)
    assert float(plain) == pytest.approx(float(4.0 * kl.mean()), rel=1e-5)
