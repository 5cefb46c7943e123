"""Training: the teacher (cross-entropy), the linear counterpart without KD, and the SCLC student by KD.

Knowledge distillation (Hinton et al.; the paper's T = 10, α = 0.5):
``L = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)``; the T² keeps the soft-target
gradients on the scale of the hard-label ones. The teacher is frozen (eval mode, no grad).

Runs are reproducible: each epoch's shuffle comes from a DistributedSampler seeded by (seed, epoch) and the
dropout RNG is re-seeded from (seed, epoch, rank), so a run resumed from its checkpoint equals an
uninterrupted one. Under torch.distributed (see :mod:`lab4f.distributed`) the model is wrapped in
DistributedDataParallel and only rank 0 writes checkpoints and prints.

:func:`fit` is the one training loop of lab4f: classification here (:func:`train_model`) and segmentation
(:func:`lab4f.segmentation.train.train_segmentation`), teacher and student, pass it an :class:`Objective`
(loss, evaluation, metric) and share its resume, DDP, NaN guard, early stop on validation (``patience``),
device and mixed precision (:mod:`lab4f.device`), CPU-thread rule and its progress: a bar on a terminal,
one line per epoch on stderr otherwise.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from lab4f.checkpoint import load_state, make_metadata, read_checkpoint, save_checkpoint
from lab4f.device import autocast, grad_scaler, resolve_device, torch_threads
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
    device: str = "cpu"  # cpu | cuda | mps | auto (lab4f.device.resolve_device)
    num_threads: int | None = None  # None: the free cores (lab4f.device.default_threads)
    deterministic: bool = True
    eval_batch_size: int = 512
    amp: bool = False  # mixed precision (float16 + scaler on CUDA, bfloat16 on CPU/MPS)
    patience: int | None = (
        None  # early stop after this many epochs without a better val score; keep the best
    )
    optimizer: str = "sgd"  # "sgd" (momentum, weight decay) or "adam"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1"
            )
        if not (0.0 <= self.alpha <= 1.0) or self.T <= 0:
            raise ConfigError(
                f"KD needs 0 <= alpha <= 1 and T > 0 (got alpha={self.alpha}, T={self.T})"
            )
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule {self.schedule!r} is unknown; choose cosine or constant")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown; choose sgd or adam")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 epochs (got {self.patience})")

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
    stopped_reason: str = "completed"  # "completed" | "plateau" (early stop) | "nonfinite_loss"
    stop_detail: str = ""
    wall_time_s: float = 0.0
    train_images_per_s: float = 0.0
    checkpoint_path: str | None = None

    def summary(self) -> dict[str, Any]:
        """Plain-typed summary (no model) for JSON output and checkpoint metrics."""
        return {
            "kind": self.model_cfg.kind,
            "detection": self.model_cfg.detection,
            "epochs_completed": self.epochs_completed,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "last_val_accuracy": self.last_val_accuracy,
            "test_accuracy": self.test.get("accuracy"),
            "test_loss": self.test.get("loss"),
            "stopped_reason": self.stopped_reason,
            "stop_detail": self.stop_detail,
            "wall_time_s": self.wall_time_s,
            "train_images_per_s": self.train_images_per_s,
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
        raise ConfigError(
            f"models need square images; dataset {splits.name} is {h}x{w} — set image_size"
        )
    return ModelConfig(
        kind=kind,
        in_channels=splits.in_channels,
        image_size=h,
        num_classes=splits.num_classes,
        **overrides,
    )


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of a dataset (``.tensors`` of ImageDataset / TensorDataset)."""
    x, y = dataset.tensors[:2]
    return x.float(), y.long()


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Any, batch_size: int = 512, device: str = "cpu"
) -> dict[str, Any]:
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


