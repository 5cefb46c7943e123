"""Does the calibration's registration still hold? A check of a few seconds at most, at the start of every run.

A bench that moved since it was calibrated (a bumped camera, a drifting mount) shifts every tile on the camera;
the extractor then cuts the feature maps from the wrong pixels and the run is wrong without a word. With the
program uploaded, the display shows one point (the optical axis) and then nothing; the difference of the two
frames is the program's PSF as the camera sees it. Each tile's measured centroid is compared with where the
registration (and the tile step's per-tile shifts) put the compiled PSF's centroid for that tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lab4f.errors import Fix, MismatchError


@dataclass(frozen=True)
class DriftReport:
    median_px: float  # median over tiles of |measured − expected| centroid, camera pixels
    max_px: float
    shift_px: tuple[float, float]  # median (x, y) displacement
    tiles: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_px": self.median_px,
            "max_px": self.max_px,
            "shift_px": list(self.shift_px),
            "tiles": self.tiles,
        }


def _centroid(img: np.ndarray) -> tuple[float, float] | None:
    w = np.clip(img, 0, None)
    total = float(w.sum())
    if total <= 0:
        return None
    yy, xx = np.indices(w.shape)
    return float((w * xx).sum() / total), float((w * yy).sum() / total)


def measure_drift(
    setup: Any, registration: Any, tile_shifts: np.ndarray | None = None
) -> DriftReport:
    """Measured − expected tile centroids (camera pixels) for the uploaded program's first frame."""
    bench, frame = setup.bench, setup.program.frames[0]
    layout, psf = frame.layout, np.asarray(frame.achieved_psf, dtype=np.float64)
    m = psf.shape[0]
    k = int(layout.kernel_size)
    shape = tuple(bench.display.shape)
    point = np.zeros(shape, dtype=np.float32)
    point[shape[0] // 2, shape[1] // 2] = 1.0
    bench.show(point)
    lit = np.asarray(bench.camera.get_image(), dtype=np.float64)
    bench.show(np.zeros(shape, dtype=np.float32))
    dark = np.asarray(bench.camera.get_image(), dtype=np.float64)
    diff = lit - dark
    scale = float(np.sqrt(abs(np.linalg.det(registration.matrix))))
    half = k // 2 + 2  # cells around a tile centre that hold its pattern
    h, w = diff.shape
    shifts = []
    for t_idx, tile in enumerate(layout.tiles):
        ty, tx = tile.offset
        box = psf[
            m // 2 + ty - half : m // 2 + ty + half + 1, m // 2 + tx - half : m // 2 + tx + half + 1
        ]
        c = _centroid(box)
        if c is None:
            continue
        plane = np.array([[tx - half + c[0], ty - half + c[1]]])
        if tile_shifts is not None:
            plane = plane + np.asarray(tile_shifts[t_idx], dtype=np.float64)
        ex, ey = registration.apply(plane)[0]
        r = int(np.ceil((half + 1) * scale))
        x0, y0 = int(round(ex)) - r, int(round(ey)) - r
        if x0 < 0 or y0 < 0 or x0 + 2 * r + 1 > w or y0 + 2 * r + 1 > h:
            continue
        mc = _centroid(diff[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1])
        if mc is not None:
            shifts.append((x0 + mc[0] - ex, y0 + mc[1] - ey))
    if not shifts:
        raise MismatchError(
            "the registration check found none of the program's tiles on the camera: the bench has "
            "moved far, or the light does not reach the camera",
            fix=Fix("calibrate", {"step": "all"}),
        )
    d = np.asarray(shifts)
    mag = np.hypot(d[:, 0], d[:, 1])
    return DriftReport(
        float(np.median(mag)),
        float(mag.max()),
        (float(np.median(d[:, 0])), float(np.median(d[:, 1]))),
        len(d),
    )


def check_drift(setup: Any, record: Any, limit_px: float) -> DriftReport | None:
    """Refuse a run on a bench that moved more than ``limit_px`` since its registration was calibrated."""
    registration = getattr(record, "registration", None)
    if registration is None:
        return None
    shifts = record.tile_shifts(0) if callable(getattr(record, "tile_shifts", None)) else None
    if shifts is not None and len(shifts) != len(setup.program.frames[0].layout.tiles):
        shifts = None
    report = measure_drift(setup, registration, shifts)
    if report.median_px > limit_px:
        raise MismatchError(
            f"the bench has moved since it was calibrated: the program's tiles sit {report.median_px:.2f} px (median "
            f"over {report.tiles} tiles; shift x {report.shift_px[0]:+.2f}, y {report.shift_px[1]:+.2f} px) from where "
            f"the registration puts them (limit {limit_px:g} px): recalibrate the registration and the steps "
            "built on it",
            fix=Fix(
                "calibrate",
                {
                    "step": ("registration", "tiles", "gains"),
                    "program": ("tiles", "gains"),
                    "or_all": True,
                },
            ),
        )
    return report
