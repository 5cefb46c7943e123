"""The Fourier step's own refusals: each says what went wrong and what to do, in one readable sentence; a refused
grid is retried once with an adapted one (finer pitch, on the axis) before the step refuses."""

from __future__ import annotations

import pytest

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration import fourier_step
from lab4f.errors import CalibrationError

MISREGISTERED = {
    "affine_shift_px": (6.5, -4.25),
    "affine_rotation_deg": 3.0,
    "affine_scale": 1.04,
    "seed": 3,
}
ADVICE = "run `lab4f calibrate fourier`"
#: the issue's hard bench: strong misregistration, 3× read noise, an uncalibrated, strongly nonlinear SLM
HARSH_SLM = {"phase_max_2pi": 1.3, "phase_response_gamma": 2.0, "crosstalk_sigma_px": 0.8}


def bench() -> Bench:
    return Bench(load_bench_config().with_settings(camera=MISREGISTERED)).connect()


def harsh_bench(seed: int) -> Bench:
    camera = {**MISREGISTERED, "seed": seed, "read_noise_e": 9.0}
    return Bench(load_bench_config().with_settings(camera=camera, slm=HARSH_SLM)).connect()


def test_grid_slmsuite_fits_but_puts_off_the_camera_is_refused_with_advice() -> None:
    # 13 × 13 spots at pitch 40 knm: slmsuite's own fit succeeds, but the grid it implies leaves the 512² camera
    with bench() as b, pytest.raises(CalibrationError) as err:
        fourier_step(b, array_shape=13, array_pitch=40, retry=False)
    msg = str(err.value)
    assert "partly off the camera" in msg and ADVICE in msg
    assert (
        "\n" not in msg and len(msg) < 600
    )  # slmsuite's dump of every spot coordinate is not repeated


def test_grid_off_the_slm_is_refused_readably() -> None:
    with bench() as b, pytest.raises(CalibrationError) as err:
        fourier_step(b, array_shape=9, array_pitch=30, array_center=(200.0, 0.0), retry=False)
    msg = str(err.value)
    assert "slmsuite's Fourier calibration failed" in msg and ADVICE in msg and "\n" not in msg


def test_residual_and_found_spot_limits_are_enforced() -> None:
    # the same good grid passes the defaults; a limit tighter than what this noisy bench reaches must refuse
    with bench() as b:
        ok = fourier_step(b, array_shape=9, array_pitch=30)
        rms = ok.quality["rms_residual_px"]
        n = int(ok.quality["spots"])  # 9 × 9 less the spots slmsuite's orientation check leaves out
        assert 75 <= n <= 81 and ok.quality["spots_found"] >= 0.9 * n and 0 < rms < 0.5
        # a truly bad fit is refused after the retry too, saying both attempts were
        with pytest.raises(CalibrationError, match=r"px RMS from the fitted affine \(limit") as err:
            fourier_step(b, array_shape=9, array_pitch=30, max_rms_px=rms / 10)
        assert "the retry with an adapted grid" in str(err.value) and "pitch 22" in str(err.value)
        assert "\n" not in str(err.value) and type(err.value) is CalibrationError
        with pytest.raises(CalibrationError, match=rf"only \d+ of {n} spots were found"):
            fourier_step(b, array_shape=9, array_pitch=30, min_found_fraction=1.01)


def test_steps_left_stale_by_a_partial_rerun_are_named() -> None:
    from lab4f.calibration.runner import stale_steps

    recorded = {
        "camera": 1,
        "display": 1,
        "fourier": 1,
        "phase": 1,
        "registration": 1,
        "tiles": 1,
        "gains": 1,
    }
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


def test_a_grid_off_the_camera_or_the_slm_is_retried_on_the_axis_with_a_finer_pitch() -> None:
    with bench() as b:
        off_slm = fourier_step(b, array_shape=9, array_pitch=30, array_center=(200.0, 0.0))
    assert off_slm.values["retried"]["first_grid"]["array_center"] == (200.0, 0.0)
    assert "slmsuite's Fourier calibration failed" in off_slm.values["retried"]["first_refusal"]
    assert off_slm.values["array_center"] is None and off_slm.values["array_pitch"] == 22
    assert off_slm.quality["rms_residual_px"] < 0.5 and "retried with pitch 22" in off_slm.message


def test_the_retry_rescues_first_attempts_a_harsh_bench_refuses() -> None:
    """On the issue's hard bench about half the first attempts are refused (too few spots found, or 0.52-0.57 px
    RMS against the 0.5 px limit); with the retry (a finer grid, the same limits) every calibration succeeds."""
    retried, refused_without = 0, 0
    for seed in range(4):
        with harsh_bench(seed) as b:
            result = fourier_step(b)
        assert result.quality["rms_residual_px"] <= 0.5
        assert result.quality["spots_found"] >= 0.9 * result.quality["spots"]
        if "retried" in result.values:  # its first attempt, in the same call, was refused
            assert result.values["retried"]["first_grid"] == {
                "array_shape": 9,
                "array_pitch": 30,
                "array_center": None,
            }
            assert result.values["array_pitch"] == 22
            retried += 1
        with harsh_bench(seed) as b:
            try:
                fourier_step(b, retry=False)
            except CalibrationError as exc:
                assert "Fourier calibration refused" in str(exc) and "--array-pitch" in str(exc)
                refused_without += 1
    assert retried >= 1 and refused_without >= 1, (
        "the harsh bench refused no first attempt: it tests nothing"
    )


def test_calibrate_takes_the_grid_on_the_command_line(tmp_path, capsys) -> None:
    import json

    from lab4f.calibration import latest_record
    from lab4f.cli import main

    out = tmp_path / "records"
    assert main(["calibrate", "camera", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "calibrate",
                "fourier",
                "--out",
                str(out),
                "--array-shape",
                "7",
                "--array-pitch",
                "24",
                "--array-center",
                "4,-3",
                "--no-fourier-retry",
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    values = latest_record(out).steps["fourier"].values
    assert (values["array_shape"], values["array_pitch"], values["array_center"]) == (
        7,
        24,
        [4.0, -3.0],
    )
    assert main(["calibrate", "camera", "--out", str(out), "--array-pitch", "20", "--json"]) == 2
    assert "belong to the Fourier step" in json.loads(capsys.readouterr().out)["message"]
    assert main(["calibrate", "fourier", "--array-center", "1,2,3", "--json"]) == 2
    assert "expected X,Y" in json.loads(capsys.readouterr().out)["message"]
