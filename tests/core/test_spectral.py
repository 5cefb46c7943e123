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
    layers = [
        torch.randn(8, 1, 3, 3, generator=g),
        torch.randn(16, 8, 3, 3, generator=g),
        torch.randn(12, 16, 5, 5, generator=g),
    ]
    x = torch.rand(2, 1, 20, 20, generator=g)
    bank = KernelBank(collapse_kernels(layers))
    assert bank.weights.shape == (12, 1, 9, 9)
    ref = stack_full(x.double(), [w.double() for w in layers])
    assert rel(bank.apply(x.double(), "full"), ref) <= 1e-5
    # and in float32, as the student trains: against an independent float64 reference, the direct spatial
    # composition (correlation of correlations = correlation with the true convolution of the kernels)
    collapsed32 = collapse_kernels(layers)
    assert collapsed32.dtype == torch.float32
    ref64 = direct_collapse([w.double() for w in layers])
    assert (
        rel(
            stack_full(x.double(), [w.double() for w in layers]),
            F.conv2d(x.double(), ref64, padding=ref64.shape[-1] - 1),
        )
        <= 1e-12
    )  # the reference is right
    # float32 eps is 1.2e-7; rfft/einsum/irfft stages over 9×9 grids with 8–16-channel sums accumulate a few eps
    # (measured 2.1e-7, as a direct float32 composition does: 3.0e-7) — 1e-5 leaves ~50× margin, while any real
    # defect (wrong size, a flipped kernel: 1.34, channel order) is O(1)
    assert rel(collapsed32.double(), ref64) <= 1e-5


def direct_collapse(layers: list[torch.Tensor]) -> torch.Tensor:
    """Effective kernel by direct spatial full convolution in float64 (no FFT): K[o,i] = Σ_m w2[o,m] * K1[m,i]."""
    eff = layers[0]  # (C1, C_in, k, k)
    for w in layers[1:]:  # (C_out, C_m, k, k)
        kw = w.shape[-1]
        # true (flipped) convolution of every eff[m, i] with every w[o, m], summed over m, by conv2d:
        # treat C_in as batch, C_m as channels; conv2d correlates, so flip w to convolve
        inp = eff.permute(1, 0, 2, 3)  # (C_in, C_m, k, k)
        out = F.conv2d(
            inp, torch.flip(w, dims=(-2, -1)), padding=kw - 1
        )  # (C_in, C_out, k+kw-1, ...)
        eff = out.permute(1, 0, 2, 3)
    return eff


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
