"""Step 7: per-tile FIR filters (default 5×5, one for k⁺ and one for k⁻) and an offset per channel, between
captured and digital feature maps.

The captured tiles are what the live pipeline computes without a channel correction: the
:class:`~lab4f.bench.extract.FeatureExtractor` of the program (registration, tile shifts, dark, flat,
k⁺/g⁺ and −k⁻/g⁻, kernel scale). The camera path (resampling onto ~1 px/cell pixels, then the bilinear tile
cut) blurs and sub-pixel-shifts every tile — differently for the k⁺ and the k⁻ tile of a channel, which sit at
different field positions — so a scalar gain cannot undo it and one filter on k⁺ − k⁻ only partly. Per channel
the fit is, by least squares over all pixels of the fit images,
    digital[c] ≈ F⁺[c] ⋆ T⁺[c] + F⁻[c] ⋆ T⁻[c] + channel_offset[c]
(⋆: cross-correlation with zero padding k//2, exactly the extractor's grouped ``conv2d``), with
digital = ``program.simulate(images)``. Half of the images are held out; their R² is the reported figure.
Measured (trained 16-kernel student, 3°/×1.04 camera, default crosstalk): held-out R² ≥ 0.996 without noise,
≥ 0.995 with the default sensor noise; one 3×3 filter on k⁺ − k⁻ gave 0.95.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.bench.extract import DEFAULT_FILTER_SIZE
from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import check_frame, full_scale_adu, grab, light_blocked, light_on
from lab4f.errors import CalibrationError
from lab4f.optics.registration import PlaneToCamera, tile_sampling_grid


def calibration_images(count: int = 32, size: int | None = None, seed: int = 0) -> torch.Tensor:
    """``count`` intensity images (B, 1, N, N) in [0, 1] from mnist5k's validation split (offline)."""
    from lab4f.data import load_dataset

    splits = load_dataset("mnist5k", split_seed=seed, limit=count, image_size=size)
    return torch.stack([splits.val[i][0] for i in range(min(count, len(splits.val)))]).float()


