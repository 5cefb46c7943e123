"""Steps 5 and 6: where the output plane lands on the camera (display fiducials), and where each tile lands.

Output-plane cells are counted from the optical axis, (x, y) = (column, row), as
:mod:`lab4f.optics.registration`. Display pixel (i, j) illuminates cell (j − W//2 + x0, i − H//2 + y0), with
(x0, y0) the display's ``position_px`` when it reports one (else its centre is on the axis).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import check_frame, full_scale_adu, grab, light_on
from lab4f.errors import CalibrationError
from lab4f.optics.registration import PlaneToCamera


def display_cell(display: Any, i: float, j: float) -> np.ndarray:
    """Output-plane cell (x, y) lit by display pixel (row i, col j)."""
    h, w = display.shape
    x0, y0 = getattr(display, "position_px", (0.0, 0.0))
    return np.array([j - w // 2 + x0, i - h // 2 + y0], dtype=float)


def spot_centroid(img: np.ndarray, half: int = 3, near_xy: np.ndarray | None = None,
                  search_px: int | None = None) -> tuple[np.ndarray, float]:
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
    win = np.maximum(win - np.median(img[max(yi - 4 * half, 0) : yi + 4 * half + 1,
                                         max(xi - 4 * half, 0) : xi + 4 * half + 1]), 0)
    total = win.sum()
    if total <= 0:
        return np.array([np.nan, np.nan]), 0.0
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return np.array([xi + (xx * win).sum() / total, yi + (yy * win).sum() / total]), float(win.max())


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


def display_registration_step(
    bench: Any,
    dark: np.ndarray | None = None,
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
            display.blank()
    finally:
        camera.set_exposure(exposure_s)
    plane_xy, cam_xy = np.array(plane), np.array(cam)
    if not np.all(np.isfinite(cam_xy)):
        raise CalibrationError("a display fiducial was not found on the camera; check the display is imaged "
                               "onto the camera and run `lab4f calibrate registration` again")
    reg = PlaneToCamera.fit(plane_xy, cam_xy)
    resid = reg.apply(plane_xy) - cam_xy
    if reg.rms_residual_px > max_rms_px:
        raise CalibrationError(
            f"display registration refused: the affine fit leaves {reg.rms_residual_px:.2f} px RMS (limit "
            f"{max_rms_px}); the fiducials may be distorted or mis-detected. Check focus and exposure, then run "
            "`lab4f calibrate registration` again.")
    return ctl.finish(StepResult(
        "registration",
        quality={"rms_residual_px": reg.rms_residual_px, "max_residual_px": float(np.abs(resid).max()),
                 "rotation_deg": reg.rotation_deg, "scale": reg.scale, "fiducials": float(len(pixels))},
        arrays={"registration": reg.to_array(), "fiducial_plane_xy": plane_xy, "fiducial_camera_xy": cam_xy},
        message=f"rotation {reg.rotation_deg:.2f}°, scale {reg.scale:.4f} px/cell, "
                f"{reg.rms_residual_px:.3f} px RMS",
    ))


def _tile_centroid_cells(psf: np.ndarray, offset: tuple[int, int], k: int) -> np.ndarray | None:
    """Intensity centroid (x, y) in plane cells of one tile of a compiled PSF, or None if the tile is empty."""
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    y0, x0 = cy + offset[0] - k // 2, cx + offset[1] - k // 2
    win = np.maximum(psf[y0 : y0 + k, x0 : x0 + k], 0)
    if win.sum() <= 0:
        return None
    yy, xx = np.mgrid[0:k, 0:k]
    return np.array([x0 - cx + (xx * win).sum() / win.sum(), y0 - cy + (yy * win).sum() / win.sum()])


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
                frame_shifts, frame_peaks = np.zeros((len(frame.layout.tiles), 2)), np.zeros(len(frame.layout.tiles))
                for t_idx, tile in enumerate(frame.layout.tiles):
                    c = _tile_centroid_cells(frame.achieved_psf, tile.offset, k)
                    if c is None:
                        continue
                    pred = registration.apply((point + c)[None])[0]
                    half = max(2, int(np.ceil(scale * k / 2)) + 1)
                    xy, pk = spot_centroid(img, half=half, near_xy=pred, search_px=half)
                    if np.all(np.isfinite(xy)):
                        frame_shifts[t_idx] = registration.inverse_apply(xy[None])[0] - registration.inverse_apply(
                            pred[None])[0]
                        frame_peaks[t_idx] = pk
                shifts.append(frame_shifts)
                peaks_all.append(frame_peaks)
                ctl.report((f_idx + 1) / len(program.frames), f"frame {f_idx + 1}/{len(program.frames)}")
            display.blank()
    finally:
        camera.set_exposure(exposure_s)
    all_shifts = np.concatenate(shifts)
    mag = np.linalg.norm(all_shifts, axis=1)
    if mag.max() > program.frames[0].layout.pitch / 4:
        raise CalibrationError(
            f"a tile landed {mag.max():.1f} cells from where the registration predicts it (limit a quarter "
            "pitch): the registration is stale or the program was compiled for another bench. Run "
            "`lab4f calibrate registration` and then `lab4f calibrate tiles` again.")
    arrays = {f"tile_shifts/{i}": s for i, s in enumerate(shifts)}
    return ctl.finish(StepResult(
        "tiles", quality={"rms_shift_cells": float(np.sqrt(np.mean(mag**2))), "max_shift_cells": float(mag.max()),
                          "tiles": float(len(all_shifts))},
        arrays=arrays, message=f"{len(all_shifts)} tiles, shifts {np.sqrt(np.mean(mag**2)):.3f} cells RMS",
    ))
