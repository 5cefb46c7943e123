"""What the panels share, owned by the GUI thread: model, program, calibration record and the test images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6 import QtCore

from lab4f.calibration import CalibrationRecord
from lab4f.gui.calibration_check import CalibrationCheck, check_calibration
from lab4f.task import CLASSIFICATION, SEGMENTATION, Task


class AppState(QtCore.QObject):
    """Shared state; signals tell panels what changed. Touched only from the GUI thread."""

    model_changed = QtCore.Signal()
    program_changed = QtCore.Signal()
    calibration_changed = QtCore.Signal()
    calibrating_changed = QtCore.Signal(
        bool
    )  # a calibration started (True) or ended: other bench jobs wait
    compiling_changed = QtCore.Signal(bool)  # a compile started (True) or ended: calibrations wait
    status = QtCore.Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint: Loaded | None = None
        self.program: Any = None  # OpticalProgram, compiled and uploaded
        self.program_path: str | None = None
        self.calibration: CalibrationRecord | None = None  # the record in use (run here or loaded)
        self.stale_steps: dict[
            str, list[str]
        ] = {}  # its steps measured before a step they build on was re-run
        self.camera_shape: tuple[int, int] | None = None
        self.calibrating = False
        self.compiling = False

    def calibration_check(self) -> CalibrationCheck:
        """What the record in use lacks for the uploaded program, or has stale (`lab4f.gui.calibration_check`)."""
        return check_calibration(
            self.calibration,
            self.program_path if self.program is not None else None,
            self.stale_steps,
        )

    def set_calibrating(self, on: bool) -> None:
        if on != self.calibrating:
            self.calibrating = on
            self.calibrating_changed.emit(on)

    def set_compiling(self, on: bool) -> None:
        if on != self.compiling:
            self.compiling = on
            self.compiling_changed.emit(on)


@dataclass
class Loaded:
    """A loaded checkpoint with its task (:mod:`lab4f.task`, chosen once from the checkpoint) and the test inputs
    the live run shows (in [0, 1], at the model's input size) with their targets: class labels (N,) for a classifier,
    masks (N, H, W) for a segmentation student."""

    path: str
    model: Any
    cfg: Any
    meta: dict[str, Any]
    kernels: np.ndarray  # (C_out, C_in, K, K)
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_names: tuple[str, ...] = ()
    task: Task = CLASSIFICATION

    @property
    def view(self) -> str:
        """How its results are shown: the task's view ("probabilities", "masks")."""
        return self.task.view

    @property
    def segmentation(self) -> bool:
        return self.task is SEGMENTATION


def load_for_gui(path: str, n_images: int = 200) -> Loaded:
    """Load a checkpoint and the first ``n_images`` of its task's test split: the data set's images, or for a
    segmentation student the scenes it was tested on (runs in the job thread)."""
    from lab4f.task import task_of_checkpoint

    task = task_of_checkpoint(path)
    model, cfg, meta = task.load(path)
    if not hasattr(model, "kernel_bank"):
        from lab4f.errors import CheckpointError

        raise CheckpointError(
            f"{path} is a {cfg.kind} checkpoint; load a 'student' or 'linear' (SCLC) checkpoint"
        )
    kernels = model.kernel_bank().weights.numpy()
    data = task.data(cfg, meta, "test", checkpoint=path, limit=n_images)
    return Loaded(
        path,
        model,
        cfg,
        meta,
        kernels,
        data.images[:, 0].numpy().astype(np.float32),
        data.targets.numpy(),
        data.class_names,
        task,
    )
