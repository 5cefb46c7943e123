"""Frames with their provenance: what a camera knows about when a frame was exposed.

A camera frame is only worth something if it provably shows the input it is paired with. lab4f's cameras
(the simulated camera, :class:`~lab4f.drivers.harvesters_camera.HarvestersCamera`) therefore offer, beside
slmsuite's ``get_image()``, a ``read_frame(timeout_s)`` that returns a :class:`Frame`: the pixels plus the
camera's frame ID (which counts frames the camera lost, so gaps are visible), the exposure start on the
HOST clock (``time.perf_counter()``; the camera maps its device timestamps onto it), the exposure, and whether
the buffer arrived complete.

The contract a camera fulfils to be synchronised (:mod:`lab4f.bench.sync`):

- ``read_frame(timeout_s) -> Frame``: the next frame in the camera's queue (oldest first, as GenTL's
  default ``OldestFirst`` delivers them), raising :class:`~lab4f.errors.DeviceTimeout` when none comes;
- ``drain() -> list[Frame]``: every frame already queued, without waiting for a new one (a real flush);
- ``trigger()`` (triggered cameras only): expose one frame now;
- ``trigger_mode``: ``"off"`` (free-running), ``"software"`` or ``"hardware"``;
- ``frame_period_s``: the time between frame starts when free-running.

A camera without ``read_frame`` (a plain slmsuite vendor camera) cannot prove when a frame was exposed:
the ``settle`` and ``trigger`` policies refuse it and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One camera frame and when it was exposed."""

    image: np.ndarray = field(repr=False)
    frame_id: int  # the camera's own counter; frames it lost leave gaps
    start_s: (
        float  # exposure start on the host clock (time.perf_counter()), from the device timestamp
    )
    exposure_s: float
    complete: bool = True  # False: the buffer arrived incomplete (a GigE link lost packets)
    timestamp_s: float | None = None  # the raw device timestamp, seconds on the device's own clock
    #: simulators only: what the frame really integrated, e.g. {"display": {version: weight}} — for tests that
    #: check a pairing against the truth; real cameras leave it None
    truth: dict | None = field(default=None, repr=False, compare=False)

    @property
    def end_s(self) -> float:
        """Exposure end on the host clock."""
        return self.start_s + self.exposure_s


@runtime_checkable
class FrameSource(Protocol):
    """A camera that can say when each frame was exposed (see the module docstring)."""

    trigger_mode: str

    def read_frame(self, timeout_s: float | None = None) -> Frame: ...

    def drain(self) -> list[Frame]: ...

    def trigger(self) -> None: ...

    @property
    def frame_period_s(self) -> float: ...
