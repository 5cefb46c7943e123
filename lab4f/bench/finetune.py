"""Hardware-in-the-loop fine-tuning: retrain the electronic back end on feature maps the bench captured,
so it absorbs what calibration leaves (PSF errors, stray light, noise, residual misregistration).

The task (:mod:`lab4f.task`) gives the loss and the metric: a classification back end is trained with
cross-entropy and scored by accuracy; a segmentation decoder with per-pixel cross-entropy (pixels labelled
``IGNORE_INDEX`` skipped, the same loss as training) and scored by mean IoU."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from lab4f.task import CLASSIFICATION, SEGMENTATION, Task


@dataclass
class FinetuneResult:
    back: nn.Module
    score_before: float  # the validation score before/after: the task's metric (``metric``)
    score_after: float
    history: list[dict[str, float]] = field(default_factory=list)
    metric: str = "accuracy"


def accuracy(back: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of a classification back end on captured features."""
    return CLASSIFICATION.score(back, features, labels)


def mean_iou(back: nn.Module, features: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean IoU of a segmentation decoder on captured features against masks (N, H, W)."""
    return SEGMENTATION.score(back, features, masks)


def score(back: nn.Module, features: torch.Tensor, targets: torch.Tensor, task: Task = CLASSIFICATION) -> float:
    """The task's metric of ``back`` on captured features."""
    return task.score(back, features, targets)


def finetune_backend(
    back: nn.Module,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    task: Task = CLASSIFICATION,
) -> FinetuneResult:
    """Adam on a copy of the back end with captured features; keeps the epoch with the best validation score
    (the task's metric, trained with the task's loss: ``setup.task`` of the run the features came from).

    The input BatchNorm re-learns the captured features' statistics, the later layers the residual distortions.
    """
    torch.manual_seed(seed)
    model = copy.deepcopy(back)
    before = task.score(model, val_features, val_labels)
    best, best_state = before, copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in tqdm(range(epochs), desc="fine-tune back end", disable=not progress, leave=False):
        model.train()
        order = torch.randperm(len(train_features), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = task.loss(model(train_features[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        value = task.score(model, val_features, val_labels)
        history.append({"epoch": epoch + 1, "loss": total / len(order), f"val_{task.metric}": value})
        if value > best:
            best, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, before, best, history, task.metric)
