"""Calibration on the simulated bench: recovered numbers against the simulator's truth, and the record's safety."""

from __future__ import annotations

import copy
import logging
import threading

import numpy as np
import pytest
import torch

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration import (
    CalibrationRecord,
    channel_gain_step,
    check_frame,
    fourier_step,
    latest_record,
    list_records,
    run_calibration,
)
from lab4f.drivers.sim_slm import true_phase_response
from lab4f.errors import CalibrationCancelled, CalibrationError, MismatchError
from lab4f.optics import compile_bank
from lab4f.spectral import KernelBank

MISREGISTERED = {
    "affine_shift_px": (6.5, -4.25),
    "affine_rotation_deg": 3.0,
    "affine_scale": 1.04,
    "seed": 3,
}


def make_bench(noise: bool = True, **camera: object) -> Bench:
    settings = {**MISREGISTERED, "noise": noise, **camera}
    return Bench(load_bench_config().with_settings(camera=settings)).connect()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """One full calibration (all steps, 4-channel program) on a noisy, misregistered bench."""
    out = tmp_path_factory.mktemp("cal")
    bench = make_bench(noise=True)
    torch.manual_seed(0)
    program = compile_bank(
        KernelBank(torch.randn(4, 1, 5, 5)), 28, geometry=bench.geometry, iterations=30
    )
    record = run_calibration(bench, "all", program=program, out_dir=out)
    yield bench, program, record, out
    bench.close()


@pytest.mark.slow
def test_registration_recovers_injected_misregistration(calibrated):
    bench, _, record, _ = calibrated
    cam = bench.camera
    pts = np.stack(np.meshgrid(np.arange(-120, 121, 10.0), np.arange(-120, 121, 10.0)), -1).reshape(
        -1, 2
    )
    truth = pts @ cam.A.T + cam.b.ravel()
    rms = np.sqrt(np.mean(np.sum((record.registration.apply(pts) - truth) ** 2, axis=1)))
    assert rms < 0.5
    assert record.registration.rotation_deg == pytest.approx(3.0, abs=0.05)
    assert record.registration.scale == pytest.approx(1.04, abs=0.002)
    # the default lenses (f2 = 36.3 mm) and 5.5 µm pixels predict 1.02 px per cell; this bench is set 2 % larger
    q = record.steps["registration"].quality
    assert q["scale_from_lenses"] == pytest.approx(1.02, abs=0.005)
    assert q["scale_vs_lenses"] == pytest.approx(1.04 / 1.02, abs=0.005)


@pytest.mark.slow
def test_phase_response_recovered(calibrated):
    bench, _, record, _ = calibrated
    truth = true_phase_response(bench.slm.settings)
    assert (
        np.max(np.abs(np.asarray(bench.slm.gamma) - truth)) < 0.02
    )  # units of 2π, every gray level
    levels, gamma = record.phase_response
    assert np.max(np.abs(gamma - truth[levels])) < 0.02


@pytest.mark.slow
def test_fourier_affine_matches_the_simulated_camera(calibrated):
    """The probes pin slmsuite's symmetric lattice: the kxy → camera affine is the camera's true one."""
    bench, _, record, _ = calibrated
    cam, fourier = bench.camera, record.fourier
    assert np.max(np.abs(np.asarray(fourier["M"]) - cam.M)) < 0.005 * np.abs(cam.M).max()
    assert (
        np.linalg.norm(np.ravel(fourier["b"]) - cam.b.ravel()) < 0.5
    )  # camera px, the optical axis
    q = record.steps["fourier"].quality
    assert q["spots_found"] == q["spots"] and q["probe_error_px"] < 1.0


@pytest.mark.slow
def test_fourier_tiles_gains_and_record_round_trip(calibrated):
    bench, program, record, out = calibrated
    assert record.steps["fourier"].quality["rms_residual_px"] < 0.5
    assert record.tile_shifts(0).shape == (len(program.frames[0].layout.tiles), 2)
    assert np.max(np.abs(record.tile_shifts(0))) < 1.0
    r2 = record.channel_r2
    print("held-out channel R² with noise (per-tile 5×5 filters):", np.round(r2, 4))
    assert r2.shape == (4,) and np.all(r2 > 0.9)  # measured 0.950..0.982 (seed 3)
    assert record.channel_filter.shape == (
        4,
        2,
        5,
        5,
    )  # per-tile 5×5 filters (k⁺ and k⁻ tiles apart)
    np.testing.assert_allclose(record.channel_gain, record.channel_filter[:, 0].sum(axis=(1, 2)))
    assert 0.5 < record.steps["camera"].quality["peak_fraction"] < 0.8
    loaded = CalibrationRecord.load(record.path, bench)
    np.testing.assert_array_equal(loaded.dark, record.dark)
    np.testing.assert_allclose(loaded.registration.to_array(), record.registration.to_array())
    np.testing.assert_allclose(loaded.channel_gain, record.channel_gain)
    np.testing.assert_allclose(loaded.channel_filter, record.channel_filter)
    assert loaded.exposure_s == record.exposure_s
    assert latest_record(out).path == record.path


