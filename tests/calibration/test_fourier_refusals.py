"""The Fourier step's own refusals: each says what went wrong and what to do, in one readable sentence."""

from __future__ import annotations

import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.devices import Bench
from lab4f.calibration import fourier_step
from lab4f.errors import CalibrationError

MISREGISTERED = {"affine_shift_px": (6.5, -4.25), "affine_rotation_deg": 3.0, "affine_scale": 1.04, "seed": 3}
ADVICE = "run `lab4f calibrate fourier`"


def bench() -> Bench:
    return Bench(BenchConfig(camera=DeviceConfig(driver="Simulated4fCamera", settings=MISREGISTERED))).connect()


def test_grid_slmsuite_fits_but_puts_off_the_camera_is_refused_with_advice() -> None:
    # 13 × 13 spots at pitch 40 knm: slmsuite's own fit succeeds, but the grid it implies leaves the 512² camera
    with bench() as b, pytest.raises(CalibrationError) as err:
        fourier_step(b, array_shape=13, array_pitch=40)
    msg = str(err.value)
    assert "partly off the camera" in msg and ADVICE in msg
    assert "\n" not in msg and len(msg) < 600  # slmsuite's dump of every spot coordinate is not repeated


def test_grid_off_the_slm_is_refused_readably() -> None:
    with bench() as b, pytest.raises(CalibrationError) as err:
        fourier_step(b, array_shape=9, array_pitch=30, array_center=(200.0, 0.0))
    msg = str(err.value)
    assert "slmsuite's Fourier calibration failed" in msg and ADVICE in msg and "\n" not in msg


def test_residual_and_found_spot_limits_are_enforced() -> None:
    # the same good grid passes the defaults; a limit tighter than what this noisy bench reaches must refuse
    with bench() as b:
        ok = fourier_step(b, array_shape=9, array_pitch=30)
        rms = ok.quality["rms_residual_px"]
        n = int(ok.quality["spots"])  # 9 × 9 less the spots slmsuite's orientation check leaves out
        assert 75 <= n <= 81 and ok.quality["spots_found"] >= 0.9 * n and 0 < rms < 0.5
        with pytest.raises(CalibrationError, match=r"px RMS from the fitted affine \(limit"):
            fourier_step(b, array_shape=9, array_pitch=30, max_rms_px=rms / 10)
        with pytest.raises(CalibrationError, match=rf"only \d+ of {n} spots were found"):
            fourier_step(b, array_shape=9, array_pitch=30, min_found_fraction=1.01)


def test_steps_left_stale_by_a_partial_rerun_are_named() -> None:
    from lab4f.calibration.runner import stale_steps

    recorded = {"camera": 1, "display": 1, "fourier": 1, "phase": 1, "registration": 1, "tiles": 1, "gains": 1}
    assert stale_steps(["fourier"], recorded) == ["registration", "tiles", "gains"]
    assert stale_steps(["fourier", "registration", "tiles", "gains"], recorded) == []
    assert stale_steps(["tiles"], recorded) == ["gains"]
    assert stale_steps(["camera"], {"camera": 1}) == []  # nothing measured after it yet
    assert stale_steps(["display", "gains"], recorded) == []


def test_rerunning_fourier_alone_warns_about_the_registration(tmp_path, caplog) -> None:
    import logging

    from lab4f.calibration import run_calibration

    with bench() as b:
        run_calibration(b, ["camera", "fourier", "registration"], out_dir=tmp_path)
        with caplog.at_level(logging.WARNING, logger="lab4f.calibration.runner"):
            run_calibration(b, "fourier", out_dir=tmp_path)
    assert "re-running fourier leaves this record's registration as measured before" in caplog.text
