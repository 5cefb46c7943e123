"""Flat field (camera step, ``flat_frames`` > 0): the simulated sensor's PRNU recovered where the tiles land,
features brought back to a uniform sensor's, the CLI flag, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.bench.extract import FeatureExtractor
from lab4f.calibration import list_records, run_calibration
from lab4f.calibration.camera import camera_step
from lab4f.calibration.gains import calibration_images
from lab4f.errors import CalibrationError
from lab4f.optics import compile_bank
from lab4f.optics.registration import PlaneToCamera
from lab4f.spectral import KernelBank

MISREGISTERED = {
    "affine_shift_px": (6.5, -4.25),
    "affine_rotation_deg": 3.0,
    "affine_scale": 1.04,
    "seed": 3,
}
PRNU = 0.02


def make_bench(display: dict | None = None, **camera: object) -> Bench:
    cfg = load_bench_config().with_settings(
        camera={**MISREGISTERED, **camera}, display=display or {}
    )
    return Bench(cfg).connect()


def make_program(bench: Bench):
    torch.manual_seed(0)
    return compile_bank(
        KernelBank(torch.randn(4, 1, 5, 5)), 28, geometry=bench.geometry, iterations=30
    )


def true_registration(bench: Bench) -> PlaneToCamera:
    """The simulator's own plane → camera affine: the registration a perfect calibration would find."""
    return PlaneToCamera(bench.camera.A, bench.camera.b.ravel())


def tile_pixels(program, registration: PlaneToCamera, shape: tuple[int, int]) -> np.ndarray:
    """Every camera pixel the extractor's bilinear samples touch (bool mask), from the true registration."""
    mask = np.zeros(shape, dtype=bool)
    for frame in program.frames:
        n = frame.layout.input_size
        j, i = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2)
        for tile in frame.layout.tiles:
            pts = registration.apply(
                np.stack([j.ravel() + tile.offset[1], i.ravel() + tile.offset[0]], axis=1)
            )
            x0, y0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
            for dy in (0, 1):
                for dx in (0, 1):
                    mask[y0 + dy, x0 + dx] = True
    return mask


@pytest.fixture(scope="module")
def prnu_flat():
    """A noisy, misregistered bench whose sensor has 2 % PRNU; the camera step with a 32-frame flat."""
    bench = make_bench(prnu=PRNU, noise=True)
    program = make_program(bench)
    result = camera_step(bench, program=program, flat_frames=32)
    yield bench, program, result
    bench.close()


def test_flat_recovers_the_sensor_prnu_under_every_tile(prnu_flat):
    bench, program, result = prnu_flat
    flat, q = result.arrays["flat"], result.quality
    truth = bench.camera.gain_map
    measured = flat != 1.0
    # every pixel the tiles are read from (true registration, not the nominal one the step used) was measured
    tiles = tile_pixels(program, true_registration(bench), bench.camera.shape)
    assert np.all(measured[tiles]), (
        f"{np.count_nonzero(tiles & ~measured)} tile pixels have no flat"
    )
    assert q["flat_coverage"] == 1.0
    # ... and the flat there is the sensor's response map: measured 0.98 correlation, 0.40 % residual (32 frames)
    corr = np.corrcoef(flat[tiles], truth[tiles])[0, 1]
    residual = np.std(flat[tiles] / truth[tiles] * truth[tiles].mean() - 1.0)
    print(
        f"flat vs true PRNU map under the tiles: corr {corr:.4f}, residual RMS {100 * residual:.2f} %, "
        f"step's own error estimate {100 * q['flat_noise_rms']:.2f} %"
    )
    assert corr > 0.95
    assert residual < 0.3 * PRNU
    assert 0.5 < residual / q["flat_noise_rms"] < 1.6  # the step's error estimate is honest
    assert np.mean(flat[measured]) == pytest.approx(
        1.0, abs=1e-4
    )  # normalised to mean 1 where measured
    assert q["flat_rms"] == pytest.approx(PRNU, rel=0.1) and q[
        "flat_prnu_estimate"
    ] == pytest.approx(PRNU, rel=0.1)
    assert 0.25 < q["flat_level_fraction"] < 0.5  # diffuse light exposed to ~half of full scale
    assert "flat RMS 2.0" in result.message


def test_flat_brings_features_back_to_a_uniform_sensor(prnu_flat):
    """Same optics and frames without noise: the features of the PRNU sensor, divided by the measured flat, are
    close to a uniform sensor's (measured: 3.7 % feature error without the flat, 0.8 % with it)."""
    bench, program, result = prnu_flat
    uniform = make_bench(prnu=0.0, noise=False)
    images = calibration_images(8, size=program.input_size)

    def features(b: Bench, flat: np.ndarray | None) -> np.ndarray:
        b.camera.set_exposure(result.values["exposure_s"])
        b.upload_phase(program.frames[0].phase)
        b.illuminate()  # source on, shutter open (the camera step left them as it found them: off)
        frames = []
        for img in images:
            b.show(img[0].numpy())
            frames.append(np.asarray(b.camera.get_image(), dtype=np.float32))
        extractor = FeatureExtractor.for_program(
            program,
            true_registration(b),
            b.camera.shape,
            dark=b.camera.settings.dark_offset_adu,
            flat=flat,
        )
        return extractor(np.stack(frames)).numpy()

    bench.camera.settings.noise = False
    try:
        reference = features(uniform, None)
        without = features(bench, None)
        with_flat = features(bench, result.arrays["flat"])
    finally:
        bench.camera.settings.noise = True
        uniform.close()
    scale = np.sqrt(np.mean(reference**2))
    err_without = np.sqrt(np.mean((without - reference) ** 2)) / scale
    err_with = np.sqrt(np.mean((with_flat - reference) ** 2)) / scale
    print(
        f"feature error vs a uniform sensor: {100 * err_without:.2f} % without the flat, {100 * err_with:.2f} % with"
    )
    assert err_without > 0.02  # the PRNU matters
    assert err_with < 0.35 * err_without


