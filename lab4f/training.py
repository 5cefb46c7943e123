"""Training: the teacher (cross-entropy), the linear counterpart without KD, and the SCLC student by KD.

Knowledge distillation (Hinton et al.; the paper's T = 10, α = 0.5):
``L = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)``; the T² keeps the soft-target
gradients on the scale of the hard-label ones. The teacher is frozen (eval mode, no grad).

Runs are reproducible: each epoch's shuffle comes from a DistributedSampler seeded by (seed, epoch) and the
dropout RNG is re-seeded from (seed, epoch, rank), so a run resumed from its checkpoint equals an
uninterrupted one. Under torch.distributed (see :mod:`lab4f.distributed`) the model is wrapped in
DistributedDataParallel and only rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from lab4f.checkpoint import load_state, make_metadata, read_checkpoint, save_checkpoint
from lab4f.distributed import DistContext, current_context, sync_buffers
from lab4f.errors import CheckpointError, ConfigError
from lab4f.models import ModelConfig, build_model

if TYPE_CHECKING:
    from lab4f.data import DatasetSplits


@dataclass
class TrainConfig:
    """Optimisation settings; defaults measured to train the small models well in a few epochs on CPU."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" (per step, to 0) or "constant"
    seed: int = 0
    T: float = 10.0
    alpha: float = 0.5
    device: str = "cpu"
    num_threads: int | None = None
    deterministic: bool = True
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1")
        if not (0.0 <= self.alpha <= 1.0) or self.T <= 0:
            raise ConfigError(f"KD needs 0 <= alpha <= 1 and T > 0 (got alpha={self.alpha}, T={self.T})")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule {self.schedule!r} is unknown; choose cosine or constant")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`; ``model`` holds the last good (finite) weights."""

    model: nn.Module
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    best_val_accuracy: float = float("nan")
    best_epoch: int = 0
    last_val_accuracy: float = float("nan")
    test: dict[str, Any] = field(default_factory=dict)
    stopped_reason: str = "completed"  # "completed" | "nonfinite_loss"
    stop_detail: str = ""
    wall_time_s: float = 0.0
    train_images_per_s: float = 0.0
    checkpoint_path: str | None = None

    def summary(self) -> dict[str, Any]:
        """Plain-typed summary (no model) for JSON output and checkpoint metrics."""
        return {
            "kind": self.model_cfg.kind, "detection": self.model_cfg.detection,
            "epochs_completed": self.epochs_completed, "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch, "last_val_accuracy": self.last_val_accuracy,
            "test_accuracy": self.test.get("accuracy"), "test_loss": self.test.get("loss"),
            "stopped_reason": self.stopped_reason, "stop_detail": self.stop_detail,
            "wall_time_s": self.wall_time_s, "train_images_per_s": self.train_images_per_s,
            "checkpoint": self.checkpoint_path,
        }


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    T: float = 10.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y), KL averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return alpha * T * T * kl + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def model_config_for(splits: DatasetSplits, kind: str, **overrides: Any) -> ModelConfig:
    """A :class:`ModelConfig` matching the dataset's channels, image size and classes."""
    h, w = splits.image_size
    if h != w:
        raise ConfigError(f"models need square images; dataset {splits.name} is {h}x{w} — set image_size")
    return ModelConfig(kind=kind, in_channels=splits.in_channels, image_size=h,
                       num_classes=splits.num_classes, **overrides)


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of a dataset (``.tensors`` of ImageDataset / TensorDataset)."""
    x, y = dataset.tensors[:2]
    return x.float(), y.long()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, batch_size: int = 512, device: str = "cpu") -> dict[str, Any]:
    """Accuracy, mean cross-entropy loss, count and per-class accuracy (None for a class without images) of
    ``model`` on ``dataset``."""
    x_all, y_all = _tensors(dataset)
    was_training = model.training
    model.eval()
    n_classes = 0
    correct = torch.zeros(0)
    total = torch.zeros(0)
    loss_sum = 0.0
    for i in range(0, len(y_all), batch_size):
        x, y = x_all[i : i + batch_size].to(device), y_all[i : i + batch_size].to(device)
        logits = model(x)
        if n_classes == 0:
            n_classes = logits.shape[1]
            correct = torch.zeros(n_classes, dtype=torch.float64)
            total = torch.zeros(n_classes, dtype=torch.float64)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        hit = (logits.argmax(1) == y).double().cpu()
        correct.index_add_(0, y.cpu(), hit)
        total.index_add_(0, y.cpu(), torch.ones_like(hit))
    model.train(was_training)
    n = len(y_all)
    # None for a class with no images in the data set: no accuracy to report (NaN would not be JSON)
    per_class = [float(c / t) if t > 0 else None for c, t in zip(correct, total, strict=True)]
    return {
        "accuracy": float(correct.sum() / max(n, 1)),
        "loss": loss_sum / max(n, 1),
        "n": n,
        "per_class_accuracy": per_class,
    }


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 9_176 + rank * 101) % (2**63)


class _Deterministic:
    """Context: deterministic algorithms on (restoring the previous global setting afterwards)."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.prev = torch.are_deterministic_algorithms_enabled()
        if self.on:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self.prev)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _check_splits(model_cfg: ModelConfig, splits: DatasetSplits) -> None:
    want = (splits.in_channels, tuple(splits.image_size), splits.num_classes)
    have = (model_cfg.in_channels, (model_cfg.image_size, model_cfg.image_size), model_cfg.num_classes)
    if want != have:
        raise ConfigError(f"model expects (channels, size, classes) = {have} but dataset {splits.name} has "
                          f"{want}; build the config with lab4f.training.model_config_for(splits, kind)")


