"""Fidelity forecast at compile time: how well each channel of a compiled bank will be measured on this bench.

A camera reads k⁺∗x and k⁻∗x as intensities and the back end subtracts them, so a channel's signal is their
difference while the noise is that of both tiles: shot noise of the photoelectrons they collect, read noise and
quantisation. Per channel the forecast computes, over sample inputs (mnist5k digits at the program's input size)
and the program's own forward model (the compiled SLM pattern through the ideal optics):

* the **cancellation** ``|k∗x| / |k⁺∗x|`` (RMS ratio): small when k⁺ and k⁻ nearly cancel, so that the tiles are
  bright (noisy) but their difference is small;
* the **light budget**: the exposure the calibration will choose — the brightest tile pixel of a white input at
  the camera step's 70 % of full scale, lengthened for the sample inputs as the gains step does (their brightest
  tile pixel to 60 % when below 45 %), at most the frame budget (20 ms) where the camera's photon rate is known
  (lab4f's simulated camera: ``photons_per_unit`` and the source power); elsewhere the exposure is assumed to reach
  the target;
* the **sensor noise** from the camera's settings (full well, read noise, conversion gain, bit depth; defaults of a
  12-bit CMOS when the driver does not say);
* the **bank's spectrum**: the camera's pixels and the bilinear tile cut blur each map (a transfer ``M(f)`` of a
  pixel aperture and two linear interpolations), which the calibration's channel filters undo at the price of
  amplifying noise by about ``Σ P(f)/M²(f) / Σ P(f)`` for the channel's map power spectrum P: kernels with their
  energy at high spatial frequencies are ill-conditioned on a camera. The fraction of each kernel's spectral energy
  above half Nyquist is reported.

``snr`` is the feature variance over the noise variance for one frame per input (``average`` frames divide the
noise by that), ``predicted_r2 = snr / (1 + snr)``. Model mismatch the calibration cannot fit (stray light, SLM
crosstalk, registration) is not in it: the forecast ranks channels and flags the hopeless ones; validated against
the measured held-out R² of ``lab4f calibrate all`` (Spearman rank correlation, see docs/byo-kernels.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lab4f.optics.forward import fourf_output
from lab4f.optics.layout import extract_tiles
from lab4f.optics.program import OpticalProgram

#: a channel forecast below this SNR (predicted R² 0.95) gets a warning
MIN_SNR = 19.0
#: the calibration's targets (calibration/camera.py, calibration/gains.py; spelled out: lab4f.optics must not
#: import the calibration package)
CAMERA_TARGET, GAINS_TARGET, GAINS_LENGTHEN_BELOW, EXPOSURE_BUDGET_S = 0.7, 0.6, 0.45, 0.02


@dataclass
class SensorModel:
    """What a camera's settings say about its noise (electrons) and its light (photoelectrons per plane unit·s)."""

    full_well_e: float = 10_000.0
    read_noise_e: float = 3.0
    gain_adu_per_e: float = 0.4
    bitdepth: int = 12
    rate_e_per_unit_s: float | None = (
        None  # None: unknown (a real camera); the exposure then reaches its target
    )
    max_exposure_s: float = 1.0
    pixels_per_cell: float = 1.0
    source: str = "defaults"

    @classmethod
    def from_bench(cls, bench: Any) -> SensorModel:
        cam = getattr(bench, "devices", {}).get("camera")
        s = getattr(cam, "settings", None)
        ppc = None
        try:
            ppc = bench.pixels_per_cell()
        except Exception:  # noqa: BLE001 — a camera without a pitch: one pixel per cell
            ppc = None
        out = cls(pixels_per_cell=float(ppc or 1.0))
        bits = getattr(cam, "bitdepth", None)
        if bits is not None:
            out.bitdepth = int(bits)
        if s is None:
            return out
        for name in ("full_well_e", "read_noise_e", "max_exposure_s"):
            if isinstance(getattr(s, name, None), (int, float)):
                setattr(out, name, float(getattr(s, name)))
        if isinstance(getattr(s, "gain", None), (int, float)):
            out.gain_adu_per_e = float(s.gain)
        photons = getattr(s, "photons_per_unit", None)
        if isinstance(photons, (int, float)):
            power_ratio = 1.0
            source = getattr(bench, "devices", {}).get("light_source")
            ref = getattr(s, "reference_power_mw", None)
            if source is not None and isinstance(ref, (int, float)):
                try:
                    power_ratio = float(source.power_mw) / float(ref)
                except Exception:  # noqa: BLE001 — an instrument that does not answer: the reference power
                    power_ratio = 1.0
            # a camera pixel collects 1/|det A| of a cell's light
            out.rate_e_per_unit_s = float(photons) * power_ratio / out.pixels_per_cell**2
        out.source = type(cam).__name__
        return out

    @property
    def full_scale_e(self) -> float:
        """Electrons at full scale: the full well, or the ADC's range if that is smaller."""
        return min(self.full_well_e, (2**self.bitdepth - 1) / self.gain_adu_per_e)


