"""Qt-free live-inference engine the GUI workers drive: a bounded newest-wins frame queue, feature
extraction + back end on batches, the digital reference, and the counters the Inference panel shows.

Stand-in until ``lab4f.bench.stream.Pipeline`` lands; it uses the same core pieces (FeatureExtractor,
the student's back end) so swapping it for the pipeline changes no panel.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.extract import FeatureExtractor
from lab4f.storage import atomic_h5, write_json_attr

RUN_SCHEMA = 1


@dataclass
class Acquired:
    """One camera frame with the input shown for it (label -1 when unknown) and its acquisition time."""

    index: int
    frame: np.ndarray
    image: np.ndarray
    label: int
    t_acquired_s: float


class FrameQueue:
    """Bounded queue between acquisition and inference; `live` policy: the newest frame wins, drops counted."""

    def __init__(self, capacity: int = 8) -> None:
        self._items: collections.deque[Acquired] = collections.deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self.acquired = 0
        self.dropped = 0

    def put(self, item: Acquired) -> None:
        with self._lock:
            self.acquired += 1
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)

    def take(self, max_items: int) -> list[Acquired]:
        with self._lock:
            n = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def depth(self) -> int:
        with self._lock:
            return len(self._items)


class LatestFrame:
    """The newest camera frame, written by the device thread and read by the GUI's draw timer."""

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


@dataclass
class RunStats:
    """Running counters of one live-inference run."""

    processed: int = 0
    labelled: int = 0
    optical_correct: int = 0
    digital_correct: int = 0
    agree: int = 0
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=500))
    t_start_s: float = field(default_factory=time.perf_counter)
    predictions: list[tuple[int, int, int, int]] = field(default_factory=list)  # (index, label, optical, digital)

    def as_dict(self, queue: FrameQueue) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.t_start_s, 1e-9)
        lat = np.asarray(self.latencies_s, dtype=np.float64) * 1e3
        return {
            "acquired": queue.acquired, "processed": self.processed, "dropped": queue.dropped,
            "queue_depth": queue.depth(), "fps": self.processed / elapsed,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
            "optical_accuracy": self.optical_correct / self.labelled if self.labelled else float("nan"),
            "digital_accuracy": self.digital_correct / self.labelled if self.labelled else float("nan"),
            "agreement": self.agree / self.processed if self.processed else float("nan"),
        }


class LiveInference:
    """Frames → features (calibrated extractor) → back end → probabilities, beside the digital student."""

    def __init__(self, model: torch.nn.Module, extractor: FeatureExtractor, queue: FrameQueue,
                 max_batch: int = 16) -> None:
        self.model, self.extractor, self.queue, self.max_batch = model.eval(), extractor, queue, max_batch
        self.stats = RunStats()
        self.last: dict[str, Any] | None = None

    @torch.no_grad()
    def step(self) -> int:
        """Process whatever is queued (up to one batch); returns how many frames were processed."""
        items = self.queue.take(self.max_batch)
        if not items:
            return 0
        frames = np.stack([it.frame for it in items])
        optical = torch.softmax(self.model.back(self.extractor(frames)), dim=1)
        images = torch.from_numpy(np.stack([it.image for it in items])[:, None].astype(np.float32))
        digital = torch.softmax(self.model(images), dim=1)
        now = time.perf_counter()
        s = self.stats
        for k, it in enumerate(items):
            p_opt, p_dig = int(optical[k].argmax()), int(digital[k].argmax())
            s.processed += 1
            s.agree += p_opt == p_dig
            if it.label >= 0:
                s.labelled += 1
                s.optical_correct += p_opt == it.label
                s.digital_correct += p_dig == it.label
            s.latencies_s.append(now - it.t_acquired_s)
            s.predictions.append((it.index, it.label, p_opt, p_dig))
        last = items[-1]
        self.last = {"image": last.image, "label": last.label, "optical_probs": optical[-1].numpy(),
                     "digital_probs": digital[-1].numpy(), "index": last.index}
        return len(items)

    def save_run(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Predictions, labels and the counters of this run as HDF5 (atomic)."""
        path = Path(path)
        rows = np.asarray(self.stats.predictions, dtype=np.int64).reshape(-1, 4)
        with atomic_h5(path, "gui-live-run", RUN_SCHEMA) as f:
            f.create_dataset("index", data=rows[:, 0])
            f.create_dataset("labels", data=rows[:, 1])
            f.create_dataset("optical_predictions", data=rows[:, 2])
            f.create_dataset("digital_predictions", data=rows[:, 3])
            write_json_attr(f, "metrics", self.stats.as_dict(self.queue))
            write_json_attr(f, "context", extra or {})
        return path