def _make_scheduler(opt: torch.optim.Optimizer, schedule: str, total_steps: int) -> Any:
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def make_optimizer(params: Iterable[nn.Parameter], cfg: Any) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (the paper's), or Adam, from a training config."""
    params = [p for p in params if p.requires_grad]
    if getattr(cfg, "optimizer", "sgd") == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _check_splits(model_cfg: ModelConfig, splits: DatasetSplits) -> None:
    want = (splits.in_channels, tuple(splits.image_size), splits.num_classes)
    have = (
        model_cfg.in_channels,
        (model_cfg.image_size, model_cfg.image_size),
        model_cfg.num_classes,
    )
    if want != have:
        raise ConfigError(
            f"model expects (channels, size, classes) = {have} but dataset {splits.name} has "
            f"{want}; build the config with lab4f.training.model_config_for(splits, kind)"
        )


@dataclass
class Objective:
    """What :func:`fit` optimises and measures for one task.

    ``loss(logits, targets, teacher_logits)`` (teacher_logits None without a teacher) returns the batch loss;
    ``evaluate(model, dataset, device)`` returns a dict with ``metric`` (higher is better) and optionally
    ``"loss"``; ``name`` labels progress lines.
    """

    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    evaluate: Callable[[nn.Module, Any, str], dict[str, Any]]
    metric: str = "accuracy"
    name: str = "train"


@dataclass
class FitState:
    """The loop's record of a run (what :class:`TrainResult` and the segmentation result report)."""

    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    best_val: float = float("nan")
    best_epoch: int = 0
    last_val: float = float("nan")
    stopped_reason: str = "completed"
    stop_detail: str = ""
    wall_time_s: float = 0.0
    train_images_per_s: float = 0.0
    test: dict[str, Any] = field(default_factory=dict)


SaveFn = Callable[[nn.Module, FitState, torch.optim.Optimizer, Any], None]


def fit(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    val: Any,
    test: Any,
    cfg: Any,
    objective: Objective,
    *,
    teacher: nn.Module | None = None,
    save: SaveFn | None = None,
    resume_state: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None = None,
    ctx: DistContext | None = None,
    log: Callable[[str], None] | None = None,
) -> FitState:
    """The one training loop: train ``model`` (already on ``cfg.device``) on (``x_train``, ``y_train``).

    ``cfg`` needs epochs, batch_size, lr, seed, schedule, device, amp, patience (and what
    :func:`make_optimizer` reads). Each epoch: seeded shuffle (DistributedSampler of (seed, epoch)), the NaN
    guard (every rank stops together, the last finite weights are kept), validation, ``save`` (rank 0), the
    early-stop check and ``on_epoch_end``. With ``patience`` the best validation epoch's weights are restored
    before the test. ``resume_state`` is a checkpoint's ``train_state`` (optimizer, scheduler, epoch, history).
    Only parameters with ``requires_grad`` are optimised (a frozen front end stays as it is).
    """
    ctx = ctx or current_context()
    device = cfg.device
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    sampler = DistributedSampler(
        range(len(y_train)),
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=False,
    )
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    opt = make_optimizer(model.parameters(), cfg)
    sched = _make_scheduler(opt, getattr(cfg, "schedule", "cosine"), cfg.epochs * steps_per_epoch)
    scaler = grad_scaler(device, cfg.amp)
    st = FitState()
    start_epoch = 0
    if resume_state:
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        st.history = list(resume_state.get("history", []))
        st.epochs_completed = start_epoch = int(resume_state["epoch"])
        st.best_val = float(
            resume_state.get("best_val", resume_state.get("best_val_accuracy", float("nan")))
        )
        st.best_epoch = int(resume_state.get("best_epoch", 0))
        if st.history:
            st.last_val = float(st.history[-1][f"val_{objective.metric}"])
    net = ctx.wrap(model)
    last_good = copy.deepcopy(model.state_dict())
    best_state = copy.deepcopy(model.state_dict()) if cfg.patience else None
    tty = sys.stderr.isatty()
    bar = tqdm(
        total=cfg.epochs,
        initial=start_epoch,
        desc=objective.name,
        unit="epoch",
        disable=not (progress and ctx.is_main and tty),
        file=sys.stderr,
    )
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    trainable = [p for p in model.parameters() if p.requires_grad]
    t0, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, ctx.rank))  # dropout RNG, resume-exact
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        net.train()
        if teacher is not None:
            teacher.eval()
        loss_sum, bad = 0.0, ""
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = x_train[idx].to(device), y_train[idx].to(device)
            with autocast(device, cfg.amp):
                logits = net(x)
                t_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x).float()
            loss = objective.loss(logits.float(), y, t_logits)
            if not ctx.all_finite(loss):
                bad = (
                    f"non-finite loss ({float(loss.detach())}) at epoch {epoch + 1}, step {step + 1} "
                    f"(lr={cfg.lr})"
                )
                break
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += float(loss.detach())
            seen += len(idx)
        if not bad and not all(torch.isfinite(p).all() for p in trainable):
            bad = f"non-finite weights after epoch {epoch + 1} (lr={cfg.lr})"
        if bad:
            model.load_state_dict(last_good)
            st.stopped_reason, st.stop_detail = "nonfinite_loss", bad
            if ctx.is_main:
                kept = f"epoch {st.epochs_completed}" if st.epochs_completed else "initial weights"
                say(f"stopping: {bad}; keeping {kept}")
            break
        sync_buffers(model, ctx)
        scores = objective.evaluate(model, val, device)
        score = float(scores[objective.metric])
        record = {"epoch": epoch + 1, "train_loss": loss_sum / steps_per_epoch}
        if "loss" in scores:
            record["val_loss"] = scores["loss"]
        record[f"val_{objective.metric}"] = score
        record["lr"] = float(opt.param_groups[0]["lr"])
        st.history.append(record)
        st.epochs_completed = epoch + 1
        st.last_val = score
        if not score <= st.best_val:  # also true while best is NaN
            st.best_val, st.best_epoch = score, epoch + 1
            if best_state is not None:
                best_state = copy.deepcopy(model.state_dict())
        last_good = copy.deepcopy(model.state_dict())
        if save is not None and ctx.is_main:
            save(model, st, opt, sched)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{score:.3f}")
        if progress and ctx.is_main and not tty:  # a log, not a terminal: one line per epoch
            say(
                f"{objective.name} epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}, "
                f"val {objective.metric} {score:.4f} ({time.perf_counter() - t0:.0f} s)"
            )
        if on_epoch_end is not None:
            on_epoch_end(record, model)
        if cfg.patience and epoch + 1 - st.best_epoch >= cfg.patience and epoch + 1 < cfg.epochs:
            st.stopped_reason = "plateau"
            st.stop_detail = (
                f"no better val {objective.metric} than epoch {st.best_epoch}'s "
                f"{st.best_val:.4f} for {cfg.patience} epochs"
            )
            break
    bar.close()
    if best_state is not None and st.best_epoch and st.stopped_reason != "nonfinite_loss":
        model.load_state_dict(
            best_state
        )  # train to plateau: the best validation epoch is the model
    elapsed = time.perf_counter() - t0
    st.wall_time_s = elapsed
    st.train_images_per_s = seen * ctx.world_size / elapsed if elapsed > 0 else 0.0
    model.eval()
    st.test = objective.evaluate(model, test, device)
    if (
        save is not None
        and ctx.is_main
        and st.epochs_completed > 0
        and st.stopped_reason != "nonfinite_loss"
    ):
        # re-save with the test metrics; after a NaN stop the last good epoch's checkpoint stays as it is
        save(model, st, opt, sched)
    return st


