"""Simulated phase SLM in the Fourier plane of the 4f system: a slmsuite `SimulatedSLM` with bench realism.

Realism on top of slmsuite's model: a nonlinear gray -> phase response (the truth a phase-LUT
calibration must recover, stored as slmsuite's `gamma_sim`), fringing-field crosstalk (Gaussian blur
of the realised phase), a settle time after each write, and injected faults. Because it IS a slmsuite
SLM, `FourierSLM.fourier_calibrate`, `pixel_calibrate` and `wavefront_calibrate` run on it unchanged.

Settle model: a write reaches the light `settle_s` after it was sent. With ``settle_model = "step"`` the light
(and so the camera) sees the previous pattern until then; with ``"exponential"`` the liquid crystal relaxes
from the old to the new pattern, as a real one does, and an exposure during the change sees a mixture of both
(:mod:`lab4f.drivers.timing`). `settle_time_s` is set to `settle_s`, so slmsuite's `set_phase(settle=True)`
waits long enough.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.ndimage import gaussian_filter
from slmsuite.hardware.slms.simulated import SimulatedSLM

from lab4f.drivers.faults import FaultPlan, check_connected, check_write
from lab4f.drivers.timing import ResponseHistory, now
from lab4f.errors import DeviceDisconnected


class SimulatedSLMSettings(BaseModel):
    """Bench parameters of the simulated Fourier-plane SLM (defaults: a typical 8-bit LCoS at 633 nm)."""

    model_config = ConfigDict(extra="forbid")

    resolution: tuple[int, int] = Field(
        (512, 512), description="(width, height) in pixels, as slmsuite"
    )
    pitch_um: float = Field(8.0, gt=0)
    wav_um: float = Field(0.633, gt=0)
    bitdepth: int = Field(8, ge=1, le=12)
    phase_max_2pi: float = Field(
        1.05, gt=0, description="true phase at the top gray level, units of 2 pi"
    )
    phase_response_gamma: float = Field(
        1.3, gt=0, description="exponent of the gray -> phase power law"
    )
    crosstalk_sigma_px: float = Field(
        0.5, ge=0, description="fringing field: Gaussian blur of the phase"
    )
    settle_s: float = Field(
        0.03,
        ge=0,
        description="time after a write until the light sees it (99 %; "
        "a nematic LCoS: tens of ms; 0: instant, an idealisation)",
    )
    settle_model: Literal["step", "exponential"] = Field(
        "exponential",
        description="step: the new pattern appears whole after settle_s; exponential: the liquid crystal "
        "relaxes from the old to the new pattern (time constant settle_s / ln 100), as a real LCoS does",
    )
    name: str = "sim-fourier-slm"


def true_phase_response(settings: SimulatedSLMSettings) -> np.ndarray:
    """The true phase (units of 2 pi, magnitude) realised by each gray level: slmsuite's `gamma_sim`."""
    levels = 2**settings.bitdepth
    gray = np.arange(levels, dtype=np.float64) / (levels - 1)
    return settings.phase_max_2pi * gray**settings.phase_response_gamma


