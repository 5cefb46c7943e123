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
class Provenance:
    """When a step was measured, on what: lets a record loaded from disk tell which of its steps are stale.

    ``measured``: ISO-8601 UTC time (microseconds) — also the step's version: a re-run step has a new one.
    ``upstream``: for every step this one builds on (:data:`lab4f.calibration.steps.STEPS` ``needs_fresh``), that
    step's ``measured`` when this one was measured; None if the record had no such step then, "" if it had one of
    unknown time (from a record written before per-step times). ``program_sha256``: the program a program-dependent
    step was measured for.
    """

    measured: str
    upstream: dict[str, str | None] = field(default_factory=dict)
    program_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "upstream": dict(self.upstream),
            "program_sha256": self.program_sha256,
        }

    @classmethod
    def from_json(cls, d: Any) -> Provenance | None:
        """None (unknown) for anything that is not a provenance written by :meth:`to_json`."""
        if not isinstance(d, dict) or not isinstance(d.get("measured"), str):
            return None
        up = d.get("upstream")
        upstream = (
            {str(k): (v if isinstance(v, str) else None) for k, v in up.items()}
            if isinstance(up, dict)
            else {}
        )
        sha = d.get("program_sha256")
        return cls(d["measured"], upstream, sha if isinstance(sha, str) else None)


def now_measured() -> str:
    """The current UTC time as a step's ``measured`` stamp (microseconds: steps of one run differ)."""
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class StepResult:
    """One step's outcome: scalar quality figures, arrays for the record, and plain (JSON-able) values."""

    name: str
    quality: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str = ""
    provenance: Provenance | None = (
        None  # set by the runner; None: unknown (a record from before per-step times)
    )

    def summary(self) -> dict[str, Any]:
        """Quality figures and message, for logs, `--json` and the GUI."""
        out = {
            "name": self.name,
            "quality": dict(self.quality),
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
        }
        if self.provenance is not None:
            out["measured"] = self.provenance.measured
        return out


class StepControl:
    """Progress and cancellation of one step: ``report(f, msg)`` checks the cancel flag every time."""

    def __init__(
        self, name: str, progress: Progress | None, cancel: threading.Event | None
    ) -> None:
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
