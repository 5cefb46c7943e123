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
from lab4f.calibration.camera import (
    EXPOSURE_BUDGET_S,
    check_frame,
    corrected,
    full_scale_adu,
    grab,
    light_blocked,
    light_on,
)
from lab4f.errors import CalibrationError
from lab4f.optics.registration import PlaneToCamera, tile_sampling_grid


def calibration_images(count: int = 32, size: int | None = None, seed: int = 0) -> torch.Tensor:
    """``count`` intensity images (B, 1, N, N) in [0, 1] from mnist5k's validation split (offline)."""
    from lab4f.data import load_dataset

    splits = load_dataset("mnist5k", split_seed=seed, limit=count, image_size=size)
    return torch.stack([splits.val[i][0] for i in range(min(count, len(splits.val)))]).float()


def tile_features(
    img: np.ndarray, layout: Any, registration: PlaneToCamera, tile_shifts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw k⁺ and k⁻ maps (C, N, N) of one corrected camera frame, channels in ``layout.channels`` order."""
    grid = tile_sampling_grid(layout, registration, img.shape, tile_shifts)
    frame = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    n = layout.input_size
    maps = F.grid_sample(frame, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[
        0, 0
    ]
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


def fit_channels(
    captured: np.ndarray,
    digital: np.ndarray,
    filter_size: int = 3,
    holdout: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
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
        raise CalibrationError(
            "no calibration image is left to fit the channel filters; use more images"
        )
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
    return {
        "channel_filter": filt,
        "channel_offset": offset,
        "channel_r2": r2,
        "channel_r2_fit": r2_fit,
    }


def read_mask(
    program: Any,
    registration: PlaneToCamera,
    camera_shape: tuple[int, int],
    tile_shifts: list[np.ndarray] | None,
) -> np.ndarray:
    """(H, W) bool: the camera pixels the extractor's bilinear tile cut reads, over every program frame — what the
    exposure is set for (the zero order, the display's direct image in the central slot, is not among them)."""
    h, w = camera_shape
    mask = np.zeros((h, w), dtype=bool)
    for f, frame in enumerate(program.frames):
        shifts = None if tile_shifts is None else tile_shifts[f]
        grid = (
            tile_sampling_grid(frame.layout, registration, (h, w), shifts)[0].numpy().reshape(-1, 2)
        )
        x, y = ((grid[:, 0] + 1) * w - 1) / 2, ((grid[:, 1] + 1) * h - 1) / 2
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        for dy in (0, 1):
            for dx in (0, 1):
                yy, xx = y0 + dy, x0 + dx
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                mask[yy[ok], xx[ok]] = True
    return mask


#: The gains step exposes the brightest tile pixel of its probe images at this fraction of full scale (lengthening
#: an exposure that left them below :data:`LENGTHEN_BELOW`, shortening one above :data:`SHORTEN_ABOVE`): headroom
#: for inputs somewhat brighter than the calibration images.
GAINS_TARGET_FRACTION = 0.6
LENGTHEN_BELOW = 0.45
SHORTEN_ABOVE = 0.9


def _probe_peak(
    bench: Any, program: Any, images: torch.Tensor, mask: np.ndarray, probe: int
) -> float:
    """The brightest raw value (ADU) in ``mask`` over the first ``probe`` images through every SLM frame."""
    peak = 0.0
    for frame in program.frames:
        bench.upload_phase(frame.phase)
        for b in range(min(probe, len(images))):
            bench.show(images[b, 0].numpy())
            peak = max(peak, float(np.asarray(bench.camera.get_image())[mask].max()))
    return peak


def _fit_exposure(
    bench: Any,
    program: Any,
    images: torch.Tensor,
    dark: np.ndarray | None,
    mask: np.ndarray,
    target_fraction: float = GAINS_TARGET_FRACTION,
    probe: int = 8,
    max_exposure_s: float | None = None,
    lengthen: bool = True,
) -> float:
    """Expose the calibration images for what is read: their brightest tile pixel (``mask``) at ``target_fraction``
    of full scale. The camera step exposed a white input (the brightest possible, for which no tile saturates), and
    the phase LUT applied after it redistributes light; images like the calibration digits are dimmer, so the
    exposure is lengthened (at most to ``max_exposure_s``, the frame budget, or the camera step's exposure if that
    was longer) when they stay below :data:`LENGTHEN_BELOW` and shortened when they exceed :data:`SHORTEN_ABOVE`.
    ``lengthen=False`` (with ``mask`` the whole frame: the behaviour before) only ever shortens, to 0.7."""
    camera = bench.camera
    full = full_scale_adu(camera)
    offset = 0.0 if dark is None else float(np.mean(dark))
    start = float(camera.get_exposure())
    budget = max(EXPOSURE_BUDGET_S if max_exposure_s is None else float(max_exposure_s), start)
    bounds = getattr(camera, "exposure_bounds_s", None) or (0.0, np.inf)
    budget = min(budget, float(bounds[1]))
    for _ in range(12):
        peak_adu = _probe_peak(bench, program, images, mask, probe)
        exposure = float(camera.get_exposure())
        if peak_adu >= full:
            camera.set_exposure(
                exposure / 2
            )  # saturated: the true peak is unknown, halve and look again
            continue
        fraction = (peak_adu - offset) / (full - offset)
        at_budget = exposure >= 0.99 * budget
        if not lengthen and fraction > SHORTEN_ABOVE:
            camera.set_exposure(exposure * 0.7 / fraction)
            return float(camera.get_exposure())
        if not lengthen:
            return exposure
        if fraction > SHORTEN_ABOVE or (
            fraction < LENGTHEN_BELOW and not at_budget and fraction > 0
        ):
            camera.set_exposure(min(exposure * target_fraction / fraction, budget))
            if fraction > SHORTEN_ABOVE:
                return float(camera.get_exposure())  # shorter: stays linear, no need to look again
            continue
        return float(camera.get_exposure())
    if float(camera.get_exposure()) > 1e-3 * start:
        return float(camera.get_exposure())
    raise CalibrationError(
        "calibration images saturate the camera even at a 4000× shorter exposure: lower the "
        "light source power or add an ND filter, then run `lab4f calibrate all` again"
    )


def capture_features(
    bench: Any,
    program: Any,
    images: torch.Tensor,
    registration: PlaneToCamera,
    tile_shifts: list[np.ndarray] | None,
    dark: np.ndarray | None,
    flat: np.ndarray | None,
    frames: int,
    ctl: StepControl,
    per_tile: bool = True,
    max_exposure_s: float | None = None,
    info: dict[str, float] | None = None,
    expose_on: str = "tiles",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Uncorrected features through the pipeline's extractor (no channel gain, filter or offset): (B, C, N, N)
    k⁺ − k⁻, or with ``per_tile`` (B, C, 2, N, N) — the k⁺ and the (negated) k⁻ tile apart, for per-tile filters —
    and the dark frame they were corrected with (measured again if the exposure had to change).

    The exposure is set for the tiles first (:func:`_fit_exposure`); a calibration image that then saturates a
    pixel the tiles read shortens it and starts the capture again (the zero order may saturate: it is not read).
    ``info`` (filled in): ``tiles_peak_fraction`` (the brightest tile pixel of the captured images, dark
    subtracted, as a fraction of full scale) and ``exposure_restarts``. ``expose_on="frame"``: the behaviour
    before — the whole frame's peak, only ever shortened, any saturated pixel refused."""
    from lab4f.bench.extract import FeatureExtractor

    cam_shape = tuple(int(s) for s in bench.camera.shape)
    chans = program.channels
    if expose_on not in ("tiles", "frame"):
        raise CalibrationError(f"expose_on must be 'tiles' or 'frame', got {expose_on!r}")
    mask = read_mask(program, registration, cam_shape, tile_shifts)
    checked = mask if expose_on == "tiles" else None
    full = full_scale_adu(bench.camera)

    def extractor(select: tuple[float, float] | None) -> FeatureExtractor:
        if select is None:
            return FeatureExtractor.for_program(
                program, registration, cam_shape, dark=dark, flat=flat, tile_shifts=tile_shifts
            )
        filt = np.tile(np.asarray(select, np.float32)[None, :, None, None], (chans, 1, 1, 1))
        return FeatureExtractor.for_program(
            program,
            registration,
            cam_shape,
            dark=dark,
            flat=flat,
            tile_shifts=tile_shifts,
            channel_filter=filt,
        )

    raw = np.zeros((len(images), len(program.frames), *cam_shape), dtype=np.float32)
    total = len(program.frames) * len(images)
    before = float(bench.camera.get_exposure())
    restarts = 0
    try:
        with light_on(bench):
            _fit_exposure(
                bench,
                program,
                images,
                dark,
                mask if expose_on == "tiles" else np.ones(cam_shape, bool),
                max_exposure_s=max_exposure_s,
                lengthen=expose_on == "tiles",
            )
        while True:
            if dark is not None and float(bench.camera.get_exposure()) != before:
                # a dark frame belongs to its exposure (dark current): measure it again at the new one
                with light_blocked(bench):
                    bench.display.blank()
                    dark = grab(bench.camera, 8)
                before = float(bench.camera.get_exposure())
            peak = 0.0
            try:
                with light_on(bench):
                    for f_idx, frame in enumerate(program.frames):
                        bench.upload_phase(frame.phase)
                        for b in range(len(images)):
                            bench.show(images[b, 0].numpy())
                            raw[b, f_idx] = grab(bench.camera, frames)
                            check_frame(
                                raw[b, f_idx],
                                bench.camera,
                                dark,
                                f"calibration image {b}",
                                mask=checked,
                            )
                            peak = max(
                                peak, float(corrected(raw[b, f_idx], dark)[mask].max()) / full
                            )
                            ctl.report(
                                0.95 * (f_idx * len(images) + b + 1) / total,
                                f"image {b + 1}/{len(images)}",
                            )
            except CalibrationError as exc:
                if "saturated" not in str(exc) or restarts >= 3 or checked is None:
                    raise
                restarts += 1
                bench.camera.set_exposure(0.7 * float(bench.camera.get_exposure()))
                continue
            break
    finally:
        bench.display.blank()
    if info is not None:
        info.update({"tiles_peak_fraction": peak, "exposure_restarts": float(restarts)})
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
    max_exposure_s: float | None = None,
    expose_on: str = "tiles",
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
    if (ih, iw) != (dh, dw) and not (
        bench.config.sync.policy == "marker" and ih <= dh and iw <= dw
    ):
        # a larger display is for the marker code beside the image (Bench.show centres the image)
        raise CalibrationError(
            f"calibration images are {(ih, iw)} but the display shows {(dh, dw)}; compile the "
            "program for the display's size"
        )
    if len(images) < 2:
        raise CalibrationError(
            "the channel fit needs at least 2 calibration images (one is held out)"
        )
    digital = program.simulate(images).numpy()
    exposure_before = float(bench.camera.get_exposure())
    exposure_info: dict[str, float] = {}
    captured, dark = capture_features(
        bench,
        program,
        images,
        registration,
        tile_shifts,
        dark,
        flat,
        frames,
        ctl,
        per_tile,
        max_exposure_s=max_exposure_s,
        info=exposure_info,
        expose_on=expose_on,
    )
    holdout = np.arange(len(images)) % 2 == 1
    fit = fit_channels(captured, digital, filter_size, holdout)
    r2 = fit["channel_r2"]
    if np.nanmin(r2) < min_r2:
        worst = int(np.nanargmin(r2))
        raise CalibrationError(
            f"channel {worst} follows the digital model poorly (held-out R² {r2[worst]:.3f} < {min_r2}): "
            "recalibrate the registration and tiles (`lab4f calibrate registration`, `lab4f calibrate tiles`), "
            "check the program belongs to this bench, then run `lab4f calibrate gains` again."
        )
    sample = min(len(images), 4)
    gain = (
        fit["channel_filter"]
        .reshape(program.channels, -1, filter_size, filter_size)[:, 0]
        .sum(axis=(1, 2))
    )
    quality = {
        "min_r2": float(np.nanmin(r2)),
        "median_r2": float(np.nanmedian(r2)),
        "mean_r2": float(np.nanmean(r2)),
        "min_r2_fit": float(np.nanmin(fit["channel_r2_fit"])),
        "images": float(len(images)),
        "held_out": float(holdout.sum()),
        "frames": float(frames),
        "filter_size": float(filter_size),
        "exposure_s": float(bench.camera.get_exposure()),
        "exposure_before_s": exposure_before,
        **exposure_info,
    }
    return ctl.finish(
        StepResult(
            "gains",
            quality=quality,
            arrays={
                **fit,
                "channel_gain": gain,
                "captured_sample": captured[:sample],
                **({} if dark is None else {"dark": np.asarray(dark, np.float32)}),
                "digital_sample": digital[:sample],
            },
            values={
                "filter_size": int(filter_size),
                "frames": int(frames),
                "per_tile": bool(per_tile),
                "exposure_s": float(bench.camera.get_exposure()),
            },
            message=f"held-out R² per channel {np.nanmin(r2):.4f}..{np.nanmax(r2):.4f} "
            f"({filter_size}×{filter_size} filter, {int(holdout.sum())}/{len(images)} images held out; exposure "
            f"{exposure_before:.3g} → {float(bench.camera.get_exposure()):.3g} s, tiles peak "
            f"{100 * exposure_info.get('tiles_peak_fraction', float('nan')):.0f} % of full scale)",
        )
    )


def fitted_features(record: Any, captured: np.ndarray) -> np.ndarray:
    """The recorded channel correction (filters, or the gain of old records) + offset applied to captured tiles
    (B, C, N, N) or (B, C, 2, N, N): what the live extractor computes, for plots and residual maps."""
    offset = np.asarray(record.channel_offset)[None, :, None, None]
    filt = record.channel_filter
    if filt is None:
        return np.asarray(record.channel_gain)[None, :, None, None] * captured + offset
    k = filt.shape[-1]
    filt = np.asarray(filt, np.float64)
    weight = torch.from_numpy(
        filt if filt.ndim == 4 else filt[:, None]
    )  # (C, P, k, k), P tiles per channel
    captured = np.asarray(captured, np.float64)
    captured = captured.reshape(captured.shape[0], -1, *captured.shape[-2:])  # (B, C·P, N, N)
    out = F.conv2d(torch.from_numpy(captured), weight, padding=k // 2, groups=filt.shape[0])
    return out.numpy() + offset
