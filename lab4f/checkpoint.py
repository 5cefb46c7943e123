"""Checkpoints: ``torch.save`` of a state dict plus plain-typed metadata, loaded with ``weights_only=True``.

Layout of the saved dict (``FORMAT``, ``FORMAT_VERSION``)::

    {"format": "lab4f-checkpoint", "format_version": 1,
     "state_dict": {...}, "metadata": {kind, model_config, dataset, seed, metrics, lab4f_version,
                                       git_commit, created, train_config, ...},
     "train_state": {optimizer, scheduler, epoch, history, ...} | None}

Only plain types (dict/list/str/int/float/bool/None) and tensors go in, so loading never runs pickled code.
Files are written atomically (temp file + rename): a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab4f import __version__
from lab4f.errors import CheckpointError
from lab4f.models import ModelConfig, build_model

FORMAT = "lab4f-checkpoint"
FORMAT_VERSION = 1


def git_commit() -> str | None:
    """The commit of the source tree lab4f runs from (best effort; None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def make_metadata(
    cfg: ModelConfig,
    *,
    dataset: dict[str, Any] | None = None,
    seed: int | None = None,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata dict stored next to the weights: what was trained, on what, by which code and when."""
    meta: dict[str, Any] = {
        "kind": cfg.kind,
        "model_config": cfg.to_dict(),
        "dataset": dict(dataset or {}),
        "seed": seed,
        "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}),
        "lab4f_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    meta.update(extra or {})
    return meta


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    metadata: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s state dict with ``metadata`` (see :func:`make_metadata`) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "metadata": metadata,
        "train_state": train_state,
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint dict, validated; :class:`CheckpointError` naming the file if unreadable."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.pt")) or sorted(path.glob("*/*.pt"))
        if found:
            listed = ", ".join(str(p) for p in found[:8]) + (
                f" (and {len(found) - 8} more)" if len(found) > 8 else ""
            )
            raise CheckpointError(
                f"checkpoint {path} is a directory, not a checkpoint file; pass one of the .pt "
                f"files in it: {listed}"
            )
        raise CheckpointError(
            f"checkpoint {path} is a directory, not a checkpoint file, and holds no .pt files; "
            "pass a checkpoint file (train one with `lab4f train --out FILE.pt`)"
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; train one with `lab4f train --out {path}`."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it is corrupt or not a lab4f checkpoint — retrain or restore it from a backup."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lab4f checkpoint (no format tag {FORMAT!r}).")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this lab4f "
            f"({__version__}, format {FORMAT_VERSION}); upgrade lab4f."
        )
    for key in ("state_dict", "metadata"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(
                f"checkpoint {path} has no {key!r} dict; it is corrupt — retrain it."
            )
    return payload


def _config_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: model {da[k]!r} vs checkpoint {db[k]!r}" for k in da if da[k] != db.get(k)]


def load_state(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    model_cfg: ModelConfig | None = None,
    ckpt_cfg: ModelConfig | None = None,
    source: str = "checkpoint",
) -> None:
    """Load ``state_dict`` strictly into ``model``; a mismatch raises :class:`CheckpointError` saying what.

    The message lists missing and unexpected keys, keys whose shapes differ, and (if both configs are
    given) the config fields that differ.
    """
    module = getattr(model, "module", model)
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: model {tuple(own[k].shape)} vs checkpoint {tuple(state_dict[k].shape)}"
        for k in own
        if k in state_dict and own[k].shape != state_dict[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [f"{source} does not fit this architecture."]
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}.")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}.")
        if shapes:
            parts.append(f"shape mismatches: {'; '.join(shapes)}.")
        if model_cfg is not None and ckpt_cfg is not None:
            diff = _config_diff(model_cfg, ckpt_cfg)
            parts.append(f"config differs: {'; '.join(diff)}." if diff else "configs are equal.")
        parts.append(
            "Build the model from the checkpoint's own config (lab4f.checkpoint.load_checkpoint)."
        )
        raise CheckpointError(" ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def class_names(meta: dict[str, Any], num_classes: int) -> list[str]:
    """The class names a checkpoint was trained with (index = the logit's class); checkpoints written before
    lab4f stored them (and every built-in digit set) name class i "i"."""
    names = (meta.get("dataset") or {}).get("class_names")
    return [str(n) for n in names] if names else [str(i) for i in range(num_classes)]


def checkpoint_task(meta: dict[str, Any]) -> str:
    """The task a checkpoint was trained for, from its metadata: its ``task`` ("classification", "segmentation").
    The one rule that tells them apart (:func:`lab4f.task.task_of` turns the name into the task object).
    Checkpoints written before lab4f recorded it are classifiers, except the segmentation models of that time,
    whose model config has a ``decoder_width``."""
    task = meta.get("task")
    if isinstance(task, str) and task:
        return task
    cfg = meta.get("model_config")
    return "segmentation" if isinstance(cfg, dict) and "decoder_width" in cfg else "classification"


def load_checkpoint(
    path: str | os.PathLike[str], model_cfg: ModelConfig | None = None
) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild the model stored at ``path``: returns (model in eval mode, its config, metadata).

    With ``model_cfg`` the weights are loaded into that architecture instead (a mismatch raises
    :class:`CheckpointError` listing the differences).
    """
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    if checkpoint_task(meta) != "classification":
        iou = (meta.get("metrics") or {}).get("test_mean_iou")
        scored = f"; test mean IoU {iou:.4f} at training" if isinstance(iou, float) else ""
        raise CheckpointError(
            f"{path} is a segmentation checkpoint (from `lab4f segment train`{scored}), not a classifier: "
            "`lab4f evaluate` and `lab4f train --teacher` take classifier checkpoints (from `lab4f train`). Use "
            "`lab4f segment train --kind student --teacher` / `lab4f segment reproduce` for segmentation, run it "
            f"through the bench with `lab4f run --checkpoint {path}`, or load it in Python with "
            "lab4f.segmentation.train.load_seg_checkpoint."
        )
    try:
        ckpt_cfg = ModelConfig.from_dict(dict(meta["model_config"]))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has no valid model_config ({exc}); retrain it."
        ) from None
    cfg = model_cfg or ckpt_cfg
    model = build_model(cfg)
    load_state(
        model, payload["state_dict"], model_cfg=cfg, ckpt_cfg=ckpt_cfg, source=f"checkpoint {path}"
    )
    model.eval()
    return model, cfg, meta