class SimulatedFourierSLM(SimulatedSLM):
    """Phase SLM with a nonlinear response, crosstalk, settle time and faults; a slmsuite SLM."""

    def __init__(
        self,
        settings: SimulatedSLMSettings | None = None,
        source: dict | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.settings = settings or SimulatedSLMSettings()
        self.faults = faults or FaultPlan()
        self.write_count = 0
        self._closed = False
        # Hardware state: the writes (index, time sent, display copy) and when the light saw each.
        self._history: ResponseHistory | None = None  # the writes the light saw, and when
        self.last_write_s = -np.inf
        self._next_write = 0
        self._field_cache: dict[int, np.ndarray] = {}
        self._last_good_phase: np.ndarray | None = None
        s = self.settings
        super().__init__(
            s.resolution,
            pitch_um=(s.pitch_um, s.pitch_um),
            source=source,
            gamma_sim=true_phase_response(s),
            bitdepth=s.bitdepth,
            wav_um=s.wav_um,
            settle_time_s=s.settle_s,
            name=s.name,
            gpu=False,
        )
        self.write_count = 0  # the constructor's blank write does not count

    # --- slmsuite hooks -------------------------------------------------------------------------

    def _set_phase_hw(self, display: np.ndarray) -> None:
        """Accept the pattern into the simulated hardware, or fail like a real controller would."""
        if self._closed:
            self._restore_last_good()
            raise DeviceDisconnected(
                f"{self.name} was closed; create a new SLM object to write again.", device=self.name
            )
        try:
            check_connected(self.faults, self.write_count, self.name)
            check_write(self.faults, self.write_count, self.name)
        except Exception:
            self._restore_last_good()
            raise
        t = now()
        state = (self._next_write, t, np.array(display, copy=True))
        self._next_write += 1
        self.write_count += 1
        self._last_good_phase = np.array(self.phase, copy=True)
        self.last_write_s = t
        if self._history is None:  # the constructor's blank write: shown from the start
            self._history = ResponseHistory(state[0], state, self._tau_s(), maxlen=16)
        else:
            step = self.settings.settle_model == "step"
            self._history.push(t + (self.settings.settle_s if step else 0.0), state[0], state)

    def _tau_s(self) -> float:
        """Exponential relaxation constant: ``settle_s`` is where 99 % of the change has happened."""
        return (
            0.0 if self.settings.settle_model == "step" else self.settings.settle_s / np.log(100.0)
        )

    def write_weights(self, t0: float, t1: float) -> list[tuple[float, int]]:
        """[(weight, write index)] the light saw over ``[t0, t1]`` (host clock), weights summing to 1."""
        assert self._history is not None
        return [(w, st.key) for w, st in self._history.weights(t0, t1)]

    def _display2phase(self, display: np.ndarray, dtype=np.float32) -> np.ndarray:
        """True phase for gray levels: slmsuite's `gamma_sim` lookup, then fringing-field crosstalk."""
        phase = super()._display2phase(display, dtype=dtype)
        sigma = self.settings.crosstalk_sigma_px
        if sigma > 0:
            phase = gaussian_filter(phase, sigma, mode="nearest").astype(dtype, copy=False)
        return phase

    def close(self) -> None:
        """Disconnect; later writes raise `DeviceDisconnected`."""
        self._closed = True

    # --- what the light sees --------------------------------------------------------------------

    def _restore_last_good(self) -> None:
        """A failed write leaves the previous pattern: undo slmsuite's in-place phase/display update."""
        if self._history is not None:
            np.copyto(self.display, self._history.latest.value[2])
        if self._last_good_phase is not None:
            np.copyto(self.phase, self._last_good_phase)

    @property
    def visible_write_index(self) -> int:
        """Index of the write the light mostly sees now (the previous one while the latest is settling)."""
        assert self._history is not None
        return int(self._history.dominant(now()).key)

    @property
    def latest_write_index(self) -> int:
        """Index of the latest accepted write (settled or not)."""
        assert self._history is not None
        return int(self._history.latest.key)

    def _state(self, index: int) -> tuple[int, float, np.ndarray]:
        assert self._history is not None
        for st in reversed(self._history.states()):
            if st.key == index:
                return st.value
        raise KeyError(f"write {index} is no longer held by the SLM")

    def true_phase(self, write_index: int | None = None) -> np.ndarray:
        """Phase (radians, float32) the light sees for a write: nonlinear response + crosstalk."""
        index = self.latest_write_index if write_index is None else write_index
        return self._display2phase(self._state(index)[2])

    def field_of_write(self, index: int) -> np.ndarray:
        """Complex transmittance (complex64) for a write: source amplitude x exp(i true phase)."""
        field = self._field_cache.get(index)
        if field is None:
            amp = np.asarray(self.source["amplitude_sim"], dtype=np.float32)
            phase = self.true_phase(index) + np.asarray(self.source["phase_sim"], dtype=np.float32)
            field = np.empty(
                phase.shape, dtype=np.complex64
            )  # float32 cos/sin: 10x faster than exp(1j*)
            field.real = amp * np.cos(phase)
            field.imag = amp * np.sin(phase)
            self._field_cache = {k: v for k, v in self._field_cache.items() if k >= index - 1}
            self._field_cache[index] = field
        return field

    def realised_field(self) -> np.ndarray:
        """Complex transmittance of the latest accepted write (what the light sees once settled)."""
        return self.field_of_write(self.latest_write_index)

    def visible_field(self) -> np.ndarray:
        """Complex transmittance the light sees right now (honours the settle time)."""
        return self.field_of_write(self.visible_write_index)

    def gray_to_phase_rad(self, gray: np.ndarray | int) -> np.ndarray:
        """True phase delay (radians, positive) of gray levels, before crosstalk: the LUT to recover."""
        gamma = np.asarray(self.gamma_sim)
        return 2 * np.pi * gamma[np.asarray(gray, dtype=np.int64)]
