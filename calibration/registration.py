"""Steps 5 and 6: where the output plane lands on the camera (display fiducials), and where each tile lands.

Output-plane cells are counted from the optical axis, (x, y) = (column, row), as
:mod:`lab4f.optics.registration`. Display pixel (i, j) illuminates cell (j − W//2 + x0, i − H//2 + y0), with
(x0, y0) the display's ``position_px`` when it reports one (else its centre is on the axis).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import check_frame, full_scale_adu, grab, light_on
from lab4f.errors import CalibrationError
from lab4f.optics.registration import PlaneToCamera

log = logging.getLogger(__name__)


def display_cell(display: Any, i: float, j: float) -> np.ndarray:
    """Output-plane cell (x, y) lit by display pixel (row i, col j)."""
    h, w = display.shape
    x0, y0 = getattr(display, "position_px", (0.0, 0.0))
    return np.array([j - w // 2 + x0, i - h // 2 + y0], dtype=float)


def spot_centroid(
    img: np.ndarray, half: int = 3, near_xy: np.ndarray | None = None, search_px: int | None = None
) -> tuple[np.ndarray, float]:
    """Centroid (x, y) of the brightest spot (optionally searched near ``near_xy``) and its peak value."""
    h, w = img.shape
    smooth = gaussian_filter(img.astype(np.float32), 1.0)
    if near_xy is not None and search_px is not None:
        x, y = int(round(near_xy[0])), int(round(near_xy[1]))
        y0, y1 = max(y - search_px, 0), min(y + search_px + 1, h)
        x0, x1 = max(x - search_px, 0), min(x + search_px + 1, w)
        sub = smooth[y0:y1, x0:x1]
        yi, xi = np.unravel_index(int(np.argmax(sub)), sub.shape)
        yi, xi = yi + y0, xi + x0
    else:
        yi, xi = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    yi, xi = int(np.clip(yi, half, h - half - 1)), int(np.clip(xi, half, w - half - 1))
    win = img[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(np.float64)
    win = np.maximum(
        win
        - np.median(
            img[
                max(yi - 4 * half, 0) : yi + 4 * half + 1, max(xi - 4 * half, 0) : xi + 4 * half + 1
            ]
        ),
        0,
    )
    total = win.sum()
    if total <= 0:
        return np.array([np.nan, np.nan]), 0.0
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return np.array([xi + (xx * win).sum() / total, yi + (yy * win).sum() / total]), float(
        win.max()
    )


def fiducial_pixels(shape: tuple[int, int], grid: int, margin: int) -> list[tuple[int, int]]:
    """A grid × grid set of display pixels (row, col) spanning the display inside ``margin``."""
    h, w = shape
    rows = np.rint(np.linspace(margin, h - 1 - margin, grid)).astype(int)
    cols = np.rint(np.linspace(margin, w - 1 - margin, grid)).astype(int)
    return [(int(r), int(c)) for r in rows for c in cols]


def _fiducial_frame(camera: Any, dark: np.ndarray | None, frames: int, expose: bool) -> np.ndarray:
    """Frame of one fiducial, exposed on this fiducial itself when needed (first one, saturated, or dim).

    One point through a flat phase is far brighter than the program's scenes, and a point landing on exactly
    one camera pixel is up to 4× brighter than one split over four, so one exposure for all fiducials can
    saturate; the centroid does not depend on the exposure.
    """
    full = full_scale_adu(camera)
    if not expose:
        raw = grab(camera, frames)
        peak = float(np.max(raw - (dark if dark is not None else 0))) / full
        if float(raw.max()) < 0.98 * full and peak >= 0.1:
            return raw
    camera.autoexpose(set_fraction=0.35, verbose=False)
    return grab(camera, frames)


def plane_matrix_from_fourier(fourier: dict, slm: Any) -> np.ndarray:
    """Plane cell → camera pixel matrix from slmsuite's Fourier calibration (camera = M·k + b).

    Output-plane cells ARE the SLM's DFT grid in k-space: one cell = 1 / (N · pitch) in slmsuite's normalised k
    (pitch in wavelengths), so A = M · diag(1 / (Nx·pitch_x), 1 / (Ny·pitch_y)). The Fourier spot grid spans most
    of the tile field, so this matrix holds across it, where an affine fitted to fiducials on the small input
    display would extrapolate its rotation and scale errors tens of times over.
    """
    m = np.asarray(fourier["M"], dtype=np.float64).reshape(2, 2)
    ny, nx = slm.shape
    px, py = np.ravel(slm.pitch)[:2]
    return m @ np.diag([1.0 / (nx * px), 1.0 / (ny * py)])


def _scale_from_lenses(bench: Any) -> float | None:
    """Camera pixels per output cell that the bench config's lenses and the camera's pixel pitch predict."""
    try:
        return bench.pixels_per_cell()
    except Exception:  # a bench without a config geometry or an SLM pitch: no prediction
        return None


def display_registration_step(
    bench: Any,
    dark: np.ndarray | None = None,
    fourier: dict | None = None,
    grid: int = 5,
    margin: int = 2,
    frames: int = 2,
    max_rms_px: float = 0.5,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Show fiducial points one by one through a flat SLM phase (PSF = a spot), fit the affine plane → camera."""
    ctl = StepControl("registration", progress, cancel)
    display, camera = bench.display, bench.camera
    pixels = fiducial_pixels(display.shape, grid, margin)
    plane, cam = [], []
    exposure_s = camera.get_exposure()
    try:
        with light_on(bench):
            bench.slm.set_phase(np.zeros(bench.slm.shape), settle=True)
            for n, (i, j) in enumerate(pixels):
                display.show_point(i, j)
                raw = _fiducial_frame(camera, dark, frames, expose=n == 0)
                check_frame(raw, camera, dark, f"display fiducial ({i}, {j})")
                xy, _ = spot_centroid(raw - (dark if dark is not None else 0))
                plane.append(display_cell(display, i, j))
                cam.append(xy)
                ctl.report((n + 1) / len(pixels), f"fiducial {n + 1}/{len(pixels)}")
    finally:
        display.blank()
        camera.set_exposure(exposure_s)
    plane_xy, cam_xy = np.array(plane), np.array(cam)
    if not np.all(np.isfinite(cam_xy)):
        raise CalibrationError(
            "a display fiducial was not found on the camera; check the display is imaged "
            "onto the camera and run `lab4f calibrate registration` again"
        )
    reg = PlaneToCamera.fit(plane_xy, cam_xy)
    fiducial_only = reg
    if fourier is not None:
        # the field-wide matrix from the Fourier calibration, the display's offset from the fiducials
        matrix = plane_matrix_from_fourier(fourier, bench.slm)
        reg = PlaneToCamera(matrix, np.mean(cam_xy - plane_xy @ matrix.T, axis=0))
        reg.rms_residual_px = float(
            np.sqrt(np.mean(np.sum((reg.apply(plane_xy) - cam_xy) ** 2, axis=1)))
        )
    resid = reg.apply(plane_xy) - cam_xy
    expected = _scale_from_lenses(bench)
    ratio = reg.scale / expected if expected else float("nan")
    if abs(ratio - 1.0) > 0.1:  # a sanity check: the fit is used either way
        log.warning(
            "registration measures %.3f camera pixels per output cell; the bench config's lenses and the "
            "camera's %s µm pixels predict %.3f: check focal_length_2_mm and the camera pitch in the "
            "config (compile sizes the tile field for the camera with them, `bench info` reports them)",
            reg.scale,
            getattr(camera, "pitch_um", "?"),
            expected,
        )
    if reg.rms_residual_px > max_rms_px:
        raise CalibrationError(
            f"display registration refused: the affine fit leaves {reg.rms_residual_px:.2f} px RMS (limit "
            f"{max_rms_px}); the fiducials may be distorted or mis-detected. Check focus and exposure, then run "
            "`lab4f calibrate registration` again."
        )
    return ctl.finish(
        StepResult(
            "registration",
            quality={
                "rms_residual_px": reg.rms_residual_px,
                "max_residual_px": float(np.abs(resid).max()),
                "rotation_deg": reg.rotation_deg,
                "scale": reg.scale,
                "fiducials": float(len(pixels)),
                "fiducial_only_rms_px": fiducial_only.rms_residual_px,
                "fiducial_only_rotation_deg": fiducial_only.rotation_deg,
                "matrix_from_fourier": float(fourier is not None),
                "scale_from_lenses": expected or float("nan"),
                "scale_vs_lenses": ratio,
            },
            arrays={
                "registration": reg.to_array(),
                "fiducial_plane_xy": plane_xy,
                "fiducial_camera_xy": cam_xy,
            },
            message=f"rotation {reg.rotation_deg:.2f}°, scale {reg.scale:.4f} px/cell, "
            f"{reg.rms_residual_px:.3f} px RMS",
        )
    )


