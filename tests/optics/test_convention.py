"""One convention everywhere: a bank computes ``F.conv2d(x, w, padding="same")`` (cross-correlation, PyTorch's
placement for odd AND even K) — through the digital references, the detection models and the optics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab4f.bench.extract import FeatureExtractor
from lab4f.detection import detect
from lab4f.optics import FourfGeometry, compile_bank, extract_tiles, fourf_output
from lab4f.optics.registration import PlaneToCamera
from lab4f.spectral import KernelBank, fft_conv2d, same_padding


def reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's note that even K needs a padded copy
        return F.conv2d(x, w, padding="same")


def bank(k: int, channels: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        channels, 1, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def images(n: int = 20, count: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(
        count, 1, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_same_padding_is_pytorchs() -> None:
    assert [same_padding(k) for k in (1, 2, 3, 5, 6)] == [(0, 0), (0, 1), (1, 1), (2, 2), (2, 3)]
    x = images(9, 1)
    for k in range(1, 8):
        w = bank(k, 1)
        lo, hi = same_padding(k)
        torch.testing.assert_close(
            F.conv2d(F.pad(x, (lo, hi, lo, hi)), w), reference(x, w), rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("k", [5, 6, 1, 2])
def test_digital_references_match_conv2d_same(k: int) -> None:
    w, x = bank(k), images()
    ref = reference(x, w)
    for name, y in (
        ("KernelBank.apply", KernelBank(w).apply(x)),
        ("fft_conv2d", fft_conv2d(x, w, "same")),
        ("detect ideal", detect(x, w, "ideal")),
        ("detect incoherent", detect(x, w, "incoherent")),
    ):
        assert y.shape == ref.shape == (3, 6, 20, 20), name
        assert float((y - ref).abs().max()) < 1e-6, name
    torch.testing.assert_close(detect(x, w, "coherent"), ref**2)
    # "full" still is the whole correlation, and "same" is its crop from K//2 on
    full = KernelBank(w).apply(x, "full")
    assert full.shape[-1] == 20 + k - 1
    torch.testing.assert_close(full[..., k // 2 : k // 2 + 20, k // 2 : k // 2 + 20], ref)


@pytest.mark.parametrize("k, n", [(6, 20), (5, 20), (6, 21), (4, 21)])
def test_the_forward_model_computes_conv2d_same(k: int, n: int) -> None:
    """An ideal (complex) modulator: the tiles, the 4f forward model and the tile cut give F.conv2d "same"."""
    w, x = bank(k), images(n)
    program = compile_bank(
        KernelBank(w), n, FourfGeometry(slm_shape=(160, 160)), modulation="complex"
    )
    ref = reference(x, w)
    sim = program.simulate(x)
    assert sim.shape == ref.shape
    assert float((sim - ref).abs().max()) < 1e-6
    # the bench's extractor (bilinear tile cut through a registration) reads the same pixels as extract_tiles
    frame = program.frames[0]
    plane = fourf_output(x[:, 0], torch.from_numpy(frame.transmittance), "incoherent")
    pos, _ = extract_tiles(plane, frame.layout)
    m = frame.transmittance.shape[0]
    ext = FeatureExtractor.for_program(program, PlaneToCamera.identity((m, m)), (m, m))
    got = ext(plane.float().numpy()).double()
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5  # float32 extraction
    assert pos.shape[-1] == n


def test_phase_only_even_bank_is_not_shifted() -> None:
    """With a phase-only hologram the maps are approximate, but not shifted: the error against "same" is far
    below the error against the maps shifted by one pixel (the old even-K mistake)."""
    w, x = bank(6, 8), images(20, 4)
    program = compile_bank(KernelBank(w), 20, FourfGeometry(slm_shape=(256, 256)), iterations=40)
    sim = program.simulate(x)
    ref = reference(x, w)
    shifted = F.conv2d(x, w, padding=5)[..., 2:22, 2:22]  # cropped at (K − 1)//2 instead of K//2
    err = float((sim - ref).norm() / ref.norm())
    assert err < 0.1
    assert float((sim - shifted).norm() / shifted.norm()) > 5 * err
    assert np.isfinite(err)
