"""The display step on simulated displays with a known response: linearity, refusals, the record and its effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration import (
    CalibrationRecord,
    DisplayLinearizer,
    list_records,
    resolve_steps,
    run_calibration,
)
from lab4f.errors import CalibrationError
from lab4f.optics import compile_bank
from lab4f.spectral import KernelBank

MISREGISTERED = {
    "affine_shift_px": (6.5, -4.25),
    "affine_rotation_deg": 3.0,
    "affine_scale": 1.04,
    "seed": 3,
}


def make_bench(gamma: float, black: float = 0.01) -> Bench:
    return Bench(
        load_bench_config().with_settings(
            display={"gamma": gamma, "black_level": black}, camera={**MISREGISTERED, "noise": True}
        )
    ).connect()


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
            assert float(bench.display.image.mean()) == pytest.approx(
                black + (1 - black) * x, abs=0.006
            )
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


@pytest.mark.parametrize(
    "response, match",
    [
        # a mid-range dip (0.447 → 0.332 of white between drives 0.5 and 0.56) on an otherwise normal display
        (lambda d: 0.01 + d - 0.3 * np.exp(-(((d - 0.6) / 0.08) ** 2)), "drops by"),
        # inverted (normally white) with low contrast: more light at gray 0 than at full drive
        (lambda d: 0.45 - 0.15 * d**2.2, "inverted"),
    ],
)
def test_displays_that_cannot_be_linearised_are_refused(tmp_path, response, match):
    with make_bench(1.0) as bench:
        first = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        kept = bench.display_correction
        assert kept is not None
        display = bench.display
        display._response = lambda levels: response(levels.astype(np.float64) / 255.0).astype(
            np.float32
        )
        with pytest.raises(CalibrationError, match=match):
            run_calibration(bench, "display", out_dir=tmp_path)
        assert bench.display_correction is kept  # the record in use still describes the display
    assert list_records(tmp_path) == [first.path]  # nothing saved


def test_the_record_keeps_and_applies_the_linearisation(tmp_path):
    with make_bench(2.2) as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        loaded = CalibrationRecord.load(rec.path, bench)
        x = np.linspace(0, 1, 33)
        np.testing.assert_array_equal(loaded.display_linearizer(x), rec.display_linearizer(x))
        bench.display_correction = None
        loaded.apply(bench)
        assert isinstance(bench.display_correction, DisplayLinearizer)
        # `all` linearises before anything shows images through the optics (timing shows only uniform fields)
        assert resolve_steps("all", None)[:3] == ["camera", "timing", "display"]
        CalibrationRecord(steps={"camera": rec.steps["camera"]}).apply(bench)
        assert (
            bench.display_correction is None
        )  # a record measured without the step removes the correction


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
        program = compile_bank(
            KernelBank(torch.randn(4, 1, 5, 5)), 28, geometry=bench.geometry, iterations=30
        )
        steps = ["camera", "fourier", "phase", "registration", "tiles", "gains"]
        plain = run_calibration(bench, steps, program=program, out_dir=tmp_path)
        linear = run_calibration(bench, "all", program=program, save=False)
    print(
        "held-out channel R², γ = 2.2 display: without the display step",
        np.round(plain.channel_r2, 4),
        "with it",
        np.round(linear.channel_r2, 4),
    )
    assert linear.channel_r2.min() > plain.channel_r2.min()
    assert linear.channel_r2.mean() > plain.channel_r2.mean()
    assert linear.channel_r2.min() > 0.93  # measured 0.949 (without: 0.913)


def test_remeasuring_the_display_refits_the_gains_or_is_refused(tmp_path):
    """The channel filters were fitted through the display response: a new response must not keep old filters."""
    with make_bench(2.2) as bench:
        torch.manual_seed(0)
        program = compile_bank(
            KernelBank(torch.randn(2, 1, 3, 3)), 28, geometry=bench.geometry, iterations=10
        )
        full = run_calibration(bench, "all", program=program, out_dir=tmp_path)
        with pytest.raises(CalibrationError, match="stale"):
            run_calibration(bench, "display", out_dir=tmp_path)
        assert list_records(tmp_path) == [full.path]
        steps_run = []
        again = run_calibration(
            bench,
            "display",
            program=program,
            out_dir=tmp_path,
            on_step=lambda r: steps_run.append(r.name),
        )
        assert steps_run == [
            "display",
            "gains",
        ]  # the filters are refitted through the new response
        np.testing.assert_array_equal(
            again.steps["registration"].arrays["registration"],
            full.steps["registration"].arrays["registration"],
        )  # the rest is kept


def test_a_run_uses_the_display_correction_of_its_record(tmp_path, trained_checkpoints):
    """prepare() puts the record's linearisation on the bench (a bench built afresh has none)."""
    from lab4f.bench.hybrid import prepare
    from lab4f.optics.registration import PlaneToCamera

    with make_bench(2.2) as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
    with make_bench(2.2) as fresh:
        assert fresh.display_correction is None
        reg = PlaneToCamera.identity(fresh.camera.shape)  # the record has no registration step
        prepare(
            fresh,
            trained_checkpoints["student"],
            record=CalibrationRecord.load(rec.path),
            registration=reg,
        )
        assert isinstance(fresh.display_correction, DisplayLinearizer)
        prepare(
            fresh,
            trained_checkpoints["student"],
            record=CalibrationRecord(steps={"camera": rec.steps["camera"]}),
            registration=reg,
        )
        assert fresh.display_correction is None  # a record measured without the step


