"""The display step on simulated displays with a known response: linearity, refusals, the record and its effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.devices import Bench
from lab4f.calibration import CalibrationRecord, DisplayLinearizer, resolve_steps, run_calibration
from lab4f.errors import CalibrationError
from lab4f.optics import compile_bank
from lab4f.spectral import KernelBank

MISREGISTERED = {"affine_shift_px": (6.5, -4.25), "affine_rotation_deg": 3.0, "affine_scale": 1.04, "seed": 3}


def make_bench(gamma: float, black: float = 0.01) -> Bench:
    return Bench(BenchConfig(
        display=DeviceConfig(driver="SimulatedDisplay", settings={"gamma": gamma, "black_level": black}),
        camera=DeviceConfig(driver="Simulated4fCamera", settings={**MISREGISTERED, "noise": True}),
    )).connect()


def test_a_gamma_display_is_linearised(tmp_path):
    """γ = 2.2 (an LCD): the shown intensity becomes black + (1 − black)·image, measured through the camera."""
    with make_bench(2.2) as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        q = rec.steps["display"].quality
        assert q["gamma_fit"] == pytest.approx(2.2, abs=0.05)
        assert q["linearity_error_before"] > 0.2  # uncorrected, mid-gray shows ~0.22 instead of 0.5
        assert q["linearity_error_after"] < 0.01  # the ramp re-measured through the camera
        black = bench.display.settings.black_level
        ramp = np.linspace(0, 1, 21)
        for x in ramp:  # the display's true light for every ramp value, 8-bit quantisation included
            bench.show(np.full(bench.display.shape, x, dtype=np.float32))
            assert float(bench.display.image.mean()) == pytest.approx(black + (1 - black) * x, abs=0.006)
        image = np.random.default_rng(0).random(bench.display.shape).astype(np.float32)
        bench.show(image)
        assert np.max(np.abs(bench.display.image - (black + (1 - black) * image))) < 0.006
        bench.display_correction = None
        bench.show(image)  # without the correction the same image is far off
        assert np.max(np.abs(bench.display.image - (black + (1 - black) * image))) > 0.1


def test_a_linear_display_is_left_alone(tmp_path):
    with make_bench(1.0) as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        assert rec.steps["display"].quality["gamma_fit"] == pytest.approx(1.0, abs=0.03)
        x = np.linspace(0, 1, 101)
        assert np.max(np.abs(rec.display_linearizer(x) - x)) < 0.01


def test_a_non_monotonic_display_is_refused(tmp_path):
    with make_bench(1.0) as bench:
        first = run_calibration(bench, ["camera"], out_dir=tmp_path)
        display = bench.display
        display._response = lambda levels: (0.01 + np.sin(np.pi * levels / 255.0)).astype(np.float32)
        with pytest.raises(CalibrationError, match="not|drops"):
            run_calibration(bench, "display", out_dir=tmp_path)
    assert CalibrationRecord.load(first.path).display_linearizer is None


def test_the_record_keeps_and_applies_the_linearisation(tmp_path):
    with make_bench(2.2) as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        loaded = CalibrationRecord.load(rec.path, bench)
        x = np.linspace(0, 1, 33)
        np.testing.assert_array_equal(loaded.display_linearizer(x), rec.display_linearizer(x))
        bench.display_correction = None
        loaded.apply(bench)
        assert isinstance(bench.display_correction, DisplayLinearizer)
        assert resolve_steps("all", None)[:2] == ["camera", "display"]  # `all` linearises before anything else
        CalibrationRecord(steps={"camera": rec.steps["camera"]}).apply(bench)
        assert bench.display_correction is None  # a record measured without the step removes the correction


def test_linearizer_rejects_bad_measurements():
    with pytest.raises(CalibrationError):
        DisplayLinearizer([0.0, 0.5], [0.0, 1.0])
    with pytest.raises(CalibrationError):
        DisplayLinearizer([0.0, 0.5, 1.0], [0.3, 0.3, 0.3])
    lin = DisplayLinearizer([0.0, 0.5, 1.0], [0.0, 0.25, 1.0])
    assert lin(np.array([0.0, 0.25, 1.0])) == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)


@pytest.mark.slow
def test_linearising_the_display_improves_the_channel_fit(tmp_path):
    """On a γ = 2.2 bench the per-channel fit (held-out R²) is better with the display step than without."""
    with make_bench(2.2) as bench:
        torch.manual_seed(0)
        program = compile_bank(KernelBank(torch.randn(4, 1, 5, 5)), 28, geometry=bench.geometry, iterations=30)
        steps = ["camera", "fourier", "phase", "registration", "tiles", "gains"]
        plain = run_calibration(bench, steps, program=program, out_dir=tmp_path)
        linear = run_calibration(bench, "all", program=program, save=False)
    print("held-out channel R², γ = 2.2 display: without the display step", np.round(plain.channel_r2, 4),
          "with it", np.round(linear.channel_r2, 4))
    assert linear.channel_r2.min() > plain.channel_r2.min()
    assert linear.channel_r2.mean() > plain.channel_r2.mean()
    assert linear.channel_r2.min() > 0.93  # measured 0.949 (without: 0.913)
