"""Step 2, the input display's intensity response: drive value → light, measured through the 4f system.

The SCLC's optics are linear in the input *intensity*, so the display must show intensity proportional to the
image. Real displays do not: an LCD or amplitude SLM follows roughly black + (1 − black)·drive^γ with γ ≈ 2.2, and
a display's own gamma setting is rarely known. This step shows uniform gray levels through a flat SLM phase (the
4f system then images the display onto the camera), sums the light over the display's image relative to gray 0
— (I(d) − I(0)) / (I(1) − I(0)), which needs no dark frame at this exposure — and builds the inverse
(:class:`DisplayLinearizer`) that the bench applies to every image it shows (``Bench.show``), so that shown
intensity = I(0) + (I(1) − I(0))·image. It then checks the result by showing a linearised ramp. The black level
I(0) itself cannot be undone (nothing is darker than gray 0): it adds a uniform background whose features are a
constant per channel away from the map border (within K // 2 of it the kernels' zero padding makes them fall off),
which the gains step's offsets and per-tile filters largely absorb.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import binary_dilation

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import (
    autoexpose,
    check_frame,
    corrected,
    full_scale_adu,
    grab,
    light_on,
)
from lab4f.errors import CalibrationError

#: A drop of the measured response larger than this (fraction of white) between two gray levels is refused.
MONOTONIC_TOLERANCE = 0.02
#: Full drive must give at least this much more light than gray 0 (fraction of the white frame's light).
MIN_CONTRAST = 0.05


class DisplayLinearizer:
    """Wanted relative intensity x ∈ [0, 1] → display drive value in [0, 1], from a measured response.

    ``drive`` (increasing, from 0 to 1) and ``response`` (light above gray 0, relative to full drive:
    (I(d) − I(0)) / (I(1) − I(0)), so 0 at drive 0 and 1 at drive 1) are the measurement. Calling the linearizer
    on an image returns the drive values whose light above gray 0 is x; the display quantises them to its levels.
    """

    def __init__(self, drive: np.ndarray, response: np.ndarray) -> None:
        drive = np.asarray(drive, dtype=np.float64).ravel()
        response = np.asarray(response, dtype=np.float64).ravel()
        if drive.shape != response.shape or drive.size < 3:
            raise CalibrationError(
                f"a display response needs ≥ 3 (drive, response) pairs of equal length, got "
                f"{drive.size} and {response.size}; run `lab4f calibrate display` again"
            )
        if drive[0] != 0.0 or drive[-1] != 1.0 or np.any(np.diff(drive) <= 0):
            raise CalibrationError(
                "the display response must be measured at increasing drives from 0 to 1; run "
                "`lab4f calibrate display` again"
            )
        if not response[-1] > response[0]:
            raise CalibrationError(
                "the display gives no more light at full drive than at gray 0; check that it is "
                "imaged onto the camera and run `lab4f calibrate display` again"
            )
        self.drive, self.response = drive, (response - response[0]) / (response[-1] - response[0])
        # measurement noise may leave tiny dips; the inverse needs a strictly increasing response
        mono = np.maximum.accumulate(self.response)
        mono = mono + np.arange(mono.size) * 1e-9
        self._inverse = PchipInterpolator(mono, drive)
        self._forward = PchipInterpolator(drive, mono)
        # a dense table of the inverse: np.interp on it costs µs per image where PCHIP costs ms on a 512² display,
        # and 4097 entries keep its error far below one 8-bit gray level
        self._table_x = np.linspace(0.0, 1.0, 4097)
        self._table_drive = np.clip(
            self._inverse(np.clip(self._table_x, mono[0], mono[-1])), 0.0, 1.0
        )

    def forward(self, drive: np.ndarray) -> np.ndarray:
        """Relative light at a drive value (the measured response, interpolated)."""
        return self._forward(np.clip(np.asarray(drive, dtype=np.float64), 0.0, 1.0))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Drive values (float32, same shape) that show ``image``'s intensities (in [0, 1]) linearly."""
        return np.interp(image, self._table_x, self._table_drive).astype(np.float32)

    def gamma(self) -> float:
        """Least-squares γ of response = drive^γ over drives 0.1–0.95 (a summary figure; ~2.2 for an LCD)."""
        sel = (self.drive >= 0.1) & (self.drive <= 0.95) & (self.response > 0)
        if sel.sum() < 2:
            return float("nan")
        x, y = np.log(self.drive[sel]), np.log(self.response[sel])
        return float(np.sum(x * y) / np.sum(x * x))

    @classmethod
    def from_step(cls, result: StepResult) -> DisplayLinearizer | None:
        """The linearizer a display step measured; None for a binary display (nothing to linearise)."""
        if "drive" not in result.arrays:
            return None
        return cls(result.arrays["drive"], result.arrays["response"])


def _levels(display: Any, count: int) -> np.ndarray:
    """``count`` drive values from 0 to 1 on the display's own gray levels (distinct, 0 and 1 included)."""
    top = 2 ** int(getattr(getattr(display, "settings", None), "bitdepth", 8) or 8) - 1
    return np.unique(np.rint(np.linspace(0.0, 1.0, count) * top)) / top


