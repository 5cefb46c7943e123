"""Steps 2 and 3, the Fourier SLM, with slmsuite's own calibrations run through a dark-corrected camera.

Order on the bench: Fourier calibration first (slmsuite's pixel calibration needs it to find the grating
orders), then the phase response. Step 3 validates slmsuite's result, which only logs a warning when
spots fall off the camera: the spots are measured again where the fit predicts them and a fit with
missing spots or large residuals is refused.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import numpy as np

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import DarkCorrectedCamera, autoexpose, check_frame, grab, light_on
from lab4f.errors import CalibrationError


class _ReportingCamera(DarkCorrectedCamera):
    """Dark-corrected camera that reports progress (and honours cancel) at every frame slmsuite takes."""

    def __init__(self, camera: Any, dark: np.ndarray | None, ctl: StepControl, frames: int, span: tuple) -> None:
        self._ctl, self._frames, self._span, self._count = ctl, max(frames, 1), span, 0
        super().__init__(camera, dark)

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        if hasattr(self, "_ctl"):
            self._count += 1
            lo, hi = self._span
            self._ctl.report(lo + (hi - lo) * min(self._count / self._frames, 1.0), f"frame {self._count}")
        return super()._get_image_hw(timeout_s)


def cameraslm(bench: Any, dark: np.ndarray | None, fourier: dict | None = None, ctl: StepControl | None = None,
              frames: int = 1, span: tuple[float, float] = (0.0, 1.0)) -> Any:
    """slmsuite FourierSLM of the bench's SLM and (dark-corrected) camera, with a Fourier calibration loaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cupy is not installed": numpy is the intended backend
        from slmsuite.hardware.cameraslms import FourierSLM
    logging.getLogger("slmsuite").setLevel(logging.WARNING)
    cam = DarkCorrectedCamera(bench.camera, dark) if ctl is None else _ReportingCamera(
        bench.camera, dark, ctl, frames, span)
    fs = FourierSLM(cam, bench.slm)
    if fourier is not None:
        fs.calibrations["fourier"] = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in fourier.items()}
    return fs


def fourier_as_plain(cal: dict) -> dict:
    """The parts of slmsuite's ``calibrations["fourier"]`` that define the map (M, b, a), JSON-able."""
    return {k: np.asarray(cal[k], dtype=float).tolist() for k in ("M", "b", "a")}