@dataclass
class Forecast:
    """Per channel: predicted SNR and R², cancellation, spectral energy above half Nyquist, noise gain; and the
    exposure the calibration is expected to choose, with warnings and suggestions."""

    snr: list[float]
    predicted_r2: list[float]
    cancellation: list[float]
    high_frequency_fraction: list[float]
    noise_gain: list[float]
    exposure_s: float | None
    budget_limited: bool
    white_peak_fraction: float  # brightest tile pixel of a white input at that exposure
    sample_peak_fraction: float  # ... of the sample inputs
    average: int = 1
    threshold_snr: float = MIN_SNR
    sensor: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        snr = np.asarray(self.snr)
        d.update(
            min_snr=float(snr.min()),
            median_snr=float(np.median(snr)),
            min_predicted_r2=float(np.min(self.predicted_r2)),
            median_predicted_r2=float(np.median(self.predicted_r2)),
            below_threshold=[int(i) for i in np.flatnonzero(snr < self.threshold_snr)],
        )
        return _finite(d)


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN/inf become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def sample_inputs(size: int, count: int = 16) -> torch.Tensor:
    """Sample intensity images (B, 1, N, N): mnist5k validation digits (offline), as the calibration shows."""
    from lab4f.data import load_dataset

    splits = load_dataset("mnist5k", split_seed=0, limit=count, image_size=size)
    return torch.stack([splits.val[i][0] for i in range(min(count, len(splits.val)))]).double()


def camera_mtf2(n: int) -> np.ndarray:
    """(n, n) squared transfer of the camera path on an N×N map (frequency grid of ``fft2``): a square pixel
    aperture (sinc²) and two linear interpolations at random sub-pixel offsets (mean |H|² = (2 + cos ω)/3 each)."""
    f = np.fft.fftfreq(n)
    w = 2 * np.pi * f
    one = np.sinc(f) ** 2 * ((2 + np.cos(w)) / 3) ** 2
    return np.outer(one, one)


def high_frequency_fraction(bank: np.ndarray, size: int = 64) -> np.ndarray:
    """Per kernel, the fraction of its spectral energy above half the Nyquist frequency (either axis)."""
    w = np.asarray(bank, np.float64)[:, 0]
    spec = np.abs(np.fft.fft2(w, s=(size, size))) ** 2
    f = np.abs(np.fft.fftfreq(size))
    high = (f[:, None] > 0.25) | (f[None, :] > 0.25)
    total = spec.sum(axis=(1, 2))
    return np.where(total > 0, (spec * high).sum(axis=(1, 2)) / np.maximum(total, 1e-300), 0.0)