def test_badly_placed_spot_grid_is_refused():
    with make_bench(noise=True) as bench:
        with pytest.raises(CalibrationError, match="refused|failed"):
            fourier_step(
                bench, array_shape=9, array_pitch=30, array_center=(420.0, 0.0), retry=False
            )


def test_cancel_leaves_previous_record(tmp_path):
    with make_bench(noise=False) as bench:
        first = run_calibration(bench, ["camera", "registration"], out_dir=tmp_path)
        cancel = threading.Event()

        def progress(fraction: float, message: str) -> None:
            if "fiducial 3" in message:
                cancel.set()

        with pytest.raises(CalibrationCancelled, match="previous calibration record"):
            run_calibration(
                bench, "registration", out_dir=tmp_path, progress=progress, cancel=cancel
            )
    assert list_records(tmp_path) == [first.path]
    assert latest_record(tmp_path).path == first.path


def test_truncated_record_is_a_clear_error_and_previous_stays_usable(tmp_path):
    with make_bench(noise=False) as bench:
        first = run_calibration(bench, ["camera"], out_dir=tmp_path)
        second = run_calibration(bench, ["camera"], out_dir=tmp_path)
    data = second.path.read_bytes()
    second.path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CalibrationError, match="corrupt or truncated"):
        CalibrationRecord.load(second.path)
    assert latest_record(tmp_path).path == first.path


def test_identity_mismatch_warns(tmp_path, caplog):
    with make_bench(noise=False) as bench:
        rec = run_calibration(bench, ["camera"], out_dir=tmp_path)
    # another camera on the same alignment (what differs: its identity; the optics settings are the same)
    other = Bench(
        load_bench_config().with_settings(
            camera={**MISREGISTERED, "noise": False, "name": "other-camera"}
        )
    )
    with other.connect():
        with caplog.at_level(logging.WARNING):
            loaded = CalibrationRecord.load(rec.path, other)
        assert "camera" in caplog.text and "calibrate" in caplog.text
        assert loaded.check_identities(other.info()) == ["camera"]
        with pytest.raises(MismatchError, match="other devices.*lab4f calibrate all"):
            CalibrationRecord.load(rec.path, other, strict=True)
        # another light source (its power and wavelength set the exposure and the PSF scale) is a different bench too;
        # another shutter is not
        swapped = copy.deepcopy(rec.bench_info)
        assert "identity" in swapped["devices"]["light_source"]
        swapped["devices"]["light_source"]["identity"] = {"name": "another laser", "serial": "X1"}
        swapped["devices"]["shutter"]["identity"] = {"name": "another shutter", "serial": "X2"}
        assert rec.check_identities(swapped) == ["light_source"]


def test_saturated_and_dark_frames_say_what_to_do():
    with make_bench(noise=False) as bench:
        cam = bench.camera
        full = 2**cam.bitdepth - 1
        frame = np.full(cam.shape, 100.0, np.float32)
        frame[10, 10] = full
        with pytest.raises(CalibrationError, match="saturated.*lab4f calibrate camera"):
            check_frame(frame, cam, np.full(cam.shape, 100.0, np.float32), "test")
        with pytest.raises(CalibrationError, match="too dark.*light source"):
            check_frame(
                np.full(cam.shape, 101.0, np.float32),
                cam,
                np.full(cam.shape, 100.0, np.float32),
                "test",
            )