def classification_objective(cfg: TrainConfig, kd: bool, name: str = "train") -> Objective:
    """Cross-entropy (teacher, linear) or KD (student) on logits; accuracy on the val/test sets."""

    def loss(logits: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor | None) -> torch.Tensor:
        if kd and t_logits is not None:
            return kd_loss(logits, t_logits, y, cfg.T, cfg.alpha)
        return F.cross_entropy(logits, y)

    def ev(model: nn.Module, dataset: Any, device: str) -> dict[str, Any]:
        with autocast(device, cfg.amp):
            return evaluate(model, dataset, cfg.eval_batch_size, device)

    return Objective(loss=loss, evaluate=ev, metric="accuracy", name=name)


def freeze_front(model: nn.Module) -> nn.Module:
    """Freeze the front end (the optical half: ``layers`` of an SCLC, ``front`` of a teacher)."""
    front = getattr(model, "layers", None) or getattr(model, "front", None)
    if front is None:
        raise ConfigError(f"{type(model).__name__} has no front end to freeze")
    for p in front.parameters():
        p.requires_grad_(False)
    return model


def train_model(
    model_cfg: ModelConfig,
    splits: DatasetSplits,
    train_cfg: TrainConfig | None = None,
    teacher: nn.Module | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None = None,
    *,
    init_state: dict[str, torch.Tensor] | None = None,
    frozen_front: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model_cfg.kind`` on ``splits``; save the last good epoch to ``checkpoint_path`` (rank 0).

    kind "teacher" and "linear" train with cross-entropy; "student" needs ``teacher`` and trains by KD.
    ``resume`` continues from ``checkpoint_path`` (weights, optimizer, scheduler, epoch, history).
    Training stops early, keeping the last finite weights and checkpoint, if the loss becomes NaN/inf.
    ``on_epoch_end(record, model)`` runs after each epoch's checkpoint (progress; may raise to interrupt).
    ``init_state`` starts from these weights (e.g. a cross-entropy pre-trained student) instead of the seeded
    init; ``frozen_front`` trains only the electronic back end (the authors' second stage).
    """
    cfg = train_cfg or TrainConfig()
    _check_splits(model_cfg, splits)
    if model_cfg.kind == "student" and teacher is None:
        raise ConfigError(
            "kind 'student' is trained by distillation: pass a teacher (--teacher CKPT)"
        )
    cfg = replace(cfg, device=resolve_device(cfg.device))
    ctx = current_context()
    with torch_threads(cfg.num_threads), _Deterministic(cfg.deterministic):
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(model_cfg)
        if init_state is not None:
            load_state(model, init_state, source="the initial weights")
        if frozen_front:
            freeze_front(model)
        model = model.to(cfg.device)
        result = TrainResult(
            model=model,
            model_cfg=model_cfg,
            train_cfg=cfg,
            checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
        )
        resume_state = _resume(checkpoint_path, model, model_cfg) if resume else None
        dataset_meta = {
            "name": splits.name,
            "split_seed": splits.split_seed,
            "image_size": list(splits.image_size),
            "class_names": list(splits.class_names),
            "identity": dict(getattr(splits, "identity", {})),
        }  # lab4f.data_identity

        def save(m: nn.Module, st: FitState, opt: torch.optim.Optimizer, sched: Any) -> None:
            _fill(result, st)
            _save(checkpoint_path, m, model_cfg, cfg, dataset_meta, result, opt, sched)

        x_train, y_train = _tensors(splits.train)
        st = fit(
            model,
            x_train,
            y_train,
            splits.val,
            splits.test,
            cfg,
            classification_objective(cfg, model_cfg.kind == "student", f"train {model_cfg.kind}"),
            teacher=teacher if model_cfg.kind == "student" else None,
            save=save if checkpoint_path else None,
            resume_state=resume_state,
            progress=progress,
            on_epoch_end=on_epoch_end,
            ctx=ctx,
            log=log,
        )
    _fill(result, st)
    return result


def _fill(result: TrainResult, st: FitState) -> None:
    result.history, result.epochs_completed = st.history, st.epochs_completed
    result.best_val_accuracy, result.best_epoch, result.last_val_accuracy = (
        st.best_val,
        st.best_epoch,
        st.last_val,
    )
    result.stopped_reason, result.stop_detail = st.stopped_reason, st.stop_detail
    result.wall_time_s, result.train_images_per_s, result.test = (
        st.wall_time_s,
        st.train_images_per_s,
        st.test,
    )


def _save(
    path: str | Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    dataset_meta: dict[str, Any],
    result: TrainResult,
    opt: torch.optim.Optimizer,
    sched: Any,
) -> None:
    metrics = {
        k: v for k, v in result.summary().items() if k not in ("checkpoint", "kind", "detection")
    }
    meta = make_metadata(
        model_cfg, dataset=dataset_meta, seed=cfg.seed, metrics=metrics, train_config=cfg.to_dict()
    )
    train_state = {
        "epoch": result.epochs_completed,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "history": result.history,
        "best_val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
    }
    save_checkpoint(path, model, meta, train_state)


def _resume(
    path: str | Path | None,
    model: nn.Module,
    model_cfg: Any,
    cfg_from_dict: Callable[[dict[str, Any]], Any] = ModelConfig.from_dict,
) -> dict[str, Any] | None:
    """Load ``path``'s weights into ``model``; its train_state for :func:`fit` (None: nothing to resume yet)."""
    if not path:
        raise ConfigError("resume needs a checkpoint path (--out) to continue from")
    if not Path(path).is_file():
        return None  # nothing to resume yet: start fresh
    payload = read_checkpoint(path)
    state = payload.get("train_state")
    if not isinstance(state, dict) or "optimizer" not in state:
        raise CheckpointError(
            f"checkpoint {path} has no optimizer/scheduler state; it cannot be resumed"
        )
    ckpt_cfg = cfg_from_dict(dict(payload["metadata"]["model_config"]))
    load_state(
        model,
        payload["state_dict"],
        model_cfg=model_cfg,
        ckpt_cfg=ckpt_cfg,
        source=f"checkpoint {path}",
    )
    return state
