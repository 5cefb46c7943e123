"""Segmentation training: cross-entropy per pixel (teacher, linear baseline) or pixel-wise KD (SCLC student).

Pixel-wise KD is :func:`lab4f.training.kd_loss` applied to every labelled pixel as one sample:
``α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)``, both terms averaged over pixels
(``IGNORE_INDEX`` pixels excluded). Metrics: per-class IoU = TP / (TP + FP + FN) and Dice = 2TP / (2TP + FP + FN)
from the confusion matrix over the whole set; a class absent from both prediction and truth is NaN and
left out of the means (mean IoU averages the classes, background included).

Training runs through the one loop of lab4f (:func:`lab4f.training.fit`): resume, the NaN guard, DDP, early
stop on validation mean IoU (``patience``), ``device`` and ``amp`` as for classification.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab4f.checkpoint import load_state, make_metadata, read_checkpoint, save_checkpoint
from lab4f.device import autocast, resolve_device, torch_threads
from lab4f.errors import CheckpointError, ConfigError
from lab4f.segmentation.data import IGNORE_INDEX, SegmentationSet
from lab4f.segmentation.models import SegConfig, build_seg_model
from lab4f.training import FitState, Objective, _Deterministic, _resume, fit, kd_loss

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
    device: str = "cpu"  # cpu | cuda | mps | auto
    amp: bool = False
    patience: int | None = None  # early stop on val mean IoU; the best epoch is kept
    num_threads: int | None = None  # None: the free cores (lab4f.device.default_threads)
    optimizer: str = "adam"
    schedule: str = "cosine"
    deterministic: bool = False
    kd_balanced: bool = False  # class-balanced soft term (pixel_kd_loss balanced=True)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"need epochs, batch_size >= 1 and lr > 0 (got {self.epochs}, "
                f"{self.batch_size}, {self.lr})"
            )
        if not (0.0 <= self.alpha <= 1.0) or self.T <= 0:
            raise ConfigError(
                f"KD needs 0 <= alpha <= 1 and T > 0 (got alpha={self.alpha}, T={self.T})"
            )


def pixel_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    masks: torch.Tensor,
    T: float = 10.0,
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    balanced: bool = False,
) -> torch.Tensor:
    """Pixel-wise KD for (B, C, H, W) logits and (B, H, W) masks: kd_loss with every labelled pixel a sample.

    ``balanced`` weights each pixel's soft (KL) term by the inverse frequency of its true class in the batch,
    normalised so that every class present contributes equally (background no longer dominates the KL);
    the cross-entropy term is unchanged.
    """
    c = student_logits.shape[1]
    s = student_logits.permute(0, 2, 3, 1).reshape(-1, c)
    t = teacher_logits.permute(0, 2, 3, 1).reshape(-1, c)
    y = masks.reshape(-1)
    keep = y != ignore_index
    if not balanced:
        return kd_loss(s[keep], t[keep], y[keep], T, alpha)
    s, t, y = s[keep], t[keep], y[keep]
    log_p_s = F.log_softmax(s / T, dim=1)
    log_p_t = F.log_softmax(t.detach() / T, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)  # per pixel
    counts = torch.bincount(y, minlength=c).clamp(min=1).to(kl.dtype)
    present = (torch.bincount(y, minlength=c) > 0).sum().to(kl.dtype)
    w = 1.0 / (counts[y] * present)  # each present class sums to 1/present: the weights sum to 1
    return alpha * T * T * (w * kl).sum() + (1.0 - alpha) * F.cross_entropy(s, y)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
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
    dice = torch.where(
        union > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.full_like(tp, math.nan)
    )
    total = float(cm.sum())
    return {
        "mean_iou": float(iou.nanmean()),
        "mean_dice": float(dice.nanmean()),
        "pixel_accuracy": float(tp.sum()) / total if total else math.nan,
        "iou": iou.tolist(),
        "dice": dice.tolist(),
    }


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 128, device: str | None = None
) -> torch.Tensor:
    """Per-pixel class predictions (N, H, W) of ``model`` in eval mode (on the CPU)."""
    was = model.training
    model.eval()
    dev = device or next(model.parameters()).device
    out = torch.cat(
        [
            model(images[i : i + batch_size].to(dev)).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )
    model.train(was)
    return out


def evaluate_segmentation(
    model: nn.Module, data: SegmentationSet, batch_size: int = 128, device: str | None = None
) -> dict[str, Any]:
    """Mean IoU, mean Dice, pixel accuracy and per-class IoU/Dice of ``model`` on ``data``."""
    cm = confusion_matrix(
        predict(model, data.images, batch_size, device), data.masks, data.num_classes
    )
    return {**scores_from_confusion(cm), "n": len(data)}


@dataclass
class SegTrainResult:
    """Outcome of :func:`train_segmentation` (``model`` in eval mode: the last epoch's weights, or with
    ``patience`` the best validation epoch's)."""

    model: nn.Module
    cfg: SegConfig
    train_cfg: SegTrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    checkpoint_path: str | None = None
    epochs_completed: int = 0
    best_epoch: int = 0
    best_val_mean_iou: float = float("nan")
    stopped_reason: str = "completed"
    stop_detail: str = ""


def segmentation_objective(tc: SegTrainConfig, kd: bool, name: str = "train") -> Objective:
    """Pixel cross-entropy (teacher, linear) or pixel-wise KD (student); mean IoU on the val/test sets."""

    def loss(logits: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor | None) -> torch.Tensor:
        if kd and t_logits is not None:
            return pixel_kd_loss(logits, t_logits, y, tc.T, tc.alpha, balanced=tc.kd_balanced)
        return F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)

    def ev(model: nn.Module, data: Any, device: str) -> dict[str, Any]:
        with autocast(device, tc.amp):
            return evaluate_segmentation(model, data, tc.eval_batch_size, device)

    return Objective(loss=loss, evaluate=ev, metric="mean_iou", name=name)


