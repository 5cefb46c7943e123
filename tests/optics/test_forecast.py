"""The compile-time fidelity forecast: cancellation, light, sensor noise and spectrum rank the channels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lab4f.optics import FourfGeometry, compile_bank
from lab4f.optics.forecast import (
    SensorModel,
    camera_mtf2,
    forecast_program,
    high_frequency_fraction,
)
from lab4f.spectral import KernelBank


def bank() -> torch.Tensor:
    smooth = torch.ones(5, 5)
    checker = (torch.arange(5)[:, None] + torch.arange(5)[None]) % 2 * 2.0 - 1.0
    cancel = torch.zeros(5, 5)
    cancel[2, 2], cancel[2, 3] = 1.0, -0.95  # k⁺ and k⁻ almost the same image, one pixel apart
    positive = torch.rand(5, 5, generator=torch.Generator().manual_seed(0))
    return torch.stack([smooth, checker, cancel, positive])[:, None].double()


@pytest.fixture(scope="module")
def program():
    return compile_bank(
        KernelBank(bank()), 16, FourfGeometry(slm_shape=(128, 128)), modulation="complex"
    )


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    coarse = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)).double()
    return torch.nn.functional.interpolate(
        coarse, size=(16, 16), mode="bilinear", align_corners=False
    )  # smooth


def test_forecast_ranks_cancelling_and_high_frequency_channels_low(program, images) -> None:
    fc = forecast_program(program, images=images)
    assert len(fc.snr) == 4 and all(np.isfinite(fc.snr))
    smooth, checker, cancel, positive = fc.snr
    assert fc.cancellation[0] == pytest.approx(1.0) and fc.cancellation[3] == pytest.approx(1.0)
    assert fc.cancellation[2] < 0.5 and cancel < min(smooth, positive)
    assert fc.noise_gain[1] > fc.noise_gain[0] and checker < smooth
    hf = high_frequency_fraction(program.bank)
    assert hf[1] > 0.5 > hf[0]
    assert camera_mtf2(16)[0, 0] == pytest.approx(1.0) and camera_mtf2(16).min() > 0
    d = fc.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON
    assert d["min_snr"] == pytest.approx(min(fc.snr)) and d["predicted_r2"][0] == pytest.approx(
        smooth / (1 + smooth)
    )


def test_light_noise_and_averaging_scale_the_snr(program, images) -> None:
    base = forecast_program(program, images=images, sensor=SensorModel())
    more_light = forecast_program(
        program, images=images, sensor=SensorModel(full_well_e=40_000, gain_adu_per_e=0.1)
    )
    averaged = forecast_program(program, images=images, average=4)
    noisy = forecast_program(program, images=images, sensor=SensorModel(read_noise_e=50.0))
    assert np.all(np.asarray(more_light.snr) > 3 * np.asarray(base.snr))
    np.testing.assert_allclose(averaged.snr, 4 * np.asarray(base.snr), rtol=1e-9)
    assert np.all(np.asarray(noisy.snr) < np.asarray(base.snr))
    # a known photon rate: the exposure is predicted, and a dim bench is limited by the frame budget
    bright = forecast_program(program, images=images, sensor=SensorModel(rate_e_per_unit_s=1e9))
    dim = forecast_program(program, images=images, sensor=SensorModel(rate_e_per_unit_s=1e5))
    assert bright.exposure_s < 0.02 and not bright.budget_limited
    assert dim.exposure_s == pytest.approx(0.02) and dim.budget_limited
    assert np.all(np.asarray(dim.snr) < np.asarray(bright.snr))


def test_a_weak_channel_is_warned_with_suggestions(program, images) -> None:
    fc = forecast_program(
        program, images=images, sensor=SensorModel(rate_e_per_unit_s=1e5), threshold_snr=1e6
    )
    assert fc.warnings and "below SNR" in fc.warnings[0]
    text = " ".join(fc.suggestions)
    assert "--kernels-per-frame" in text and "--average" in text