def test_a_binary_display_passes_without_a_correction(tmp_path):
    """A 1-bit display (a DMD without PWM gray levels) has nothing to linearise: `all` must not fail on it."""
    cfg = load_bench_config().with_settings(
        display={"bitdepth": 1, "gamma": 2.2}, camera={**MISREGISTERED, "noise": True}
    )
    with Bench(cfg).connect() as bench:
        rec = run_calibration(bench, ["camera", "display"], out_dir=tmp_path)
        assert (
            "binary" in rec.steps["display"].message and rec.steps["display"].quality["levels"] == 2
        )
        assert rec.display_linearizer is None and bench.display_correction is None
        assert CalibrationRecord.load(rec.path).display_linearizer is None


def test_calibrate_command_runs_steps_and_shows_the_record(tmp_path, capsys):
    """`lab4f calibrate STEP --json` saves a new record per run; `lab4f calibration show` summarises and plots it."""
    from lab4f.cli import main

    out = tmp_path / "cals"
    assert main(["calibrate", "camera", "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["calibrate", "display", "--out", str(out), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["record"] != second["record"] and len(list_records(out)) == 2
    assert set(second["steps"]) == {
        "camera",
        "display",
    }  # the camera step kept from the first record
    assert second["steps"]["display"]["quality"]["linearity_error_after"] < 0.01
    assert (
        main(["calibration", "show", str(out), "--plots", str(tmp_path / "plots"), "--json"]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["path"] == second["record"] and [Path(p).name for p in shown["plots"]] == [
        "display_response.png"
    ]
    assert (
        main(["calibrate", "gains", "--out", str(out), "--json"]) == 2
    )  # needs a compiled program
    assert "--program" in json.loads(capsys.readouterr().out)["message"]


def test_records_saved_in_the_same_second_keep_their_order(tmp_path):
    names = [
        "cal-20261126-034814-12.h5",
        "cal-20261126-034815.h5",
        "cal-20261126-034814.h5",
        "cal-20261126-034814-2.h5",
        "cal-20261126-034814-1.h5",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_records(tmp_path)] == [
        "cal-20261126-034814.h5",
        "cal-20261126-034814-1.h5",
        "cal-20261126-034814-2.h5",
        "cal-20261126-034814-12.h5",
        "cal-20261126-034815.h5",
    ]
