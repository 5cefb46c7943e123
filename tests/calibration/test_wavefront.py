"""Wavefront step on the simulated bench: a known aberration injected into the SLM's source phase is measured
by slmsuite's superpixel calibration and cancelled by the applied correction."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from slmsuite.holography.toolbox.phase import zernike_sum

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration import CalibrationRecord, resolve_steps, run_calibration, wavefront_step
from lab4f.calibration.wavefront import MARKER, apply_correction, residual_rms_rad
from lab4f.cli import build_parser
from lab4f.drivers.sim_slm import true_phase_response
from lab4f.errors import CalibrationCancelled

MISREGISTERED = {
    "affine_shift_px": (6.5, -4.25),
    "affine_rotation_deg": 3.0,
    "affine_scale": 1.04,
    "seed": 3,
}
#: ANSI Zernike indices (defocus, astigmatism 0°/45°, coma) and weights in radians: ~1.06 rad (0.17 waves) RMS.
ABERRATION = ((3, 4, 5, 7), (1.5, 2.0, -1.5, 1.0))


def aberrated_bench() -> tuple[Bench, np.ndarray]:
    """Noisy misregistered bench whose SLM illumination carries a known aberration; the phase LUT is the truth
    (the phase step recovers it within 0.02×2π, see test_calibration; skipping it saves ~10 s)."""
    bench = Bench(
        load_bench_config().with_settings(camera={**MISREGISTERED, "noise": True})
    ).connect()
    slm = bench.slm
    aberration = np.asarray(
        zernike_sum(slm, *ABERRATION, aperture="cropped", use_mask=False), dtype=np.float32
    )
    slm.source["phase_sim"] = aberration
    slm.set_gamma(true_phase_response(slm.settings))
    return bench, aberration


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal")
    bench, aberration = aberrated_bench()
    order: list[str] = []
    record = run_calibration(
        bench,
        ["camera", "fourier", "wavefront"],
        out_dir=out,
        on_step=lambda r: order.append(r.name),
        step_options={"wavefront": {"superpixel_size": 128}},
    )
    yield bench, aberration, record, order
    bench.close()


def test_correction_cancels_the_injected_aberration(corrected):
    bench, aberration, record, order = corrected
    injected_rad = residual_rms_rad(aberration)
    residual_rad = residual_rms_rad(np.asarray(bench.slm.source["phase"]) + aberration)
    q = record.steps["wavefront"].quality
    print(
        f"injected {injected_rad:.3f} rad RMS, residual {residual_rad:.3f} rad; {record.steps['wavefront'].message}"
    )
    # the injected RMS, derived independently from the phase array the simulated SLM carries: on a full uniform
    # grid, piston and tilt removal is subtracting the mean and the projections on the centred x and y ramps
    # (orthogonal there); the array is smooth and unwrapped, so no unwrapping is needed
    assert np.array_equal(
        np.asarray(bench.slm.source["phase_sim"]), aberration
    )  # what the optics saw
    a = aberration.astype(np.float64)
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]].astype(np.float64)
    xx, yy = xx - xx.mean(), yy - yy.mean()
    d = a - a.mean()
    d = d - xx * (d * xx).sum() / (xx * xx).sum() - yy * (d * yy).sum() / (yy * yy).sum()
    expected_rad = float(np.sqrt(np.mean(d**2)))
    assert injected_rad == pytest.approx(expected_rad, rel=1e-6)
    assert (
        expected_rad > 3 * 0.02 * 2 * np.pi
    )  # the aberration dwarfs the phase LUT's 0.02×2π accuracy
    assert residual_rad < 0.35 * injected_rad  # measured 0.24 rad (16 superpixels of 128 px)
    # the measured aberration is the injected one (piston and tilt aside), within 10 %
    assert q["aberration_rms_waves"] * 2 * np.pi == pytest.approx(injected_rad, rel=0.1)
    assert q["fit_fraction"] == 1.0 and q["applied"] == 1.0
    assert q["spot_peak_gain"] > 1.8  # measured 2.25: the focused spot's peak / window sum
    # measured 2.07 → 1.59 px (0.77×) on differential frames; 3.35 → 2.58 px (the same 0.77×) when the display's
    # black-level halo was still in the spot window
    assert q["spot_rms_radius_px_after"] < 0.85 * q["spot_rms_radius_px_before"]


def test_fourier_is_refitted_after_the_correction_and_the_record_restores_it(corrected):
    bench, _, record, order = corrected
    assert order == ["camera", "fourier", "wavefront", "fourier"]
    cam = bench.camera
    assert record.steps["fourier"].quality["rms_residual_px"] < 0.5
    assert (
        np.linalg.norm(np.ravel(record.fourier["b"]) - cam.b.ravel()) < 0.5
    )  # the optical axis, camera px
    loaded = CalibrationRecord.load(record.path)
    phase, amplitude = loaded.wavefront
    assert phase.shape == bench.slm.shape and amplitude.shape == bench.slm.shape
    with Bench() as fresh:
        assert "phase" not in fresh.slm.source
        loaded.apply(fresh)
        np.testing.assert_array_equal(np.asarray(fresh.slm.source["phase"]), phase)
        CalibrationRecord(steps={k: v for k, v in loaded.steps.items() if k != "wavefront"}).apply(
            fresh
        )
        assert (
            "phase" not in fresh.slm.source and MARKER not in fresh.slm.source
        )  # measured without it


def test_cancel_keeps_the_previous_correction():
    bench, _ = aberrated_bench()
    with bench:
        rec = run_calibration(bench, ["camera", "fourier"], save=False)
        previous = np.full(bench.slm.shape, 0.5, dtype=np.float32)
        apply_correction(bench.slm, previous)
        exposure_s = bench.camera.get_exposure()
        cancel = threading.Event()

        def progress(fraction: float, message: str) -> None:
            if "frame 5" in message:
                cancel.set()

        with pytest.raises(CalibrationCancelled):
            wavefront_step(
                bench,
                rec.fourier,
                dark=rec.dark,
                superpixel_size=128,
                progress=progress,
                cancel=cancel,
            )
        np.testing.assert_array_equal(np.asarray(bench.slm.source["phase"]), previous)
        assert bench.camera.get_exposure() == exposure_s


def test_all_includes_wavefront_only_when_asked():
    program = object()
    assert "wavefront" not in resolve_steps("all", program)
    assert resolve_steps("all", program, wavefront=True) == [
        "camera",
        "timing",
        "display",
        "fourier",
        "phase",
        "wavefront",
        "registration",
        "tiles",
        "gains",
    ]
    assert resolve_steps(["registration", "wavefront"], None) == ["wavefront", "registration"]
    args = build_parser().parse_args(["calibrate", "all", "--wavefront"])
    assert args.wavefront and args.step == "all"
    assert build_parser().parse_args(["calibrate", "wavefront"]).wavefront is False


def test_cli_step_names_are_the_runners_bench_order() -> None:
    from lab4f.calibration import BENCH_ORDER
    from lab4f.commands.calibrate import STEP_NAMES

    assert STEP_NAMES == BENCH_ORDER
