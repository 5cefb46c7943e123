"""Optional step: wavefront (aberration) calibration with slmsuite, applied as the SLM's source phase correction.

slmsuite's superpixel method (``FourierSLM.wavefront_calibrate``, Čižmár et al. 2010) interferes each SLM
superpixel with a reference superpixel at one camera point and fits the relative phase;
``wavefront_calibration_superpixel_process`` turns that into ``slm.source["phase"]`` (and the measured
``source["amplitude"]``), which slmsuite adds to every later ``set_phase(..., phase_correct=True)``.

Order on the bench: camera → fourier → phase → **wavefront** → fourier again → registration → tiles → gains.
It needs the Fourier calibration (to aim superpixels at the camera point) and should follow the phase LUT
(superpixel blazes and the correction itself are written through the LUT; an uncalibrated, nonlinear response
distorts both). slmsuite warns that the correction moves spot centres and makes an earlier Fourier
calibration stale, so :func:`lab4f.calibration.runner.run_calibration` refits the Fourier step right after
it. The phase LUT is not redone: it compares the power in whole grating orders, which an aberration blurs but
does not move. Registration, tiles and gains come after, so they see the corrected PSF.

The superpixel interference is ~(superpixel/SLM area)² dimmer than the focused spot: the exposure is set
on the reference superpixel's own spot (camera window around the calibration point) before the sweep.
Phase stepping (``phase_steps=4``, slmsuite's one-pixel sine fit) rather than slmsuite's default one-shot
fringe fit: the camera samples the far field at ~1 px per SLM-sized cell, so fringes between superpixels
more than a quarter of the SLM apart (period < 4 px) are unresolvable and the one-shot fit failed on most of
the outer superpixels (measured: 41 % with R² ≥ 0.9 vs 100 % stepped). Cost on the simulated 512² SLM:
64 superpixels of 64 px, ~20 s (16 of 128 px: ~5 s), so ``calibrate all`` includes it only when asked.
Floor: on the aberration-free simulated bench it measures 0.050 waves RMS and that correction lowers the
focused peak (×0.91), so a correction that does not sharpen the spot is not applied.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from typing import Any

import numpy as np

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import DisplayBackground, autoexpose, grab, light_on
from lab4f.calibration.slm import cameraslm
from lab4f.errors import CalibrationError, Lab4fError

#: ``slm.source`` keys a wavefront correction sets, and the marker saying lab4f set them (not a vendor file).
SOURCE_KEYS = ("phase", "amplitude", "r2")
MARKER = "lab4f_wavefront"


def clear_correction(slm: Any) -> None:
    """Remove a wavefront correction that lab4f put on the SLM (a vendor correction is left alone)."""
    if slm.source.pop(MARKER, None) is not None:
        for key in SOURCE_KEYS:
            slm.source.pop(key, None)


def apply_correction(slm: Any, phase: np.ndarray, amplitude: np.ndarray | None = None) -> None:
    """Put a measured correction on the SLM as slmsuite does: later ``set_phase`` calls add ``phase``."""
    slm.source["phase"] = np.asarray(phase, dtype=np.float32)
    if amplitude is not None:
        slm.source["amplitude"] = np.asarray(amplitude, dtype=np.float32)
    slm.source[MARKER] = True


def residual_rms_rad(phase: np.ndarray, weight: np.ndarray | None = None) -> float:
    """RMS (radians) of a smooth, possibly wrapped phase after removing piston and tilt, weighted by power.

    Unwrapped along each row, then the rows are aligned along the centre column (fine for the smoothed
    corrections slmsuite produces; wraps at a superpixel boundary would show up as a large RMS).
    """
    p = np.unwrap(np.asarray(phase, dtype=np.float64), axis=1)
    c = p.shape[1] // 2
    p += (np.unwrap(p[:, c]) - p[:, c])[:, None]
    w = np.ones(p.shape) if weight is None else np.asarray(weight, dtype=np.float64)
    yy, xx = np.mgrid[: p.shape[0], : p.shape[1]]
    sw = np.sqrt(w.ravel())
    design = np.column_stack([np.ones(p.size), xx.ravel(), yy.ravel()]) * sw[:, None]
    coef, *_ = np.linalg.lstsq(design, p.ravel() * sw, rcond=None)
    resid = p - (coef[0] + coef[1] * xx + coef[2] * yy)
    return float(np.sqrt(np.sum(w * resid**2) / np.sum(w)))


def spot_figures(img: np.ndarray, half: int = 8) -> tuple[float, float]:
    """(peak / window sum, RMS radius px) of the brightest spot: exposure-independent sharpness figures."""
    yi, xi = np.unravel_index(int(np.argmax(img)), img.shape)
    y0, x0 = max(yi - half, 0), max(xi - half, 0)
    win = np.maximum(img[y0 : yi + half + 1, x0 : xi + half + 1].astype(np.float64), 0)
    total = win.sum()
    if total <= 0:
        return 0.0, float("nan")
    yy, xx = np.mgrid[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]]
    cy, cx = (yy * win).sum() / total, (xx * win).sum() / total
    return float(win.max() / total), float(
        np.sqrt((((yy - cy) ** 2 + (xx - cx) ** 2) * win).sum() / total)
    )


def _focused_spot(bench: Any, dark: np.ndarray | None, correct: bool) -> tuple[float, float]:
    """Sharpness of the spot of a flat SLM phase (the bench PSF), with or without the source correction.

    Differential frames (point shown minus display blank): the display's black level would otherwise add a halo
    of the whole display around the spot and widen its RMS radius (the difference also cancels the dark)."""
    bench.slm.set_phase(np.zeros(bench.slm.shape), phase_correct=correct, settle=True)
    autoexpose(bench.camera, 0.5, "wavefront spot")
    return spot_figures(grab(bench.camera, 2, background=DisplayBackground(bench.display)))


def wavefront_step(
    bench: Any,
    fourier: dict,
    dark: np.ndarray | None = None,
    superpixel_size: int = 64,
    target_fraction: float = 0.2,
    r2_threshold: float = 0.9,
    min_fit_fraction: float = 0.5,
    field_point: tuple[float, float] = (0.0, 0.0),
    phase_steps: int = 4,
    verify: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """slmsuite superpixel wavefront calibration at one camera point; the correction is applied to the SLM.

    ``target_fraction``: the reference superpixel's spot peak (fraction of full scale); the interference of
    two equal superpixels peaks at 4× that. ``verify`` measures again on top of the correction (twice the time)
    and reports the residual aberration. Refused (the SLM left as it was) if fewer than ``min_fit_fraction``
    of the superpixels fit with R² ≥ ``r2_threshold``; if the corrected spot is not sharper, nothing is applied
    (quality ``applied`` 0, the record then holds no correction).
    """
    ctl = StepControl("wavefront", progress, cancel)
    slm = bench.slm
    supershape = tuple(int(np.ceil(n / superpixel_size)) for n in slm.shape)  # (ny, nx)
    n_super = supershape[0] * supershape[1]
    frames = 3 * n_super * (2 if verify else 1) + 20
    # differential frames (shown minus display blank): the display's black level would add a halo to every spot
    fs = cameraslm(
        bench,
        dark,
        fourier,
        ctl=ctl,
        frames=frames,
        span=(0.05, 0.95),
        background=DisplayBackground(bench.display),
    )
    saved = {k: slm.source[k] for k in (*SOURCE_KEYS, MARKER) if k in slm.source}
    exposure_s = bench.camera.get_exposure()
    advice = (
        "Run `lab4f calibrate fourier` first, check the calibration point's window is on the camera and "
        "away from the zeroth order, or try another superpixel_size; the SLM keeps its previous correction."
    )
    try:
        with light_on(bench):
            bench.display.show_point()
            clear_correction(slm)
            for key in SOURCE_KEYS:  # slmsuite's fresh calibration starts from no correction at all
                slm.source.pop(key, None)
            before = _focused_spot(bench, dark, correct=False)
            window = (
                int(np.max(fs.wavefront_calibration_superpixel_window(superpixel_size))) // 2 * 2
                + 1
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                points = fs.wavefront_calibration_points(
                    pitch=1.5 * window, field_exclusion=window, field_point=field_point
                )
            if points.shape[1] == 0:
                raise CalibrationError(
                    f"no wavefront calibration point fits on the camera. {advice}"
                )
            point = np.rint(points[:, :1]).astype(int)
            ref = (
                supershape[1] // 2,
                supershape[0] // 2,
            )  # (x, y) superpixel: the brightest, central one
            _expose_on_reference(bench, fs, point, ref, superpixel_size, window, target_fraction)
            ctl.report(
                0.05,
                f"{n_super} superpixels of {superpixel_size} px, point {point.ravel().tolist()}",
            )
            kw = {
                "calibration_points": point,
                "superpixel_size": superpixel_size,
                "reference_superpixels": ref,
                "field_point": field_point,
                "phase_steps": phase_steps,
                "plot": -1,
            }
            raw = _slmsuite(lambda: fs.wavefront_calibrate(method="superpixel", **kw), advice)
            source = _slmsuite(
                lambda: fs.wavefront_calibration_superpixel_process(
                    r2_threshold=r2_threshold, apply=True, plot=0
                ),
                advice,
            )
            slm.source[MARKER] = True
            residual_rad = float("nan")
            if verify:
                ctl.report(0.5, "verifying: measuring again on top of the correction")
                again = _slmsuite(
                    lambda: (
                        fs.wavefront_calibrate(method="superpixel", fresh_calibration=False, **kw),
                        fs.wavefront_calibration_superpixel_process(
                            r2_threshold=r2_threshold, apply=False, plot=0
                        ),
                    )[1],
                    advice,
                )
                residual_rad = residual_rms_rad(
                    np.angle(np.exp(1j * (again["phase"] - source["phase"]))),
                    np.square(source["amplitude"]),
                )
            after = _focused_spot(bench, dark, correct=True)
    except BaseException:
        clear_correction(slm)
        slm.source.update(saved)
        raise
    finally:
        bench.camera.set_exposure(exposure_s)
    r2 = np.nan_to_num(
        np.asarray(raw["r2_fit"][0], dtype=float), nan=1.0
    )  # nan: the reference itself
    fit_fraction = float(np.mean(r2 >= r2_threshold))
    phase, amplitude = (
        np.asarray(source["phase"], np.float32),
        np.asarray(source["amplitude"], np.float32),
    )
    measured_rad = residual_rms_rad(phase, np.square(amplitude))
    gain = after[0] / before[0] if before[0] > 0 else float("nan")
    quality = {
        "aberration_rms_waves": measured_rad / (2 * np.pi),
        "residual_rms_waves": residual_rad / (2 * np.pi),
        "fit_fraction": fit_fraction,
        "spot_peak_fraction_before": before[0],
        "spot_peak_fraction_after": after[0],
        "spot_peak_gain": gain,
        "spot_rms_radius_px_before": before[1],
        "spot_rms_radius_px_after": after[1],
        "superpixels": float(n_super),
    }
    if fit_fraction < min_fit_fraction:
        clear_correction(slm)
        slm.source.update(saved)
        raise CalibrationError(
            f"wavefront calibration refused: only {100 * fit_fraction:.0f} % of the superpixels gave clean "
            f"interference (R² ≥ {r2_threshold}); check the exposure (no saturation at the calibration point) and "
            f"that the source illuminates the SLM. {advice}"
        )
    arrays = {
        "phase_correction": phase,
        "amplitude": amplitude,
        "superpixel_r2": r2.astype(np.float32),
    }
    applied = gain >= 1.0
    message = (
        f"aberration {quality['aberration_rms_waves']:.3f} waves RMS corrected; focused spot peak ×{gain:.2f}, "
        f"RMS radius {before[1]:.2f} → {after[1]:.2f} px"
    )
    if not applied:  # at the method's floor (measured ~0.05 waves on an aberration-free bench): keep the SLM flat
        clear_correction(slm)
        for key in SOURCE_KEYS:
            slm.source.pop(key, None)
        arrays = {"measured_phase": phase, "superpixel_r2": arrays["superpixel_r2"]}
        message = (
            f"no correction applied: it did not sharpen the focused spot (peak ×{gain:.2f}); measured "
            f"{quality['aberration_rms_waves']:.3f} waves RMS, the bench is at the method's floor"
        )
    quality["applied"] = float(applied)
    return ctl.finish(
        StepResult(
            "wavefront",
            quality=quality,
            arrays=arrays,
            message=message,
            values={
                "superpixel_size": superpixel_size,
                "calibration_point_ij": point.ravel().tolist(),
                "reference_superpixel": list(ref),
                "r2_threshold": r2_threshold,
                "field_point": list(field_point),
                "phase_steps": phase_steps,
            },
        )
    )


def _expose_on_reference(
    bench: Any,
    fs: Any,
    point: np.ndarray,
    ref: tuple[int, int],
    size: int,
    window: int,
    target_fraction: float,
) -> float:
    """Exposure putting the reference superpixel's spot (alone, as slmsuite blazes it) at ``target_fraction``."""
    from slmsuite.holography.toolbox import imprint
    from slmsuite.holography.toolbox.phase import blaze

    phase = np.zeros(bench.slm.shape)
    imprint(
        phase,
        np.array([ref[0], 1, ref[1], 1]) * size,
        blaze,
        bench.slm,
        vector=fs.ijcam_to_kxyslm(point),
    )
    bench.slm.set_phase(phase, phase_correct=False, settle=True)
    x, y = (int(v) for v in point.ravel())
    exposure_s = float(
        fs.cam.autoexpose(
            set_fraction=target_fraction,
            window=[x - window // 2, window, y - window // 2, window],
            verbose=False,
        )
    )
    bounds = getattr(bench.camera, "exposure_bounds_s", None) or (0.0, np.inf)
    if exposure_s >= 0.99 * bounds[1]:
        raise CalibrationError(
            f"wavefront calibration: one superpixel's spot is too dark even at the longest exposure "
            f"({exposure_s:.3g} s). Use a larger superpixel_size or more light; the previous record is unchanged."
        )
    return exposure_s


def _slmsuite(call: Any, advice: str) -> Any:
    """Run a slmsuite call quietly (its progress bars go to stderr); its errors become CalibrationError."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return call()
    except Lab4fError:  # cancelled, refused, or a device fault: already typed, with advice
        raise
    except Exception as exc:
        raise CalibrationError(f"slmsuite's wavefront calibration failed: {exc}. {advice}") from exc
