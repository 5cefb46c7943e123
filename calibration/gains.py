"""Step 7: per-channel gain and offset between captured and digital feature maps, with R² per channel.

Captured feature of channel c = k⁺ tile − k⁻ tile, cut from the dark/flat-corrected frame with the
registration and the tile shifts (the same ``tile_sampling_grid`` the live pipeline uses). The fit is
    digital[c] ≈ channel_gain[c] · captured[c] + channel_offset[c]
with digital = ``program.simulate(images)`` (the ideal bench's feature maps, in kernel units).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import check_frame, corrected, grab, light_on
from lab4f.errors import CalibrationError
from lab4f.optics.registration import PlaneToCamera, tile_sampling_grid


def calibration_images(count: int = 32, size: int | None = None, seed: int = 0) -> torch.Tensor:
    """``count`` intensity images (B, 1, N, N) in [0, 1] from mnist5k's validation split (offline)."""
    from lab4f.data import load_dataset

    splits = load_dataset("mnist5k", split_seed=seed, limit=count, image_size=size)
    return torch.stack([splits.val[i][0] for i in range(min(count, len(splits.val)))]).float()


def tile_features(img: np.ndarray, layout: Any, registration: PlaneToCamera,
                  tile_shifts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """k⁺ and k⁻ maps (C, N, N) of one corrected camera frame, channels in ``layout.channels`` order."""
    grid = tile_sampling_grid(layout, registration, img.shape, tile_shifts)
    frame = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    n = layout.input_size
    maps = F.grid_sample(frame, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    maps = maps.reshape(len(layout.tiles), n, n).numpy()
    index = {c: i for i, c in enumerate(layout.channels)}
    pos = np.zeros((len(index), n, n), np.float32)
    neg = np.zeros_like(pos)
    for t, m in zip(layout.tiles, maps, strict=True):
        (pos if t.sign > 0 else neg)[index[t.channel]] = m
    return pos, neg


def fit_channels(captured: np.ndarray, digital: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares gain, offset and R² per channel; arrays (B, C, N, N)."""
    chans = captured.shape[1]
    gain, offset, r2 = np.zeros(chans), np.zeros(chans), np.zeros(chans)
    for c in range(chans):
        x, y = captured[:, c].ravel().astype(np.float64), digital[:, c].ravel().astype(np.float64)
        design = np.stack([x, np.ones_like(x)], axis=1)
        (g, o), *_ = np.linalg.lstsq(design, y, rcond=None)
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        r2[c] = 1.0 - float(np.sum((y - g * x - o) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
        gain[c], offset[c] = g, o
    return gain, offset, r2


def channel_gain_step(
    bench: Any,
    program: Any,
    registration: PlaneToCamera,
    tile_shifts: list[np.ndarray] | None = None,
    dark: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    images: torch.Tensor | None = None,
    count: int = 32,
    frames: int = 1,
    min_r2: float = 0.0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Show ``images`` (default: ``count`` mnist5k digits), capture the feature maps and fit them to the model."""
    ctl = StepControl("gains", progress, cancel)
    if images is None:
        images = calibration_images(count, size=program.input_size)
    if tuple(images.shape[-2:]) != tuple(bench.display.shape):
        raise CalibrationError(f"calibration images are {tuple(images.shape[-2:])} but the display shows "
                               f"{tuple(bench.display.shape)}; compile the program for the display's size")
    digital = program.simulate(images).numpy()
    captured = np.zeros_like(digital, dtype=np.float32)
    total = len(program.frames) * len(images)
    with light_on(bench):
        for f_idx, frame in enumerate(program.frames):
            bench.upload_phase(frame.phase)
            shifts = None if tile_shifts is None else tile_shifts[f_idx]
            for b in range(len(images)):
                bench.show(images[b, 0].numpy())
                raw = grab(bench.camera, frames)
                check_frame(raw, bench.camera, dark, f"calibration image {b}")
                pos, neg = tile_features(corrected(raw, dark, flat), frame.layout, registration, shifts)
                captured[b, frame.layout.channels] = pos - neg
                ctl.report((f_idx * len(images) + b + 1) / total, f"image {b + 1}/{len(images)}")
        bench.display.blank()
    gain, offset, r2 = fit_channels(captured, digital)
    if np.nanmin(r2) < min_r2:
        worst = int(np.nanargmin(r2))
        raise CalibrationError(
            f"channel {worst} follows the digital model poorly (R² {r2[worst]:.3f} < {min_r2}): recalibrate "
            "the registration and tiles (`lab4f calibrate registration`, `lab4f calibrate tiles`), check the "
            "program belongs to this bench, then run `lab4f calibrate gains` again.")
    sample = min(len(images), 4)
    return ctl.finish(StepResult(
        "gains", quality={"min_r2": float(np.nanmin(r2)), "mean_r2": float(np.nanmean(r2)), "images": float(len(images))},
        arrays={"channel_gain": gain, "channel_offset": offset, "channel_r2": r2,
                "captured_sample": captured[:sample], "digital_sample": digital[:sample]},
        message=f"R² per channel {np.nanmin(r2):.4f}..{np.nanmax(r2):.4f} on {len(images)} images",
    ))
