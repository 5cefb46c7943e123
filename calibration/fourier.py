"""Step 3, the Fourier calibration: slmsuite's ``fourier_calibrate``, then checked and pinned down by probes.

slmsuite fits a spot lattice, which is symmetric: its parity fiducials (two withheld corner spots) are often
too weak to decide, and it then only logs "orientation was not verified" and may return the lattice rotated
by 90°/180°, reflected, or shifted by a whole pitch (measured here: a 3° rotated camera gave b 30 px off).
Every spot still sits on a lattice site, so checking the spots alone cannot see it. Two probes can:
the undiffracted spot of a flat phase is the optical axis (k = 0), and one blazed grating towards an
asymmetric k picks the lattice orientation. With the correspondence fixed, the affine is refitted by least
squares to every measured grid spot and the residuals decide whether the result is kept.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import numpy as np

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import DisplayBackground, autoexpose, check_frame, grab, light_on
from lab4f.calibration.registration import spot_centroid
from lab4f.calibration.slm import cameraslm, fourier_as_plain
from lab4f.errors import CalibrationError

log = logging.getLogger(__name__)

#: The lattice symmetries a square spot grid cannot tell apart (rotations by 90° and reflections).
_D4 = [
    np.array(m, dtype=float)
    for m in (
        [[1, 0], [0, 1]],
        [[0, -1], [1, 0]],
        [[-1, 0], [0, -1]],
        [[0, 1], [-1, 0]],
        [[-1, 0], [0, 1]],
        [[1, 0], [0, -1]],
        [[0, 1], [1, 0]],
        [[0, -1], [-1, 0]],
    )
]
#: Probe direction in grid pitches: every lattice symmetry maps it somewhere else.
_PROBE_PITCHES = np.array([2.0, 1.0])


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


def _probe_spot(
    bench: Any,
    phase: np.ndarray,
    dark: np.ndarray | None,
    exclude_xy: np.ndarray | None = None,
    exclude_px: float = 0.0,
) -> np.ndarray:
    """Centroid (x, y) of the brightest spot for an SLM phase (optionally away from ``exclude_xy``)."""
    bench.slm.set_phase(phase, phase_correct=False, settle=True)
    autoexpose(bench.camera, 0.5, "Fourier probe")
    img = grab(bench.camera, 2, background=DisplayBackground(bench.display))
    if exclude_xy is not None:
        yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
        img = np.where(
            (xx - exclude_xy[0]) ** 2 + (yy - exclude_xy[1]) ** 2 < exclude_px**2, 0, img
        )
    return spot_centroid(img, half=2)[0]


def _grid_pitch_kxy(kxy: np.ndarray) -> np.ndarray:
    """(dkx, dky) of a rectangular spot grid (2, n) in kxy."""
    return np.array([np.median(np.diff(np.unique(np.round(kxy[i], 10)))) for i in (0, 1)])


def resolve_lattice(
    bench: Any,
    fs: Any,
    cal: dict,
    grid_kxy: np.ndarray,
    grid_img: np.ndarray,
    dark: np.ndarray | None,
) -> tuple[dict, dict[str, float], np.ndarray, np.ndarray]:
    """slmsuite's lattice fit made unambiguous by probes, then refitted to the grid spots.

    Returns the affine ``{"M", "b", "a"}`` (ij = M (k − a) + b), probe figures, predicted and measured spots.
    """
    from slmsuite.holography.toolbox.phase import blaze

    slm = bench.slm
    m_fit = np.asarray(cal["M"], dtype=float)
    pitch = _grid_pitch_kxy(grid_kxy)
    spacing_px = float(
        min(np.linalg.norm(m_fit[:, 0] * pitch[0]), np.linalg.norm(m_fit[:, 1] * pitch[1]))
    )
    axis_xy = _probe_spot(bench, np.zeros(slm.shape), dark)
    k_probe = _PROBE_PITCHES * pitch
    probe_xy = _probe_spot(bench, blaze(grid=slm, vector=k_probe), dark, axis_xy, 0.5 * spacing_px)
    if not (np.all(np.isfinite(axis_xy)) and np.all(np.isfinite(probe_xy))):
        raise CalibrationError(
            "the Fourier probes (flat phase, one blazed grating) gave no spot on the camera"
        )
    scale = np.diag(pitch)
    options = [m_fit @ scale @ o @ np.linalg.inv(scale) for o in _D4]
    errors = [float(np.linalg.norm(axis_xy + m @ k_probe - probe_xy)) for m in options]
    best = int(np.argmin(errors))
    m0 = options[best]
    predicted = (m0 @ grid_kxy).T + axis_xy
    cents, peaks = _spot_centroids(grid_img, predicted, max(2, int(0.4 * spacing_px)))
    noise = float(np.std(grid_img[: grid_img.shape[0] // 8, : grid_img.shape[1] // 8])) + 1e-9
    typical = float(np.median(peaks[peaks > 0])) if np.any(peaks > 0) else 0.0
    found = (peaks > max(8 * noise, 0.05 * typical)) & np.all(np.isfinite(cents), axis=1)
    if found.sum() >= 3:
        design = np.column_stack([grid_kxy.T[found], np.ones(int(found.sum()))])
        coef, *_ = np.linalg.lstsq(design, cents[found], rcond=None)  # (3, 2): [M^T; b]
        m_new, b_new = coef[:2].T, coef[2]
    else:
        m_new, b_new = m0, axis_xy
    predicted = (m_new @ grid_kxy).T + b_new
    figures = {
        "probe_error_px": errors[best],
        "probe_margin_px": float(np.partition(errors, 1)[1]),
        "slmsuite_orientation": float(best),
        "axis_offset_px": float(np.linalg.norm(b_new - axis_xy)),
        "spot_spacing_px": spacing_px,
    }
    affine = {"M": m_new, "b": b_new.reshape(2, 1), "a": np.zeros((2, 1))}
    return affine, figures, predicted, np.where(found[:, None], cents, np.nan)


def _first_line(exc: BaseException) -> str:
    """slmsuite's errors append whole arrays of spot coordinates; keep the sentence."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")


