"""Qt-free interim calibration the GUI runs until ``lab4f.calibration`` (issue #4) lands: dark frame,
display → camera registration from displayed fiducials, and per-channel gain/offset against the
digital student. Each step takes ``progress(fraction, message)`` and a ``threading.Event`` cancel, like
the calibration core's steps, so the Calibration panel drives either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.extract import FeatureExtractor
from lab4f.errors import CalibrationCancelled, CalibrationError
from lab4f.optics.registration import PlaneToCamera
from lab4f.storage import atomic_h5, open_h5, read_json_attr, write_json_attr

Progress = Callable[[float, str], None]
RECORD_KIND, RECORD_SCHEMA = "gui-interim-calibration", 1
STEPS = ("dark", "registration", "channel_gain")


@dataclass
class CalibrationState:
    """What the steps measured so far (None: not measured)."""

    dark: np.ndarray | None = None
    registration: PlaneToCamera | None = None
    fiducials: np.ndarray | None = None  # (n, 4): plane x, y, camera x, y
    channel_gain: np.ndarray | None = None
    channel_offset: np.ndarray | None = None
    channel_r2: np.ndarray | None = None
    fit_samples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per channel (raw, digital)
    bench: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dark_mean_adu": None if self.dark is None else float(self.dark.mean())}
        if self.registration is not None:
            r = self.registration
            out |= {"rms_residual_px": r.rms_residual_px, "scale": r.scale, "rotation_deg": r.rotation_deg,
                    "shift_px": r.shift.tolist()}
        if self.channel_r2 is not None:
            out["channel_r2"] = self.channel_r2.tolist()
        return out


def _check(cancel: threading.Event, step: str) -> None:
    if cancel.is_set():
        raise CalibrationCancelled(f"{step} cancelled; the previous calibration is unchanged. Run it again.")


def measure_dark(bench: Any, state: CalibrationState, progress: Progress, cancel: threading.Event,
                 frames: int = 8) -> None:
    """Mean camera frame with the display dark: the offset every later frame is corrected by."""
    bench.display.show(np.zeros(bench.display.shape, np.float32))
    acc = np.zeros(bench.camera.shape, np.float64)
    for i in range(frames):
        _check(cancel, "dark frame")
        acc += bench.snap()
        progress((i + 1) / frames, f"dark frame {i + 1}/{frames}")
    state.dark = (acc / frames).astype(np.float32)


def _centroid(img: np.ndarray, half: int = 4) -> np.ndarray:
    y, x = np.unravel_index(int(np.argmax(img)), img.shape)
    y0, x0 = max(y - half, 0), max(x - half, 0)
    win = np.clip(img[y0 : y + half + 1, x0 : x + half + 1], 0, None)
    yy, xx = np.indices(win.shape)
    total = win.sum()
    if total <= 0:
        raise CalibrationError("no fiducial spot on the camera: open the shutter, switch the source on, "
                               "raise the exposure and retry")
    return np.array([(xx * win).sum() / total + x0, (yy * win).sum() / total + y0])


def measure_registration(bench: Any, state: CalibrationState, progress: Progress, cancel: threading.Event,
                         restore_phase: np.ndarray | None = None, grid: int = 3) -> None:
    """Flat SLM phase (PSF = a spot on the axis), fiducial pixels shown one by one, affine fit of the spots."""
    display, slm = bench.display, bench.slm
    bench.upload_phase(np.zeros(tuple(slm.shape), np.float64))
    h, w = display.shape
    ux, uy = display.cell_offsets()
    rows = np.linspace(2, h - 3, grid).round().astype(int)
    cols = np.linspace(2, w - 3, grid).round().astype(int)
    dark = state.dark if state.dark is not None else 0.0
    points = []
    try:
        for k, (r, c) in enumerate([(r, c) for r in rows for c in cols]):
            _check(cancel, "registration")
            img = np.zeros((h, w), np.float32)
            img[r, c] = 1.0
            display.show(img)
            cam = _centroid(bench.snap().astype(np.float32) - dark)
            points.append([ux[r, c], uy[r, c], *cam])
            progress((k + 1) / grid**2, f"fiducial {k + 1}/{grid ** 2}")
    finally:
        if restore_phase is not None:
            bench.upload_phase(restore_phase)
    pts = np.asarray(points)
    reg = PlaneToCamera.fit(pts[:, :2], pts[:, 2:])
    if not reg.rms_residual_px < 1.0:
        raise CalibrationError(f"registration residual {reg.rms_residual_px:.2f} px is too large: check that "
                               "the fiducials are in focus and not saturated, then retry")
    state.registration, state.fiducials = reg, pts


def fit_channel_gain(bench: Any, state: CalibrationState, progress: Progress, cancel: threading.Event,
                     model: torch.nn.Module, program: Any, images: np.ndarray) -> None:
    """Least-squares gain/offset per channel between captured features and the digital student's features."""
    if state.registration is None:
        raise CalibrationError("channel gain needs the registration: run the registration step first")
    ex = FeatureExtractor.for_program(program, state.registration, tuple(bench.camera.shape), dark=state.dark)
    raw, ref = [], []
    with torch.no_grad():
        for i, img in enumerate(images):
            _check(cancel, "channel gain")
            bench.show(img)
            raw.append(ex(bench.snap()[None])[0].numpy())
            ref.append(model.features(torch.from_numpy(img[None, None].astype(np.float32)))[0].numpy())
            progress((i + 1) / len(images), f"image {i + 1}/{len(images)}")
    raw_a, ref_a = np.stack(raw, 1), np.stack(ref, 1)  # (C, B, n, n)
    gain, offset, r2, samples = [], [], [], []
    for c in range(raw_a.shape[0]):
        x, y = raw_a[c].ravel(), ref_a[c].ravel()
        g, o = np.polyfit(x, y, 1)
        resid = y - (g * x + o)
        gain.append(g)
        offset.append(o)
        r2.append(1 - resid.var() / max(y.var(), 1e-30))
        pick = np.linspace(0, x.size - 1, min(150, x.size)).astype(int)
        samples.append((x[pick], y[pick]))
    state.channel_gain, state.channel_offset = np.asarray(gain), np.asarray(offset)
    state.channel_r2, state.fit_samples = np.asarray(r2), samples


