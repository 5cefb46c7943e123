"""Hardware-in-the-loop fine-tuning: retrain the electronic back end on feature maps the bench captured,
so it absorbs what calibration leaves (PSF errors, stray light, noise, residual misregistration).

Classification back ends are scored by accuracy; segmentation decoders (targets are per-pixel masks) by mean IoU,
trained with per-pixel cross-entropy (pixels labelled ``IGNORE_INDEX`` are skipped), the same loss as training."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm


@dataclass
class FinetuneResult:
    back: nn.Module
    score_before: float  # the validation score before/after: accuracy, or mean IoU for segmentation (``metric``)
    score_after: float
    history: list[dict[str, float]] = field(default_factory=list)
    metric: str = "accuracy"


def accuracy(back: nn.Module, features: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    back.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            correct += int((back(features[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(len(features), 1)


def mean_iou(back: nn.Module, features: torch.Tensor, masks: torch.Tensor, batch_size: int = 128) -> float:
    """Mean IoU of a segmentation decoder on captured features against masks (N, H, W)."""
    from lab4f.segmentation.train import confusion_matrix, scores_from_confusion

    back.eval()
    cm = None
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            logits = back(features[i : i + batch_size])
            part = confusion_matrix(logits.argmax(1), masks[i : i + batch_size], logits.shape[1])
            cm = part if cm is None else cm + part
    return float("nan") if cm is None else scores_from_confusion(cm)["mean_iou"]


def score(back: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy for class labels (N,), mean IoU for masks (N, H, W)."""
    return mean_iou(back, features, targets) if targets.ndim == 3 else accuracy(back, features, targets)


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
) -> FinetuneResult:
    """Adam on a copy of the back end with captured features; keeps the epoch with the best validation score.

    The input BatchNorm re-learns the captured features' statistics, the later layers the residual distortions.
    Labels (N,) train a classifier (accuracy); masks (N, H, W) a segmentation decoder (mean IoU).
    """
    from lab4f.segmentation.train import IGNORE_INDEX

    torch.manual_seed(seed)
    model = copy.deepcopy(back)
    segmentation = train_labels.ndim == 3
    before = score(model, val_features, val_labels)
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
            loss = nn.functional.cross_entropy(model(train_features[idx]), train_labels[idx],
                                               ignore_index=IGNORE_INDEX if segmentation else -100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        acc = score(model, val_features, val_labels)
        history.append({"epoch": epoch + 1, "loss": total / len(order),
                        ("val_mean_iou" if segmentation else "val_accuracy"): acc})
        if acc > best:
            best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, before, best, history, "mean_iou" if segmentation else "accuracy")