def train_model(
    model_cfg: ModelConfig,
    splits: DatasetSplits,
    train_cfg: TrainConfig | None = None,
    teacher: nn.Module | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model_cfg.kind`` on ``splits``; save the last good epoch to ``checkpoint_path`` (rank 0).

    kind "teacher" and "linear" train with cross-entropy; "student" needs ``teacher`` and trains by KD.
    ``resume`` continues from ``checkpoint_path`` (weights, optimizer, scheduler, epoch, history).
    Training stops early, keeping the last finite weights and checkpoint, if the loss becomes NaN/inf.
    ``on_epoch_end(record, model)`` runs after each epoch's checkpoint (progress; may raise to interrupt).
    """
    cfg = train_cfg or TrainConfig()
    _check_splits(model_cfg, splits)
    if model_cfg.kind == "student" and teacher is None:
        raise ConfigError("kind 'student' is trained by distillation: pass a teacher (--teacher CKPT)")
    ctx = current_context()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    with _Deterministic(cfg.deterministic):
        return _train(model_cfg, splits, cfg, teacher, checkpoint_path, resume, progress, on_epoch_end, ctx)


def _train(model_cfg: ModelConfig, splits: DatasetSplits, cfg: TrainConfig, teacher: nn.Module | None,
           checkpoint_path: str | Path | None, resume: bool, progress: bool,
           on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None,
           ctx: DistContext) -> TrainResult:
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(model_cfg).to(cfg.device)
    kd = model_cfg.kind == "student"
    if kd:
        teacher = teacher.to(cfg.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    x_train, y_train = _tensors(splits.train)
    sampler = DistributedSampler(splits.train, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=False)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    result = TrainResult(model=model, model_cfg=model_cfg, train_cfg=cfg,
                         checkpoint_path=str(checkpoint_path) if checkpoint_path else None)
    start_epoch = 0
    if resume:
        start_epoch = _resume(checkpoint_path, model, opt, sched, result)
    net = ctx.wrap(model)
    dataset_meta = {"name": splits.name, "split_seed": splits.split_seed,
                    "image_size": list(splits.image_size), "class_names": list(splits.class_names),
                    "identity": dict(getattr(splits, "identity", {}))}  # lab4f.data_identity
    last_good = copy.deepcopy(model.state_dict())
    bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"train {model_cfg.kind}", unit="epoch",
               disable=not (progress and ctx.is_main and sys.stderr.isatty()), file=sys.stderr)
    t0, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, ctx.rank))  # dropout RNG, resume-exact
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        net.train()
        loss_sum, bad = 0.0, ""
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = x_train[idx].to(cfg.device), y_train[idx].to(cfg.device)
            logits = net(x)
            if kd:
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = kd_loss(logits, t_logits, y, cfg.T, cfg.alpha)
            else:
                loss = F.cross_entropy(logits, y)
            if not ctx.all_finite(loss):
                bad = (f"non-finite loss ({float(loss.detach())}) at epoch {epoch + 1}, step {step + 1} "
                       f"(lr={cfg.lr})")
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            seen += len(idx)
        if not bad and not all(torch.isfinite(p).all() for p in model.parameters()):
            bad = f"non-finite weights after epoch {epoch + 1} (lr={cfg.lr})"
        if bad:
            model.load_state_dict(last_good)
            result.stopped_reason, result.stop_detail = "nonfinite_loss", bad
            if ctx.is_main:
                kept = f"epoch {result.epochs_completed}" if result.epochs_completed else "initial weights"
                print(f"stopping: {bad}; keeping {kept}", file=sys.stderr)
            break
        sync_buffers(model, ctx)
        val = evaluate(model, splits.val, cfg.eval_batch_size, cfg.device)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / steps_per_epoch, "val_loss": val["loss"],
                  "val_accuracy": val["accuracy"], "lr": float(opt.param_groups[0]["lr"])}
        result.history.append(record)
        result.epochs_completed = epoch + 1
        result.last_val_accuracy = val["accuracy"]
        if not val["accuracy"] <= result.best_val_accuracy:  # also true while best is NaN
            result.best_val_accuracy, result.best_epoch = val["accuracy"], epoch + 1
        last_good = copy.deepcopy(model.state_dict())
        if checkpoint_path and ctx.is_main:
            _save(checkpoint_path, model, model_cfg, cfg, dataset_meta, result, opt, sched)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{val['accuracy']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(record, model)
    bar.close()
    elapsed = time.perf_counter() - t0
    result.wall_time_s = elapsed
    result.train_images_per_s = seen * ctx.world_size / elapsed if elapsed > 0 else 0.0
    model.eval()
    result.test = evaluate(model, splits.test, cfg.eval_batch_size, cfg.device)
    completed = result.stopped_reason == "completed"
    if checkpoint_path and ctx.is_main and result.epochs_completed > 0 and completed:
        # re-save with the test metrics; after a NaN stop the last good epoch's checkpoint stays as it is
        _save(checkpoint_path, model, model_cfg, cfg, dataset_meta, result, opt, sched)
    return result


def _save(path: str | Path, model: nn.Module, model_cfg: ModelConfig, cfg: TrainConfig,
          dataset_meta: dict[str, Any], result: TrainResult, opt: torch.optim.Optimizer, sched: Any) -> None:
    metrics = {k: v for k, v in result.summary().items() if k not in ("checkpoint", "kind", "detection")}
    meta = make_metadata(model_cfg, dataset=dataset_meta, seed=cfg.seed, metrics=metrics,
                         train_config=cfg.to_dict())
    train_state = {"epoch": result.epochs_completed, "optimizer": opt.state_dict(),
                   "scheduler": sched.state_dict(), "history": result.history,
                   "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch}
    save_checkpoint(path, model, meta, train_state)


def _resume(path: str | Path | None, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
            result: TrainResult) -> int:
    if not path:
        raise ConfigError("resume needs a checkpoint path (--out) to continue from")
    if not Path(path).is_file():
        return 0  # nothing to resume yet: start fresh
    payload = read_checkpoint(path)
    state = payload.get("train_state")
    if not isinstance(state, dict) or "optimizer" not in state:
        raise CheckpointError(f"checkpoint {path} has no optimizer/scheduler state; it cannot be resumed")
    ckpt_cfg = ModelConfig.from_dict(dict(payload["metadata"]["model_config"]))
    load_state(model, payload["state_dict"], model_cfg=result.model_cfg, ckpt_cfg=ckpt_cfg,
               source=f"checkpoint {path}")
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    result.history = list(state.get("history", []))
    result.epochs_completed = int(state["epoch"])
    result.best_val_accuracy = float(state.get("best_val_accuracy", float("nan")))
    result.best_epoch = int(state.get("best_epoch", 0))
    if result.history:
        result.last_val_accuracy = float(result.history[-1]["val_accuracy"])
    return result.epochs_completed