def save_state(state: CalibrationState, path: str | Path) -> Path:
    """Write the interim record atomically (HDF5, schema-versioned)."""
    path = Path(path)
    with atomic_h5(path, RECORD_KIND, RECORD_SCHEMA) as f:
        for name in ("dark", "fiducials", "channel_gain", "channel_offset", "channel_r2"):
            value = getattr(state, name)
            if value is not None:
                f.create_dataset(name, data=value)
        if state.registration is not None:
            f.create_dataset("registration", data=state.registration.to_array())
            f["registration"].attrs["rms_residual_px"] = state.registration.rms_residual_px
        write_json_attr(f, "bench", state.bench)
        write_json_attr(f, "summary", state.summary())
    return path


def load_state(path: str | Path) -> CalibrationState:
    """Read an interim record; StorageError says what is wrong with a bad file."""
    state = CalibrationState()
    with open_h5(path, RECORD_KIND, RECORD_SCHEMA) as f:
        for name in ("dark", "fiducials", "channel_gain", "channel_offset", "channel_r2"):
            if name in f:
                setattr(state, name, f[name][()])
        if "registration" in f:
            state.registration = PlaneToCamera.from_array(f["registration"][()],
                                                          float(f["registration"].attrs["rms_residual_px"]))
        state.bench = read_json_attr(f, "bench", {})
    return state


def history(folder: str | Path) -> list[Path]:
    """Records in a folder, newest first."""
    folder = Path(folder)
    return sorted(folder.glob("*.h5"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