def display_step(
    bench: Any,
    dark: np.ndarray | None = None,
    levels: int = 17,
    check_levels: int = 9,
    frames: int = 2,
    max_error: float = 0.02,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Measure the display's response at ``levels`` uniform gray levels, fit its inverse, verify a linearised ramp.

    Light is summed over the display's image on the camera (pixels within 2 px of where white gives > 5 % of
    its peak), relative to gray 0. Refused when the response is not monotonic, or when the linearised ramp is
    still off by more than ``max_error`` of white. ``dark`` (the camera step's, possibly at another exposure)
    only serves the saturation/too-dark check of the white frame.
    """
    ctl = StepControl("display", progress, cancel)
    display, camera = bench.display, bench.camera
    shape = tuple(display.shape)
    exposure_s = camera.get_exposure()
    drives = _levels(display, levels)
    if (
        len(drives) < 3
    ):  # a binary display (a DMD without PWM gray levels): off or on, nothing in between
        return ctl.finish(
            StepResult(
                "display",
                quality={"levels": float(len(drives))},
                message="binary display: on/off only, nothing to linearise",
            )
        )

    def measure(drive_image: float | np.ndarray) -> float:
        display.show(np.broadcast_to(np.asarray(drive_image, dtype=np.float32), shape).copy())
        raw = grab(camera, frames)
        if np.any(raw[mask] >= full_scale_adu(camera)):
            raise CalibrationError(
                f"display response refused: drive {float(np.mean(drive_image)):.3f} saturates the camera at the "
                "exposure set on white, so the display gives more light at a lower drive (an inverted or "
                "normally-white display?). Check the display's mode and contrast settings, then run "
                "`lab4f calibrate display` again; the previous record is unchanged."
            )
        return float(raw[mask].sum(dtype=np.float64))  # raw: gray 0 is the reference

    try:
        with light_on(bench):
            bench.slm.set_phase(
                np.zeros(bench.slm.shape), settle=True
            )  # the 4f system images the display
            display.show(np.ones(shape, dtype=np.float32))
            measured_exposure_s = autoexpose(camera, 0.6, "display response")
            white = grab(camera, frames)
            check_frame(white, camera, dark, "display response, white")
            sig = corrected(white, dark)
            mask = binary_dilation(sig > 0.05 * sig.max(), iterations=2)
            white_light = float(white[mask].sum(dtype=np.float64))
            light = []
            for n, d in enumerate(drives):
                light.append(measure(d))
                ctl.report(
                    0.7 * (n + 1) / len(drives),
                    f"drive {d:.3f}: {light[-1] / white_light:.4f} of white",
                )
            contrast = (light[-1] - light[0]) / white_light
            if contrast < MIN_CONTRAST:
                raise CalibrationError(
                    f"display response refused: full drive gives {contrast:+.3f} of the white light more than gray 0 "
                    f"(needs ≥ {MIN_CONTRAST}): the display is inverted (normally white) or has no contrast. Check "
                    "its mode, contrast and that it is imaged onto the camera, then run `lab4f calibrate display` "
                    "again; the previous record is unchanged."
                )
            response = (np.asarray(light) - light[0]) / (light[-1] - light[0])
            drops = np.diff(response)
            if np.any(drops < -MONOTONIC_TOLERANCE):
                i = int(np.argmin(drops))
                raise CalibrationError(
                    f"display response refused: the light drops by {-drops[i]:.3f} of white between drive "
                    f"{drives[i]:.3f} and {drives[i + 1]:.3f}, so no correction can make it linear. Check the "
                    "display's own contrast/gamma settings and that nothing else changes the light, then run "
                    "`lab4f calibrate display` again; the previous record is unchanged."
                )
            lin = DisplayLinearizer(drives, response)
            ramp = np.linspace(0.0, 1.0, check_levels)
            shown = []
            for n, x in enumerate(ramp):
                shown.append((measure(lin(np.asarray(x))) - light[0]) / (light[-1] - light[0]))
                ctl.report(0.7 + 0.3 * (n + 1) / len(ramp), f"linearised ramp {n + 1}/{len(ramp)}")
    finally:
        display.blank()
        camera.set_exposure(exposure_s)
    shown_arr = np.asarray(shown)
    err_after = float(np.max(np.abs(shown_arr - ramp)))
    err_before = float(np.max(np.abs(response - drives)))
    if err_after > max_error:
        raise CalibrationError(
            f"display linearisation refused: the corrected ramp is still off by {err_after:.3f} of white (limit "
            f"{max_error}). The display may drift or have too few gray levels; check it warmed up, then run "
            "`lab4f calibrate display` again; the previous record is unchanged."
        )
    return ctl.finish(
        StepResult(
            "display",
            quality={
                "gamma_fit": lin.gamma(),
                "linearity_error_before": err_before,
                "linearity_error_after": err_after,
                "levels": float(len(drives)),
                "exposure_s": measured_exposure_s,
            },
            arrays={
                "drive": drives,
                "response": response,
                "check_intensity": ramp,
                "check_response": shown_arr,
            },
            message=f"γ ≈ {lin.gamma():.2f}; linearity error {err_before:.3f} → {err_after:.4f} of white",
        )
    )