def test_uniform_sensor_gives_a_flat_of_one_within_its_noise():
    with make_bench(prnu=0.0, noise=True) as bench:
        result = camera_step(bench, program=make_program(bench), flat_frames=16)
    flat, q = result.arrays["flat"], result.quality
    measured = flat != 1.0
    rms = float(np.std(flat[measured]))
    print(
        f"uniform sensor: flat RMS {100 * rms:.3f} %, estimated noise {100 * q['flat_noise_rms']:.3f} %"
    )
    assert rms < 0.007 and rms == pytest.approx(q["flat_noise_rms"], rel=0.25)
    assert q["flat_prnu_estimate"] < 0.003


def test_flat_holds_only_the_pixel_response_not_the_smooth_profiles():
    """Without a program the whole frame but the display's direct image is measured. The diffuse light's envelope
    (−45 % across the frame) and a smooth sensor fall-off (vignetting 20 % at the corners) stay out of the flat: it
    is the pixel-to-pixel response (the gains step absorbs smooth throughput per tile)."""
    with make_bench(prnu=PRNU, vignetting=0.2, noise=True) as bench:
        result = camera_step(bench, flat_frames=16)
        truth = np.asarray(bench.camera.gain_map, dtype=np.float64)
    flat = result.arrays["flat"]
    measured = flat != 1.0
    assert measured.mean() > 0.99  # all but the direct image (~0.5 % of the frame)
    high_pass = truth / gaussian_filter(truth, 4.0)
    inner = measured & np.pad(np.ones((480, 480), bool), 16)  # away from the frame edges
    assert np.corrcoef(flat[inner], high_pass[inner])[0, 1] > 0.95
    smooth = gaussian_filter(flat.astype(np.float64), 16.0)
    assert np.ptp(smooth[inner]) < 0.01  # vs 0.18 for the true map: the vignetting is not baked in


def test_cli_flat_frames_with_json(tmp_path, capsys):
    from lab4f.cli import build_parser, main

    cfg = tmp_path / "bench.toml"
    cfg.write_text('[camera]\ndriver = "Simulated4fCamera"\nsettings = { prnu = 0.02, seed = 3 }\n')
    out = tmp_path / "cals"
    assert (
        main(
            [
                "calibrate",
                "camera",
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--flat-frames",
                "16",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["flat"]["frames"] == 16
    assert summary["flat"]["rms"] == pytest.approx(0.02, rel=0.15)
    assert summary["flat"]["noise_rms"] < 0.008 and summary["flat"]["coverage"] > 0.995
    assert summary["steps"]["camera"]["quality"]["flat_rms"] == summary["flat"]["rms"]
    assert "flat RMS" in summary["steps"]["camera"]["message"]
    # the default stays a unity flat
    assert main(["calibrate", "camera", "--config", str(cfg), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["flat"] == {"frames": 0, "rms": 0.0} and len(list_records(out)) == 2
    assert build_parser().parse_args(["calibrate", "all", "--flat-frames", "32"]).flat_frames == 32
    # a step that does not run the camera step, or a negative count, is an error (before any device is touched)
    assert main(["calibrate", "display", "--out", str(out), "--flat-frames", "8", "--json"]) == 2
    assert "camera step" in json.loads(capsys.readouterr().out)["message"]
    assert main(["calibrate", "camera", "--out", str(out), "--flat-frames", "-1", "--json"]) == 2
    capsys.readouterr()
    assert len(list_records(out)) == 2


@pytest.mark.parametrize(
    ("camera", "display", "match"),
    [
        # the input display's direct image (zero order) shifted 40 cells: it lands on the tiles at (0, +34)
        ({}, {"position_px": (40.0, 0.0)}, "direct image"),
        # a dim source: the tiles are bright enough, the diffuse light is not even at the longest exposure
        ({"photons_per_unit": 5e5, "max_exposure_s": 0.1}, {}, "too dim"),
        # coherent light: unit-contrast speckle that no practical number of frames averages out
        ({"mode": "coherent"}, {}, "coherent"),
    ],
    ids=["zero-order-on-tiles", "too-dim", "coherent"],
)
def test_flat_field_refusals_leave_the_previous_record(tmp_path, camera, display, match):
    with make_bench(display=display, prnu=PRNU, noise=True, **camera) as bench:
        program = make_program(bench)
        with pytest.raises(CalibrationError, match=match) as info:
            run_calibration(
                bench,
                "camera",
                program=program,
                out_dir=tmp_path,
                step_options={"camera": {"flat_frames": 8}},
            )
    assert "--flat-frames" in str(info.value) or "record is unchanged" in str(info.value)
    assert list_records(tmp_path) == []