def train_segmentation(
    cfg: SegConfig,
    train: SegmentationSet,
    val: SegmentationSet,
    test: SegmentationSet,
    train_cfg: SegTrainConfig | None = None,
    teacher: nn.Module | None = None,
    checkpoint_path: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    init_state: dict[str, torch.Tensor] | None = None,
    frozen_front: bool = False,
) -> SegTrainResult:
    """Train ``cfg.kind`` (student: KD from ``teacher``) through :func:`lab4f.training.fit`; test the result.

    ``log`` gets one line per epoch (and a NaN stop); ``progress`` shows the loop's own bar/lines instead.
    """
    from lab4f.training import freeze_front

    tc = train_cfg or SegTrainConfig()
    if cfg.kind == "student" and teacher is None:
        raise ConfigError("kind 'student' is trained by pixel-wise KD: pass a trained teacher")
    if (cfg.in_channels, cfg.num_classes) != (train.in_channels, train.num_classes):
        raise ConfigError(
            f"model has (channels, classes) = ({cfg.in_channels}, {cfg.num_classes}) but the data "
            f"has ({train.in_channels}, {train.num_classes})"
        )
    tc = replace(tc, device=resolve_device(tc.device))
    with torch_threads(tc.num_threads), _Deterministic(tc.deterministic):
        torch.manual_seed(tc.seed)
        model = build_seg_model(cfg)
        if init_state is not None:
            load_state(model, init_state, source="the initial weights")
        if frozen_front:
            freeze_front(model)
        model = model.to(tc.device)
        result = SegTrainResult(
            model, cfg, tc, checkpoint_path=str(checkpoint_path) if checkpoint_path else None
        )
        resume_state = _resume(checkpoint_path, model, cfg, SegConfig.from_dict) if resume else None

        def save(m: nn.Module, st: FitState, opt: torch.optim.Optimizer, sched: Any) -> None:
            metrics = {
                "val_mean_iou": st.last_val,
                "best_val_mean_iou": st.best_val,
                "best_epoch": st.best_epoch,
                "epochs_completed": st.epochs_completed,
                "stopped_reason": st.stopped_reason,
            }
            if st.test:
                metrics |= {
                    "test_mean_iou": st.test["mean_iou"],
                    "test_mean_dice": st.test["mean_dice"],
                }
            meta = make_metadata(
                cfg,
                seed=tc.seed,
                train_config=asdict(tc),  # type: ignore[arg-type]
                metrics=metrics,
                dataset={"source": train.source, "class_names": list(train.class_names)},
                extra={"task": TASK},
            )
            state = {
                "epoch": st.epochs_completed,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": st.history,
                "best_val": st.best_val,
                "best_epoch": st.best_epoch,
            }
            save_checkpoint(checkpoint_path, m, meta, state)

        def epoch_log(record: dict[str, float], _m: nn.Module) -> None:
            if log:
                log(
                    f"  {cfg.kind} epoch {record['epoch']}/{tc.epochs}: loss {record['train_loss']:.4f}, "
                    f"val mIoU {record['val_mean_iou']:.4f}"
                )

        st = fit(
            model,
            train.images,
            train.masks.long(),
            val,
            test,
            tc,
            segmentation_objective(tc, cfg.kind == "student", f"segment {cfg.kind}"),
            teacher=teacher if cfg.kind == "student" else None,
            save=save if checkpoint_path else None,
            resume_state=resume_state,
            progress=progress,
            on_epoch_end=epoch_log,
            log=log,
        )
    result.history, result.test, result.wall_time_s = st.history, st.test, st.wall_time_s
    result.epochs_completed, result.best_epoch, result.best_val_mean_iou = (
        st.epochs_completed,
        st.best_epoch,
        st.best_val,
    )
    result.stopped_reason, result.stop_detail = st.stopped_reason, st.stop_detail
    if st.stopped_reason == "nonfinite_loss" and st.epochs_completed == 0:
        raise ConfigError(f"{st.stop_detail}; lower the lr ({tc.lr})")
    model.eval()
    return result


def load_seg_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[nn.Module, SegConfig, dict[str, Any]]:
    """Rebuild a segmentation model saved by :func:`train_segmentation`: (model in eval mode, config, metadata)."""
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    if meta.get("task") != TASK:
        raise CheckpointError(
            f"{path} is not a segmentation checkpoint (task {meta.get('task')!r}); "
            "load classifiers with lab4f.checkpoint.load_checkpoint"
        )
    cfg = SegConfig.from_dict(dict(meta["model_config"]))
    model = build_seg_model(cfg)
    load_state(model, payload["state_dict"], source=f"checkpoint {path}")
    return model.eval(), cfg, meta
