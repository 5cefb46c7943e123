"""Segmentation training: cross-entropy per pixel (teacher, linear baseline) or pixel-wise KD (SCLC student).

Pixel-wise KD is :func:`lab4f.training.kd_loss` applied to every labelled pixel as one sample:
``α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)``, both terms averaged over pixels
(``IGNORE_INDEX`` pixels excluded). Metrics: per-class IoU = TP / (TP + FP + FN) and Dice = 2TP / (2TP + FP + FN)
from the confusion matrix over the whole set; a class absent from both prediction and truth is NaN and
left out of the means (mean IoU averages the classes, background included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab4f.checkpoint import load_state, make_metadata, read_checkpoint, save_checkpoint
from lab4f.errors import CheckpointError, ConfigError
from lab4f.segmentation.data import IGNORE_INDEX, SegmentationSet
from lab4f.segmentation.models import SegConfig, build_seg_model
from lab4f.training import kd_loss

TASK = "segmentation"


@dataclass
class SegTrainConfig:
    """Optimisation settings (Adam + cosine decay: converges within the few epochs a CPU budget allows)."""

    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    T: float = 10.0
    alpha: float = 0.5
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"need epochs, batch_size >= 1 and lr > 0 (got {self.epochs}, "
                              f"{self.batch_size}, {self.lr})")
        if not (0.0 <= self.alpha <= 1.0) or self.T <= 0:
            raise ConfigError(f"KD needs 0 <= alpha <= 1 and T > 0 (got alpha={self.alpha}, T={self.T})")


def pixel_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, masks: torch.Tensor,
                  T: float = 10.0, alpha: float = 0.5, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise KD for (B, C, H, W) logits and (B, H, W) masks: kd_loss with every labelled pixel a sample."""
    c = student_logits.shape[1]
    s = student_logits.permute(0, 2, 3, 1).reshape(-1, c)
    t = teacher_logits.permute(0, 2, 3, 1).reshape(-1, c)
    y = masks.reshape(-1)
    keep = y != ignore_index
    return kd_loss(s[keep], t[keep], y[keep], T, alpha)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction; ignored pixels skipped."""
    keep = target != ignore_index
    idx = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(cm: torch.Tensor) -> dict[str, Any]:
    """Per-class IoU and Dice (NaN for a class in neither truth nor prediction), their means, pixel accuracy."""
    cm = cm.double()
    tp = cm.diag()
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    union = tp + fp + fn
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    dice = torch.where(union > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.full_like(tp, math.nan))
    total = float(cm.sum())
    return {"mean_iou": float(iou.nanmean()), "mean_dice": float(dice.nanmean()),
            "pixel_accuracy": float(tp.sum()) / total if total else math.nan,
            "iou": iou.tolist(), "dice": dice.tolist()}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Per-pixel class predictions (N, H, W) of ``model`` in eval mode."""
    was = model.training
    model.eval()
    out = torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
    model.train(was)
    return out


def evaluate_segmentation(model: nn.Module, data: SegmentationSet, batch_size: int = 128) -> dict[str, Any]:
    """Mean IoU, mean Dice, pixel accuracy and per-class IoU/Dice of ``model`` on ``data``."""
    cm = confusion_matrix(predict(model, data.images, batch_size), data.masks, data.num_classes)
    return {**scores_from_confusion(cm), "n": len(data)}


@dataclass
class SegTrainResult:
    """Outcome of :func:`train_segmentation` (``model`` in eval mode, last epoch's weights)."""

    model: nn.Module
    cfg: SegConfig
    train_cfg: SegTrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    checkpoint_path: str | None = None


def train_segmentation(cfg: SegConfig, train: SegmentationSet, val: SegmentationSet, test: SegmentationSet,
                       train_cfg: SegTrainConfig | None = None, teacher: nn.Module | None = None,
                       checkpoint_path: str | Path | None = None,
                       log: Callable[[str], None] | None = None) -> SegTrainResult:
    """Train ``cfg.kind`` (student: KD from ``teacher``); the last epoch's weights are kept and tested."""
    tc = train_cfg or SegTrainConfig()
    if cfg.kind == "student" and teacher is None:
        raise ConfigError("kind 'student' is trained by pixel-wise KD: pass a trained teacher")
    if (cfg.in_channels, cfg.num_classes) != (train.in_channels, train.num_classes):
        raise ConfigError(f"model has (channels, classes) = ({cfg.in_channels}, {cfg.num_classes}) but the data "
                          f"has ({train.in_channels}, {train.num_classes})")
    torch.manual_seed(tc.seed)
    model = build_seg_model(cfg)
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps = math.ceil(len(train) / tc.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs * steps)
    gen = torch.Generator().manual_seed(tc.seed)
    result = SegTrainResult(model, cfg, tc, checkpoint_path=str(checkpoint_path) if checkpoint_path else None)
    t0 = time.perf_counter()
    for epoch in range(tc.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        loss_sum = 0.0
        for step in range(steps):
            idx = order[step * tc.batch_size : (step + 1) * tc.batch_size]
            x, y = train.images[idx], train.masks[idx]
            logits = model(x)
            if cfg.kind == "student":
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = pixel_kd_loss(logits, t_logits, y, tc.T, tc.alpha)
            else:
                loss = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
            if not torch.isfinite(loss):
                raise ConfigError(f"non-finite loss at epoch {epoch + 1} step {step + 1}; lower the lr ({tc.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
        val_scores = evaluate_segmentation(model, val, tc.eval_batch_size)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / steps, "val_mean_iou": val_scores["mean_iou"]}
        result.history.append(record)
        if log:
            log(f"  {cfg.kind} epoch {epoch + 1}/{tc.epochs}: loss {record['train_loss']:.4f}, "
                f"val mIoU {record['val_mean_iou']:.4f}")
    result.wall_time_s = time.perf_counter() - t0
    model.eval()
    result.test = evaluate_segmentation(model, test, tc.eval_batch_size)
    if checkpoint_path:
        meta = make_metadata(cfg, seed=tc.seed, train_config=asdict(tc),  # type: ignore[arg-type]
                             metrics={"test_mean_iou": result.test["mean_iou"],
                                      "test_mean_dice": result.test["mean_dice"]},
                             dataset={"source": train.source, "class_names": list(train.class_names)},
                             extra={"task": TASK})
        save_checkpoint(checkpoint_path, model, meta, {"history": result.history})
    return result


def load_seg_checkpoint(path: str | Path) -> tuple[nn.Module, SegConfig, dict[str, Any]]:
    """Rebuild a segmentation model saved by :func:`train_segmentation`: (model in eval mode, config, metadata)."""
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    if meta.get("task") != TASK:
        raise CheckpointError(f"{path} is not a segmentation checkpoint (task {meta.get('task')!r}); "
                              "load classifiers with lab4f.checkpoint.load_checkpoint")
    cfg = SegConfig.from_dict(dict(meta["model_config"]))
    model = build_seg_model(cfg)
    load_state(model, payload["state_dict"], source=f"checkpoint {path}")
    return model.eval(), cfg, meta
