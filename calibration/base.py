"""What every calibration step shares: its result type, progress reporting and cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab4f.errors import CalibrationCancelled

Progress = Callable[[float, str], None]


@dataclass
class StepResult:
    """One step's outcome: scalar quality figures, arrays for the record, and plain (JSON-able) values."""

    name: str
    quality: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str = ""

    def summary(self) -> dict[str, Any]:
        """Quality figures and message, for logs, `--json` and the GUI."""
        return {"name": self.name, "quality": dict(self.quality), "duration_s": round(self.duration_s, 3),
                "message": self.message}


class StepControl:
    """Progress and cancellation of one step: ``report(f, msg)`` checks the cancel flag every time."""

    def __init__(self, name: str, progress: Progress | None, cancel: threading.Event | None) -> None:
        self.name, self._progress, self._cancel = name, progress, cancel
        self.t0_s = time.perf_counter()

    def check(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise CalibrationCancelled(
                f"calibration step {self.name!r} was cancelled; nothing was saved and the previous "
                "calibration record is still the latest. Run the step again when ready."
            )

    def report(self, fraction: float, message: str) -> None:
        self.check()
        if self._progress is not None:
            self._progress(float(min(max(fraction, 0.0), 1.0)), f"{self.name}: {message}")

    def finish(self, result: StepResult) -> StepResult:
        result.duration_s = time.perf_counter() - self.t0_s
        self.report(1.0, result.message or "done")
        return result
