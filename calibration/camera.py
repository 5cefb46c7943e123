"""Step 1, the camera: dark frame, flat field and an exposure that keeps the brightest tile below saturation.

Also the camera helpers the other steps share: averaged captures, the saturated/dark checks whose messages
say what to do, and :class:`DarkCorrectedCamera`, the adapter through which slmsuite's calibrations see
dark-subtracted frames (slmsuite fits spot arrays on raw frames, where a dark offset biases the fit).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from slmsuite.hardware.cameras.camera import Camera

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.errors import CalibrationError

#: A frame whose brightest pixel (dark subtracted) is below this fraction of full scale is "too dark".
DARK_FRACTION = 0.02


def full_scale_adu(camera: Any) -> float:
    return float(2 ** int(camera.bitdepth) - 1)


class DisplayBackground:
    """Differential capture: a frame with the display's current image minus one with the display blank.

    A display's black level is not zero: under a one-pixel fiducial, the dim rest of a D×D display carries
    black_level·D² of light (2.3× the point's at 1e-3 on 48×48), smeared into a halo that biases spot centroids.
    The difference of the two frames keeps only the light of the shown pixels (and cancels the dark frame).
    Displays without readable gray levels are captured directly.
    """

    def __init__(self, display: Any) -> None:
        self.display = display

    def frame(self, camera: Any, timeout_s: float | None = None) -> np.ndarray:
        kw = {} if timeout_s is None else {"timeout_s": timeout_s}
        on = np.asarray(camera.get_image(**kw), dtype=np.float32)
        levels = getattr(self.display, "levels", None)
        settings = getattr(self.display, "settings", None)
        if levels is None or not hasattr(self.display, "blank") or settings is None:
            return on
        shown = np.asarray(levels, dtype=np.float32) / float(2 ** settings.bitdepth - 1)
        self.display.blank()
        off = np.asarray(camera.get_image(**kw), dtype=np.float32)
        self.display.show(shown)
        return on - off


def grab(camera: Any, frames: int = 1, background: DisplayBackground | None = None) -> np.ndarray:
    """Mean of ``frames`` raw camera frames (float32); with ``background``, of differential frames."""
    acc = np.zeros(camera.shape, dtype=np.float64)
    for _ in range(frames):
        acc += background.frame(camera) if background is not None else np.asarray(camera.get_image(), np.float64)
    return (acc / frames).astype(np.float32)


def corrected(raw: np.ndarray, dark: np.ndarray | None, flat: np.ndarray | None = None) -> np.ndarray:
    """(raw − dark) / flat, float32: the frame the pipeline and the fits use."""
    img = np.asarray(raw, dtype=np.float32)
    if dark is not None:
        img = img - dark
    if flat is not None:
        img = img / flat
    return img


def check_frame(raw: np.ndarray, camera: Any, dark: np.ndarray | None, what: str,
                mask: np.ndarray | None = None) -> float:
    """Refuse saturated or too dark frames with advice; returns the peak signal as a fraction of full scale."""
    full = full_scale_adu(camera)
    region = raw if mask is None else raw[mask]
    saturated = int(np.count_nonzero(region >= full))
    if saturated:
        raise CalibrationError(
            f"{what}: {saturated} camera pixels are saturated (exposure {camera.get_exposure():.3g} s). "
            "Run `lab4f calibrate camera` to set the exposure again, or lower the light source power / "
            "add an ND filter; the previous calibration record is unchanged."
        )
    signal = corrected(raw, dark)
    peak = float((signal if mask is None else signal[mask]).max()) / full
    if peak < DARK_FRACTION:
        raise CalibrationError(
            f"{what}: the image is too dark (peak {100 * peak:.2f} % of full scale at exposure "
            f"{camera.get_exposure():.3g} s). Check that the light source is on and the shutter open, "
            "then run `lab4f calibrate camera` to set the exposure again; the previous record is unchanged."
        )
    return peak


class DarkCorrectedCamera(Camera):
    """A slmsuite Camera that delivers another camera's frames with the dark frame subtracted (float32)."""

    def __init__(self, camera: Any, dark: np.ndarray | None, background: DisplayBackground | None = None) -> None:
        self.camera = camera
        self.dark = None if dark is None else np.asarray(dark, dtype=np.float32)
        self.background = background
        super().__init__((camera.shape[1], camera.shape[0]), bitdepth=camera.bitdepth, pitch_um=camera.pitch_um,
                         name=f"{camera.name}-dark-corrected", capture_attempts=1)

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        if self.background is not None:  # the difference has no dark offset left
            return np.maximum(self.background.frame(self.camera, timeout_s), 0.0)
        img = np.asarray(self.camera.get_image(timeout_s=timeout_s), dtype=np.float32)
        return img if self.dark is None else np.maximum(img - self.dark, 0.0)

    def _get_exposure_hw(self) -> float:
        return float(self.camera.get_exposure())

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self.camera.set_exposure(exposure_s)

    def flush(self, timeout_s: float = 1) -> None:
        self.camera.flush()

    @staticmethod
    def info(verbose: bool = True) -> list[str]:
        return []

    def close(self) -> None:
        """The wrapped camera belongs to the bench; it is not closed here."""


@contextlib.contextmanager
def light_blocked(bench: Any) -> Iterator[None]:
    """Close the shutter and switch the source off (where the bench has them), restoring them afterwards."""
    devices = getattr(bench, "devices", {})
    shutter, source = devices.get("shutter"), devices.get("light_source")
    was_open = shutter.is_open if shutter is not None else None
    was_on = source.output_on if source is not None else None
    try:
        if shutter is not None:
            shutter.is_open = False
        if source is not None:
            source.output_on = False
        yield
    finally:
        if source is not None:
            source.output_on = was_on
        if shutter is not None:
            shutter.is_open = was_open


@contextlib.contextmanager
def light_on(bench: Any) -> Iterator[None]:
    """Open the shutter and switch the source on for a measurement, restoring their state afterwards."""
    devices = getattr(bench, "devices", {})
    shutter, source = devices.get("shutter"), devices.get("light_source")
    was_open = shutter.is_open if shutter is not None else None
    was_on = source.output_on if source is not None else None
    try:
        if source is not None:
            source.output_on = True
        if shutter is not None:
            shutter.is_open = True
        yield
    finally:
        if shutter is not None:
            shutter.is_open = was_open
        if source is not None:
            source.output_on = was_on


def autoexpose(camera: Any, target_fraction: float, what: str) -> float:
    """slmsuite's autoexpose pinning the raw maximum at ``target_fraction`` of full scale; checks it worked."""
    exposure_s = float(camera.autoexpose(set_fraction=target_fraction, verbose=False))
    raw = grab(camera, 1)
    peak = float(raw.max()) / full_scale_adu(camera)
    bounds = getattr(camera, "exposure_bounds_s", None) or (0.0, np.inf)
    if peak >= 0.999:
        raise CalibrationError(
            f"{what}: saturated even at the shortest exposure ({exposure_s:.3g} s). Lower the light source "
            "power or add an ND filter, then calibrate again; the previous record is unchanged."
        )
    if peak < 0.5 * target_fraction and exposure_s >= 0.99 * bounds[1]:
        raise CalibrationError(
            f"{what}: too dark even at the longest exposure ({exposure_s:.3g} s, peak {100 * peak:.1f} % of full "
            "scale). Check the light source is on and the shutter open; the previous record is unchanged."
        )
    return exposure_s


def _flat_field(bench: Any, dark: np.ndarray, frames: int, smooth_px: float,
                ctl: StepControl) -> tuple[np.ndarray, float]:
    """Relative throughput of each camera pixel from diffuse light (random SLM phases, white display)."""
    rng = np.random.default_rng(0)
    camera, slm = bench.camera, bench.slm
    bench.show(np.ones(bench.display.shape, dtype=np.float32))
    acc = np.zeros(camera.shape, dtype=np.float64)
    for i in range(frames):
        slm.set_phase(rng.uniform(0, 2 * np.pi, slm.shape), settle=True)
        if i == 0:
            autoexpose(camera, 0.5, "flat field")
        acc += corrected(grab(camera, 1), dark)
        ctl.report(0.6 + 0.35 * (i + 1) / frames, f"flat field {i + 1}/{frames}")
    mean = gaussian_filter(acc / frames, smooth_px)
    lit = mean > 0.2 * mean.max()
    flat = np.ones(camera.shape, dtype=np.float32)
    flat[lit] = (mean[lit] / np.median(mean[lit])).astype(np.float32)
    spread = float(np.std(flat[lit])) if lit.any() else float("nan")
    return flat, spread


def camera_step(
    bench: Any,
    program: Any | None = None,
    target_fraction: float = 0.7,
    dark_frames: int = 8,
    flat_frames: int = 0,
    flat_smooth_px: float = 6.0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Exposure (brightest scene at ``target_fraction`` of full scale), dark frame, flat field.

    ``flat_frames`` > 0 measures a flat field from diffuse light (random SLM phases, white display; needs the
    phase LUT, else the zero order dominates); the default 0 keeps a unity flat, as the per-channel gains of
    step 7 absorb each tile's throughput. The brightest scene is a white input through the program's SLM
    frames (PSFs are nonnegative, so no input in [0, 1] makes a tile brighter) or, without a program,
    through a flat SLM phase (direct image).
    """
    ctl = StepControl("camera", progress, cancel)
    camera, slm = bench.camera, bench.slm
    white = np.ones(bench.display.shape, dtype=np.float32)
    phases = [f.phase for f in program.frames] if program is not None else [np.zeros(slm.shape)]
    with light_on(bench):
        bench.show(white)
        exposures = []
        for i, phase in enumerate(phases):
            slm.set_phase(phase, settle=True)
            exposures.append(autoexpose(camera, target_fraction, "auto-exposure"))
            ctl.report(0.3 * (i + 1) / len(phases), f"auto-exposure {exposures[-1]:.3g} s")
        exposure_s = min(exposures)  # the brightest frame sets it
        camera.set_exposure(exposure_s)
    with light_blocked(bench):
        bench.display.blank()
        slm.set_phase(np.zeros(slm.shape), settle=True)
        dark = grab(camera, dark_frames)
    ctl.report(0.55, "dark frame")
    full = full_scale_adu(camera)
    if float(np.percentile(dark, 99.9)) > 0.5 * full:
        raise CalibrationError(
            "the dark frame is brighter than half of full scale: light reaches the camera with the source off "
            "and the display black. Cover the camera / close the shutter, then run `lab4f calibrate camera`."
        )
    with light_on(bench):
        if flat_frames > 0:
            flat, flat_spread = _flat_field(bench, dark, flat_frames, flat_smooth_px, ctl)
        else:
            flat, flat_spread = np.ones(camera.shape, dtype=np.float32), 0.0
        camera.set_exposure(exposure_s)
        bench.show(white)
        peaks = []
        for phase in phases:
            slm.set_phase(phase, settle=True)
            peaks.append(check_frame(grab(camera, 1), camera, dark, "exposure check"))
    return ctl.finish(StepResult(
        "camera",
        quality={"exposure_s": exposure_s, "peak_fraction": max(peaks), "dark_mean_adu": float(dark.mean()),
                 "dark_std_adu": float(dark.std()), "flat_spread": flat_spread},
        arrays={"dark": dark, "flat": flat},
        values={"exposure_s": exposure_s, "target_fraction": target_fraction},
        message=f"exposure {exposure_s:.4g} s, peak {100 * max(peaks):.0f} % of full scale, "
                f"dark {dark.mean():.1f}±{dark.std():.1f} ADU",
    ))