def _noise_free_fit(
    bench, program, record, filter_size: int, crosstalk_sigma_px: float, per_tile: bool = True
) -> np.ndarray:
    """Held-out R² per channel of step 7 on the calibrated bench with camera noise off (settings restored)."""
    cam, slm = bench.camera.settings, bench.slm.settings
    noise, sigma = cam.noise, slm.crosstalk_sigma_px
    cam.noise, slm.crosstalk_sigma_px = False, crosstalk_sigma_px
    try:
        shifts = [record.tile_shifts(i) for i in range(len(program.frames))]
        result = channel_gain_step(
            bench,
            program,
            record.registration,
            shifts,
            dark=record.dark,
            flat=record.flat,
            filter_size=filter_size,
            per_tile=per_tile,
        )
    finally:
        cam.noise, slm.crosstalk_sigma_px = noise, sigma
    return result.arrays["channel_r2"]


@pytest.mark.slow
def test_channel_r2_without_noise(calibrated):
    """Noise off, the misregistered camera (3°, ×1.04), 48 digits with every second one held out.

    Random Gaussian 5×5 bank (a hard case). Measured (held-out R², min / median): scalar gain 0.912 / 0.914;
    one 3×3 filter on k⁺ − k⁻ 0.941 / 0.967; per-tile 5×5 filters 0.957 / 0.979 (0.956 / 0.980 without crosstalk).
    """
    bench, program, record, _ = calibrated
    scalar = _noise_free_fit(bench, program, record, 1, 0.5, per_tile=False)
    chan3 = _noise_free_fit(bench, program, record, 3, 0.5, per_tile=False)
    tile5 = _noise_free_fit(bench, program, record, 5, 0.5)
    tile5_clean = _noise_free_fit(bench, program, record, 5, 0.0)
    print(
        "noise-free held-out R² (min/median): scalar",
        _mm(scalar),
        "channel 3×3",
        _mm(chan3),
        "per-tile 5×5",
        _mm(tile5),
        "per-tile 5×5 no crosstalk",
        _mm(tile5_clean),
    )
    assert np.min(chan3) > np.min(scalar) + 0.02  # a filter, not a gain, is what recovers the blur
    assert np.min(tile5) > np.min(
        chan3
    )  # k⁺ and k⁻ sit at different field positions: one filter each


def _mm(r2: np.ndarray) -> str:
    return f"{np.min(r2):.4f}/{np.median(r2):.4f}"


@pytest.mark.slow
def test_issue_requirement_channel_r2_099_without_noise(trained_checkpoints, tmp_path):
    """Issue 4: per-channel R² ≥ 0.99 without noise, for a trained SCLC student's bank (16 kernels 7×7) on the same
    noisy, misregistered bench (3°, ×1.04, default SLM crosstalk), calibrated end to end; then noise off for step 7.

    Measured: per-tile 5×5 filters 0.99+ (the 32-kernel demo student: 0.9938 / 0.9968 min / median; per-tile 3×3
    0.9904; one filter on k⁺ − k⁻ 0.9515). With the default sensor noise the record's own figure is reported.
    The random Gaussian 5×5 bank above is a harder case (white kernels): per-tile 5×5 reaches 0.957 there.
    """
    from lab4f.bench.compile import compile_checkpoint

    bench = make_bench(noise=True)
    try:
        _, path, _ = compile_checkpoint(
            trained_checkpoints["student"], bench, tmp_path / "p.h5", progress=False
        )
        from lab4f.optics.program import OpticalProgram

        program = OpticalProgram.load(path)
        record = run_calibration(
            bench, "all", program=program, program_path=path, out_dir=tmp_path / "cal"
        )
        with_noise = record.channel_r2
        r2 = _noise_free_fit(bench, program, record, 5, 0.5)
    finally:
        bench.close()
    print(
        f"trained student, held-out R² min/median: with noise {_mm(with_noise)}, without noise {_mm(r2)}"
    )
    assert np.min(r2) >= 0.99, _mm(r2)
    assert np.min(with_noise) > 0.95, _mm(with_noise)


@pytest.mark.slow
def test_calibration_show_writes_the_plots(calibrated, tmp_path):
    """`lab4f calibration show FOLDER` on the fixture's record: summary and four non-trivial PNGs."""
    import argparse

    from lab4f.commands.calibrate import run_show

    _, _, record, out = calibrated
    result = run_show(argparse.Namespace(record=out, plots=tmp_path / "plots", json=True))
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == [
        "channel_fits.png",
        "display_response.png",
        "phase_response.png",
        "registration.png",
        "residual_maps.png",
    ]
    assert len(result["plots"]) == 5 and all(
        (tmp_path / "plots" / n).stat().st_size > 10_000 for n in names
    )
    assert result["path"] == str(record.path) and set(result["steps"]) >= {
        "fourier",
        "phase",
        "gains",
    }