def forecast_program(
    program: OpticalProgram,
    bench: Any | None = None,
    images: torch.Tensor | None = None,
    average: int = 1,
    sensor: SensorModel | None = None,
    max_exposure_s: float | None = None,
    threshold_snr: float = MIN_SNR,
) -> Forecast:
    """The fidelity forecast of ``program`` on ``bench`` (its camera's settings; None: :class:`SensorModel`
    defaults) for ``images`` (default :func:`sample_inputs`)."""
    sensor = sensor or (SensorModel.from_bench(bench) if bench is not None else SensorModel())
    x = (images if images is not None else sample_inputs(program.input_size)).to(torch.float64)
    n, c = program.input_size, program.channels
    white = torch.ones(1, n, n, dtype=torch.float64)
    pos = np.zeros((len(x), c, n, n))
    neg = np.zeros_like(pos)
    w_pos, w_neg = np.zeros(c), np.zeros(c)
    white_peaks, sample_peaks = [], []
    for frame in program.frames:
        t = torch.from_numpy(frame.transmittance)
        p, q = extract_tiles(fourf_output(x[:, 0], t, program.mode), frame.layout)
        pw, qw = extract_tiles(fourf_output(white, t, program.mode), frame.layout)
        white_peaks.append(float(max(pw.max(), qw.max())))
        sample_peaks.append(float(max(p.max(), q.max())))
        gains = {
            (tl.channel, tl.sign): g
            for tl, g in zip(frame.layout.tiles, frame.tile_gain, strict=True)
        }
        for i, ch in enumerate(frame.layout.channels):
            pos[:, ch], neg[:, ch] = p[:, i].numpy(), q[:, i].numpy()
            w_pos[ch] = program.kernel_scale / gains[(ch, 1)]
            w_neg[ch] = program.kernel_scale / gains[(ch, -1)]
    full_e = sensor.full_scale_e
    white_peak, sample_peak = max(white_peaks), max(sample_peaks)
    # the exposure (electrons per plane unit k): the camera step puts white's brightest tile at 70 % (at most the
    # budget), the gains step lengthens it for the samples' brightest tile (to 60 %, at most the budget)
    k = CAMERA_TARGET * full_e / white_peak
    lengthened = GAINS_TARGET * full_e / sample_peak
    exposure, limited = None, False
    if sensor.rate_e_per_unit_s:
        rate = sensor.rate_e_per_unit_s
        budget = min(
            EXPOSURE_BUDGET_S if max_exposure_s is None else float(max_exposure_s),
            sensor.max_exposure_s,
        )
        t_cam = min(k / rate, budget)
        t = t_cam
        if sample_peak * t_cam * rate < GAINS_LENGTHEN_BELOW * full_e:
            t = min(lengthened / rate, max(budget, t_cam))
        wanted = lengthened if sample_peak * k < GAINS_LENGTHEN_BELOW * full_e else k
        limited = t < 0.99 * wanted / rate
        exposure, k = t, t * rate
    elif sample_peak * k < GAINS_LENGTHEN_BELOW * full_e:
        k = lengthened
    q_e = 1.0 / (sensor.gain_adu_per_e * math.sqrt(12.0))
    floor = sensor.read_noise_e**2 + q_e**2

    def var_plane(tile: np.ndarray) -> np.ndarray:  # noise variance of a tile pixel in plane units²
        return (np.maximum(tile, 0.0) * k + floor) / k**2

    signal = w_pos[None, :, None, None] * pos - w_neg[None, :, None, None] * neg
    noise = w_pos[None, :, None, None] ** 2 * var_plane(pos) + w_neg[
        None, :, None, None
    ] ** 2 * var_plane(neg)
    noise = noise.mean(axis=(0, 2, 3)) / max(int(average), 1)
    sig_var = signal.var(axis=(0, 2, 3))
    # noise amplified by undoing the camera's blur where the channel's maps have their power
    power = (np.abs(np.fft.fft2(signal - signal.mean(axis=(2, 3), keepdims=True))) ** 2).mean(
        axis=0
    )
    mtf2 = camera_mtf2(n)
    gain = (power / mtf2).sum(axis=(1, 2)) / np.maximum(power.sum(axis=(1, 2)), 1e-300)
    snr = sig_var / np.maximum(noise * gain, 1e-300)
    plus = w_pos[None, :, None, None] * pos
    ratio = np.sqrt(
        (signal**2).mean(axis=(0, 2, 3)) / np.maximum((plus**2).mean(axis=(0, 2, 3)), 1e-300)
    )
    fc = Forecast(
        snr=snr.tolist(),
        predicted_r2=(snr / (1 + snr)).tolist(),
        cancellation=ratio.tolist(),
        high_frequency_fraction=high_frequency_fraction(program.bank).tolist(),
        noise_gain=gain.tolist(),
        exposure_s=exposure,
        budget_limited=limited,
        white_peak_fraction=white_peak * k / full_e,
        sample_peak_fraction=sample_peak * k / full_e,
        average=int(average),
        threshold_snr=float(threshold_snr),
        sensor=asdict(sensor),
    )
    _advise(fc, program)
    return fc


