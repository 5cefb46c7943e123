"""Step ``timing``: the bench's delays, measured through the optics with the camera's own timestamps.

The sync policies (:mod:`lab4f.bench.sync`) pair a frame with an input only if its exposure started after the
input was shown and settled. That needs three numbers no data sheet gives for a whole bench: the input display's
latency (show() → the image starts to appear: its refresh, its pipeline, the driver), its pixel response, and the
Fourier SLM's settle after a write. This step measures them as a step response:

- display: with a flat SLM phase (the 4f system images the display onto the camera), show black, then a uniform
  gray at a known host time, and collect the frames that follow with their exposure times on the host clock
  (``read_frame``). Each frame's light above black, relative to the plateau, is the display's response averaged
  over that exposure; a delayed exponential ``s(t) = 1 − exp(−(t − L)/τ)`` averaged the same way is fitted to
  every repetition (one τ, one latency L per repetition). The spread of L over repetitions is the jitter a
  monitor's refresh adds; a display whose latency is not stable from change to change is refused.
- SLM: with the display steady, write a blazed grating at a known time and fit the same model to the light on the
  pixels the grating moves (where the settled before/after frames differ most); settle = L + τ·ln 100.

slmsuite has a settle calibration (``FourierSLM.settle_calibrate``) but it samples ``sleep(t); get_image()``,
which assumes the frame fetched was exposed after the sleep — the very assumption a buffered free-running camera
breaks; the timestamps make the measurement independent of buffering.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import full_scale_adu, light_on
from lab4f.errors import CalibrationError

#: latency spread (max − min over repetitions) above which a display is refused as unstable
MAX_LATENCY_SPREAD_S = 0.04
WINDOW_S = 0.25  # frames collected after each change
REPEATS = 10
TAUS_S = np.concatenate([[0.0], np.geomspace(2e-4, 0.1, 60)])


def _mean_step(
    start: np.ndarray, exposure: np.ndarray, latency: np.ndarray, tau: float
) -> np.ndarray:
    """Mean of the delayed exponential step over each exposure [start, start + exposure] (broadcasting)."""

    def integral(t: np.ndarray) -> np.ndarray:
        t = np.maximum(t, 0.0)
        return t if tau <= 0 else t - tau * (-np.expm1(-t / tau))

    return (integral(start + exposure - latency) - integral(start - latency)) / exposure


def fit_step(
    curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], window_s: float = WINDOW_S
) -> tuple[np.ndarray, float, float]:
    """Fit the delayed exponential to step responses [(start − t_change, exposure, normalised signal)]:
    (latency per curve, tau, RMS residual). One tau for all, latency per curve, on a 0.1 ms grid."""
    grid = np.arange(0.0, window_s, 1e-4)
    best = (np.zeros(len(curves)), 0.0, math.inf)
    for tau in TAUS_S:
        lat, sse = [], 0.0
        for start, exposure, signal in curves:
            model = _mean_step(start[None, :], exposure[None, :], grid[:, None], tau)
            err = ((model - signal[None, :]) ** 2).sum(1)
            k = int(np.argmin(err))
            lat.append(grid[k])
            sse += float(err[k])
        if sse < best[2]:
            best = (np.asarray(lat), float(tau), sse)
    n = sum(len(c[0]) for c in curves)
    return best[0], best[1], math.sqrt(best[2] / max(n, 1))


def _frames_after(cam: Any, t_change: float, window_s: float) -> list[Any]:
    """The frames of about ``window_s`` after ``t_change`` (from shortly before it): a fixed number of frames, one
    frame period each, so that a simulated camera's noise sequence does not depend on the machine's speed
    (triggered cameras are triggered once per frame)."""
    period = float(getattr(cam, "frame_period_s", 0.005) or 0.005)
    frames = []
    for _ in range(int(np.ceil(window_s / period)) + 2):
        if getattr(cam, "trigger_mode", "off") == "software":
            cam.trigger()
        frame = cam.read_frame(max(1.0, 4 * period))
        if frame.complete and frame.end_s > t_change - period:
            frames.append(frame)
    return frames


def _curve(
    frames: list[Any], t_change: float, low: float, high: float, measure: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start = np.array([f.start_s - t_change for f in frames])
    exposure = np.array([max(f.exposure_s, 1e-6) for f in frames])
    signal = (np.array([measure(f.image) for f in frames]) - low) / (high - low)
    return start, exposure, signal


def _total(img: np.ndarray) -> float:
    return float(np.sum(img, dtype=np.float64))


def timing_step(
    bench: Any,
    repeats: int = REPEATS,
    max_latency_spread_s: float = MAX_LATENCY_SPREAD_S,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> StepResult:
    """Measure the display's latency and response and the SLM's settle (see the module docstring)."""
    ctl = StepControl("timing", progress, cancel)
    cam = bench.devices["camera"]
    # a camera that exposes on request (the idealised simulated one) samples the step as fast as it reads out
    window = WINDOW_S if getattr(cam, "buffers_frames", True) else 0.06
    if not callable(getattr(cam, "read_frame", None)):
        raise CalibrationError(
            "the timing step needs a camera that timestamps its frames (lab4f's simulated camera "
            "or HarvestersCamera); with another camera set the delays in the bench config's "
            "[sync] table (display_latency_s, display_response_s, slm_settle_s)"
        )
    slm, display = bench.slm, bench.display
    full = full_scale_adu(cam)
    shape = display.shape
    exposure_before = cam.get_exposure()
    with light_on(bench):
        from slmsuite.holography import toolbox

        flat = np.zeros(slm.shape)
        slm.set_phase(flat, settle=True)
        time.sleep(0.1)

        def settled_mean(n: int = 3) -> np.ndarray:
            time.sleep(
                0.15
            )  # beyond any plausible settle; bench.camera then gives frames exposed after it
            return np.mean(
                [np.asarray(bench.camera.get_image(), np.float64) for _ in range(n)], axis=0
            )

        # display: black → gray steps
        gray = 0.5
        display.show(np.zeros(shape))
        black = settled_mean()
        display.show(np.full(shape, gray))
        white = settled_mean()
        for _ in range(
            10
        ):  # the display imaged directly is brighter than the tiles the exposure was set for
            if white.max() < 0.8 * full:
                break
            cam.set_exposure(cam.get_exposure() / 2)
            display.show(np.zeros(shape))
            black = settled_mean()
            display.show(np.full(shape, gray))
            white = settled_mean()
        else:
            raise CalibrationError(
                f"timing: the display's gray {gray} saturates the camera even at exposure "
                f"{cam.exposure_s:.3g} s; lower the light source power or add an ND filter"
            )
        low, high = float(black.sum()), float(white.sum())
        if high - low < 1e-3 * max(abs(low), 1.0):
            raise CalibrationError(
                "timing: the display's light does not reach the camera (no difference between "
                "black and gray); check the light source, the shutter and the alignment"
            )
        curves = []
        for r in range(repeats):
            ctl.report(0.7 * r / repeats, f"display step {r + 1}/{repeats}")
            display.show(np.zeros(shape))
            time.sleep(window)
            cam.drain()
            time.sleep(
                float(np.random.default_rng(r).uniform(0, 0.02))
            )  # changes at every phase of the refresh
            t0 = time.perf_counter()
            display.show(np.full(shape, gray))
            t_sent = time.perf_counter()
            frames = _frames_after(cam, t0, window)
            curves.append(_curve(frames, 0.5 * (t0 + t_sent), low, high, _total))
        latencies, tau, rms = fit_step(curves, window)
        response_s = tau * math.log(100.0)

        # SLM: a blaze moves the display's image; the light on the pixels it leaves falls with the settle
        ctl.report(0.75, "SLM settle")
        blaze = toolbox.phase.blaze(grid=slm, vector=(0.004, 0.003))
        before = settled_mean()
        slm.set_phase(blaze, settle=True)
        after = settled_mean()
        diff = before - after
        mask = diff > np.quantile(diff, 0.995)
        lo_s, hi_s = float(after[mask].sum()), float(before[mask].sum())
        slm_curves = []
        if hi_s - lo_s > 1e-3 * max(abs(hi_s), 1.0):
            for _ in range(max(2, repeats // 2)):
                slm.set_phase(flat, settle=True)
                time.sleep(0.1)
                cam.drain()
                t0 = time.perf_counter()
                slm.set_phase(blaze, settle=False)
                t1 = time.perf_counter()
                frames = _frames_after(cam, t0, window)
                # the light on the mask FALLS from before to after: 1 − that is the step response
                c = _curve(
                    frames,
                    0.5 * (t0 + t1),
                    hi_s,
                    lo_s,
                    lambda img: float(img[mask].sum(dtype=np.float64)),
                )
                slm_curves.append(c)
            slm_lat, slm_tau, slm_rms = fit_step(slm_curves, window)
            slm_settle = float(np.max(slm_lat) + slm_tau * math.log(100.0))
        else:
            slm_lat, slm_tau, slm_rms, slm_settle = np.zeros(1), 0.0, float("nan"), 0.0
        slm.set_phase(flat, settle=True)
        display.show(np.zeros(shape))
        cam.set_exposure(exposure_before)

    spread = float(latencies.max() - latencies.min())
    if spread > max_latency_spread_s:
        raise CalibrationError(
            f"timing: the display's latency is not stable from change to change (it ranged over {1e3 * spread:.1f} "
            f"ms: {', '.join(f'{1e3 * v:.1f}' for v in latencies)} ms). Switch off the display's frame interpolation "
            "or motion smoothing ('game mode'), fix its refresh rate, close other programs drawing on it, or use a "
            "triggered camera (sync policy 'trigger'); the previous record is unchanged."
        )
    # the sampled range underestimates the true one: widen each end by spread / (n − 1), the expected gap between
    # the extreme sample and the end of a uniform jitter range
    pad = spread / max(len(latencies) - 1, 1)
    values = {
        "display_latency_min_s": float(max(latencies.min() - pad, 0.0)),
        "display_latency_max_s": float(latencies.max() + pad),
        "display_latency_mean_s": float(latencies.mean()),
        "display_latency_std_s": float(latencies.std()),
        "display_response_s": float(response_s),
        "display_tau_s": float(tau),
        "slm_latency_s": float(np.max(slm_lat)),
        "slm_tau_s": float(slm_tau),
        "slm_settle_s": slm_settle,
    }
    arrays = {"display_latencies_s": latencies.astype(np.float64)}
    for k, (start, exposure, signal) in enumerate(curves[:3] + slm_curves[:1]):
        tag = f"display_curve/{k}" if k < min(3, len(curves)) else "slm_curve/0"
        arrays[tag] = np.stack([start, exposure, signal])
    quality = {"display_fit_rms": rms, "slm_fit_rms": slm_rms, "display_latency_spread_s": spread}
    message = (
        f"display latency {1e3 * latencies.mean():.1f} ms (range {1e3 * latencies.min():.1f}–"
        f"{1e3 * latencies.max():.1f}), response {1e3 * response_s:.1f} ms (99 %); SLM settles in "
        f"{1e3 * slm_settle:.1f} ms"
    )
    return ctl.finish(
        StepResult("timing", quality=quality, arrays=arrays, values=values, message=message)
    )
