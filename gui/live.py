"""Qt-free glue between the GUI and the streaming core: the newest frame for the live view, and a live run
(:class:`lab4f.bench.stream.Pipeline` around a :class:`lab4f.bench.hybrid.HybridSetup`) whose running
accuracies (mean IoU for a segmentation student) the Inference panel reads and which is recorded through
:func:`lab4f.bench.run.save_run` (:func:`lab4f.bench.segrun.save_seg_run`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.hybrid import HybridSetup, check_display_fits
from lab4f.bench.run import RunResult, save_run
from lab4f.bench.stream import Pipeline, StreamStats

SAMPLE_FRAMES = 4  # raw camera frames kept for the run file
#: Results a live run keeps (the newest; counters cover the whole run) and so records: a run left streaming for hours
#: must not grow without bound. 100,000 classifier results are ~35 MB; 2,000 segmentation masks at 48² ~5 MB (their
#: run file, with images and overlays, ~50 MB).
KEEP_RESULTS = 100_000
SEG_KEEP_RESULTS = 2_000
#: Inputs (and live-view frames) per second by default, like a 60 Hz input monitor. Unpaced, the simulated
#: bench runs at ~180 frames/s and its acquisition and inference threads take both cores of a small PC.
DEFAULT_RATE_HZ = 60.0


class Pacer:
    """Sleeps so that calls happen at most ``rate_hz`` times a second (None or 0: never sleeps)."""

    def __init__(self, rate_hz: float | None) -> None:
        self.interval_s = 1.0 / rate_hz if rate_hz else 0.0
        self._due = 0.0

    def wait(self) -> None:
        if not self.interval_s:
            return
        now = time.perf_counter()
        if now < self._due:
            time.sleep(self._due - now)
        # the next slot is one interval after this one, or after now when this call came late: no burst
        self._due = max(self._due, now) + self.interval_s


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


def camera_pipeline(bench: Any, latest: LatestFrame, device_lock: Any, rate_hz: float | None = DEFAULT_RATE_HZ,
                    capacity: int = 4) -> Pipeline:
    """Live view only: grab at most ``rate_hz`` frames/s; frames go to ``latest``, nothing is processed."""
    camera, pacer = bench.camera, Pacer(rate_hz)

    def acquire() -> tuple[int, np.ndarray]:
        pacer.wait()
        with device_lock:
            frame = np.asarray(camera.get_image())
        latest.put(frame)
        return int(getattr(camera, "last_frame_index", latest.count)), frame

    return Pipeline(acquire, lambda frames: [None] * len(frames), policy="live", capacity=capacity,
                    batch_size=capacity, stack=False)


@dataclass
class Tally:
    """Running counts over the results read so far (the GUI thread owns it). For segmentation ``agree`` counts
    pixels and the confusion matrices (truth × prediction) give the running mean IoU."""

    read: int = 0
    labelled: int = 0
    optical_correct: int = 0
    digital_correct: int = 0
    agree: int = 0
    pixels: int = 0
    missed: int = 0
    cm_optical: np.ndarray | None = None
    cm_digital: np.ndarray | None = None
    last: dict[str, Any] | None = None


def _confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    from lab4f.segmentation.train import confusion_matrix

    return confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), k).numpy()


def _mean_iou(cm: np.ndarray | None) -> float:
    from lab4f.segmentation.train import scores_from_confusion

    return float("nan") if cm is None else scores_from_confusion(torch.from_numpy(cm))["mean_iou"]


@dataclass
class LiveRun:
    """A live-inference run: the feed's inputs shown in turn, frames through features + back end + softmax.

    The digital reference is the student on the same inputs, computed once for the whole feed at start.
    """

    setup: HybridSetup
    images: np.ndarray  # (N, h, w) in [0, 1]
    labels: np.ndarray  # (N,), −1 where unknown; or masks (N, h, w) for a segmentation student
    latest: LatestFrame
    device_lock: Any = field(default_factory=threading.RLock)  # held while showing and grabbing
    checkpoint: str | None = None
    rate_hz: float | None = DEFAULT_RATE_HZ  # inputs shown per second (None or 0: as fast as the camera)
    capacity: int = 8
    batch_size: int = 8
    class_names: tuple[str, ...] = ()  # a segmentation run file names its classes
    #: recorded in the run file's metrics, e.g. ``calibration_warning_acknowledged``: the warning the user started on
    notes: dict[str, Any] = field(default_factory=dict)
    back: torch.nn.Module = field(init=False)
    pipeline: Pipeline = field(init=False)
    digital_probs: np.ndarray = field(init=False)  # (N, K) probabilities, or (N, H, W) uint8 masks
    num_classes: int = field(init=False)
    tally: Tally = field(default_factory=Tally, init=False)
    _samples: list[np.ndarray] = field(default_factory=list, init=False)
    _position: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        check_display_fits(self.setup, self.images)  # refused here, not as an error in the acquisition thread
        student = self.setup.student.eval()
        self.back = student.back
        with torch.no_grad():
            x = torch.from_numpy(self.images[:, None].astype(np.float32))
            out = torch.cat([student(x[i : i + 64]) for i in range(0, len(x), 64)])
            self.num_classes = int(out.shape[1])
            # segmentation keeps masks (uint8), not N×K×H×W probabilities: only the argmax is ever used
            self.digital_probs = (out.argmax(1).to(torch.uint8) if self.segmentation
                                  else torch.softmax(out, dim=1)).numpy()
        self.setup.fused_head(self.back)  # built here, not in the stream's first batch
        single = len(self.setup.program.frames) == 1
        camera, pacer = self.setup.bench.camera, Pacer(self.rate_hz)

        def acquire() -> tuple[int, np.ndarray, int]:
            pacer.wait()
            k = self._position % len(self.images)
            with self.device_lock:
                frames = self.setup.grab(self.images[k])
            self.latest.put(frames[0])
            if len(self._samples) < SAMPLE_FRAMES:
                self._samples.append(frames[0].copy())
            # the camera's own counter reveals frames it lost; time-multiplexed runs count inputs
            index = int(getattr(camera, "last_frame_index", self._position)) if single else self._position
            self._position += 1
            return index, frames, k

        self.pipeline = Pipeline(acquire, self.process, policy="live", capacity=self.capacity,
                                 batch_size=self.batch_size,
                                 keep_results=SEG_KEEP_RESULTS if self.segmentation else KEEP_RESULTS)

    @property
    def segmentation(self) -> bool:
        return self.labels.ndim == 3

    def process(self, frames: np.ndarray) -> list[np.ndarray]:
        """(B, F, H, W) camera frames → class probabilities of the optical path, or for segmentation its masks
        (uint8: K×H×W float probabilities per kept result would cost MBs where a mask costs KBs)."""
        with torch.no_grad():
            out = self.setup.logits(frames, self.back)
            if self.segmentation:
                return list(out.argmax(1).to(torch.uint8).numpy())
            return list(torch.softmax(out, dim=1).numpy())

    def start(self) -> LiveRun:
        self.pipeline.start()
        return self

    def stop(self) -> None:
        self.pipeline.stop()

    def poll(self) -> dict[str, Any]:
        """Counters now: the pipeline's stats plus running accuracies over the results since the last poll
        (segmentation: running mean IoU of both paths and the optical/digital pixel agreement)."""
        stats: StreamStats = self.pipeline.stats()
        t = self.tally
        new, total = self.pipeline.results_since(t.read)  # the newest are kept: a live run has no end
        t.missed += total - t.read - len(new)  # trimmed before this poll read them (a very slow GUI)
        t.read = total
        nan = float("nan")
        if self.segmentation:
            n_cls = self.num_classes
            for _, k, optical in new:
                digital = self.digital_probs[k]
                t.agree += int((optical == digital).sum())
                t.pixels += optical.size
                co, cd = _confusion(optical, self.labels[k], n_cls), _confusion(digital, self.labels[k], n_cls)
                t.cm_optical = co if t.cm_optical is None else t.cm_optical + co
                t.cm_digital = cd if t.cm_digital is None else t.cm_digital + cd
                t.last = {"image": self.images[k], "truth": self.labels[k], "optical_mask": optical,
                          "digital_mask": digital, "input": k, "num_classes": n_cls}
            return stats.to_dict() | {
                "task": "segmentation", "optical_mean_iou": _mean_iou(t.cm_optical),
                "digital_mean_iou": _mean_iou(t.cm_digital),
                "agreement": t.agree / t.pixels if t.pixels else nan, "last": t.last,
            }
        for _, k, probs in new:
            optical, digital, label = int(np.argmax(probs)), int(np.argmax(self.digital_probs[k])), int(self.labels[k])
            t.agree += optical == digital
            if label >= 0:
                t.labelled += 1
                t.optical_correct += optical == label
                t.digital_correct += digital == label
        if new:
            _, k, probs = new[-1]
            t.last = {"image": self.images[k], "label": int(self.labels[k]), "optical_probs": probs,
                      "digital_probs": self.digital_probs[k], "input": k}
        return stats.to_dict() | {
            "task": "classification",
            "optical_accuracy": t.optical_correct / t.labelled if t.labelled else nan,
            "digital_accuracy": t.digital_correct / t.labelled if t.labelled else nan,
            # over the results compared: any trimmed before a (very slow) poll read them are not counted
            "agreement": t.agree / (t.read - t.missed) if t.read > t.missed else nan, "last": t.last,
        }

    def result(self) -> RunResult:
        """The run so far as the core's RunResult (what `lab4f run` saves), sampled features included."""
        summary = self.pipeline.summary()
        done = np.array([k for _, k, _ in summary.results], dtype=np.int64)
        optical = np.stack([p for _, _, p in summary.results]) if len(done) else np.zeros((0, 1), np.float32)
        digital = self.digital_probs[done] if len(done) else np.zeros((0, 1), np.float32)
        samples = np.stack(self._samples) if self._samples else np.zeros((0,), np.float32)
        features = np.zeros((0,), np.float32)
        if len(self._samples) and len(self.setup.program.frames) == 1:
            with torch.no_grad():
                features = self.setup.features(samples[:, None]).numpy()
        extra = {"source": "gui live run", "inputs": int(len(self.images))} | self.notes
        if self.pipeline.results_dropped:
            extra["recorded"] = (f"the newest {len(done)} of {len(done) + self.pipeline.results_dropped} results "
                                 "(a live run keeps a bounded number)")
        return RunResult(done, self.labels[done], optical, digital, summary, samples, features, extra)

    def save(self, path: str | Path) -> Path:
        if self.segmentation:
            from lab4f.bench.segrun import save_seg_run, segmentation_result

            res = self.result()
            names = self.class_names or tuple(str(i) for i in range(self.num_classes))
            result = segmentation_result(res, self.images, self.labels, names, {"scenes": "gui live run"} | self.notes)
            return save_seg_run(path, result, self.setup, checkpoint=self.checkpoint)
        return save_run(path, self.result(), self.setup, checkpoint=self.checkpoint)
