"""Hardware-in-the-loop fine-tuning: retrain the electronic back end on feature maps the bench captured,
so it absorbs what calibration leaves (PSF errors, stray light, noise, residual misregistration)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm


@dataclass
class FinetuneResult:
    back: nn.Module
    accuracy_before: float
    accuracy_after: float
    history: list[dict[str, float]] = field(default_factory=list)


def accuracy(back: nn.Module, features: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    back.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            correct += int((back(features[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(len(features), 1)


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
    """Adam on a copy of the back end with captured features; keeps the epoch with the best validation accuracy.

    The input BatchNorm re-learns the captured features' statistics, the FC layers the residual distortions.
    """
    torch.manual_seed(seed)
    model = copy.deepcopy(back)
    before = accuracy(model, val_features, val_labels)
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
            loss = nn.functional.cross_entropy(model(train_features[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        acc = accuracy(model, val_features, val_labels)
        history.append({"epoch": epoch + 1, "loss": total / len(order), "val_accuracy": acc})
        if acc > best:
            best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, before, best, history)
