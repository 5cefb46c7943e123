"""Simulated 4f camera: agreement with slmsuite's far field, the 4f convolution, the affine, the sensor."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from slmsuite.hardware.cameras.simulated import SimulatedCamera
from slmsuite.hardware.cameraslms import FourierSLM
from slmsuite.holography import toolbox

from lab4f.drivers.sim_camera import Simulated4fCamera, SimulatedCameraSettings
from lab4f.drivers.sim_display import SimulatedDisplay, SimulatedDisplaySettings
from lab4f.drivers.sim_slm import SimulatedFourierSLM, SimulatedSLMSettings
from lab4f.errors import DeviceDisconnected, DeviceTimeout

logging.getLogger("slmsuite").setLevel(logging.ERROR)
# the optics tests use an instant camera and display, explicitly (the defaults have a real bench's timing)
QUIET = dict(max_fps=None, noise=False, acquisition="instant")
INSTANT_DISPLAY = dict(refresh_hz=None, latency_frames=0, response_s=0.0)


def bench(n: int = 128, display: dict | None = None, **cam) -> tuple:
    slm = SimulatedFourierSLM(SimulatedSLMSettings(resolution=(n, n), settle_s=0.0))
    disp = SimulatedDisplay(SimulatedDisplaySettings(**{**INSTANT_DISPLAY, **(display or {})}))
    camera = Simulated4fCamera(
        slm, disp, SimulatedCameraSettings(**{"resolution": (n, n), **QUIET, **cam})
    )
    return slm, disp, camera


def blaze_to(slm: SimulatedFourierSLM, dx_cells: float, dy_cells: float) -> None:
    """Steer the light (dx, dy) far-field cells off the axis."""
    ny, nx = slm.shape
    vector = toolbox.convert_vector(
        (nx / 2 + dx_cells, ny / 2 + dy_cells), "knm", "kxy", slm, shape=slm.shape
    )
    slm.set_phase(toolbox.phase.blaze(slm, vector=vector))


def centroid(img: np.ndarray, x: float, y: float, half: int = 3) -> np.ndarray:
    x0, y0 = int(round(x)), int(round(y))
    win = img[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1].astype(np.float64)
    yy, xx = np.mgrid[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
    return np.array([(xx * win).sum() / win.sum(), (yy * win).sum() / win.sum()])


def test_point_input_equals_slmsuite_far_field_for_a_pixel_aligned_affine() -> None:
    slm = SimulatedFourierSLM(SimulatedSLMSettings(settle_s=0.0))  # LUT and crosstalk on
    cam = Simulated4fCamera(slm, None, SimulatedCameraSettings(**QUIET))
    cells_per_k = np.diag([slm.shape[1] * slm.pitch[0], slm.shape[0] * slm.pitch[1]])
    for b in ((256.0, 256.0), (259.0, 251.0)):
        cam.set_affine(cells_per_k, np.array(b))
        reference = SimulatedCamera(
            slm, resolution=(512, 512), M=cells_per_k, b=np.array(b).reshape(2, 1)
        )
        # slmsuite renders zero beyond the SLM's first diffraction zone; ours is periodic (higher orders)
        inside = np.zeros(cam.shape, dtype=bool)
        inside[
            max(0, int(b[1]) - 256) : int(b[1]) + 256, max(0, int(b[0]) - 256) : int(b[0]) + 256
        ] = True
        for dx, dy in ((0, 0), (37, -21)):
            blaze_to(slm, dx, dy)
            ours, theirs = cam.render() * inside, reference.render()
            ours, theirs = ours / ours.sum(), theirs / theirs.sum()
            assert np.abs(ours - theirs).max() / theirs.max() < 1e-3


def test_misaligned_affine_spots_agree_with_slmsuite_and_the_affine() -> None:
    """slmsuite resamples a 2x-padded far field nearest-neighbour, so only spot positions are compared."""
    slm = SimulatedFourierSLM(SimulatedSLMSettings(settle_s=0.0))
    cam = Simulated4fCamera(slm, None, SimulatedCameraSettings(**QUIET))  # default misalignment
    reference = SimulatedCamera(slm, resolution=(512, 512), M=cam.M, b=cam.b)
    for dx, dy in ((20, -12), (-60, 45)):
        blaze_to(slm, dx, dy)
        expected = cam.A @ np.array([dx, dy]) + cam.b.ravel()
        ours = centroid(cam.render(), *expected)
        theirs = centroid(reference.render(), *expected)
        assert np.abs(ours - expected).max() < 0.05
        assert np.abs(theirs - ours).max() < 0.3


def test_a_displayed_point_lands_where_the_affine_says() -> None:
    # 5e6 e-/s per unit at the 2 ms default: the point peaks below the full well (clipping would bias the centroid)
    slm, disp, cam = bench(
        display=dict(shape=(28, 28), position_px=(10.0, -7.0), black_level=0.0),
        photons_per_unit=5e6,
    )
    slm.set_phase(None)  # flat phase: the PSF is one cell on the axis
    for y, x in ((14, 14), (3, 25), (20, 2)):
        disp.show_point(y, x)
        u = np.array([x - 14 + 10.0, y - 14 - 7.0])
        expected = cam.A @ u + cam.b.ravel()
        frame = cam.get_image().astype(np.float64) - cam.settings.dark_offset_adu
        assert np.abs(centroid(frame, *expected) - expected).max() < 0.1


def test_incoherent_output_is_the_fft_convolution_of_image_and_psf() -> None:
    slm, disp, cam = bench(display=dict(shape=(16, 16), position_px=(5.0, 3.0)))
    rng = np.random.default_rng(1)
    slm.set_phase(rng.uniform(0, 2 * np.pi, slm.shape))
    disp.show(rng.random(disp.shape))
    ideal = cam.render_ideal()
    placed = np.zeros(slm.shape)
    cy, cx = cam.optical_axis_cell
    placed[cy - 8 + 3 : cy + 8 + 3, cx - 8 + 5 : cx + 8 + 5] = disp.image
    psf = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.fftshift(slm.realised_field())))) ** 2
    psf /= slm.realised_field().size * np.sum(np.abs(slm.realised_field()) ** 2)
    direct = np.real(np.fft.ifft2(np.fft.fft2(placed) * np.fft.fft2(np.fft.ifftshift(psf))))
    assert np.abs(ideal - direct).max() / direct.max() < 1e-4
    # with a pixel-aligned affine the camera shows exactly the output plane, shifted by b
    cam.set_affine(np.diag([128 * slm.pitch[0], 128 * slm.pitch[1]]), np.array([60.0, 70.0]))
    shifted = np.roll(ideal, (70 - cy, 60 - cx), axis=(0, 1))
    assert np.abs(cam.render() - shifted).max() / shifted.max() < 1e-4


def test_coherent_mode_is_square_law_of_the_amplitude_convolution() -> None:
    # a small pupil makes the PSF a few cells wide, so neighbouring input pixels interfere
    slm, disp, cam = bench(
        display=dict(shape=(8, 8), black_level=0.0),
        mode="coherent",
        fourier_aperture_radius_px=16.0,
    )
    rng = np.random.default_rng(2)
    slm.set_phase(rng.uniform(0, 0.5, slm.shape))
    image = np.zeros(disp.shape)
    image[3, 3], image[3, 4], image[5, 6] = 1.0, 1.0, 0.25
    disp.show(image)
    h = cam.amplitude_psf()
    a = np.zeros(slm.shape)
    cy, cx = cam.optical_axis_cell
    a[cy - 4 : cy + 4, cx - 4 : cx + 4] = np.sqrt(disp.image)
    field = np.fft.ifft2(np.fft.fft2(a) * np.fft.fft2(np.fft.ifftshift(h)))
    coherent = cam.render_ideal()
    assert np.abs(coherent - np.abs(field) ** 2).max() / coherent.max() < 1e-4
    incoherent = np.real(
        np.fft.ifft2(np.fft.fft2(a**2) * np.fft.fft2(np.fft.ifftshift(np.abs(h) ** 2)))
    )
    # in-phase neighbours interfere constructively: the peak far exceeds the incoherent one
    assert coherent.max() / incoherent.max() > 1.5
    # the camera frame carries the same square law (pixel-aligned affine: exact shift)
    cam.set_affine(np.diag([128 * slm.pitch[0], 128 * slm.pitch[1]]), np.array([64.0, 64.0]))
    assert np.abs(cam.render() - coherent).max() / coherent.max() < 1e-4


def test_shot_noise_variance_grows_linearly_with_signal_at_the_gain() -> None:
    # a dimmer source than the default so the exposures below span the sensor's range without reaching the full well
    slm, disp, cam = bench(
        display=dict(shape=(28, 28), black_level=0.0), noise=True, seed=3, photons_per_unit=1e6
    )
    slm.set_phase(None)
    disp.show(np.ones(disp.shape))
    means, variances = [], []
    for exposure_s in (0.0005, 0.001, 0.002, 0.004, 0.006):
        cam.set_exposure(exposure_s)
        frames = np.stack([cam.get_image() for _ in range(40)]).astype(np.float64)
        roi = frames[:, 56:72, 56:72]  # inside the bright square
        means.append(roi.mean() - cam.settings.dark_offset_adu)
        variances.append(roi.var(axis=0, ddof=1).mean())
    slope, intercept = np.polyfit(means, variances, 1)
    fit = np.polyval([slope, intercept], means)
    r2 = 1 - np.sum((variances - fit) ** 2) / np.sum((variances - np.mean(variances)) ** 2)
    assert r2 > 0.99
    assert slope == pytest.approx(
        cam.settings.gain, rel=0.05
    )  # var_adu = gain * mean_adu + (gain read)^2


def test_saturation_clips_at_full_well_and_quantisation_is_integer_adu() -> None:
    slm, disp, cam = bench(display=dict(black_level=0.0), gain=0.2, noise=True, seed=4)
    slm.set_phase(None)
    disp.show_point()
    cam.set_exposure(
        0.05
    )  # 2e7 e-/s × 0.05 s = 1e6 e- into a full well of 1e4 (a frame takes its 50 ms exposure)
    frame = cam.get_image()
    assert frame.dtype == np.uint16
    full = round(cam.settings.full_well_e * 0.2 + cam.settings.dark_offset_adu)
    assert frame.max() == full and np.count_nonzero(frame == full) >= 1
    cam.settings.gain = 1.0  # full well above the 12-bit range: the ADC clips at 4095
    assert cam.get_image().max() == 4095
    cam.settings.noise = False
    cam.set_exposure(0.002)
    expected = np.clip(
        np.rint(cam.render() * cam.settings.photons_per_unit * 0.002 * 1.0 + 100.0), 0, 4095
    )
    assert np.array_equal(cam.get_image(), expected.astype(np.uint16))


# Behaviour, not speed: a limit must make the camera wait (a lower bound on the time taken, which a loaded machine
# only lengthens); how close to the limit it runs is a rate, measured in benchmarks/bench_rates.py.
def test_frame_rate_limit() -> None:
    _, _, cam = bench(max_fps=50.0)
    assert cam.frame_period_s == pytest.approx(1 / 50)
    t0 = time.perf_counter()
    for _ in range(6):
        cam.get_image()
    assert (
        time.perf_counter() - t0 >= 5 / 50
    )  # the five frames after the first waited for their slots


def test_a_frame_takes_at_least_its_exposure() -> None:
    _, _, cam = bench(
        max_fps=200.0, exposure_s=0.04
    )  # exposure-limited: 25 frames/s, not the 200 readout allows
    assert cam.frame_period_s == pytest.approx(0.04)
    cam.get_image()
    t0 = time.perf_counter()
    for _ in range(5):
        cam.get_image()
    assert (
        time.perf_counter() - t0 >= 5 * 0.04 - 0.01
    )  # periods run from frame starts: less one render
    cam.set_exposure(0.001)  # now the readout limit rules: 5 ms per frame
    assert cam.frame_period_s == pytest.approx(1 / 200)
    cam.get_image()
    t0 = time.perf_counter()
    for _ in range(5):
        cam.get_image()
    assert time.perf_counter() - t0 >= 5 / 200 - 0.004


def test_camera_sees_the_old_pattern_while_the_slm_settles() -> None:
    slm = SimulatedFourierSLM(SimulatedSLMSettings(resolution=(128, 128), settle_s=0.15))
    cam = Simulated4fCamera(slm, None, SimulatedCameraSettings(resolution=(128, 128), **QUIET))
    time.sleep(0.16)
    blaze_to(slm, 20, 0)
    x0, y0 = np.rint(cam.b.ravel()).astype(int)  # the axis
    x1, y1 = np.rint(cam.A @ np.array([20.0, 0.0]) + cam.b.ravel()).astype(
        int
    )  # where the blaze steers
    early = cam.render()
    assert early[y0, x0] > 10 * early[y1, x1]
    time.sleep(0.16)
    late = cam.render()
    assert late[y1, x1] > 10 * late[y0, x0]


def test_dropped_frames_are_counted_and_indexed() -> None:
    _, _, cam = bench()
    cam.faults.drop_every_n = 3
    indices = []
    for _ in range(6):
        cam.get_image()
        indices.append(cam.last_frame_index)
    assert indices == [0, 1, 3, 4, 6, 7]
    assert cam.frames_dropped == 2 and cam.frames_delivered == 6


def test_camera_faults_become_typed_errors() -> None:
    _, _, cam = bench()
    cam.faults.frame_timeout = True
    with pytest.raises(DeviceTimeout):
        cam.get_image()
    cam.faults.clear()
    cam.get_image()
    cam.faults.disconnect_after_n = 2
    cam.get_image()
    with pytest.raises(DeviceDisconnected):
        cam.get_image()
    cam.faults.clear()
    cam.close()
    with pytest.raises(DeviceDisconnected):
        cam.get_image()


def test_slmsuite_fourier_calibration_recovers_the_misalignment() -> None:
    slm = SimulatedFourierSLM(SimulatedSLMSettings(settle_s=0.0))
    disp = SimulatedDisplay(SimulatedDisplaySettings(**INSTANT_DISPLAY))
    disp.show_point()  # one bright pixel on the axis: the camera shows the SLM's far field
    cam = Simulated4fCamera(
        slm,
        disp,
        SimulatedCameraSettings(max_fps=None, exposure_s=0.005, seed=5, acquisition="instant"),
    )
    cal = FourierSLM(cam, slm).fourier_calibrate(array_shape=9, array_pitch=20)
    assert np.abs(cal["M"] - cam.M).max() / np.abs(cam.M).max() < 5e-3
    # slmsuite's blob_array_detect locks spots to about a pixel: b is recovered to ~1.5 px
    assert np.abs(cal["b"] - cam.b).max() < 2.0
