"""Simulated input display (DMD, monitor or amplitude SLM) that shows the input image of the 4f system.

Geometry: display pixel (row i, col j) lands on output-plane cell
    (row, col) = (Ny // 2 + i - H // 2 + y0, Nx // 2 + j - W // 2 + x0)
of the Fourier SLM's far-field grid (Ny, Nx), where (Ny // 2, Nx // 2) is the optical axis and
(x0, y0) = `position_px`. One display pixel maps onto one far-field cell; the display's centre pixel
(H // 2, W // 2) sits on the optical axis when `position_px` is (0, 0).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveInt

from lab4f.drivers.display import Display
from lab4f.drivers.faults import FaultPlan, check_connected
from lab4f.drivers.timing import ResponseHistory, now, rise_to_tau
from lab4f.errors import DeviceDisconnected


class SimulatedDisplaySettings(BaseModel):
    """Bench parameters of the simulated input display."""

    model_config = ConfigDict(extra="forbid")

    shape: tuple[PositiveInt, PositiveInt] = Field(
        (28, 28), description="(height, width) in pixels, each >= 1"
    )
    bitdepth: int = Field(8, ge=1, le=16)
    gamma: float = Field(
        2.2, gt=0, description="intensity = black + (1 - black) * level ** gamma (2.2: an LCD)"
    )
    black_level: float = Field(
        0.001, ge=0, lt=1, description="relative intensity of gray 0 (contrast)"
    )
    position_px: tuple[FiniteFloat, FiniteFloat] = Field(
        (0.0, 0.0),
        description="(x, y) offset of the centre pixel from the optical axis, in output cells",
    )
    refresh_hz: float | None = Field(
        60.0,
        gt=0,
        description="refresh rate; a new image appears at a refresh (60: an LCD monitor; a DMD: its "
        "pattern rate; inf or None: the instant it is sent, an idealisation no real display has)",
    )
    latency_frames: int = Field(
        2,
        ge=0,
        description="pipeline latency in whole refresh periods after the next refresh (monitors: 1-3)",
    )
    response_s: float = Field(
        0.008,
        ge=0,
        description="10-90 % rise time of the pixels (liquid crystal: ~5-10 ms; a DMD: 0)",
    )
    name: str = "sim-input-display"


class SimulatedDisplay(Display):
    """Shows an image quantised to its bit depth through its intensity response; the camera reads `image`."""

    def __init__(
        self, settings: SimulatedDisplaySettings | None = None, faults: FaultPlan | None = None
    ):
        self.settings = settings or SimulatedDisplaySettings()
        self.faults = faults or FaultPlan()
        self.name = self.settings.name
        self.write_count = 0
        self.version = 0
        self._closed = False
        self._levels = np.zeros(self.shape, dtype=self.level_dtype)
        self._image = self._response(self._levels)
        #: what the light shows over time (the camera integrates it over each exposure)
        self.history = ResponseHistory(
            self.version, self._image, rise_to_tau(self.settings.response_s)
        )
        #: host time of the latest show() call and when its image starts to appear
        self.last_sent_s = self.last_on_s = -np.inf
        # the refresh clock's phase is the display's own, unknown to the host
        self._vsync0 = now() - float(
            np.random.default_rng().uniform(0, self.refresh_period_s or 0.0)
        )

    @property
    def refresh_period_s(self) -> float | None:
        """Seconds between refreshes (None: an instant display)."""
        hz = self.settings.refresh_hz
        return None if hz is None or np.isinf(hz) else 1.0 / hz

    def on_time(self, sent_s: float) -> float:
        """When an image sent at ``sent_s`` starts to appear: the next refresh, plus the pipeline latency."""
        period = self.refresh_period_s
        if period is None:
            return sent_s
        k = np.ceil((sent_s - self._vsync0) / period)
        return float(self._vsync0 + (k + self.settings.latency_frames) * period)

    def image_weights(self, t0: float, t1: float) -> list[tuple[float, int, np.ndarray]]:
        """[(weight, version, image)] the light showed over ``[t0, t1]`` (host clock), weights summing to 1."""
        return [(w, st.key, st.value) for w, st in self.history.weights(t0, t1)]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        h, w = self.settings.shape
        return int(h), int(w)

    @property
    def position_px(self) -> tuple[float, float]:
        """(x, y) offset of the centre pixel (H // 2, W // 2) from the optical axis, in output cells."""
        x, y = self.settings.position_px
        return float(x), float(y)

    @property
    def image(self) -> np.ndarray:
        """Relative intensity of the latest image sent (float32, shape `shape`), after quantisation and response
        (what the display shows once it has refreshed and settled; :meth:`image_weights` gives what it shows when)."""
        return self._image

    @property
    def bitdepth(self) -> int:
        return self.settings.bitdepth

    def _response(self, levels: np.ndarray) -> np.ndarray:
        s = self.settings
        drive = levels.astype(np.float32) / np.float32(2**s.bitdepth - 1)
        return (s.black_level + (1 - s.black_level) * drive**s.gamma).astype(np.float32)

    def _show_hw(self, levels: np.ndarray) -> None:
        if self._closed:
            raise DeviceDisconnected(
                f"{self.name} was closed; create a new display object.", device=self.name
            )
        check_connected(self.faults, self.write_count, self.name)
        self._levels = levels
        self._image = self._response(levels)
        self.write_count += 1
        self.version += 1
        self.last_on_s = self.on_time(self.last_sent_s)
        self.history.push(self.last_on_s, self.version, self._image)

    def cell_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) offsets from the optical axis, in output cells, of every display pixel (float64 (H, W))."""
        rows, cols = np.indices(self.shape, dtype=np.float64)
        x0, y0 = self.position_px
        return cols - self.shape[1] // 2 + x0, rows - self.shape[0] // 2 + y0

    def close(self) -> None:
        """Disconnect; later `show` calls raise `DeviceDisconnected`."""
        self._closed = True