class _Refused(CalibrationError):
    """One attempt's refusal; ``recentre``: the grid was (partly) off the camera or the SLM, so a retry should put
    it on the optical axis."""

    def __init__(self, message: str, recentre: bool) -> None:
        super().__init__(message)
        self.recentre = recentre


#: How much smaller the retry's grid pitch is: spots nearer the axis are brighter (a blazed grating's efficiency
#: falls with its frequency on a nonlinear SLM) and closer together on the camera, so more of them are found and
#: their centroids are less noisy (measured on a misregistered bench with 3× read noise and an uncalibrated
#: nonlinear SLM: half the first attempts refused at pitch 30, none at pitch 24 or 20).
RETRY_PITCH_FACTOR = 0.75
ADVICE = (
    "Centre the grid on the camera (--array-center), or reduce --array-pitch/--array-shape so every spot "
    "lands on the camera, check the camera sees the SLM's far field, then run `lab4f calibrate fourier`."
)


def adapted_grid(
    array_shape: int, array_pitch: int, array_center: tuple[float, float] | None, recentre: bool
) -> tuple[int, int, tuple[float, float] | None]:
    """The grid a refused attempt is retried with: the pitch scaled by :data:`RETRY_PITCH_FACTOR` (at least 8 knm),
    the same number of spots, and on the optical axis when the first grid was off the camera or the SLM."""
    return (
        array_shape,
        max(8, int(round(array_pitch * RETRY_PITCH_FACTOR))),
        None if recentre else array_center,
    )


