"""What the live view computes to help align the bench: a running mean of the last N frames, statistics of a region,
the sensor's saturation level. Qt-free numpy; the Live panel calls it in the GUI thread (≈1 ms per 512² frame)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class FrameAverager:
    """The mean of the last ``n`` frames (n = 1: the frame itself), kept as a running sum: one add and one subtract
    per frame whatever ``n`` is. A frame of another shape starts the average again."""

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, int(n))
        self._frames: deque[np.ndarray] = deque()
        self._sum: np.ndarray | None = None

    def set_n(self, n: int) -> None:
        if max(1, int(n)) != self.n:
            self.n = max(1, int(n))
            self.reset()

    def reset(self) -> None:
        self._frames.clear()
        self._sum = None

    @property
    def count(self) -> int:
        """Frames in the current mean (fewer than ``n`` right after a start or reset)."""
        return len(self._frames) if self.n > 1 else 1

    def add(self, frame: np.ndarray) -> np.ndarray:
        if self.n == 1:
            return frame
        f = np.asarray(frame, np.float32)
        if self._sum is None or self._sum.shape != f.shape:
            self.reset()
            self._sum = np.zeros(f.shape, np.float32)
        self._frames.append(f)
        self._sum += f
        while len(self._frames) > self.n:
            self._sum -= self._frames.popleft()
        return self._sum / len(self._frames)


def saturation_level(bitdepth: int | None, frame: np.ndarray | None = None) -> float | None:
    """The value a saturated pixel reads: 2**bitdepth − 1, else the integer type's maximum, else None (float frames
    of unknown depth)."""
    if bitdepth:
        return float(2 ** int(bitdepth) - 1)
    if frame is not None and np.issubdtype(frame.dtype, np.integer):
        return float(np.iinfo(frame.dtype).max)
    return None


def region_stats(
    region: np.ndarray, raw: np.ndarray | None = None, saturation: float | None = None
) -> dict[str, Any]:
    """Mean, standard deviation, min, max, sum and size of ``region`` (as shown, maybe averaged), and how many of the
    ``raw`` frame's pixels in it are saturated."""
    r = np.asarray(region, np.float64)
    if r.size == 0:
        return {"pixels": 0}
    out = {
        "pixels": int(r.size),
        "shape": tuple(r.shape),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "min": float(r.min()),
        "max": float(r.max()),
        "sum": float(r.sum()),
    }
    if raw is not None and saturation is not None:
        out["saturated"] = int(np.count_nonzero(np.asarray(raw) >= saturation))
    return out
