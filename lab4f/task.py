"""The task a checkpoint was trained for — classification or segmentation — as one object, chosen once.

:func:`task_of` reads it from a checkpoint's metadata (:func:`lab4f.checkpoint.checkpoint_task`, the one rule);
everything that differs between the tasks is a method or attribute of the :class:`Task` it returns:

- ``load``: the checkpoint as the bench sees it (model, config with ``image_size``/``kind``/``num_classes``, meta);
- ``data``: the inputs and targets of a split (class labels (N,), or masks (N, H, W));
- ``outputs``: what a stream keeps of the back end's output per input (class probabilities, or a uint8 mask);
- ``loss`` and ``score`` (the metric: accuracy, or mean IoU), and ``tally`` (the same metric, running);
- ``run``, ``result`` and ``save``: a data set through the bench and the run file it is recorded in;
- ``view``: how a front end shows a result (``"probabilities"`` bars, or ``"masks"`` overlays).

Adding a task is one more :class:`Task` in :data:`TASKS`. Qt-free; the bench modules it drives
(:mod:`lab4f.bench.run`, :mod:`lab4f.bench.segrun`, :mod:`lab4f.bench.scenes`) never import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from lab4f.checkpoint import checkpoint_task, read_checkpoint
from lab4f.errors import ConfigError
from lab4f.segmentation.data import IGNORE_INDEX

if TYPE_CHECKING:
    from lab4f.bench.hybrid import HybridSetup
    from lab4f.bench.run import RunResult

PathLike = str | os.PathLike[str]


@dataclass
class TaskData:
    """A split for a task: inputs (N, 1, H, W) in [0, 1], targets (class labels (N,), or masks (N, H, W))."""

    images: torch.Tensor
    targets: torch.Tensor
    class_names: tuple[str, ...]
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def head(self, limit: int | None) -> TaskData:
        if limit is None:
            return self
        return TaskData(
            self.images[:limit], self.targets[:limit], self.class_names, self.source, self.info
        )


def _batched(back: nn.Module, features: torch.Tensor, batch_size: int) -> Any:
    back.eval()
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            yield i, back(features[i : i + batch_size])


class Task:
    """What differs between the tasks (see the module docstring). Subclasses fill in the class attributes."""

    name: ClassVar[str]
    metric: ClassVar[str]  # what ``score`` returns: "accuracy" or "mean_iou"
    items: ClassVar[str]  # what its inputs are called in messages: "inputs", "scenes"
    data_description: ClassVar[str]  # what ``data`` gives, for messages
    reads_image_folders: ClassVar[bool] = (
        False  # can also run a folder of images (class subfolders)
    )
    view: ClassVar[str]  # how a front end shows one result: "probabilities" or "masks"
    keep_results: ClassVar[int]  # results a run without an end keeps (the newest)
    ignore_index: ClassVar[int] = -100  # target value the loss skips

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # -- the model and its data -----------------------------------------------------------------------
    def load(self, path: PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
        raise NotImplementedError

    def data(
        self,
        cfg: Any,
        meta: dict[str, Any],
        split: str = "test",
        *,
        checkpoint: PathLike | None = None,
        dataset: str | None = None,
        data_dir: PathLike | None = None,
        limit: int | None = None,
        scenes: str | None = None,
        data_seed: int | None = None,
    ) -> TaskData:
        raise NotImplementedError

    # -- outputs, loss, metric ------------------------------------------------------------------------
    def outputs(self, logits: torch.Tensor) -> np.ndarray:
        """(B, K[, H, W]) back-end output → what a run keeps per input."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss: cross-entropy over classes (per pixel for segmentation, ``ignore_index`` skipped)."""
        return nn.functional.cross_entropy(logits, targets, ignore_index=self.ignore_index)

    def score(self, back: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
        """The task's metric of ``back`` on captured ``features`` against ``targets``."""
        raise NotImplementedError

    def tally(self, num_classes: int) -> Tally:
        """The running metric of a run without an end (the GUI's live run)."""
        raise NotImplementedError

    # -- runs and run files ---------------------------------------------------------------------------
    def result(self, run: RunResult, data: TaskData, extra: dict[str, Any] | None = None) -> Any:
        """A streamed run (:class:`lab4f.bench.run.RunResult`) as this task scores and records it."""
        raise NotImplementedError

    def run(
        self,
        setup: HybridSetup,
        data: TaskData,
        policy: str = "evaluate",
        back: nn.Module | None = None,
    ) -> Any:
        """``data`` through the bench (:func:`lab4f.bench.run.run_dataset`), scored: :meth:`result`."""
        from lab4f.bench import run as bench_run
        from lab4f.bench.inputs import check_display_fits

        check_display_fits(setup, data.images)
        res = bench_run.run_dataset(setup, data.images, data.targets, policy=policy, back=back)
        return self.result(res, data)

    def save(
        self,
        path: PathLike,
        result: Any,
        setup: HybridSetup,
        checkpoint: PathLike | None = None,
        overwrite: bool = True,
        unique: bool = False,
        pngs: int = 8,
    ) -> tuple[Path, dict[str, Any]]:
        """The run file (and any files beside it); returns its path and what to add to the run's summary."""
        raise NotImplementedError

    def describe(self, m: dict[str, Any]) -> str:
        """One line on a run's metrics, for people."""
        raise NotImplementedError


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


class Tally:
    """A running metric: ``add`` each result (input index, its image, the optical and digital outputs, the
    target), ``metrics`` for the figures so far; ``last`` is the newest result as a front end draws it."""

    task: Task

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.last: dict[str, Any] | None = None

    def add(
        self, k: int, image: np.ndarray, optical: np.ndarray, digital: np.ndarray, target: Any
    ) -> None:
        raise NotImplementedError

    def metrics(self) -> dict[str, Any]:
        raise NotImplementedError


# -- classification -------------------------------------------------------------------------------------------
class ClassificationTally(Tally):
    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.compared = self.labelled = self.optical_correct = self.digital_correct = self.agree = 0

    def add(
        self, k: int, image: np.ndarray, optical: np.ndarray, digital: np.ndarray, target: Any
    ) -> None:
        o, d, label = int(np.argmax(optical)), int(np.argmax(digital)), int(target)
        self.compared += 1
        self.agree += o == d
        if label >= 0:
            self.labelled += 1
            self.optical_correct += o == label
            self.digital_correct += d == label
        self.last = {
            "image": image,
            "label": label,
            "optical_probs": optical,
            "digital_probs": digital,
            "input": k,
        }

    def metrics(self) -> dict[str, Any]:
        nan = float("nan")
        return {
            "task": CLASSIFICATION.name,
            "optical_accuracy": self.optical_correct / self.labelled if self.labelled else nan,
            "digital_accuracy": self.digital_correct / self.labelled if self.labelled else nan,
            "agreement": self.agree / self.compared if self.compared else nan,
            "last": self.last,
        }


class Classification(Task):
    name = "classification"
    metric = "accuracy"
    items = "inputs"
    data_description = "its data set (the one it was trained on, or another) or a folder of images"
    reads_image_folders = True
    view = "probabilities"
    #: 100,000 classifier results are ~35 MB
    keep_results = 100_000

    def load(self, path: PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
        from lab4f.checkpoint import load_checkpoint

        return load_checkpoint(path)

    def data(
        self,
        cfg: Any,
        meta: dict[str, Any],
        split: str = "test",
        *,
        checkpoint: PathLike | None = None,
        dataset: str | None = None,
        data_dir: PathLike | None = None,
        limit: int | None = None,
        scenes: str | None = None,
        data_seed: int | None = None,
    ) -> TaskData:
        """The checkpoint's data set (or ``dataset``), split as at training; the first ``limit`` of ``split``.
        Data that differ from what the checkpoint was trained on are warned about (:mod:`lab4f.data_identity`)."""
        from lab4f.data import load_dataset
        from lab4f.data_identity import warn_if_data_differ

        if scenes is not None or data_seed is not None:
            raise ConfigError(
                "generated scenes and their seed are for segmentation checkpoints; this checkpoint "
                "is a classifier (give a data set or a folder of images)"
            )
        recorded = meta.get("dataset") or {}
        name = dataset or recorded.get("name", "mnist5k")
        splits = load_dataset(
            name,
            data_dir=data_dir,
            split_seed=recorded.get("split_seed", 0),
            image_size=cfg.image_size,
        )
        warn_if_data_differ(
            meta, splits, checkpoint, split
        )  # logged (and in a command's --json: data_warnings)
        x, y = getattr(splits, split).tensors
        return TaskData(x, y, tuple(splits.class_names), f"{name} ({split})").head(limit)

    def outputs(self, logits: torch.Tensor) -> np.ndarray:
        return torch.softmax(logits, dim=1).numpy()

    def score(self, back: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
        correct = 0
        for i, out in _batched(back, features, 512):
            correct += int((out.argmax(1) == targets[i : i + len(out)]).sum())
        return correct / max(len(features), 1)

    def tally(self, num_classes: int) -> Tally:
        return ClassificationTally(num_classes)

    def result(self, run: RunResult, data: TaskData, extra: dict[str, Any] | None = None) -> Any:
        run.extra.update(extra or {})
        return run

    def save(
        self,
        path: PathLike,
        result: Any,
        setup: HybridSetup,
        checkpoint: PathLike | None = None,
        overwrite: bool = True,
        unique: bool = False,
        pngs: int = 8,
    ) -> tuple[Path, dict[str, Any]]:
        from lab4f.bench.run import save_run

        return save_run(
            path,
            result,
            setup,
            None if checkpoint is None else str(checkpoint),
            overwrite=overwrite,
            unique=unique,
        ), {}

    def describe(self, m: dict[str, Any]) -> str:
        scores = (
            "no labelled inputs:"
            if m["labelled"] == 0
            else f"digital accuracy {_num(m['digital_accuracy'])}, optical {_num(m['optical_accuracy'])} "
            f"over {m['labelled']} labelled,"
        )
        return (
            f"{m['n']} inputs: {scores} agreement {_num(m['agreement'])}; {m['frames_per_s']:.1f} frames/s, "
            f"latency p50 {_num(m['latency_p50_ms'], '.1f')} ms p95 {_num(m['latency_p95_ms'], '.1f')} ms; "
            f"dropped {m['dropped']}; → {m['run_file']}"
        )


# -- segmentation ---------------------------------------------------------------------------------------------
def _confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    from lab4f.segmentation.train import confusion_matrix

    return confusion_matrix(
        torch.from_numpy(np.asarray(pred)), torch.from_numpy(np.asarray(truth)), k
    ).numpy()


def _mean_iou(cm: np.ndarray | None) -> float:
    from lab4f.segmentation.train import scores_from_confusion

    return (
        float("nan")
        if cm is None
        else float(scores_from_confusion(torch.from_numpy(cm))["mean_iou"])
    )


class SegmentationTally(Tally):
    """Running mean IoU of both paths (confusion matrices, truth × prediction) and their pixel agreement."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.agree = self.pixels = 0
        self.cm_optical: np.ndarray | None = None
        self.cm_digital: np.ndarray | None = None

    def add(
        self, k: int, image: np.ndarray, optical: np.ndarray, digital: np.ndarray, target: Any
    ) -> None:
        self.agree += int((optical == digital).sum())
        self.pixels += optical.size
        co, cd = (
            _confusion(optical, target, self.num_classes),
            _confusion(digital, target, self.num_classes),
        )
        self.cm_optical = co if self.cm_optical is None else self.cm_optical + co
        self.cm_digital = cd if self.cm_digital is None else self.cm_digital + cd
        self.last = {
            "image": image,
            "truth": target,
            "optical_mask": optical,
            "digital_mask": digital,
            "input": k,
            "num_classes": self.num_classes,
        }

    def metrics(self) -> dict[str, Any]:
        return {
            "task": SEGMENTATION.name,
            "optical_mean_iou": _mean_iou(self.cm_optical),
            "digital_mean_iou": _mean_iou(self.cm_digital),
            "agreement": self.agree / self.pixels if self.pixels else float("nan"),
            "last": self.last,
        }


class Segmentation(Task):
    name = "segmentation"
    metric = "mean_iou"
    items = "scenes"
    data_description = "the scenes it was trained on (generated, or its folder data set)"
    view = "masks"
    #: 2,000 masks at 48² are ~5 MB (their run file, with images and overlays, ~50 MB)
    keep_results = 2_000

    ignore_index = IGNORE_INDEX  # pixels not scored

    def load(self, path: PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
        from lab4f.bench.scenes import load_seg_for_bench

        return load_seg_for_bench(path)

    def data(
        self,
        cfg: Any,
        meta: dict[str, Any],
        split: str = "test",
        *,
        checkpoint: PathLike | None = None,
        dataset: str | None = None,
        data_dir: PathLike | None = None,
        limit: int | None = None,
        scenes: str | None = None,
        data_seed: int | None = None,
    ) -> TaskData:
        """The scenes the checkpoint was trained on (generated: ``scenes``/``data_seed`` override; or its folder
        data set's split, ``data_dir`` if the folder moved): :func:`lab4f.bench.scenes.bench_scenes`."""
        from lab4f.bench.scenes import bench_scenes

        if dataset is not None:
            raise ConfigError(
                "a segmentation checkpoint runs the scenes it was trained on (generated, or its folder "
                "data set: give its data folder if the folder moved), not another data set"
            )
        s = bench_scenes(
            cfg, split, scenes=scenes, data_seed=data_seed, limit=limit, data_dir=data_dir
        )
        return TaskData(s.images, s.masks, tuple(s.class_names), s.source)

    def outputs(self, logits: torch.Tensor) -> np.ndarray:
        # masks, not K×H×W probabilities: only the argmax is ever used, and a mask costs KBs where those cost MBs
        return logits.argmax(1).to(torch.uint8).numpy()

    def score(self, back: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
        from lab4f.segmentation.train import confusion_matrix, scores_from_confusion

        cm = None
        for i, out in _batched(back, features, 128):
            part = confusion_matrix(out.argmax(1), targets[i : i + len(out)], out.shape[1])
            cm = part if cm is None else cm + part
        return float("nan") if cm is None else float(scores_from_confusion(cm)["mean_iou"])

    def tally(self, num_classes: int) -> Tally:
        return SegmentationTally(num_classes)

    def result(self, run: RunResult, data: TaskData, extra: dict[str, Any] | None = None) -> Any:
        from lab4f.bench.segrun import segmentation_result

        return segmentation_result(
            run,
            data.images[:, 0].numpy(),
            data.targets.numpy(),
            data.class_names,
            {"scenes": data.source} | dict(extra or {}),
        )

    def save(
        self,
        path: PathLike,
        result: Any,
        setup: HybridSetup,
        checkpoint: PathLike | None = None,
        overwrite: bool = True,
        unique: bool = False,
        pngs: int = 8,
    ) -> tuple[Path, dict[str, Any]]:
        from lab4f.bench.segrun import save_overlay_pngs, save_seg_run

        written = save_seg_run(
            path,
            result,
            setup,
            None if checkpoint is None else str(checkpoint),
            overwrite=overwrite,
            unique=unique,
        )
        overlays = save_overlay_pngs(written, result, pngs) if pngs else []
        return written, {"overlays": [str(p) for p in overlays]}

    def describe(self, m: dict[str, Any]) -> str:
        return (
            f"{m['n']} scenes: digital mean IoU {_num(m['digital_mean_iou'])}, optical "
            f"{_num(m['optical_mean_iou'])} (pixel agreement {_num(m['pixel_agreement'])}); "
            f"{m['frames_per_s']:.1f} frames/s, latency p50 {_num(m['latency_p50_ms'], '.1f')} ms; dropped "
            f"{m['dropped']}; → {m['run_file']}, {len(m.get('overlays', []))} overlay PNGs"
        )


CLASSIFICATION = Classification()
SEGMENTATION = Segmentation()
#: every task, by the name checkpoints record (metadata ``task``)
TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, SEGMENTATION)}


def task_of(meta: dict[str, Any]) -> Task:
    """The task of a checkpoint with metadata ``meta``."""
    name = checkpoint_task(meta)
    if name not in TASKS:
        raise ConfigError(
            f"the checkpoint was trained for the task {name!r}; lab4f runs {', '.join(TASKS)}"
        )
    return TASKS[name]


def task_of_checkpoint(path: PathLike) -> Task:
    """The task of the checkpoint at ``path`` (read once, validated)."""
    return task_of(read_checkpoint(path)["metadata"])


def load_bench_checkpoint(path: PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
    """A classifier or segmentation checkpoint for the bench: (model, config with ``image_size``, ``kind`` and
    ``num_classes``, metadata). Its task is ``task_of(meta)``."""
    return task_of_checkpoint(path).load(path)
