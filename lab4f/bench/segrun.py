"""Segmentation on the bench: generated scenes (or a folder data set's images) through the optics, the electronic
decoder → per-pixel masks.

The SCLC segmentation student runs like the classifier (:mod:`lab4f.bench.run`): the same streamed pipeline
(:func:`run_dataset` with the masks as labels and the decoder as back end), held against the digital student on
the same scenes. Scored by mean IoU / Dice from the confusion matrix (:mod:`lab4f.segmentation.train`). The run
file keeps inputs, true / optical / digital masks and RGB overlays of the optical masks on the inputs; PNGs of
the overlays go next to it (``<run>_overlay.png`` panel, ``<run>_<index>_overlay.png`` per scene).

A checkpoint trained on a folder data set (``lab4f segment train --dataset carvana|voc2012``) runs the same
split of the same folder: its training source records data set, folder, image size and split seed. If that
folder is gone, the bench looks in ``$LAB4F_DATA`` (the split is the same where the folder's files are).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lab4f.bench.inputs import check_display_fits
from lab4f.bench.run import RunResult, latencies_ms, run_dataset, write_provenance
from lab4f.bench.scenes import (  # noqa: F401 — also the bench's segmentation API here, as before
    SPLIT_SIZES,
    SegBenchConfig,
    bench_scenes,
    folder_spec,
    load_seg_for_bench,
    scene_spec,
)
from lab4f.segmentation.data import IGNORE_INDEX, SegmentationSet
from lab4f.segmentation.train import confusion_matrix, scores_from_confusion
from lab4f.storage import atomic_write, h5_file, write_json_attr

if TYPE_CHECKING:
    from lab4f.bench.hybrid import HybridSetup

SEG_RUN_SCHEMA = 1
OVERLAY_ALPHA = 0.55


@dataclass
class SegRunResult:
    """Masks of the optical and the digital path on the same scenes, scored against the truth."""

    indices: np.ndarray
    images: np.ndarray  # (n, H, W) float32 inputs as shown
    truth: np.ndarray  # (n, H, W) uint8 class indices (IGNORE_INDEX = not scored)
    optical: np.ndarray  # (n, H, W) uint8 predicted by optics + decoder
    digital: np.ndarray  # (n, H, W) uint8 predicted by the digital student
    class_names: tuple[str, ...]
    run: RunResult  # the stream's counters, sampled frames and features
    extra: dict[str, Any] = field(default_factory=dict)

    def scores(self, pred: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
        target = self.truth if truth is None else truth
        cm = confusion_matrix(
            torch.from_numpy(pred.astype(np.int64)),
            torch.from_numpy(target.astype(np.int64)),
            len(self.class_names),
            IGNORE_INDEX,
        )
        return scores_from_confusion(cm)

    def metrics(self) -> dict[str, Any]:
        opt, dig = self.scores(self.optical), self.scores(self.digital)
        vs = self.scores(self.optical, self.digital)  # the digital masks taken as the truth
        s = self.run.summary.stats
        n = int(len(self.indices))
        return {
            "task": "segmentation",
            "n": n,
            "class_names": list(self.class_names),
            "optical_mean_iou": opt["mean_iou"],
            "digital_mean_iou": dig["mean_iou"],
            "mean_iou_gap": dig["mean_iou"] - opt["mean_iou"],
            "optical_mean_dice": opt["mean_dice"],
            "digital_mean_dice": dig["mean_dice"],
            "optical_pixel_accuracy": opt["pixel_accuracy"],
            "digital_pixel_accuracy": dig["pixel_accuracy"],
            "optical_iou": opt["iou"],
            "digital_iou": dig["iou"],
            "optical_dice": opt["dice"],
            "digital_dice": dig["dice"],
            "pixel_agreement": float((self.optical == self.digital).mean()) if n else None,
            "optical_vs_digital_mean_iou": vs["mean_iou"],
            "frames_per_s": s.mean_fps,
            **latencies_ms(s),
            "acquired": s.acquired,
            "processed": s.processed,
            "dropped": s.dropped,
            "policy": s.policy,
            "stop_reason": s.stop_reason,
            "error": s.error,
            "error_device": s.error_device,
        } | self.extra


def run_segmentation(
    setup: HybridSetup,
    data: SegmentationSet,
    policy: str = "evaluate",
    batch_size: int = 16,
    capacity: int = 64,
    samples: int = 8,
    back: torch.nn.Module | None = None,
) -> SegRunResult:
    """Stream ``data``'s scenes through the optics and the decoder (``back`` overrides the student's)."""
    check_display_fits(setup, data.images)
    res = run_dataset(setup, data.images, data.masks, policy, batch_size, capacity, samples, back)
    return segmentation_result(
        res,
        data.images[:, 0].numpy(),
        data.masks.numpy(),
        data.class_names,
        {"scenes": data.source},
    )


def segmentation_result(
    res: RunResult,
    images: np.ndarray,
    masks: np.ndarray,
    class_names: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> SegRunResult:
    """A streamed run whose outputs are per-pixel class scores (n, K, H, W) — or already masks (n, H, W) — scored."""
    n = len(res.indices)
    hw = tuple(images.shape[-2:])

    def argmax(probs: np.ndarray) -> np.ndarray:
        if not n:
            return np.zeros((0, *hw), np.uint8)
        return (probs.argmax(1) if probs.ndim == 4 else probs).astype(np.uint8)

    idx = res.indices
    shown = images[idx].astype(np.float32) if n else np.zeros((0, *hw), np.float32)
    truth = masks[idx].astype(np.uint8) if n else np.zeros((0, *hw), np.uint8)
    return SegRunResult(
        idx,
        shown,
        truth,
        argmax(res.optical_probs),
        argmax(res.digital_probs),
        tuple(class_names),
        res,
        dict(extra or {}),
    )


# -- overlays --------------------------------------------------------------------------------------------
def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) RGB in [0, 1]: background black (not drawn), classes in tab10 (tab20 beyond ten)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if num_classes <= 11 else "tab20"]
    colours = [cmap(i % cmap.N)[:3] for i in range(max(num_classes - 1, 0))]
    return np.array([(0.0, 0.0, 0.0), *colours], dtype=np.float32)


def overlay(
    images: np.ndarray, masks: np.ndarray, num_classes: int, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """(n, H, W) inputs + class masks → (n, H, W, 3) uint8 RGB: gray input, classes ≥ 1 tinted with ``alpha``."""
    gray = np.repeat(np.clip(images, 0, 1)[..., None], 3, axis=-1)
    palette = class_palette(num_classes)
    drawn = (masks > 0) & (masks < num_classes)
    tint = palette[np.where(drawn, masks, 0)]
    out = np.where(drawn[..., None], (1 - alpha) * gray + alpha * tint, gray)
    return np.rint(out * 255).astype(np.uint8)


def _save_png(path: Path, rgb: np.ndarray, scale: int) -> None:
    from PIL import Image

    Image.fromarray(np.kron(rgb, np.ones((scale, scale, 1), np.uint8))).save(path)


def save_overlay_pngs(
    run_path: str | os.PathLike[str], result: SegRunResult, count: int = 8, scale: int = 4
) -> list[Path]:
    """``<run>_overlay.png``: a panel (rows optical / digital / truth) of the first ``count`` scenes, then one
    ``<run>_<index>_overlay.png`` strip per scene (input | optical | digital | truth), upscaled ``scale``×."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_path = Path(run_path)
    k = min(count, len(result.indices))
    if k == 0:
        return []
    c = len(result.class_names)
    rows = {
        name: overlay(result.images[:k], m[:k], c)
        for name, m in (
            ("optical", result.optical),
            ("digital", result.digital),
            ("truth", result.truth),
        )
    }
    m = result.metrics()
    fig, axes = plt.subplots(3, k, figsize=(1.5 * k, 4.9), squeeze=False)
    for i, (name, rgb) in enumerate(rows.items()):
        for j in range(k):
            axes[i, j].imshow(rgb[j], interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=8)
    for j in range(k):
        axes[0, j].set_title(f"scene {int(result.indices[j])}", fontsize=7)
    palette = class_palette(c)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[i]) for i in range(1, c)]
    fig.legend(
        handles,
        result.class_names[1:],
        loc="lower center",
        ncol=min(c - 1, 6),
        fontsize=7,
        frameon=False,
    )
    fig.suptitle(
        f"{m['n']} scenes: mean IoU optical {m['optical_mean_iou']:.3f}, digital "
        f"{m['digital_mean_iou']:.3f}; pixel agreement {m['pixel_agreement']:.3f}",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    panel = run_path.with_name(f"{run_path.stem}_overlay.png")
    fig.savefig(panel, dpi=100)
    plt.close(fig)
    paths = [panel]
    gap = np.full((result.images.shape[1], 1, 3), 255, np.uint8)
    for j in range(k):
        gray = overlay(result.images[j : j + 1], np.zeros_like(result.truth[j : j + 1]), c)[0]
        strip = np.concatenate(
            [gray, gap, rows["optical"][j], gap, rows["digital"][j], gap, rows["truth"][j]], 1
        )
        path = run_path.with_name(f"{run_path.stem}_{int(result.indices[j]):04d}_overlay.png")
        _save_png(path, strip, scale)
        paths.append(path)
    return paths


def save_seg_run(
    path: str | os.PathLike[str],
    result: SegRunResult,
    setup: HybridSetup,
    checkpoint: str | None = None,
    overwrite: bool = True,
    unique: bool = False,
) -> Path:
    """One HDF5 file per run: inputs, true / optical / digital masks, optical overlays, metrics, provenance.
    ``overwrite``/``unique``: as :func:`lab4f.storage.publish`; returns the name the file was saved under."""
    c = len(result.class_names)
    with (
        atomic_write(path, overwrite=overwrite, unique=unique) as target,
        h5_file(target.tmp, "segmentation_run", SEG_RUN_SCHEMA) as f,
    ):
        f.create_dataset("indices", data=result.indices)
        f.create_dataset("images", data=result.images.astype(np.float32), compression="gzip")
        for name, masks in (
            ("truth_masks", result.truth),
            ("optical_masks", result.optical),
            ("digital_masks", result.digital),
        ):
            f.create_dataset(name, data=masks, compression="gzip")
        ds = f.create_dataset(
            "overlays", data=overlay(result.images, result.optical, c), compression="gzip"
        )
        ds.attrs["what"] = (
            f"optical predicted masks over the input, RGB uint8, alpha {OVERLAY_ALPHA}"
        )
        f.create_dataset("palette", data=class_palette(c))
        f.create_dataset("sample_frames", data=result.run.sample_frames, compression="gzip")
        f.create_dataset(
            "sample_features",
            data=result.run.sample_features.astype(np.float32),
            compression="gzip",
        )
        write_json_attr(f, "metrics", result.metrics())
        write_json_attr(f, "class_names", list(result.class_names))
        write_provenance(f, setup, checkpoint)
    assert target.path is not None
    return target.path


def run_scenes(
    setup: HybridSetup,
    out: str | os.PathLike[str],
    checkpoint: str | None = None,
    split: str = "test",
    scenes: str | None = None,
    data_seed: int | None = None,
    limit: int | None = None,
    policy: str = "evaluate",
    back: torch.nn.Module | None = None,
    pngs: int = 8,
    data_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = True,
    unique: bool = False,
) -> dict[str, Any]:
    """Generated scenes (or the checkpoint's folder split) through the bench → run file + overlay PNGs next to it;
    returns the metrics and paths. ``data_dir`` overrides the folder a folder-trained checkpoint records."""
    data = bench_scenes(setup.model_cfg, split, scenes, data_seed, limit, data_dir)  # type: ignore[arg-type]
    result = run_segmentation(setup, data, policy=policy, back=back)
    path = save_seg_run(out, result, setup, checkpoint, overwrite=overwrite, unique=unique)
    pngs_written = save_overlay_pngs(path, result, pngs)
    return result.metrics() | {"run_file": str(path), "overlays": [str(p) for p in pngs_written]}