def tile_features(img: np.ndarray, layout: Any, registration: PlaneToCamera,
                  tile_shifts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw k⁺ and k⁻ maps (C, N, N) of one corrected camera frame, channels in ``layout.channels`` order."""
    grid = tile_sampling_grid(layout, registration, img.shape, tile_shifts)
    frame = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    n = layout.input_size
    maps = F.grid_sample(frame, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    maps = maps.reshape(len(layout.tiles), n, n).numpy()
    index = {c: i for i, c in enumerate(layout.channels)}
    pos, neg = np.zeros((len(index), n, n), np.float32), np.zeros((len(index), n, n), np.float32)
    for t, m in zip(layout.tiles, maps, strict=True):
        (pos if t.sign > 0 else neg)[index[t.channel]] = m
    return pos, neg


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """(B, N, N) → (B·N·N, k·k) zero-padded neighbourhoods, in ``conv2d`` weight order."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))[:, None]
    return F.unfold(t, k, padding=k // 2).transpose(1, 2).reshape(-1, k * k).numpy()


def fit_channels(captured: np.ndarray, digital: np.ndarray, filter_size: int = 3,
                 holdout: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Least-squares filter (C, k, k) + offset per channel on arrays (B, C, N, N); R² on fit and held-out images.

    ``holdout``: boolean (B,) mask of images left out of the fit (None: fit and report on all).
    Returns ``channel_filter``, ``channel_offset``, ``channel_r2`` (held out), ``channel_r2_fit``.
    """
    k = int(filter_size)
    if k < 1 or k % 2 == 0:
        raise CalibrationError(f"filter_size must be an odd number ≥ 1, got {filter_size}")
    parts = 1 if captured.ndim == 4 else captured.shape[2]
    captured5 = captured[:, :, None] if captured.ndim == 4 else captured
    b, chans = captured.shape[:2]
    test = np.zeros(b, bool) if holdout is None else np.asarray(holdout, bool)
    train = ~test
    if not train.any():
        raise CalibrationError("no calibration image is left to fit the channel filters; use more images")
    filt, offset = np.zeros((chans, parts, k, k)), np.zeros(chans)
    r2, r2_fit = np.full(chans, np.nan), np.full(chans, np.nan)
    for c in range(chans):
        x = np.column_stack([_patches(captured5[:, c, p], k) for p in range(parts)])
        y = digital[:, c].reshape(-1).astype(np.float64)
        rows = np.repeat(train, captured.shape[-1] * captured.shape[-2])
        design = np.column_stack([x, np.ones(len(x))])
        coef, *_ = np.linalg.lstsq(design[rows], y[rows], rcond=None)
        pred = design @ coef
        filt[c], offset[c] = coef[:-1].reshape(parts, k, k), coef[-1]
        r2_fit[c] = _r2(y[rows], pred[rows])
        r2[c] = _r2(y[~rows], pred[~rows]) if test.any() else r2_fit[c]
    if captured.ndim == 4:
        filt = filt[:, 0]
    return {"channel_filter": filt, "channel_offset": offset, "channel_r2": r2, "channel_r2_fit": r2_fit}


def _fit_exposure(bench: Any, program: Any, images: torch.Tensor, dark: np.ndarray | None,
                  target_fraction: float = 0.7, probe: int = 8) -> float:
    """Shorten the exposure if the calibration images saturate it (or nearly): the phase LUT applied after the
    camera step redistributes light, so the camera step's exposure can be too long by now."""
    camera = bench.camera
    full = full_scale_adu(camera)
    offset = 0.0 if dark is None else float(np.mean(dark))
    for _ in range(12):
        peak_adu = 0.0
        for frame in program.frames:
            bench.upload_phase(frame.phase)
            for b in range(min(probe, len(images))):
                bench.show(images[b, 0].numpy())
                peak_adu = max(peak_adu, float(np.asarray(camera.get_image()).max()))
        exposure = float(camera.get_exposure())
        if peak_adu >= full:
            camera.set_exposure(exposure / 2)  # saturated: the true peak is unknown, halve and look again
            continue
        fraction = (peak_adu - offset) / (full - offset)
        if fraction > 0.9:
            camera.set_exposure(exposure * target_fraction / fraction)
        return float(camera.get_exposure())
    raise CalibrationError("calibration images saturate the camera even at a 4000× shorter exposure: lower the "
                           "light source power or add an ND filter, then run `lab4f calibrate all` again")


def capture_features(bench: Any, program: Any, images: torch.Tensor, registration: PlaneToCamera,
                     tile_shifts: list[np.ndarray] | None, dark: np.ndarray | None, flat: np.ndarray | None,
                     frames: int, ctl: StepControl, per_tile: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Uncorrected features through the pipeline's extractor (no channel gain, filter or offset): (B, C, N, N)
    k⁺ − k⁻, or with ``per_tile`` (B, C, 2, N, N) — the k⁺ and the (negated) k⁻ tile apart, for per-tile filters —
    and the dark frame they were corrected with (measured again if the exposure had to change)."""
    from lab4f.bench.extract import FeatureExtractor

    cam_shape = tuple(int(s) for s in bench.camera.shape)
    chans = program.channels

    def extractor(select: tuple[float, float] | None) -> FeatureExtractor:
        if select is None:
            return FeatureExtractor.for_program(program, registration, cam_shape, dark=dark, flat=flat,
                                                tile_shifts=tile_shifts)
        filt = np.tile(np.asarray(select, np.float32)[None, :, None, None], (chans, 1, 1, 1))
        return FeatureExtractor.for_program(program, registration, cam_shape, dark=dark, flat=flat,
                                            tile_shifts=tile_shifts, channel_filter=filt)
    raw = np.zeros((len(images), len(program.frames), *cam_shape), dtype=np.float32)
    total = len(program.frames) * len(images)
    try:
        with light_on(bench):
            before = float(bench.camera.get_exposure())
            _fit_exposure(bench, program, images, dark)
        if dark is not None and float(bench.camera.get_exposure()) != before:
            # a dark frame belongs to its exposure (dark current): measure it again at the new one
            with light_blocked(bench):
                bench.display.blank()
                dark = grab(bench.camera, 8)
        with light_on(bench):
            for f_idx, frame in enumerate(program.frames):
                bench.upload_phase(frame.phase)
                for b in range(len(images)):
                    bench.show(images[b, 0].numpy())
                    raw[b, f_idx] = grab(bench.camera, frames)
                    check_frame(raw[b, f_idx], bench.camera, dark, f"calibration image {b}")
                    ctl.report(0.95 * (f_idx * len(images) + b + 1) / total, f"image {b + 1}/{len(images)}")
    finally:
        bench.display.blank()
    frames_in = raw if len(program.frames) > 1 else raw[:, 0]
    if not per_tile:
        return extractor(None)(frames_in).numpy(), dark
    parts = [extractor((1.0, 0.0))(frames_in).numpy(), extractor((0.0, 1.0))(frames_in).numpy()]
    return np.stack(parts, axis=2), dark


def channel_gain_step(
    bench: Any,
    program: Any,
    registration: PlaneToCamera,
    tile_shifts: list[np.ndarray] | None = None,
    dark: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    images: torch.Tensor | None = None,
    count: int = 48,
    frames: int = 4,
    filter_size: int = DEFAULT_FILTER_SIZE,
    per_tile: bool = True,
    min_r2: float = 0.0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Show ``images`` (default ``count`` mnist5k digits, ``frames`` averaged each), fit filter + offset per channel.

    Odd-numbered images are held out of the fit; ``channel_r2`` is their R². ``filter_size`` 1 is a scalar gain.
    """
    ctl = StepControl("gains", progress, cancel)
    if images is None:
        images = calibration_images(count, size=program.input_size)
    ih, iw = (int(v) for v in images.shape[-2:])
    dh, dw = (int(v) for v in bench.display.shape)
    if (ih, iw) != (dh, dw) and not (bench.config.sync.policy == "marker" and ih <= dh and iw <= dw):
        # a larger display is for the marker code beside the image (Bench.show centres the image)
        raise CalibrationError(f"calibration images are {(ih, iw)} but the display shows {(dh, dw)}; compile the "
                               "program for the display's size")
    if len(images) < 2:
        raise CalibrationError("the channel fit needs at least 2 calibration images (one is held out)")
    digital = program.simulate(images).numpy()
    captured, dark = capture_features(bench, program, images, registration, tile_shifts, dark, flat, frames, ctl,
                                      per_tile)
    holdout = np.arange(len(images)) % 2 == 1
    fit = fit_channels(captured, digital, filter_size, holdout)
    r2 = fit["channel_r2"]
    if np.nanmin(r2) < min_r2:
        worst = int(np.nanargmin(r2))
        raise CalibrationError(
            f"channel {worst} follows the digital model poorly (held-out R² {r2[worst]:.3f} < {min_r2}): "
            "recalibrate the registration and tiles (`lab4f calibrate registration`, `lab4f calibrate tiles`), "
            "check the program belongs to this bench, then run `lab4f calibrate gains` again.")
    sample = min(len(images), 4)
    gain = fit["channel_filter"].reshape(program.channels, -1, filter_size, filter_size)[:, 0].sum(axis=(1, 2))
    quality = {"min_r2": float(np.nanmin(r2)), "median_r2": float(np.nanmedian(r2)),
               "mean_r2": float(np.nanmean(r2)), "min_r2_fit": float(np.nanmin(fit["channel_r2_fit"])),
               "images": float(len(images)), "held_out": float(holdout.sum()), "frames": float(frames),
               "filter_size": float(filter_size)}
    return ctl.finish(StepResult(
        "gains", quality=quality,
        arrays={**fit, "channel_gain": gain, "captured_sample": captured[:sample],
                **({} if dark is None else {"dark": np.asarray(dark, np.float32)}),
                "digital_sample": digital[:sample]},
        values={"filter_size": int(filter_size), "frames": int(frames), "per_tile": bool(per_tile),
                "exposure_s": float(bench.camera.get_exposure())},
        message=f"held-out R² per channel {np.nanmin(r2):.4f}..{np.nanmax(r2):.4f} "
                f"({filter_size}×{filter_size} filter, {int(holdout.sum())}/{len(images)} images held out)",
    ))


def fitted_features(record: Any, captured: np.ndarray) -> np.ndarray:
    """The recorded channel correction (filters, or the gain of old records) + offset applied to captured tiles
    (B, C, N, N) or (B, C, 2, N, N): what the live extractor computes, for plots and residual maps."""
    offset = np.asarray(record.channel_offset)[None, :, None, None]
    filt = record.channel_filter
    if filt is None:
        return np.asarray(record.channel_gain)[None, :, None, None] * captured + offset
    k = filt.shape[-1]
    filt = np.asarray(filt, np.float64)
    weight = torch.from_numpy(filt if filt.ndim == 4 else filt[:, None])  # (C, P, k, k), P tiles per channel
    captured = np.asarray(captured, np.float64)
    captured = captured.reshape(captured.shape[0], -1, *captured.shape[-2:])  # (B, C·P, N, N)
    out = F.conv2d(torch.from_numpy(captured), weight, padding=k // 2, groups=filt.shape[0])
    return out.numpy() + offset
