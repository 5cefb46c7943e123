"""Qt-free glue between the GUI and the streaming core: the newest frame for the live view, and a live run —
the core's streaming loop (:class:`lab4f.bench.run.StreamRun`, the one `lab4f run` uses) going round the feed
until stopped — whose running metric (the task's :meth:`lab4f.task.Task.tally`: accuracies, or mean IoU) the
Inference panel reads and which the task records (:meth:`lab4f.task.Task.save`, the run file `lab4f run` writes).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.hybrid import HybridSetup
from lab4f.bench.inputs import check_display_fits
from lab4f.bench.run import Pacer, RunResult, StreamRun
from lab4f.bench.stream import Pipeline, StreamStats
from lab4f.task import Tally, TaskData

__all__ = ["DEFAULT_RATE_HZ", "LatestFrame", "LiveRun", "Pacer", "camera_pipeline"]

SAMPLE_FRAMES = 4  # raw camera frames kept for the run file
# Results a live run keeps (the newest; counters cover the whole run) and so records: a run left streaming for hours
# must not grow without bound — the task's ``keep_results``.
#: Inputs (and live-view frames) per second by default, like a 60 Hz input monitor. Unpaced, the simulated
#: bench runs at ~180 frames/s and its acquisition and inference threads take both cores of a small PC.
DEFAULT_RATE_HZ = 60.0


class LatestFrame:
    """The newest camera frame, written by the acquisition thread and read by the GUI's draw timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self.count = 0

    def put(self, frame: np.ndarray) -> None:
        with self._lock:
            self._frame = frame
            self.count += 1

    def get(self) -> tuple[np.ndarray | None, int]:
        with self._lock:
            return self._frame, self.count


def camera_pipeline(
    bench: Any,
    latest: LatestFrame,
    device_lock: Any,
    rate_hz: float | None = DEFAULT_RATE_HZ,
    capacity: int = 4,
) -> Pipeline:
    """Live view only: grab at most ``rate_hz`` frames/s; frames go to ``latest``, nothing is processed."""
    camera, pacer = bench.camera, Pacer(rate_hz)

    def acquire() -> tuple[int, np.ndarray]:
        pacer.wait()
        with device_lock:
            frame = np.asarray(camera.get_image())
        latest.put(frame)
        return int(getattr(camera, "last_frame_index", latest.count)), frame

    return Pipeline(
        acquire,
        lambda frames: [None] * len(frames),
        policy="live",
        capacity=capacity,
        batch_size=capacity,
        stack=False,
    )


@dataclass
class LiveRun:
    """A live-inference run: the feed's inputs shown in turn, again and again until stopped, through the core's
    streaming loop (:class:`lab4f.bench.run.StreamRun`: features + back end + the task's outputs), paced at
    ``rate_hz`` and under ``device_lock``, each camera frame handed to ``latest`` for the live view.

    The digital reference is the student on the same inputs, computed once for the whole feed at start.
    """

    setup: HybridSetup
    images: np.ndarray  # (N, h, w) in [0, 1]
    labels: (
        np.ndarray
    )  # the task's targets: (N,) class labels, −1 where unknown; or masks (N, h, w)
    latest: LatestFrame
    device_lock: Any = field(default_factory=threading.RLock)  # held while showing and grabbing
    checkpoint: str | None = None
    rate_hz: float | None = (
        DEFAULT_RATE_HZ  # inputs shown per second (None or 0: as fast as the camera)
    )
    capacity: int = 8
    batch_size: int = 8
    class_names: tuple[str, ...] = ()  # a segmentation run file names its classes
    #: recorded in the run file's metrics, e.g. ``calibration_warning_acknowledged``: the warning the user started on
    notes: dict[str, Any] = field(default_factory=dict)
    stream: StreamRun = field(init=False)
    tally: Tally = field(init=False)
    _read: int = field(default=0, init=False)
    _missed: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        check_display_fits(
            self.setup, self.images
        )  # refused here, not as an error in the acquisition thread
        task = self.setup.task
        x = torch.from_numpy(self.images[:, None].astype(np.float32))
        self.stream = StreamRun(
            self.setup,
            x,
            torch.from_numpy(np.asarray(self.labels)),
            policy="live",
            batch_size=self.batch_size,
            capacity=self.capacity,
            samples=SAMPLE_FRAMES,
            repeat=True,
            rate_hz=self.rate_hz,
            device_lock=self.device_lock,
            on_frame=self.latest.put,
            keep_results=task.keep_results,
            digital_batch=64,
        )
        self.tally = task.tally(self.num_classes)

    @property
    def task(self) -> Any:
        return self.setup.task

    @property
    def pipeline(self) -> Pipeline:
        return self.stream.pipeline

    @property
    def digital_probs(self) -> np.ndarray:
        """The digital path's outputs for the whole feed: (N, K) probabilities, or (N, H, W) uint8 masks."""
        return self.stream.digital

    @property
    def num_classes(self) -> int:
        cfg = self.setup.model_cfg
        return int(getattr(cfg, "num_classes", 0) or len(self.class_names))

    def start(self) -> LiveRun:
        self.stream.start()
        return self

    def stop(self) -> None:
        self.stream.stop()

    def poll(self) -> dict[str, Any]:
        """Counters now: the pipeline's stats plus the task's running metric over the results since the last poll
        (``task``, the metric's figures, ``agreement`` of the optical and digital paths, the newest result)."""
        stats: StreamStats = self.pipeline.stats()
        new, total = self.pipeline.results_since(
            self._read
        )  # the newest are kept: a live run has no end
        self._missed += (
            total - self._read - len(new)
        )  # trimmed before this poll read them (a very slow GUI)
        self._read = total
        digital = self.stream.digital
        for _, k, optical in new:
            self.tally.add(k, self.images[k], optical, digital[k], self.labels[k])
        return stats.to_dict() | self.tally.metrics()

    def result(self) -> RunResult:
        """The run so far as the core's RunResult (what `lab4f run` saves), sampled features included."""
        res = self.stream.result()
        res.extra |= {"source": "gui live run", "inputs": int(len(self.images))} | self.notes
        return res

    def save(self, path: str | Path) -> Path:
        """The run file `lab4f run` writes for this task (no overlay PNGs beside it)."""
        task = self.setup.task
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        data = TaskData(
            torch.from_numpy(self.images[:, None].astype(np.float32)),
            torch.from_numpy(np.asarray(self.labels)),
            names,
            "gui live run",
        )
        result = task.result(self.result(), data, dict(self.notes))
        return task.save(path, result, self.setup, checkpoint=self.checkpoint, pngs=0)[0]
