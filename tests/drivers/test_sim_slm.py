"""Simulated Fourier SLM: nonlinear phase response, crosstalk, realised field, settle time, faults."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lab4f.drivers.faults import FaultPlan
from lab4f.drivers.sim_slm import SimulatedFourierSLM, SimulatedSLMSettings, true_phase_response
from lab4f.errors import DeviceDisconnected, DeviceError

SMALL = dict(resolution=(128, 128), settle_s=0.0)


def make_slm(**kw) -> SimulatedFourierSLM:
    return SimulatedFourierSLM(SimulatedSLMSettings(**{**SMALL, **kw}))


def test_defaults_match_a_real_lcos() -> None:
    slm = SimulatedFourierSLM()
    assert slm.shape == (512, 512)
    assert slm.bitdepth == 8 and slm.wav_um == pytest.approx(0.633)
    assert tuple(slm.pitch_um) == (8.0, 8.0)
    assert slm.settle_time_s == pytest.approx(0.03) and slm.settings.settle_model == "exponential"


def test_gray_to_phase_response_is_nonlinear() -> None:
    slm = make_slm()
    phase = slm.gray_to_phase_rad(np.arange(256))
    assert phase[255] == pytest.approx(2 * np.pi * 1.05, rel=1e-9)
    assert np.all(np.diff(phase) > 0)
    linear_128 = 2 * np.pi * 1.05 * 128 / 255
    # gamma 1.3: gray 128 lags the linear ramp by 1.05 * 2 pi * (0.502 - 0.502**1.3) = 0.62 rad
    assert linear_128 - phase[128] == pytest.approx(0.62, abs=0.02)
    assert np.array_equal(np.asarray(slm.gamma_sim), true_phase_response(slm.settings))


def test_uniform_gray_realises_the_true_response() -> None:
    slm = make_slm()
    for gray in (0, 64, 128, 255):
        slm.set_phase(np.full(slm.shape, gray, dtype=np.uint8))
        # slmsuite's sign: increasing gray decreases the phase delay (phase = -2 pi gamma_sim[gray])
        np.testing.assert_allclose(slm.true_phase(), -slm.gray_to_phase_rad(gray), atol=1e-5)


def test_crosstalk_smooths_a_nyquist_checkerboard() -> None:
    checker = (np.indices((128, 128)).sum(axis=0) % 2 * 128).astype(np.uint8)
    sharp, blurred = make_slm(crosstalk_sigma_px=0.0), make_slm(crosstalk_sigma_px=0.5)
    for slm in (sharp, blurred):
        slm.set_phase(checker)
    swing_sharp = np.ptp(sharp.true_phase()[10:-10, 10:-10])
    swing_blurred = np.ptp(blurred.true_phase()[10:-10, 10:-10])
    assert swing_sharp == pytest.approx(sharp.gray_to_phase_rad(128), rel=1e-5)
    # a sampled Gaussian (sigma 0.5 px, taps exp(-2 k^2), |k| <= 2) passes (sum_k g(k) (-1)^k)^2 = 0.330
    # of a Nyquist checkerboard (scipy samples the Gaussian; the continuous one would pass 0.54)
    taps = np.exp(-2.0 * np.arange(-2, 3) ** 2)
    expected = (np.sum(taps * (-1.0) ** np.arange(-2, 3)) / taps.sum()) ** 2
    assert swing_blurred / swing_sharp == pytest.approx(expected, rel=1e-3)


def test_realised_field_is_cached_until_the_next_write() -> None:
    slm = make_slm()
    slm.set_phase(np.full(slm.shape, 100, dtype=np.uint8))
    field = slm.realised_field()
    assert field.dtype == np.complex64 and field.shape == slm.shape
    np.testing.assert_allclose(np.abs(field), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        np.angle(field), np.angle(np.exp(-1j * slm.gray_to_phase_rad(100))), atol=1e-5
    )
    assert slm.realised_field() is field
    slm.set_phase(np.full(slm.shape, 200, dtype=np.uint8))
    assert slm.realised_field() is not field


def test_settle_time_shows_the_old_pattern_until_settled() -> None:
    slm = make_slm(settle_s=0.15)
    first = slm.latest_write_index
    slm.set_phase(np.full(slm.shape, 50, dtype=np.uint8))
    assert slm.latest_write_index == first + 1
    assert slm.visible_write_index == first  # the light still sees the blank pattern
    # phase 0 is written as gray 255, which the nonlinear response turns into -1.05 * 2 pi
    np.testing.assert_allclose(np.angle(slm.visible_field()), -0.1 * np.pi, atol=1e-5)
    time.sleep(0.2)
    assert slm.visible_write_index == first + 1
    slm.set_phase(
        np.full(slm.shape, 60, dtype=np.uint8), settle=True
    )  # slmsuite waits settle_time_s
    assert slm.visible_write_index == first + 2


def test_write_failure_raises_and_keeps_the_previous_pattern() -> None:
    slm = make_slm()
    slm.set_phase(np.full(slm.shape, 77, dtype=np.uint8))
    shown, phase = slm.display.copy(), slm.phase.copy()
    slm.faults.slm_write_failure = True
    with pytest.raises(DeviceError, match="rejected"):
        slm.set_phase(np.full(slm.shape, 99, dtype=np.uint8))
    assert np.array_equal(slm.display, shown) and np.array_equal(slm.phase, phase)
    np.testing.assert_allclose(slm.true_phase(), -slm.gray_to_phase_rad(77), atol=1e-5)
    slm.faults.clear()
    slm.set_phase(np.full(slm.shape, 99, dtype=np.uint8))
    assert slm.display[0, 0] == 99


def test_write_failure_after_n_writes() -> None:
    slm = SimulatedFourierSLM(
        SimulatedSLMSettings(**SMALL), faults=FaultPlan(slm_write_failure_after_n=2)
    )
    slm.set_phase(None)
    slm.set_phase(None)
    assert slm.write_count == 2
    with pytest.raises(DeviceError):
        slm.set_phase(None)


def test_disconnect_and_close_raise_device_disconnected() -> None:
    slm = make_slm()
    slm.faults.disconnect = True
    with pytest.raises(DeviceDisconnected):
        slm.set_phase(None)
    slm.faults.disconnect = False
    slm.set_phase(None)
    slm.close()
    with pytest.raises(DeviceDisconnected):
        slm.set_phase(None)