def _spot_centroids(img: np.ndarray, ij: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Intensity centroid and background-subtracted peak in a (2 half + 1)² window around each (x, y)."""
    h, w = img.shape
    cents, peaks = np.full(ij.shape, np.nan), np.zeros(len(ij))
    for n, (x, y) in enumerate(ij):
        xi, yi = int(round(x)), int(round(y))
        if not (half <= xi < w - half and half <= yi < h - half):
            continue
        win = img[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(np.float64)
        win = np.maximum(win - np.median(win), 0)
        peaks[n] = win.max()
        if win.sum() > 0:
            yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
            cents[n] = (xi + (xx * win).sum() / win.sum(), yi + (yy * win).sum() / win.sum())
    return cents, peaks


def fourier_step(
    bench: Any,
    dark: np.ndarray | None = None,
    array_shape: int = 9,
    array_pitch: int = 30,
    array_center: tuple[float, float] | None = None,
    max_rms_px: float = 2.0,
    min_found_fraction: float = 0.9,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """slmsuite ``fourier_calibrate`` on a spot grid (``"knm"`` units), then validated spot by spot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from slmsuite.holography.algorithms import SpotHologram
    ctl = StepControl("fourier", progress, cancel)
    advice = ("Centre the grid on the camera (array_center), or reduce array_pitch/array_shape so every spot "
              "lands on the camera, check the camera sees the SLM's far field, then run `lab4f calibrate fourier`.")
    fs = cameraslm(bench, dark, ctl=ctl, frames=3, span=(0.1, 0.7))
    exposure_s = bench.camera.get_exposure()
    with light_on(bench):
        bench.display.show_point()
        ctl.report(0.05, "projecting the spot grid")
        try:
            cal = fs.fourier_calibrate(array_shape=[array_shape] * 2, array_pitch=[array_pitch] * 2,
                                       array_center=array_center, autoexpose={"set_fraction": 0.7, "verbose": False})
        except CalibrationError:
            raise
        except Exception as exc:  # slmsuite raises anything when it cannot find the array
            bench.camera.set_exposure(exposure_s)
            raise CalibrationError(f"slmsuite's Fourier calibration failed ({exc}). {advice}") from exc
        raw = grab(bench.camera, 1)
        check_frame(raw, bench.camera, dark, "Fourier calibration")
        img = raw - (dark if dark is not None else 0)
        spot_exposure_s = bench.camera.get_exposure()
        bench.camera.set_exposure(exposure_s)
    # Where the fit says the projected spots are, against where they really are.
    shape = SpotHologram.get_padded_shape(fs, padding_order=1, square_padding=True)
    center = None if array_center is None else (np.asarray(array_center, float) + [shape[1] / 2.0, shape[0] / 2.0])
    holo = SpotHologram.make_rectangular_array(shape, array_shape=[array_shape] * 2, array_pitch=[array_pitch] * 2,
                                               array_center=center, basis="knm", orientation_check=True, cameraslm=fs)
    predicted = np.asarray(fs.kxyslm_to_ijcam(holo.spot_kxy_rounded), dtype=float).T  # (n, 2) x, y
    spacing_px = float(np.linalg.norm(np.asarray(cal["M"]) @ (holo.spot_kxy_rounded[:, 1] - holo.spot_kxy_rounded[:, 0])))
    half = max(2, int(0.4 * spacing_px))
    cents, peaks = _spot_centroids(img, predicted, half)
    noise = float(np.std(img[: img.shape[0] // 8, : img.shape[1] // 8])) + 1e-9
    typical = float(np.median(peaks[peaks > 0])) if np.any(peaks > 0) else 0.0
    found = (peaks > max(8 * noise, 0.05 * typical)) & np.all(np.isfinite(cents), axis=1)
    n, n_found = len(predicted), int(found.sum())
    resid = np.linalg.norm(cents[found] - predicted[found], axis=1) if n_found else np.array([np.inf])
    rms = float(np.sqrt(np.mean(resid**2)))
    quality = {"spots": float(n), "spots_found": float(n_found), "rms_residual_px": rms,
               "max_residual_px": float(resid.max()), "spot_exposure_s": spot_exposure_s}
    if n_found < min_found_fraction * n:
        raise CalibrationError(
            f"Fourier calibration refused: only {n_found} of {n} spots were found where the fit puts them "
            f"(spots off the camera or a wrong offset). {advice}")
    if rms > max_rms_px:
        raise CalibrationError(
            f"Fourier calibration refused: spots are {rms:.2f} px RMS from where the fit puts them "
            f"(limit {max_rms_px} px). {advice}")
    plain = fourier_as_plain(cal)
    return ctl.finish(StepResult(
        "fourier", quality=quality,
        arrays={"predicted_ij": predicted, "measured_ij": cents},
        values={"fourier": plain, "array_shape": array_shape, "array_pitch": array_pitch},
        message=f"{n_found}/{n} spots, {rms:.2f} px RMS residual",
    ))


def phase_response_step(
    bench: Any,
    fourier: dict,
    dark: np.ndarray | None = None,
    levels: int = 16,
    period_px: int = 20,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """slmsuite ``pixel_calibrate`` + ``pixel_calibration_process``: gray → phase, applied to the SLM as its LUT.

    ``levels`` gray levels from 0 to the top level are swept in pairs (levels² binary gratings along x).
    A long grating period (default 20 px) keeps the pixel-crosstalk bias of the fitted response small.
    """
    ctl = StepControl("phase", progress, cancel)
    slm = bench.slm
    top = int(slm.bitresolution) - 1
    lv = np.unique(np.rint(np.linspace(0, top, levels)).astype(int))
    fs = cameraslm(bench, dark, fourier, ctl=ctl, frames=len(lv) * (len(lv) + 1), span=(0.02, 0.95))
    exposure_s = bench.camera.get_exposure()
    try:
        with light_on(bench):
            bench.display.show_point()
            kw = {"levels": lv, "periods": [period_px], "directions": "x", "orders": 1}
            # Exposure on the uniform pattern (all light in the 0th order: the brightest spot of the sweep);
            # slmsuite's own sweep autoexposure can run away to the longest exposure when its windows are dark.
            slm.set_phase(np.zeros(slm.shape, dtype=slm.display.dtype), phase_correct=False, settle=True)
            autoexpose(bench.camera, 0.7, "phase response")
            fs.pixel_calibrate(**kw)
            gamma = np.asarray(fs.pixel_calibration_process(apply=True), dtype=float)
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(
            f"slmsuite's phase-response (pixel) calibration failed: {exc}. Run `lab4f calibrate fourier` first "
            "and check the grating orders land on the camera (a shorter period moves them further out)."
        ) from exc
    finally:
        bench.camera.set_exposure(exposure_s)
    r2 = float(fs.calibrations["pixel"]["gamma_r2"])
    if not r2 >= 0.95:
        raise CalibrationError(
            f"the phase-response fit is poor (R² {r2:.3f}); the LUT was not kept. Check exposure (no saturation "
            "in the grating orders) and run `lab4f calibrate phase` again, perhaps with a longer period.")
    full = np.asarray(slm.gamma, dtype=float)
    return ctl.finish(StepResult(
        "phase", quality={"fit_r2": r2, "phase_range_2pi": float(gamma.max() - gamma.min()), "levels": float(len(lv))},
        arrays={"gamma_levels": lv.astype(np.int64), "gamma": gamma, "gamma_full": full},
        values={"period_px": period_px},
        message=f"phase range {gamma.max():.3f}×2π over gray 0..{top}, fit R² {r2:.4f}",
    ))