def fourier_step(
    bench: Any,
    dark: np.ndarray | None = None,
    array_shape: int = 9,
    array_pitch: int = 30,
    array_center: tuple[float, float] | None = None,
    max_rms_px: float = 0.5,
    min_found_fraction: float = 0.9,
    retry: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """slmsuite ``fourier_calibrate`` on a spot grid (``"knm"`` units), disambiguated by probes, validated.

    A refused attempt is retried once (``retry``) with an :func:`adapted_grid` — a finer pitch, on the optical
    axis if the grid was off the camera or the SLM — before the step refuses; the limits are the same for both
    attempts, so a truly bad fit is still refused. The result's ``values["retried"]`` says what the first attempt
    was refused for and which grid succeeded."""
    ctl = StepControl("fourier", progress, cancel)
    grid = (
        int(array_shape),
        int(array_pitch),
        None if array_center is None else tuple(map(float, array_center)),
    )
    try:
        return ctl.finish(
            _attempt(
                bench,
                dark,
                *grid,
                max_rms_px,
                min_found_fraction,
                ctl,
                0.0,
                1.0 if not retry else 0.5,
            )
        )
    except _Refused as first:
        if not retry:
            raise CalibrationError(str(first)) from first
        again = adapted_grid(*grid, recentre=first.recentre)
        log.warning(
            "%s Retrying once with an adapted grid: %d×%d spots at pitch %d%s.",
            first,
            again[0],
            again[0],
            again[1],
            "" if again[2] is None else f", centre {again[2]}",
        )
        ctl.report(0.5, f"retrying with a {again[0]}×{again[0]} grid at pitch {again[1]}")
        try:
            result = _attempt(bench, dark, *again, max_rms_px, min_found_fraction, ctl, 0.5, 0.5)
        except _Refused as second:
            raise CalibrationError(
                f"{second} (the retry with an adapted grid — {again[0]}×{again[0]} spots at pitch {again[1]}"
                f"{'' if again[2] is None else f', centre {again[2]}'} — was refused too; the first attempt, "
                f"{grid[0]}×{grid[0]} at pitch {grid[1]}: {_reason(first)})"
            ) from second
        result.values["retried"] = {
            "first_grid": {"array_shape": grid[0], "array_pitch": grid[1], "array_center": grid[2]},
            "first_refusal": _reason(first),
        }
        result.message += (
            f" (retried with pitch {again[1]}: the first grid was refused, {_reason(first)})"
        )
        return ctl.finish(result)


def _reason(exc: BaseException) -> str:
    """The refusal without the advice (for a message that quotes it)."""
    return (
        str(exc)
        .replace(ADVICE, "")
        .strip()
        .removeprefix("Fourier calibration refused: ")
        .rstrip(". ")
    )


def _attempt(
    bench: Any,
    dark: np.ndarray | None,
    array_shape: int,
    array_pitch: int,
    array_center: tuple[float, float] | None,
    max_rms_px: float,
    min_found_fraction: float,
    ctl: StepControl,
    start: float,
    span: float,
) -> StepResult:
    """One calibration with one grid; :class:`_Refused` when its result must not be used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from slmsuite.holography.algorithms import SpotHologram
    advice = ADVICE
    background = DisplayBackground(bench.display)  # the display's black level would halo every spot
    fs = cameraslm(bench, dark, ctl=ctl, frames=3, span=(0.1, 0.6), background=background)
    exposure_s = bench.camera.get_exposure()
    try:
        with light_on(bench):
            bench.display.show_point()
            ctl.report(
                start + 0.05 * span,
                f"projecting the spot grid ({array_shape}×{array_shape}, pitch {array_pitch})",
            )
            try:
                cal = fs.fourier_calibrate(
                    array_shape=[array_shape] * 2,
                    array_pitch=[array_pitch] * 2,
                    array_center=array_center,
                    autoexpose={"set_fraction": 0.7, "verbose": False},
                )
            except CalibrationError:
                raise
            except Exception as exc:  # slmsuite raises anything when it cannot find the array
                raise _Refused(
                    f"slmsuite's Fourier calibration failed ({_first_line(exc)}). {advice}",
                    recentre=True,
                ) from exc
            raw = grab(bench.camera, 2)
            check_frame(raw, bench.camera, dark, "Fourier calibration")
            img = grab(bench.camera, 2, background=background)
            spot_exposure_s = bench.camera.get_exposure()
            # The grid slmsuite projected (the hologram is re-made the same way to know its spots' k).
            shape = SpotHologram.get_padded_shape(fs, padding_order=1, square_padding=True)
            center = (
                None
                if array_center is None
                else (np.asarray(array_center, float) + [shape[1] / 2, shape[0] / 2])
            )
            try:
                holo = SpotHologram.make_rectangular_array(
                    shape,
                    array_shape=[array_shape] * 2,
                    array_pitch=[array_pitch] * 2,
                    array_center=center,
                    basis="knm",
                    orientation_check=True,
                    cameraslm=fs,
                )
            except (
                Exception
            ) as exc:  # slmsuite's fit succeeded, but it puts part of the grid off the camera
                raise _Refused(
                    f"Fourier calibration refused: slmsuite's fit puts the {array_shape}×{array_shape} spot grid "
                    f"(pitch {array_pitch}) partly off the camera ({_first_line(exc)}). {advice}",
                    recentre=True,
                ) from exc
            grid_kxy = np.asarray(holo.spot_kxy_rounded, dtype=float)
            ctl.report(start + 0.7 * span, "probing the optical axis and the lattice orientation")
            affine, probe, predicted, cents = resolve_lattice(bench, fs, cal, grid_kxy, img, dark)
    finally:
        bench.camera.set_exposure(exposure_s)
    found = np.all(np.isfinite(cents), axis=1)
    n, n_found = len(predicted), int(found.sum())
    resid = (
        np.linalg.norm(cents[found] - predicted[found], axis=1) if n_found else np.array([np.inf])
    )
    rms = float(np.sqrt(np.mean(resid**2)))
    quality = {
        "spots": float(n),
        "spots_found": float(n_found),
        "rms_residual_px": rms,
        "max_residual_px": float(resid.max()),
        "spot_exposure_s": spot_exposure_s,
        **probe,
    }
    if n_found < min_found_fraction * n:
        raise _Refused(
            f"Fourier calibration refused: only {n_found} of {n} spots were found where the fit puts them "
            f"(spots off the camera or a wrong offset). {advice}",
            recentre=array_center is not None,
        )
    if probe["probe_error_px"] > 0.25 * probe["spot_spacing_px"]:
        raise _Refused(
            f"Fourier calibration refused: a blazed probe spot landed {probe['probe_error_px']:.1f} px from every "
            f"orientation of slmsuite's lattice (spacing {probe['spot_spacing_px']:.1f} px). {advice}",
            recentre=False,
        )
    if rms > max_rms_px:
        raise _Refused(
            f"Fourier calibration refused: spots are {rms:.2f} px RMS from the fitted affine "
            f"(limit {max_rms_px} px). {advice}",
            recentre=False,
        )
    return StepResult(
        "fourier",
        quality=quality,
        arrays={"predicted_ij": predicted, "measured_ij": cents},
        values={
            "fourier": fourier_as_plain(affine),
            "slmsuite_fourier": fourier_as_plain(cal),
            "array_shape": array_shape,
            "array_pitch": array_pitch,
            "array_center": None if array_center is None else list(array_center),
        },
        message=f"{n_found}/{n} spots, {rms:.2f} px RMS residual (probe {probe['probe_error_px']:.2f} px)",
    )
