"""FFT convolution, the exact collapse of the linear stack, and the detection models."""

import pytest
import torch
import torch.nn.functional as F

from lab4f.detection import detect
from lab4f.errors import ConfigError
from lab4f.models import SCLC, ModelConfig
from lab4f.spectral import KernelBank, collapse_kernels, fft_conv2d, stack_full


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("k", [3, 7, 15])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fft_conv_equals_conv2d(k: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.rand(3, 2, 28, 28, generator=g, dtype=dtype)
    w = torch.randn(4, 2, k, k, generator=g, dtype=dtype)
    assert rel(fft_conv2d(x, w, "same"), F.conv2d(x, w, padding=k // 2)) <= 1e-5
    assert rel(fft_conv2d(x, w, "full"), F.conv2d(x, w, padding=k - 1)) <= 1e-5


def test_collapsed_bank_equals_layer_by_layer_stack() -> None:
    g = torch.Generator().manual_seed(0)
    layers = [torch.randn(8, 1, 3, 3, generator=g), torch.randn(16, 8, 3, 3, generator=g),
              torch.randn(12, 16, 5, 5, generator=g)]
    x = torch.rand(2, 1, 20, 20, generator=g)
    bank = KernelBank(collapse_kernels(layers))
    assert bank.weights.shape == (12, 1, 9, 9)
    ref = stack_full(x.double(), [w.double() for w in layers])
    assert rel(bank.apply(x.double(), "full"), ref) <= 1e-5
    # and in float32, as the student trains
    assert rel(collapse_kernels(layers).float(), bank.weights.float()) <= 1e-5


def test_student_features_are_the_bank_applied() -> None:
    cfg = ModelConfig(kind="student", widths=(4, 8, 6))
    model = SCLC(cfg)
    x = torch.rand(2, 1, 28, 28)
    bank = model.kernel_bank()
    assert bank.kernel_size == cfg.collapsed_kernel_size == 7
    assert rel(model.features(x).double(), bank.apply(x.double())) <= 1e-5


def test_incoherent_equals_ideal_without_noise_and_coherent_is_square_law() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 16, 16, generator=g)
    w = torch.randn(5, 1, 7, 7, generator=g)
    ideal = detect(x, w, "ideal")
    assert rel(detect(x, w, "incoherent"), ideal) <= 1e-5
    # the two tiles really are nonnegative intensities
    assert (detect(x, w.clamp(min=0), "ideal") >= -1e-6).all()
    coh = detect(x, w, "coherent")
    assert (coh >= 0).all() and rel(coh, ideal**2) <= 1e-6
    with pytest.raises(ConfigError, match="ideal, incoherent, coherent"):
        detect(x, w, "quantum")


def test_bank_split_reconstructs_signed_kernel() -> None:
    bank = KernelBank(torch.randn(3, 1, 5, 5))
    assert (bank.positive >= 0).all() and (bank.negative >= 0).all()
    torch.testing.assert_close(bank.positive - bank.negative, bank.weights)
