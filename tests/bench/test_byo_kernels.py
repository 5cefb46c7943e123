"""Bring your own kernels: a bank trained elsewhere (.npy) compiles, calibrates and captures through the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lab4f.cli import main
from lab4f.errors import MismatchError


def strict_json(text: str) -> dict:
    return json.loads(
        text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c} in the output")
    )


def signed_bank(c: int = 64, k: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((c, 1, k, k)).astype(np.float32)


def test_capture_without_calibration_averages_and_time_multiplexes(tmp_path, capsys) -> None:
    """A small bank on 2 multiplexed SLM frames, 2 frames averaged per input: shapes, counts and the file."""
    np.save(tmp_path / "k.npy", signed_bank(4, 5))
    program = tmp_path / "k.program.h5"
    assert (
        main(
            [
                "compile",
                str(tmp_path / "k.npy"),
                "--kernels-per-frame",
                "2",
                "--iterations",
                "10",
                "--out",
                str(program),
                "--json",
            ]
        )
        == 0
    )
    assert strict_json(capsys.readouterr().out)["frames"] == 2
    out = tmp_path / "cap.h5"
    assert (
        main(
            [
                "capture",
                "--program",
                str(program),
                "--limit",
                "5",
                "--average",
                "2",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    m = strict_json(captured.out)
    assert "no calibration record" in captured.err
    assert m["n"] == 5 and m["labelled"] == 5 and m["average"] == 2 and m["program_frames"] == 2
    assert m["frames_per_input"] == 4 and m["camera_frames"] == 20 and m["sync"]["paired"] == 20
    assert m["inputs_per_s"] > 0 and len(m["channel_r2"]) == 4 and m["hologram_error_vs_bank"] < 0.1
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "capture"
        assert f["features"].shape == f["digital"].shape == (5, 4, 28, 28)
        assert list(f["indices"][()]) == [0, 1, 2, 3, 4] and (f["labels"][()] >= 0).all()
        np.testing.assert_allclose(f["bank"][()], signed_bank(4, 5))
        assert json.loads(f.attrs["metrics"])["n"] == 5 and f.attrs["program"] == str(
            program.resolve()
        )
    assert (
        main(["capture", "--program", str(program), "--limit", "2", "--out", str(out), "--json"])
        == 2
    )
    assert "exists" in strict_json(capsys.readouterr().out)["message"]


def test_prepare_without_checkpoint_needs_a_program() -> None:
    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import prepare

    with Bench() as bench, pytest.raises(MismatchError, match="compiled program"):
        prepare(bench, None)


@pytest.mark.slow
def test_a_64_kernel_npy_bank_compiles_calibrates_and_captures_through_the_cli(
    tmp_path, capsys
) -> None:
    np.save(tmp_path / "kernels.npy", signed_bank())
    program = tmp_path / "kernels.program.h5"
    assert main(["compile", str(tmp_path / "kernels.npy"), "--out", str(program), "--json"]) == 0
    compiled = strict_json(capsys.readouterr().out)
    assert compiled["channels"] == 64 and compiled["kernel_size"] == 6
    assert (
        main(
            [
                "calibrate",
                "all",
                "--program",
                str(program),
                "--out",
                str(tmp_path / "cal"),
                "--json",
            ]
        )
        == 0
    )
    calibrated = strict_json(capsys.readouterr().out)
    assert "gains" in calibrated["steps"]
    out = tmp_path / "features.h5"
    assert (
        main(
            [
                "capture",
                "--program",
                str(program),
                "--calibration",
                str(tmp_path / "cal"),
                "--limit",
                "16",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    m = strict_json(capsys.readouterr().out)
    print(
        f"64 kernels 6×6, {compiled['frames']} frame(s): capture of 16 test digits: feature error "
        f"{m['relative_error']:.3f}, channel R² min {m['r2_min']:.3f} median {m['r2_median']:.3f}; gains step "
        f"held-out R² min {calibrated['steps']['gains']['quality']['min_r2']:.3f}"
    )
    assert m["n"] == 16 and len(m["channel_r2"]) == 64 and m["sync"]["stale"] == 0
    assert m["relative_error"] < 0.6 and m["r2_median"] > 0.7
    with h5py.File(out) as f:
        assert f["features"].shape == (16, 64, 28, 28) and f.attrs["calibration"]


def test_the_camera_step_exposes_for_the_tiles_not_the_zero_order(tmp_path) -> None:
    """64 tiles share the light: exposed on the whole frame, the zero order (the display's direct image in the
    empty central slot) sets a short exposure; exposed on the tiles, it is lengthened up to the frame budget and
    the zero order may saturate (no tile reads it)."""
    import torch

    from lab4f.bench.devices import Bench
    from lab4f.calibration.camera import EXPOSURE_BUDGET_S, camera_step, light_on, tile_region
    from lab4f.calibration.gains import read_mask
    from lab4f.optics import compile_bank
    from lab4f.optics.registration import PlaneToCamera
    from lab4f.spectral import KernelBank

    with Bench() as bench:
        program = compile_bank(
            KernelBank(torch.from_numpy(signed_bank())),
            28,
            bench.geometry,
            iterations=10,
            camera_cells=bench.camera_cells(),
        )
        frame = camera_step(bench, program=program, expose_on="frame")
        tiles = camera_step(bench, program=program)
        with light_on(bench):
            region, direct = tile_region(bench, program)
        ppc = float(bench.pixels_per_cell())
    print(
        f"64 tiles/frame: on the frame {1e3 * frame.quality['exposure_s']:.2f} ms, tiles' peak "
        f"{frame.quality['tiles_peak_fraction']:.3f} of full scale; on the tiles "
        f"{1e3 * tiles.quality['exposure_s']:.2f} ms, tiles' peak {tiles.quality['tiles_peak_fraction']:.3f}"
    )
    assert tiles.values["expose_on"] == "tiles" and frame.values["expose_on"] == "frame"
    assert tiles.quality["exposure_s"] > 3 * frame.quality["exposure_s"]
    assert (
        tiles.quality["exposure_s"] <= EXPOSURE_BUDGET_S * 1.001
        and tiles.quality["exposure_budget_limited"]
    )
    assert tiles.quality["tiles_peak_fraction"] > 4 * frame.quality["tiles_peak_fraction"]
    assert tiles.quality["zero_order_saturated_px"] > 0 and frame.quality["frame_peak_fraction"] < 1
    assert not (region & direct.mask).any() and region.sum() > 128 * 28 * 28
    # the gains step's mask (what the extractor reads) leaves the central slot out too
    h, w = tiles.arrays["dark"].shape
    reg = PlaneToCamera(np.eye(2) * ppc, direct.axis_xy)
    mask = read_mask(program, reg, (h, w), None)
    assert not (mask & direct.mask).any() and mask.sum() >= 128 * 28 * 28


@pytest.mark.slow
def test_exposure_for_the_tiles_and_the_forecast_on_64_signed_kernels_at_16_per_frame(
    tmp_path,
) -> None:
    """The issue's measurement: a random signed 6×6 bank of 64 kernels at 16 per frame on the default simulated
    bench (noise on), `calibrate all` exposed on the whole frame (before) and on the tiles (now); the tiles' peak
    level, the held-out R² min/median, and the forecast's rank correlation with the measured R²."""
    import torch
    from scipy.stats import spearmanr

    from lab4f.bench.devices import Bench
    from lab4f.calibration import run_calibration
    from lab4f.optics import compile_bank
    from lab4f.optics.forecast import forecast_program
    from lab4f.spectral import KernelBank

    before_opts = {"camera": {"expose_on": "frame"}, "gains": {"expose_on": "frame"}}
    results = {}
    with Bench() as bench:
        program = compile_bank(
            KernelBank(torch.from_numpy(signed_bank())),
            28,
            bench.geometry,
            camera_cells=bench.camera_cells(),
            kernels_per_frame=16,
        )
        path = program.save(tmp_path / "p.h5")
        forecast = forecast_program(
            program, bench, average=4
        )  # the gains step averages 4 frames per image
        for name, opts in (("before", before_opts), ("after", None)):
            results[name] = run_calibration(
                bench,
                "all",
                program=program,
                program_path=path,
                save=False,
                out_dir=tmp_path / name,
                step_options=opts,
            )
        # the same record's gains step again, with more frames per image and a 7×7 filter
        results["after, gains 16 frames 7×7"] = run_calibration(
            bench,
            "gains",
            program=program,
            program_path=path,
            save=False,
            out_dir=tmp_path / "x",
            base=results["after"],
            step_options={"gains": {"frames": 16, "filter_size": 7}},
        )
    assert len(program.frames) == 4
    for name, rec in results.items():
        cam, gains = rec.steps["camera"].quality, rec.steps["gains"].quality
        print(
            f"{name}: camera exposure {1e3 * cam['exposure_s']:.2f} ms (white input: tiles' peak "
            f"{cam['tiles_peak_fraction']:.3f} of full scale), gains exposure {1e3 * gains['exposure_s']:.2f} ms "
            f"(calibration digits: tiles' peak {gains['tiles_peak_fraction']:.3f}); held-out R² min "
            f"{gains['min_r2']:.4f} median {gains['median_r2']:.4f}"
        )
    measured = results["after"].steps["gains"].arrays["channel_r2"]
    rho = float(spearmanr(forecast.snr, measured)[0])
    print(
        f"forecast: SNR min {min(forecast.snr):.1f} median {np.median(forecast.snr):.1f}, predicted R² min "
        f"{min(forecast.predicted_r2):.4f}; Spearman(predicted SNR, measured R²) = {rho:.3f}"
    )
    after = results["after"].steps["gains"].quality
    assert rho >= 0.7  # the target
    assert (
        after["median_r2"] >= 0.98
    )  # the target; its min ≥ 0.95 is printed above (not met by default)
    assert after["median_r2"] >= results["before"].steps["gains"].quality["median_r2"] - 0.005
