"""Detection wiring: an SCLC built with detection="coherent" / "incoherent" computes what lab4f.detection says
(|x ⊛ h|², and x ⊛ k⁺ − x ⊛ k⁻ with each tile measured separately), checked against an independent float64
computation with scipy (no torch convolution, no FFT) from the model's own layer kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d, correlate2d

from lab4f.models import SCLC, ModelConfig, build_model


def reference_kernel(layers: list[np.ndarray]) -> np.ndarray:
    """Collapsed (C_out, C_in, K, K) kernel of bias-free correlation layers: chained true 2-D convolutions."""
    eff = layers[0]
    for w in layers[1:]:
        c_out, c_mid = w.shape[:2]
        eff = np.stack(
            [
                np.stack(
                    [
                        sum(convolve2d(eff[m, i], w[o, m], mode="full") for m in range(c_mid))
                        for i in range(eff.shape[1])
                    ]
                )
                for o in range(c_out)
            ]
        )
    return eff


def correlate_same(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(B, C_in, H, W) input ⊛ (C_out, C_in, K, K) kernels, 'same' size, summed over input channels."""
    return np.stack(
        [
            np.stack(
                [
                    sum(correlate2d(x[b, i], k[o, i], mode="same") for i in range(x.shape[1]))
                    for o in range(k.shape[0])
                ]
            )
            for b in range(x.shape[0])
        ]
    )


def model_and_input(detection: str, seed: int = 0) -> tuple[SCLC, torch.Tensor, np.ndarray]:
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(
            kind="student",
            widths=(3, 5),
            kernel_size=3,
            image_size=20,
            hidden=(8,),
            detection=detection,
        )
    )
    assert (
        isinstance(model, SCLC) and model.detection == detection
    )  # the config reaches the front end
    x = torch.rand(
        2, 1, 20, 20, generator=torch.Generator().manual_seed(seed + 1)
    )  # intensities ≥ 0
    k = reference_kernel([w.detach().double().numpy() for w in model.layers])
    assert k.shape == (5, 1, 5, 5) and (k > 0).any() and (k < 0).any()  # both tiles are exercised
    return model, x, k


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# The model computes in float32 (eps 1.2e-7) through a spectral collapse and conv2d sums of ≤ 25 terms:
# relative errors of a few 1e-7 are expected; 1e-5 leaves ample margin, and every wiring defect
# (ideal instead of square law, k⁺/k⁻ swapped, one tile dropped, a flipped kernel) is an O(1) difference.
TOL = 1e-5


def test_coherent_student_measures_the_squared_field() -> None:
    model, x, k = model_and_input("coherent")
    with torch.no_grad():
        got = model.features(x).double().numpy()
    field = correlate_same(x.double().numpy(), k)
    assert rel(got, field**2) <= TOL
    # the square law is not the signed field (or its magnitude): those are far off
    assert rel(got, field) > 0.5 and rel(got, np.abs(field)) > 0.5


def test_incoherent_student_subtracts_the_negative_tile_from_the_positive_one() -> None:
    model, x, k = model_and_input("incoherent")
    with torch.no_grad():
        got = model.features(x).double().numpy()
    xn = x.double().numpy()
    pos, neg = correlate_same(xn, np.maximum(k, 0)), correlate_same(xn, np.maximum(-k, 0))
    assert (pos >= 0).all() and (
        neg >= 0
    ).all()  # nonnegative intensity PSFs on a nonnegative input
    assert rel(got, pos - neg) <= TOL
    # a swapped or dropped tile would be caught
    assert rel(got, neg - pos) > 1.5 and rel(got, pos) > 0.2 and rel(got, -neg) > 0.2


def test_incoherent_read_noise_is_added_to_each_tile_separately() -> None:
    """Without noise incoherent equals ideal, so only the noise shows that two tiles are measured: each gets
    Gaussian noise of σ × its own maximum, so the residual's std per map is σ·sqrt(max(k⁺-tile)² + max(k⁻-tile)²)
    — not σ·max|ideal|, what a front end wired to 'ideal' detection would give."""
    sigma = 0.05
    model, _, k = model_and_input("incoherent", seed=3)
    x = torch.rand(4, 1, 20, 20, generator=torch.Generator().manual_seed(7))
    model.noise_std = sigma
    torch.manual_seed(11)
    got = (
        model.features(x).detach().double().numpy()
    )  # grad enabled: the noise is applied while training
    xn = x.double().numpy()
    pos, neg = correlate_same(xn, np.maximum(k, 0)), correlate_same(xn, np.maximum(-k, 0))
    resid = got - (pos - neg)
    two_tiles = sigma * np.sqrt(pos.max(axis=(-2, -1)) ** 2 + neg.max(axis=(-2, -1)) ** 2)  # (B, C)
    one_tile = sigma * np.abs(pos - neg).max(axis=(-2, -1))
    z = resid / two_tiles[..., None, None]
    # 4 × 5 maps × 400 pixels = 8,000 unit-variance samples: the std is known to ±0.8 % (1σ); ±6 % is > 7σ
    assert np.std(z) == pytest.approx(1.0, abs=0.06)
    assert np.mean(z) == pytest.approx(
        0.0, abs=0.06
    )  # zero-mean noise: 0.06 is ~5σ of the mean of 8,000
    # the alternative the test must tell apart is far outside that band
    assert np.median(one_tile / two_tiles) < 0.8
    with torch.no_grad():  # evaluation (no grad): no noise at all
        clean = model.features(x).double().numpy()
    assert rel(clean, pos - neg) <= TOL


def test_coherent_read_noise_scales_with_the_measured_intensity() -> None:
    sigma = 0.05
    model, _, k = model_and_input("coherent", seed=4)
    x = torch.rand(4, 1, 20, 20, generator=torch.Generator().manual_seed(8))
    model.noise_std = sigma
    torch.manual_seed(12)
    got = model.features(x).detach().double().numpy()
    intensity = correlate_same(x.double().numpy(), k) ** 2
    z = (got - intensity) / (sigma * intensity.max(axis=(-2, -1)))[..., None, None]
    assert np.std(z) == pytest.approx(1.0, abs=0.06) and np.mean(z) == pytest.approx(0.0, abs=0.06)