def _tile_centroid_cells(psf: np.ndarray, offset: tuple[int, int], k: int) -> np.ndarray | None:
    """Intensity centroid (x, y) in plane cells of one tile of a compiled PSF, or None if the tile is empty."""
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    y0, x0 = cy + offset[0] - k // 2, cx + offset[1] - k // 2
    win = np.maximum(psf[y0 : y0 + k, x0 : x0 + k], 0)
    if win.sum() <= 0:
        return None
    yy, xx = np.mgrid[0:k, 0:k]
    return np.array(
        [x0 - cx + (xx * win).sum() / win.sum(), y0 - cy + (yy * win).sum() / win.sum()]
    )


def predicted_point_image(
    psf: np.ndarray, registration: PlaneToCamera, point: np.ndarray, camera_shape: tuple[int, int]
) -> np.ndarray:
    """The camera image the registration predicts for a point input at plane cell ``point`` (PSF warped, bilinear).

    Tile shifts are measured as centroid(measured) − centroid(predicted) with the same window, so the window's
    bias on an asymmetric kernel tile cancels instead of masquerading as a shift."""
    from scipy.ndimage import map_coordinates

    h, w = camera_shape
    yy, xx = np.mgrid[0:h, 0:w]
    plane = registration.inverse_apply(np.stack([xx.ravel(), yy.ravel()], axis=1)) - point
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    img = map_coordinates(psf, [plane[:, 1] + cy, plane[:, 0] + cx], order=1, mode="constant")
    return img.reshape(h, w).astype(np.float32)