def _advise(fc: Forecast, program: OpticalProgram) -> None:
    snr = np.asarray(fc.snr)
    low = np.flatnonzero(snr < fc.threshold_snr)
    if not len(low):
        return
    worst = int(np.argmin(snr))
    fc.warnings.append(
        f"{len(low)} of {len(snr)} channels are forecast below SNR {fc.threshold_snr:.0f} (predicted R² "
        f"{fc.threshold_snr / (1 + fc.threshold_snr):.2f}); worst: channel {worst}, SNR {snr[worst]:.1f} (R² "
        f"{fc.predicted_r2[worst]:.3f}), cancellation |k∗x|/|k⁺∗x| {fc.cancellation[worst]:.2f}, "
        f"{100 * fc.high_frequency_fraction[worst]:.0f} % of its spectral energy above half Nyquist"
    )
    per_frame = max(len(f.layout.channels) for f in program.frames)
    if fc.budget_limited and per_frame > 1:
        fewer = max(1, per_frame // 2)
        fc.suggestions.append(
            f"the exposure is limited by the frame budget ({fc.exposure_s:.3g} s): fewer kernels "
            f"per frame give each tile more light (`lab4f compile --kernels-per-frame {fewer}`), "
            "or allow a longer exposure (the camera and gains steps' max_exposure_s)"
        )
    need = int(min(math.ceil(fc.threshold_snr / max(float(snr.min()), 1e-9)) * fc.average, 256))
    if need > fc.average:
        fc.suggestions.append(
            f"average frames per input: `lab4f capture --average {need}` brings the worst channel "
            f"to SNR {fc.threshold_snr:.0f} (noise / √N; N× the frames)"
        )
    if fc.high_frequency_fraction[worst] > 0.5:
        fc.suggestions.append(
            "the weak channels carry most of their energy at high spatial frequencies, which the "
            "camera blurs: retrain the bank through the optics (incoherent detection, `lab4f "
            "train --detection incoherent`) or with a smoothness penalty"
        )


def describe_forecast(fc: dict[str, Any]) -> list[str]:
    """Human-readable lines of a forecast dict (:meth:`Forecast.to_dict`)."""
    exp = fc.get("exposure_s")
    head = (
        f"fidelity forecast ({fc['average']} frame(s) per input): SNR per channel min {fc['min_snr']:.1f} "
        f"median {fc['median_snr']:.1f} (predicted R² min {fc['min_predicted_r2']:.3f} median "
        f"{fc['median_predicted_r2']:.3f})"
        + (f", exposure ≈ {exp:.3g} s" if exp else "")
        + (" (frame budget)" if fc.get("budget_limited") else "")
        + f", tiles peak {100 * fc['white_peak_fraction']:.0f} % of full scale for a white input"
    )
    return (
        [head]
        + [f"warning: {w}" for w in fc.get("warnings", [])]
        + [f"suggestion: {s}" for s in fc.get("suggestions", [])]
    )
