"""Spectral convolution and the kernel bank that the 4f system realises.

Conventions: like ``F.conv2d`` every "convolution" here is a cross-correlation. A stack of linear
cross-correlations collapses exactly into one: its kernel is the *true* (full) convolution of the layer
kernels summed over inner channels, i.e. per frequency ``F[o, i] = Σ W3[o, m] · W2[m, n] · W1[n, i]``.
Zero padding to ``N + K − 1`` makes the FFT product a linear, not circular, convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _crop_center(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    top = (y.shape[-2] - h) // 2
    left = (y.shape[-1] - w) // 2
    return y[..., top : top + h, left : left + w]


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, mode: str = "same") -> torch.Tensor:
    """Cross-correlate ``x`` (B, C_in, H, W) with ``weight`` (C_out, C_in, K, K) through the FFT.

    ``mode="full"`` returns the (H+K−1)×(W+K−1) linear correlation; ``"same"`` crops its centre to H×W,
    which equals ``F.conv2d(x, weight, padding=K // 2)`` for odd K.
    """
    h, w = x.shape[-2:]
    kh, kw = weight.shape[-2:]
    size = (h + kh - 1, w + kw - 1)
    # correlation = convolution with the flipped kernel
    xs = torch.fft.rfft2(x, s=size)
    ks = torch.fft.rfft2(torch.flip(weight, dims=(-2, -1)), s=size)
    ys = torch.einsum("bihw,oihw->bohw", xs, ks)
    y = torch.fft.irfft2(ys, s=size)
    if mode == "full":
        return y
    if mode == "same":
        return _crop_center(y, (h, w))
    raise ValueError(f"mode must be 'full' or 'same', got {mode!r}")


def collapse_kernels(layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Collapse bias-free linear conv layers (first layer first) into one (C_out, C_in, K_eff, K_eff) kernel.

    Differentiable; computed in the Fourier domain at the exact size ``K_eff = Σ K_l − (L − 1)``.
    """
    k_eff = sum(w.shape[-1] for w in layers) - (len(layers) - 1)
    size = (k_eff, k_eff)
    spec = torch.fft.rfft2(layers[0], s=size)  # (C1, C_in, ...)
    for w in layers[1:]:
        spec = torch.einsum("omhw,mihw->oihw", torch.fft.rfft2(w, s=size), spec)
    return torch.fft.irfft2(spec, s=size)


def stack_full(x: torch.Tensor, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layer-by-layer full (linear) correlation, the reference the collapse must equal."""
    for w in layers:
        k = w.shape[-1]
        x = F.conv2d(x, w, padding=k - 1)
    return x


@dataclass
class KernelBank:
    """The student's whole optical front end as one bank of real kernels (C_out, C_in, K, K).

    The 4f system realises it: each kernel is split into nonnegative parts k⁺ and k⁻ (intensity PSFs),
    whose correlations with the input are subtracted electronically.
    """

    weights: torch.Tensor

    def __post_init__(self) -> None:
        self.weights = self.weights.detach().to(torch.float64).cpu()
        if self.weights.ndim != 4 or self.weights.shape[-1] != self.weights.shape[-2]:
            raise ValueError(f"KernelBank needs (C_out, C_in, K, K) weights, got {tuple(self.weights.shape)}")

    @property
    def channels_out(self) -> int:
        return int(self.weights.shape[0])

    @property
    def channels_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def kernel_size(self) -> int:
        return int(self.weights.shape[-1])

    @property
    def positive(self) -> torch.Tensor:
        return self.weights.clamp(min=0)

    @property
    def negative(self) -> torch.Tensor:
        return (-self.weights).clamp(min=0)

    def spectra(self, size: tuple[int, int]) -> torch.Tensor:
        """Complex spectra of the (correlation) kernels zero-padded to ``size``."""
        return torch.fft.fft2(torch.flip(self.weights, dims=(-2, -1)), s=size)

    def apply(self, x: torch.Tensor, mode: str = "same") -> torch.Tensor:
        """Signed digital reference output of the bank on ``x``."""
        w = self.weights.to(x.dtype)
        k = self.kernel_size
        y = F.conv2d(x, w, padding=k - 1)
        return y if mode == "full" else _crop_center(y, x.shape[-2:])

    def to_numpy(self) -> np.ndarray:
        return self.weights.numpy().copy()

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> KernelBank:
        return cls(torch.from_numpy(np.asarray(array, dtype=np.float64)))