def _lsq_shift(
    img: np.ndarray, predicted: np.ndarray, center_xy: np.ndarray, half: int, iterations: int = 3
) -> tuple[np.ndarray, float]:
    """Sub-pixel shift (x, y) in camera pixels of ``img`` against ``predicted`` in a fixed window (Gauss–Newton on
    img ≈ a·P(x − d) + c), and the fitted amplitude a; NaN if the window leaves the frame or holds no signal."""
    from scipy.ndimage import map_coordinates

    x0, y0 = np.round(center_xy).astype(int)
    h, w = img.shape
    if x0 - half < 1 or y0 - half < 1 or x0 + half >= w - 1 or y0 + half >= h - 1:
        return np.full(2, np.nan), float("nan")
    yy, xx = np.mgrid[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1].astype(np.float64)
    target = img[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1].astype(np.float64).ravel()
    d = np.zeros(2)
    a = float("nan")
    for _ in range(iterations):
        coords = [yy - d[1], xx - d[0]]
        p = map_coordinates(predicted, coords, order=1).ravel()
        py = map_coordinates(np.gradient(predicted, axis=0), coords, order=1).ravel()
        px = map_coordinates(np.gradient(predicted, axis=1), coords, order=1).ravel()
        design = np.stack([p, np.ones_like(p), -px, -py], axis=1)
        sol, *_ = np.linalg.lstsq(design, target, rcond=None)
        a = float(sol[0])
        if not np.isfinite(a) or a <= 0:
            return np.full(2, np.nan), float("nan")
        d = d + sol[2:] / a
    return d, a


