"""Step 2 (phase response) and the FourierSLM through which slmsuite's calibrations see the bench.

Order on the bench: Fourier calibration first (:mod:`lab4f.calibration.fourier`; slmsuite's pixel
calibration needs it to find the grating orders), then the phase response.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import numpy as np

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import DarkCorrectedCamera, autoexpose, light_on
from lab4f.errors import CalibrationError


class _ReportingCamera(DarkCorrectedCamera):
    """Dark-corrected camera that reports progress (and honours cancel) at every frame slmsuite takes."""

    def __init__(
        self,
        camera: Any,
        dark: np.ndarray | None,
        ctl: StepControl,
        frames: int,
        span: tuple,
        background: Any = None,
    ) -> None:
        self._ctl, self._frames, self._span, self._count = ctl, max(frames, 1), span, 0
        super().__init__(camera, dark, background)

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        if hasattr(self, "_ctl"):
            self._count += 1
            lo, hi = self._span
            self._ctl.report(
                lo + (hi - lo) * min(self._count / self._frames, 1.0), f"frame {self._count}"
            )
        return super()._get_image_hw(timeout_s)


def cameraslm(
    bench: Any,
    dark: np.ndarray | None,
    fourier: dict | None = None,
    ctl: StepControl | None = None,
    frames: int = 1,
    span: tuple[float, float] = (0.0, 1.0),
    background: Any = None,
) -> Any:
    """slmsuite FourierSLM of the bench's SLM and (dark-corrected) camera, with a Fourier calibration loaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cupy is not installed": numpy is the intended backend
        from slmsuite.hardware.cameraslms import FourierSLM
    logging.getLogger("slmsuite").setLevel(logging.WARNING)
    cam = (
        DarkCorrectedCamera(bench.camera, dark, background)
        if ctl is None
        else _ReportingCamera(bench.camera, dark, ctl, frames, span, background)
    )
    fs = FourierSLM(cam, bench.slm)
    if fourier is not None:
        fs.calibrations["fourier"] = {
            k: (np.asarray(v) if isinstance(v, list) else v) for k, v in fourier.items()
        }
    return fs


def fourier_as_plain(cal: dict) -> dict:
    """The parts of slmsuite's ``calibrations["fourier"]`` that define the map (M, b, a), JSON-able."""
    return {k: np.asarray(cal[k], dtype=float).tolist() for k in ("M", "b", "a")}


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
            slm.set_phase(
                np.zeros(slm.shape, dtype=slm.display.dtype), phase_correct=False, settle=True
            )
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
            "in the grating orders) and run `lab4f calibrate phase` again, perhaps with a longer period."
        )
    full = np.asarray(slm.gamma, dtype=float)
    return ctl.finish(
        StepResult(
            "phase",
            quality={
                "fit_r2": r2,
                "phase_range_2pi": float(gamma.max() - gamma.min()),
                "levels": float(len(lv)),
            },
            arrays={"gamma_levels": lv.astype(np.int64), "gamma": gamma, "gamma_full": full},
            values={"period_px": period_px},
            message=f"phase range {gamma.max():.3f}×2π over gray 0..{top}, fit R² {r2:.4f}",
        )
    )
