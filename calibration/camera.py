"""Step 1, the camera: dark frame, flat field and an exposure that keeps the brightest tile below saturation.

Also the camera helpers the other steps share: averaged captures, the saturated/dark checks whose messages
say what to do, and :class:`DarkCorrectedCamera`, the adapter through which slmsuite's calibrations see
dark-subtracted frames (slmsuite fits spot arrays on raw frames, where a dark offset biases the fit).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter
from slmsuite.hardware.cameras.camera import Camera

from lab4f.bench.devices import light_state, set_light
from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.errors import CalibrationError

#: A frame whose brightest pixel (dark subtracted) is below this fraction of full scale is "too dark".
DARK_FRACTION = 0.02


def full_scale_adu(camera: Any) -> float:
    return float(2 ** int(camera.bitdepth) - 1)


class DisplayBackground:
    """Differential capture: a frame with the display's current image minus one with the display blank.

    A display's black level is not zero: under a one-pixel fiducial, the dim rest of a D×D display carries
    black_level·D² of light (2.3× the point's at 1e-3 on 48×48), smeared into a halo that biases spot centroids.
    The difference of the two frames keeps only the light of the shown pixels (and cancels the dark frame).
    Displays without readable gray levels are captured directly.
    """

    def __init__(self, display: Any) -> None:
        self.display = display

    def frame(self, camera: Any, timeout_s: float | None = None) -> np.ndarray:
        kw = {} if timeout_s is None else {"timeout_s": timeout_s}
        on = np.asarray(camera.get_image(**kw), dtype=np.float32)
        levels = getattr(self.display, "levels", None)
        settings = getattr(self.display, "settings", None)
        if levels is None or not hasattr(self.display, "blank") or settings is None:
            return on
        shown = np.asarray(levels, dtype=np.float32) / float(2**settings.bitdepth - 1)
        self.display.blank()
        off = np.asarray(camera.get_image(**kw), dtype=np.float32)
        self.display.show(shown)
        return on - off


def grab(camera: Any, frames: int = 1, background: DisplayBackground | None = None) -> np.ndarray:
    """Mean of ``frames`` raw camera frames (float32); with ``background``, of differential frames."""
    acc = np.zeros(camera.shape, dtype=np.float64)
    for _ in range(frames):
        acc += (
            background.frame(camera)
            if background is not None
            else np.asarray(camera.get_image(), np.float64)
        )
    return (acc / frames).astype(np.float32)


def corrected(
    raw: np.ndarray, dark: np.ndarray | None, flat: np.ndarray | None = None
) -> np.ndarray:
    """(raw − dark) / flat, float32: the frame the pipeline and the fits use."""
    img = np.asarray(raw, dtype=np.float32)
    if dark is not None:
        img = img - dark
    if flat is not None:
        img = img / flat
    return img


def check_frame(
    raw: np.ndarray, camera: Any, dark: np.ndarray | None, what: str, mask: np.ndarray | None = None
) -> float:
    """Refuse saturated or too dark frames with advice; returns the peak signal as a fraction of full scale."""
    full = full_scale_adu(camera)
    region = raw if mask is None else raw[mask]
    saturated = int(np.count_nonzero(region >= full))
    if saturated:
        raise CalibrationError(
            f"{what}: {saturated} camera pixels are saturated (exposure {camera.get_exposure():.3g} s). "
            "Run `lab4f calibrate camera` to set the exposure again, or lower the light source power / "
            "add an ND filter; the previous calibration record is unchanged."
        )
    signal = corrected(raw, dark)
    peak = float((signal if mask is None else signal[mask]).max()) / full
    if peak < DARK_FRACTION:
        raise CalibrationError(
            f"{what}: the image is too dark (peak {100 * peak:.2f} % of full scale at exposure "
            f"{camera.get_exposure():.3g} s). Check that the light source is on and the shutter open, "
            "then run `lab4f calibrate camera` to set the exposure again; the previous record is unchanged."
        )
    return peak


class DarkCorrectedCamera(Camera):
    """A slmsuite Camera that delivers another camera's frames with the dark frame subtracted (float32)."""

    def __init__(
        self, camera: Any, dark: np.ndarray | None, background: DisplayBackground | None = None
    ) -> None:
        self.camera = camera
        self.dark = None if dark is None else np.asarray(dark, dtype=np.float32)
        self.background = background
        super().__init__(
            (camera.shape[1], camera.shape[0]),
            bitdepth=camera.bitdepth,
            pitch_um=camera.pitch_um,
            name=f"{camera.name}-dark-corrected",
            capture_attempts=1,
        )

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        if self.background is not None:  # the difference has no dark offset left
            return np.maximum(self.background.frame(self.camera, timeout_s), 0.0)
        img = np.asarray(self.camera.get_image(timeout_s=timeout_s), dtype=np.float32)
        return img if self.dark is None else np.maximum(img - self.dark, 0.0)

    def _get_exposure_hw(self) -> float:
        return float(self.camera.get_exposure())

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self.camera.set_exposure(exposure_s)

    def flush(self, timeout_s: float = 1) -> None:
        self.camera.flush()

    @staticmethod
    def info(verbose: bool = True) -> list[str]:
        return []

    def close(self) -> None:
        """The wrapped camera belongs to the bench; it is not closed here."""


@contextlib.contextmanager
def light_blocked(bench: Any) -> Iterator[None]:
    """Darkness for a measurement, restored afterwards: the shutter closes and the source stays as it is (switching
    a laser off and on for every dark frame adds warm-up drift); without a shutter the source is switched off."""
    devices = getattr(bench, "devices", {})
    before = light_state(devices)
    dark = {"shutter": False} if "shutter" in before else dict.fromkeys(before, False)
    try:
        set_light(devices, dark)
        yield
    finally:
        set_light(devices, before)


@contextlib.contextmanager
def light_on(bench: Any) -> Iterator[None]:
    """Open the shutter and switch the source on for a measurement, restoring their state afterwards; a source that
    was off is given its warm-up (``warmup_s`` in its settings, where it has one) before the measurement."""
    devices = getattr(bench, "devices", {})
    before = light_state(devices)
    try:
        set_light(devices, dict.fromkeys(before, True))
        source = devices.get("light_source")
        warmup = float(getattr(getattr(source, "settings", None), "warmup_s", 0.0) or 0.0)
        if before.get("light_source") is False and warmup > 0:
            time.sleep(warmup)  # a source just switched on is not stable yet
        yield
    finally:
        set_light(devices, before)


def autoexpose(
    camera: Any,
    target_fraction: float,
    what: str,
    window: np.ndarray | None = None,
    metric: Any = None,
    min_fraction: float | None = None,
    max_exposure_s: float | None = None,
) -> float:
    """slmsuite's autoexpose pinning ``metric`` (default: the maximum) of the raw frame, or of its ``window``
    (a boolean mask), at ``target_fraction`` of full scale — lengthening or shortening the exposure, at most to
    ``max_exposure_s`` (default: the camera's longest); checks it worked: refuses saturation at the shortest
    exposure, and a level below ``min_fraction`` (default half the target) at the longest."""
    bounds = getattr(camera, "exposure_bounds_s", None) or (0.0, np.inf)
    if max_exposure_s is not None:
        bounds = (bounds[0], min(float(bounds[1]), float(max_exposure_s)))
    exposure_s = float(
        camera.autoexpose(
            set_fraction=target_fraction,
            window=window,
            metric=metric,
            verbose=False,
            exposure_bounds_s=bounds,
        )
    )
    if (
        exposure_s > bounds[1]
    ):  # slmsuite scales the 50 % exposure by the target afterwards, unbounded
        exposure_s = float(camera.set_exposure(bounds[1]) or bounds[1])
        exposure_s = float(camera.get_exposure())
    raw = grab(camera, 1)
    raw = raw if window is None else raw[window]
    peak = float((metric or np.max)(raw)) / full_scale_adu(camera)
    if peak >= 0.999:
        raise CalibrationError(
            f"{what}: saturated even at the shortest exposure ({exposure_s:.3g} s). Lower the light source "
            "power or add an ND filter, then calibrate again; the previous record is unchanged."
        )
    if (
        peak < (0.5 * target_fraction if min_fraction is None else min_fraction)
        and exposure_s >= 0.99 * bounds[1]
    ):
        raise CalibrationError(
            f"{what}: too dark even at the longest exposure ({exposure_s:.3g} s, peak {100 * peak:.1f} % of full "
            "scale). Check the light source is on and the shutter open; the previous record is unchanged."
        )
    return exposure_s


#: Flat field: the diffuse frames are exposed so that the measured region's brightest pixels sit at this fraction.
FLAT_TARGET_FRACTION = 0.5
#: A pixel the tiles read is lit enough for the flat if its illumination is at least this fraction of the region's.
FLAT_MIN_RELATIVE = 0.1
#: ... and at least this fraction of full scale (shot noise), at the longest exposure the camera allows.
FLAT_MIN_LEVEL = 0.05
#: The fraction of the pixels the tiles read that the flat must measure, else the step refuses.
FLAT_MIN_COVERAGE = 0.995
#: The input display's direct image (zero order) is left out of the flat, dilated by this many pixels.
FLAT_ZONE_MARGIN_PX = 3
#: A flat whose estimated error per pixel (RMS) exceeds this adds about as much error as a typical PRNU removes.
FLAT_MAX_NOISE = 0.015


def _coherent(bench: Any) -> bool:
    config_mode = getattr(getattr(bench, "config", None), "mode", "incoherent")
    camera_mode = getattr(getattr(bench.camera, "settings", None), "mode", "incoherent")
    return "coherent" in (config_mode, camera_mode)


@dataclass
class _DirectImage:
    """Where the white input display's direct image (flat SLM phase, = the zero order) lands on the camera."""

    mask: np.ndarray  # (H, W) bool, the image at half maximum
    axis_xy: np.ndarray  # camera pixel (x, y) of the optical axis
    pixels_per_cell: float


def _direct_image(bench: Any, dark: np.ndarray | None, what: str = "flat field") -> _DirectImage:
    """Show the white display through a flat SLM phase at the current exposure; find its image on the camera.

    The image may be saturated (its half-maximum mask is still its extent). Its centroid, less the display's
    ``position_px``, is the optical axis; its area, the display's pixel count times the camera pixels per cell²."""
    camera, display = bench.camera, bench.display
    bench.show(np.ones(display.shape, dtype=np.float32))
    bench.slm.set_phase(np.zeros(bench.slm.shape), settle=True)
    signal = corrected(grab(camera, 1), dark)
    full = full_scale_adu(camera)
    peak = float(signal.max())
    if peak < DARK_FRACTION * full:
        raise CalibrationError(
            f"{what}: the white input display's direct image is too dark (peak {100 * peak / full:.2f} % of full "
            "scale). Check that the light source is on and the shutter open; the previous record is unchanged."
        )
    mask = signal >= 0.5 * peak
    yy, xx = np.nonzero(mask)
    h, w = display.shape
    x0, y0 = getattr(display, "position_px", (0.0, 0.0))
    ppc = float(np.sqrt(mask.sum() / (h * w)))
    centre_cells = np.array([(w - 1) / 2 - w // 2 + x0, (h - 1) / 2 - h // 2 + y0])
    axis = np.array([xx.mean(), yy.mean()]) - ppc * centre_cells
    return _DirectImage(mask, axis, ppc)


def _tile_masks(
    shape: tuple[int, int], program: Any | None, direct: _DirectImage
) -> tuple[np.ndarray, np.ndarray]:
    """(core, need): the camera pixels the program's tiles read, nominally placed (axis and scale of the direct
    image, no rotation), and the same grown by a margin for the registration still unknown (rotation, scale).

    Without a program every pixel counts: a program compiled later may put its tiles anywhere (but on the zero
    order, which the caller leaves out)."""
    h, w = shape
    if program is None:
        full = np.ones(shape, dtype=bool)
        return full, full
    core = np.zeros(shape, dtype=bool)
    need = np.zeros(shape, dtype=bool)
    ppc, (ax, ay) = direct.pixels_per_cell, direct.axis_xy
    for frame in program.frames:
        n = frame.layout.input_size
        for tile in frame.layout.tiles:
            dy, dx = tile.offset
            cx0, cx1 = (
                dx - n // 2 - 1,
                dx + n - 1 - n // 2 + 1,
            )  # cells the tile's bilinear samples touch
            cy0, cy1 = dy - n // 2 - 1, dy + n - 1 - n // 2 + 1
            x0, x1, y0, y1 = ax + ppc * cx0, ax + ppc * cx1, ay + ppc * cy0, ay + ppc * cy1
            reach = float(
                np.hypot(max(abs(x0 - ax), abs(x1 - ax)), max(abs(y0 - ay), abs(y1 - ay)))
            )
            margin = (
                2.0 + 0.06 * reach
            )  # ~3° of rotation (5 %) and ~1 % of scale error at the far corner
            for mask, m in ((core, 0.0), (need, margin)):
                r0, r1 = int(np.floor(y0 - m)), int(np.ceil(y1 + m)) + 1
                c0, c1 = int(np.floor(x0 - m)), int(np.ceil(x1 + m)) + 1
                if m == 0.0 and (r0 < 0 or c0 < 0 or r1 > h or c1 > w):
                    raise CalibrationError(
                        f"flat field: tile (channel {tile.channel}, sign {tile.sign:+d}) falls off the camera "
                        f"(camera rows {r0}..{r1}, cols {c0}..{c1} of {h}×{w}); compile the program for this bench "
                        "(`lab4f compile` uses the camera's field) or check the camera alignment."
                    )
                mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return core, need


class _LocalMean:
    """Normalised convolution: the Gaussian-weighted local mean of an image over the pixels of ``mask`` only, so
    the pixels left out (the direct image, the outside of the region) do not bleed into it."""

    def __init__(self, mask: np.ndarray, sigma: float) -> None:
        self.weight, self.sigma = mask.astype(np.float32), float(sigma)
        self.norm = gaussian_filter(self.weight, self.sigma, mode="constant")
        self.valid = mask & (self.norm > 1e-3)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        num = gaussian_filter(img * self.weight, self.sigma, mode="constant")
        return np.divide(num, self.norm, out=np.zeros_like(num), where=self.valid)


def _expose_diffuse(
    bench: Any, region: np.ndarray, dark_offset: float, rng: np.random.Generator
) -> float:
    """slmsuite's autoexpose on one random-phase speckle pattern, putting the region's brightest diffuse pixels
    (99.9th percentile) at ``FLAT_TARGET_FRACTION`` of full scale (the direct image elsewhere may saturate);
    refuses light too dim for the flat at the longest exposure. Fresh patterns read the same level (±1 %)."""
    camera = bench.camera
    bench.slm.set_phase(rng.uniform(0, 2 * np.pi, bench.slm.shape), settle=True)

    def p999(a: np.ndarray) -> float:
        return float(np.percentile(a, 99.9))

    # the level is judged here, dark subtracted, with the flat's own advice (autoexpose's raw check would count the
    # dark offset as light)
    exposure = autoexpose(
        camera, FLAT_TARGET_FRACTION, "flat field", window=region, metric=p999, min_fraction=0.0
    )
    level = max(p999(grab(camera, 1)[region]) - dark_offset, 0.0) / full_scale_adu(camera)
    if level < FLAT_MIN_LEVEL:
        raise CalibrationError(
            f"flat field: the diffuse light on the tiles' region is too dim (brightest {100 * level:.2f} % of full "
            f"scale at {exposure:.3g} s, need {100 * FLAT_MIN_LEVEL:.0f} %). Raise the light source power, open the "
            "shutter or allow a longer exposure; or calibrate without a flat (--flat-frames 0). The previous record "
            "is unchanged."
        )
    return exposure


def _flat_field(
    bench: Any,
    program: Any | None,
    dark: np.ndarray,
    frames: int,
    smooth_px: float,
    dark_frames: int,
    ctl: StepControl,
    direct: _DirectImage | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """The sensor's relative pixel response (PRNU) where the tiles land, from diffuse light: a white input display
    through random SLM phases, which spread each display pixel's light as speckle over the whole output plane.

    Each frame is dark subtracted (a dark frame at the flat's own exposure) and divided by its own local mean
    (a Gaussian of ``smooth_px``, normalised over the measured pixels), so the illumination profile — the diffuse
    envelope, the speckle's grain after the display's averaging, a halo — is NOT baked into the flat: only the
    pixel-to-pixel response is. The ratios are averaged over ``frames`` (new speckle each frame) and normalised
    to mean 1. The display's direct image (the zero order, which a flat phase shows and random phases keep a part
    of) is left out; pixels not measured keep a flat of 1. Smooth response variations (wider than ``smooth_px``)
    stay in the per-channel gains of the gains step, which absorb every tile's throughput anyway.
    """
    camera, slm = bench.camera, bench.slm
    if _coherent(bench):
        raise CalibrationError(
            "flat field: the bench is in coherent mode, where diffuse light is fully developed speckle (contrast 1, "
            "no averaging over the display's pixels): thousands of frames would be needed. Measure the flat with an "
            "incoherent source (LED behind the display), or calibrate without a flat (--flat-frames 0)."
        )
    full = full_scale_adu(camera)
    exposure0 = float(camera.get_exposure())
    try:
        if direct is None:
            direct = _direct_image(bench, dark)
        else:  # located by the exposure's tile region: the diffuse frames still need the white display
            bench.show(np.ones(bench.display.shape, dtype=np.float32))
        ctl.report(0.58, "flat field: direct image located")
        zone = binary_dilation(direct.mask, iterations=FLAT_ZONE_MARGIN_PX)
        core, need = _tile_masks(camera.shape, program, direct)
        if (
            program is None
        ):  # a compiled program leaves the zero-order slot empty: only a program asks for it
            core = core & ~zone
        region = need & ~zone
        if not region.any():
            raise CalibrationError(
                "flat field: the tiles' region lies inside the display's direct image; "
                "recompile the program (its tiles must avoid the zero order)"
            )
        # work on the bounding box of the region only, padded for the smoothing
        rows, cols = np.nonzero(region)
        pad = int(np.ceil(3 * smooth_px)) + 1
        box = (
            slice(max(rows.min() - pad, 0), min(rows.max() + pad + 1, camera.shape[0])),
            slice(max(cols.min() - pad, 0), min(cols.max() + pad + 1, camera.shape[1])),
        )
        local_mean = _LocalMean(region[box], smooth_px)
        measured = local_mean.valid
        rng = np.random.default_rng(0)
        exposure = _expose_diffuse(bench, region, float(np.median(dark)), rng)
        with light_blocked(
            bench
        ):  # a dark frame at the flat's own exposure (dark current grows with it)
            bench.display.blank()
            slm.set_phase(np.zeros(slm.shape), settle=True)
            dark_flat = grab(camera, max(dark_frames, 1))[box]
        bench.show(np.ones(bench.display.shape, dtype=np.float32))
        ctl.report(0.6, f"flat field: exposure {exposure:.3g} s")
        acc = np.zeros(measured.shape, dtype=np.float64)
        acc2 = np.zeros(measured.shape, dtype=np.float64)
        mean_signal = np.zeros(measured.shape, dtype=np.float64)
        saturated = np.zeros(measured.shape, dtype=bool)
        for i in range(frames):
            slm.set_phase(
                rng.uniform(0, 2 * np.pi, slm.shape), settle=True
            )  # a new speckle pattern
            raw = grab(camera, 1)[box]
            saturated |= raw >= full
            signal = raw - dark_flat
            local = local_mean(signal)
            ratio = np.divide(
                signal, local, out=np.zeros_like(signal), where=measured & (local > 0)
            )
            acc += ratio
            acc2 += np.square(ratio, dtype=np.float64)
            mean_signal += signal
            ctl.report(0.6 + 0.3 * (i + 1) / frames, f"flat field {i + 1}/{frames}")
    finally:
        camera.set_exposure(exposure0)
    bad = int(np.count_nonzero(saturated & measured))
    if bad:
        raise CalibrationError(
            f"flat field: {bad} camera pixels the tiles read saturated in the diffuse frames (exposure {exposure:.3g} "
            "s); lower the light source power or add an ND filter. The previous record is unchanged."
        )
    illumination = local_mean((mean_signal / frames).astype(np.float32))
    lit = measured & (illumination >= FLAT_MIN_RELATIVE * np.percentile(illumination[measured], 99))
    lit_all = np.zeros(camera.shape, dtype=bool)
    lit_all[box] = lit
    coverage = float(np.count_nonzero(core & lit_all)) / float(max(np.count_nonzero(core), 1))
    if coverage < FLAT_MIN_COVERAGE:
        why = (
            "the input display's direct image (zero order)"
            if np.any(core & zone)
            else "too little light"
        )
        raise CalibrationError(
            f"flat field: only {100 * coverage:.1f} % of the camera pixels the tiles read are lit evenly enough to "
            f"measure (need {100 * FLAT_MIN_COVERAGE:.1f} %); the rest get {why}. Make sure the diffuse light "
            "(random SLM phases, white input display) reaches the whole tile field, or calibrate without a flat "
            "(--flat-frames 0); the previous record is unchanged."
        )
    ratio_mean = acc / frames
    stderr = np.sqrt(np.maximum(acc2 / frames - ratio_mean**2, 0.0) / max(frames - 1, 1))
    noise = float(np.sqrt(np.mean(stderr[lit] ** 2)))
    if noise > FLAT_MAX_NOISE:
        wanted = int(np.ceil(frames * (noise / (FLAT_MAX_NOISE / 3)) ** 2))
        raise CalibrationError(
            f"flat field: too noisy — estimated error {100 * noise:.2f} % per pixel from {frames} frames (allowed "
            f"{100 * FLAT_MAX_NOISE:.1f} %); a flat this noisy adds about as much error as it removes. Use about "
            f"--flat-frames {wanted}, or more light; the previous record is unchanged."
        )
    values = ratio_mean[lit] / ratio_mean[lit].mean()
    if float(values.min()) <= 0.05:
        raise CalibrationError(
            f"flat field: {int(np.count_nonzero(values <= 0.05))} pixels under the tiles respond at < 5 % "
            "(dead pixels, dust or a shadow); clean the sensor window or move the tile field. The previous record "
            "is unchanged."
        )
    flat = np.ones(camera.shape, dtype=np.float32)
    flat[box][lit] = values.astype(np.float32)
    rms = float(values.std())
    quality = {
        "flat_rms": rms,
        "flat_noise_rms": noise,
        "flat_prnu_estimate": float(np.sqrt(max(rms**2 - noise**2, 0.0))),
        "flat_min": float(values.min()),
        "flat_max": float(values.max()),
        "flat_pixels": float(values.size),
        "flat_coverage": coverage,
        "flat_exposure_s": exposure,
        "flat_level_fraction": float(np.median(illumination[lit])) / full,
        "flat_frames": float(frames),
    }
    return flat, quality


#: The frame budget: the longest exposure the camera and gains steps choose on their own when the tiles are dim
#: (20 ms: 50 frames/s per SLM frame). Pass ``max_exposure_s`` (step option) for another budget.
EXPOSURE_BUDGET_S = 0.02


def tile_region(bench: Any, program: Any) -> tuple[np.ndarray, _DirectImage]:
    """(mask, direct image): the camera pixels the program's tiles read — nominally placed from the white display's
    direct image (its centroid is the axis, its area the scale; no rotation yet), grown by margins for the
    registration still unknown — with the direct image itself (the zero order, the program's empty central slot)
    and a margin around it left out. The direct image is exposed at half of full scale first, so that its
    half-maximum outline is its extent, not a saturated halo."""
    camera = bench.camera
    bench.show(np.ones(bench.display.shape, dtype=np.float32))
    bench.slm.set_phase(np.zeros(bench.slm.shape), settle=True)
    autoexpose(camera, 0.5, "direct image", min_fraction=DARK_FRACTION)
    # the direct image covers a small part of the frame: the median is the dark level (no dark frame yet)
    background = float(np.median(grab(camera, 1)))
    direct = _direct_image(
        bench, background, "tile region"
    )  # refuses a direct image too dark to locate
    zone = binary_dilation(direct.mask, iterations=FLAT_ZONE_MARGIN_PX)
    _, need = _tile_masks(tuple(camera.shape), program, direct)
    region = need & ~zone
    if not region.any():
        raise CalibrationError(
            "the tiles' region lies inside the display's direct image; recompile the program "
            "(its tiles must avoid the zero order)"
        )
    return region, direct


def camera_step(
    bench: Any,
    program: Any | None = None,
    target_fraction: float = 0.7,
    dark_frames: int = 8,
    flat_frames: int = 0,
    flat_smooth_px: float = 4.0,
    max_exposure_s: float | None = None,
    expose_on: str = "tiles",
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Exposure (brightest scene at ``target_fraction`` of full scale), dark frame, flat field.

    With a program the exposure is set for what is read: the brightest pixel of the program's tiles (a white input,
    each SLM frame; :func:`tile_region`), not of the whole frame, where the zero order — the display's direct
    image in the empty central slot — is far brighter than the tiles of a bank that spreads its light over many
    tiles (it may saturate; no tile reads it). The exposure is lengthened or shortened to get there, at most to
    ``max_exposure_s`` (default :data:`EXPOSURE_BUDGET_S`, the frame budget). ``expose_on="frame"`` exposes on the
    whole frame instead (the behaviour before; without a program it is the only choice).

    ``flat_frames`` > 0 measures the sensor's pixel response non-uniformity (PRNU) from that many diffuse frames
    (white display, random SLM phases; see :func:`_flat_field`) over the pixels the program's tiles read (every
    pixel without a program), leaving the display's direct image out; it refuses when the diffuse light does not
    cover those pixels or is too dim / saturating. The default 0 keeps a unity flat: the per-channel gains and
    filters of the gains step absorb each tile's smooth throughput, and pixel-scale PRNU then adds a fixed
    per-pixel error of its RMS to the features. The brightest scene is a white input through the program's SLM
    frames (PSFs are nonnegative, so no input in [0, 1] makes a tile brighter) or, without a program, through a
    flat SLM phase (direct image).
    """
    if flat_frames < 0:
        raise CalibrationError(f"flat_frames must be ≥ 0 (0: no flat field), got {flat_frames}")
    if expose_on not in ("tiles", "frame"):
        raise CalibrationError(f"expose_on must be 'tiles' or 'frame', got {expose_on!r}")
    ctl = StepControl("camera", progress, cancel)
    camera, slm = bench.camera, bench.slm
    white = np.ones(bench.display.shape, dtype=np.float32)
    phases = [f.phase for f in program.frames] if program is not None else [np.zeros(slm.shape)]
    on_tiles = program is not None and expose_on == "tiles"
    budget = (
        (EXPOSURE_BUDGET_S if max_exposure_s is None else float(max_exposure_s))
        if on_tiles
        else None
    )
    region, direct = None, None
    with light_on(bench):
        if (
            program is not None
        ):  # (exposing on the frame, it is still measured: how bright the tiles end up)
            region, direct = tile_region(bench, program)
        bench.show(white)
        exposures = []
        for i, phase in enumerate(phases):
            slm.set_phase(phase, settle=True)
            exposures.append(
                autoexpose(
                    camera,
                    target_fraction,
                    "auto-exposure",
                    window=region if on_tiles else None,
                    max_exposure_s=budget,
                    min_fraction=DARK_FRACTION if on_tiles else None,
                )
            )
            ctl.report(0.3 * (i + 1) / len(phases), f"auto-exposure {exposures[-1]:.3g} s")
        exposure_s = min(exposures)  # the brightest frame sets it
        camera.set_exposure(exposure_s)
        exposure_s = float(camera.get_exposure())
    with light_blocked(bench):
        bench.display.blank()
        slm.set_phase(np.zeros(slm.shape), settle=True)
        dark = grab(camera, dark_frames)
    ctl.report(0.55, "dark frame")
    full = full_scale_adu(camera)
    if float(np.percentile(dark, 99.9)) > 0.5 * full:
        raise CalibrationError(
            "the dark frame is brighter than half of full scale: light reaches the camera with the source off "
            "and the display black. Cover the camera / close the shutter, then run `lab4f calibrate camera`."
        )
    with light_on(bench):
        if flat_frames > 0:
            flat, flat_quality = _flat_field(
                bench, program, dark, flat_frames, flat_smooth_px, dark_frames, ctl, direct
            )
        else:
            flat, flat_quality = (
                np.ones(camera.shape, dtype=np.float32),
                {"flat_rms": 0.0, "flat_frames": 0.0},
            )
        camera.set_exposure(exposure_s)
        bench.show(white)
        peaks, frame_peaks, tile_peaks, saturated = [], [], [], 0
        for phase in phases:
            slm.set_phase(phase, settle=True)
            raw = grab(camera, 1)
            peaks.append(
                check_frame(raw, camera, dark, "exposure check", mask=region if on_tiles else None)
            )
            if region is not None:
                tile_peaks.append(min(float(corrected(raw, dark)[region].max()) / full, 1.0))
            frame_peaks.append(min(float(corrected(raw, dark).max()) / full, 1.0))
            saturated = max(saturated, int(np.count_nonzero(raw >= full)))
    flat_message = (
        f", flat RMS {100 * flat_quality['flat_rms']:.2f} % (±{100 * flat_quality['flat_noise_rms']:.2f} "
        f"%) over {int(flat_quality['flat_pixels'])} px"
        if flat_frames > 0
        else ", unity flat"
    )
    limited = (
        budget is not None and exposure_s >= 0.99 * budget and max(peaks) < 0.9 * target_fraction
    )
    where = ("tiles" if on_tiles else "frame") + (
        f", limited by the {budget:.3g} s frame budget" if limited else ""
    )
    tiles_quality = (
        {
            "tiles_peak_fraction": max(tile_peaks),
            "zero_order_saturated_px": float(saturated),
            "exposure_budget_limited": float(limited),
        }
        if region is not None
        else {}
    )
    return ctl.finish(
        StepResult(
            "camera",
            quality={
                "exposure_s": exposure_s,
                "peak_fraction": max(peaks),
                "frame_peak_fraction": max(frame_peaks),
                **tiles_quality,
                "dark_mean_adu": float(dark.mean()),
                "dark_std_adu": float(dark.std()),
                **flat_quality,
            },
            arrays={"dark": dark, "flat": flat},
            values={
                "exposure_s": exposure_s,
                "target_fraction": target_fraction,
                "flat_frames": int(flat_frames),
                "flat_smooth_px": float(flat_smooth_px),
                "expose_on": "tiles" if on_tiles else "frame",
                "max_exposure_s": budget,
            },
            message=f"exposure {exposure_s:.4g} s (on the {where}), peak {100 * max(peaks):.0f} % of full scale"
            + (
                f" in the tiles ({100 * max(frame_peaks):.0f} % in the frame)"
                if on_tiles
                else f" ({100 * max(tile_peaks):.0f} % in the tiles)"
                if region is not None
                else ""
            )
            + f", dark {dark.mean():.1f}±{dark.std():.1f} ADU"
            + flat_message,
        )
    )