def tile_registration_step(
    bench: Any,
    program: Any,
    registration: PlaneToCamera,
    dark: np.ndarray | None = None,
    frames: int = 4,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Per-tile shifts (plane cells, (x, y)) of each program frame's k⁺/k⁻ PSF tiles from the registration.

    Uploads each frame's phase, shows one point on the axis pixel and measures every tile's centroid;
    the shift is measured − predicted (the compiled PSF's tile centroid, through ``registration``).
    """
    ctl = StepControl("tiles", progress, cancel)
    display, camera = bench.display, bench.camera
    exposure_s = camera.get_exposure()
    shifts, peaks_all = [], []
    h, w = display.shape
    point = display_cell(display, h // 2, w // 2)
    scale = registration.scale
    try:
        with light_on(bench):
            display.show_point(h // 2, w // 2)
            for f_idx, frame in enumerate(program.frames):
                bench.upload_phase(frame.phase)
                camera.autoexpose(set_fraction=0.7, verbose=False)
                raw = grab(camera, frames)
                check_frame(raw, camera, dark, f"tile registration, frame {f_idx}")
                img = raw - (dark if dark is not None else 0)
                k = frame.layout.kernel_size
                frame_shifts, frame_peaks = (
                    np.zeros((len(frame.layout.tiles), 2)),
                    np.zeros(len(frame.layout.tiles)),
                )
                predicted = predicted_point_image(
                    frame.achieved_psf, registration, point, img.shape
                )
                for t_idx, tile in enumerate(frame.layout.tiles):
                    c = _tile_centroid_cells(frame.achieved_psf, tile.offset, k)
                    if (
                        c is None
                    ):  # an empty tile (e.g. k⁻ of an all-positive kernel): nothing to measure
                        frame_peaks[t_idx] = np.nan
                        continue
                    pred = registration.apply((point + c)[None])[0]
                    half = max(2, int(np.ceil(scale * k / 2)) + 1)
                    d_cam, amplitude = _lsq_shift(img, predicted, pred, half)
                    if np.all(np.isfinite(d_cam)):
                        frame_shifts[t_idx] = np.linalg.solve(
                            registration.matrix, d_cam
                        )  # camera px → plane cells
                        frame_peaks[t_idx] = amplitude
                shifts.append(frame_shifts)
                peaks_all.append(frame_peaks)
                ctl.report(
                    (f_idx + 1) / len(program.frames), f"frame {f_idx + 1}/{len(program.frames)}"
                )
    finally:
        display.blank()
        camera.set_exposure(exposure_s)
    all_shifts = np.concatenate(shifts)
    unmeasured = int(sum(np.count_nonzero(p == 0) for p in peaks_all))
    if unmeasured > 0.1 * len(all_shifts):
        raise CalibrationError(
            f"{unmeasured} of {len(all_shifts)} tiles could not be measured (dark, or off the camera): check the "
            "exposure and that the program fits the camera, then run `lab4f calibrate tiles` again."
        )
    mag = np.linalg.norm(all_shifts, axis=1)
    if mag.max() > program.frames[0].layout.pitch / 4:
        raise CalibrationError(
            f"a tile landed {mag.max():.1f} cells from where the registration predicts it (limit a quarter "
            "pitch): the registration is stale or the program was compiled for another bench. Run "
            "`lab4f calibrate registration` and then `lab4f calibrate tiles` again."
        )
    arrays = {f"tile_shifts/{i}": s for i, s in enumerate(shifts)}
    return ctl.finish(
        StepResult(
            "tiles",
            quality={
                "rms_shift_cells": float(np.sqrt(np.mean(mag**2))),
                "max_shift_cells": float(mag.max()),
                "tiles": float(len(all_shifts)),
                "tiles_unmeasured": float(unmeasured),
            },
            arrays=arrays,
            message=f"{len(all_shifts)} tiles, shifts {np.sqrt(np.mean(mag**2)):.3f} cells RMS",
        )
    )
