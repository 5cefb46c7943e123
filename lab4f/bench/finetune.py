"""Hardware-in-the-loop fine-tuning: retrain the electronic back end on feature maps the bench captured,
so it absorbs what calibration leaves (PSF errors, stray light, noise, residual misregistration).

The task (:mod:`lab4f.task`) gives the loss and the metric: a classification back end is trained with
cross-entropy and scored by accuracy; a segmentation decoder with per-pixel cross-entropy (pixels labelled
``IGNORE_INDEX`` skipped, the same loss as training) and scored by mean IoU."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

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


def score(
    back: nn.Module, features: torch.Tensor, targets: torch.Tensor, task: Task = CLASSIFICATION
) -> float:
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
        history.append(
            {"epoch": epoch + 1, "loss": total / len(order), f"val_{task.metric}": value}
        )
        if value > best:
            best, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, before, best, history, task.metric)


# -- a back end for a foreign kernel bank, trained from `lab4f capture` files alone ----------------------------
FOREIGN_BACK_FORMAT = "lab4f-foreign-back"


def read_captures(paths: list[str]) -> dict[str, Any]:
    """Features, labels and provenance of one or more capture files (kind ``capture``) of the same program."""
    import json

    import h5py
    import numpy as np

    from lab4f.errors import ConfigError

    feats, labels, program_sha, bank_h, bank = [], [], None, None, None
    inputs: dict[str, Any] = {}
    for p in paths:
        try:
            with h5py.File(p, "r") as f:
                if f.attrs.get("kind") != "capture" or "features" not in f:
                    raise ConfigError(
                        f"--captures {p} is not a capture file; make one with `lab4f capture --program "
                        "P --calibration R --dataset D --split train --out FILE`"
                    )
                sha = str(f.attrs.get("program_sha256", ""))
                b = np.asarray(f["bank"])
                feats.append(torch.from_numpy(np.asarray(f["features"], np.float32)))
                labels.append(torch.from_numpy(np.asarray(f["labels"], np.int64)))
                inputs = json.loads(f.attrs.get("inputs", "{}")) or inputs
        except OSError as exc:
            raise ConfigError(f"--captures {p} cannot be read as HDF5 ({exc})") from exc
        from lab4f.bench.hybrid import bank_hash

        h = bank_hash(b)
        if bank_h is not None and h != bank_h:
            raise ConfigError(
                f"--captures {p} was captured with another kernel bank than {paths[0]}"
            )
        program_sha, bank_h, bank = program_sha or sha, h, b
    x, y = torch.cat(feats), torch.cat(labels)
    keep = y >= 0
    if int(keep.sum()) < 4:
        raise ConfigError(
            "the captures hold fewer than 4 labelled inputs; capture a labelled data set or a folder "
            "with class subfolders"
        )
    return {
        "features": x[keep],
        "labels": y[keep],
        "program_sha256": program_sha,
        "bank_hash": bank_h,
        "bank": bank,
        "inputs": inputs,
    }


def foreign_back(channels: int, num_classes: int) -> nn.Module:
    """The paper's back end (:class:`lab4f.models.BackEnd`: BN → 6×6 adaptive pool → MLP 512/256 → classes)."""
    from lab4f.models import BackEnd, ModelConfig

    return BackEnd(channels, ModelConfig(kind="student", num_classes=num_classes))


def save_foreign_back(path: Any, back: nn.Module, meta: dict[str, Any]) -> None:
    torch.save({"format": FOREIGN_BACK_FORMAT, "state_dict": back.state_dict(), **meta}, path)


def load_foreign_back(path: Any) -> tuple[nn.Module, dict[str, Any]]:
    """(back end, its metadata) from a file `lab4f finetune --captures` wrote."""
    from lab4f.errors import CheckpointError

    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"--back {path} does not exist; make it with `lab4f finetune --captures TRAIN.h5 "
            f"--out {path}`"
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            f"--back {path} is not a back end saved by `lab4f finetune` ({exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FOREIGN_BACK_FORMAT:
        raise CheckpointError(
            f"--back {path} is not a back end for a kernel bank (from `lab4f finetune --captures`);"
            " a back end fine-tuned for a checkpoint is run with --checkpoint"
        )
    back = foreign_back(int(payload["channels"]), int(payload["num_classes"]))
    back.load_state_dict(payload.pop("state_dict"))
    back.eval()
    return back, payload
