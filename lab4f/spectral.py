"""Spectral convolution and the kernel bank that the 4f system realises.

**The convention** (one for all of lab4f: :class:`KernelBank`, :func:`fft_conv2d`, :mod:`lab4f.detection`, the
optics' tile layout and extraction, the calibration's digital reference): a kernel bank ``w`` (C_out, C_in, K, K)
computes exactly ``torch.nn.functional.conv2d(x, w, padding="same")``, for any K ≥ 1, odd or even:

* **cross-correlation**, no kernel flip: ``y[o, i, j] = Σ_c Σ_u Σ_v w[o, c, u, v] · x[c, i + u − P, j + v − P]``;
* **"same" placement** ``P = (K − 1) // 2``: PyTorch pads (K − 1) // 2 zeros before and K // 2 after (for even K
  one more after than before), so map pixel (i, j) is the full (N + K − 1) correlation's pixel
  (i + K // 2, j + K // 2) — see :func:`same_padding` and :func:`same_crop`.

A kernel trained with ``nn.Conv2d(1, C, K, padding="same")`` (or ``padding=K // 2`` for odd K) therefore runs on
the bench unchanged; one trained with ``padding=0`` ("valid") gives the same maps cropped by P before and K − 1 − P
after. The optics realise the correlation as a convolution with the flipped kernel (a PSF tile holds the kernel
rotated by 180°); the bench's maps equal this reference to float rounding with an ideal modulator.

A stack of linear cross-correlations collapses exactly into one: its kernel is the *true* (full) convolution of
the layer kernels summed over inner channels, i.e. per frequency ``F[o, i] = Σ W3[o, m] · W2[m, n] · W1[n, i]``.
Zero padding to ``N + K − 1`` makes the FFT product a linear, not circular, convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def same_padding(kernel_size: int) -> tuple[int, int]:
    """Zeros (before, after) along each axis that make a K-tap correlation "same": ``((K − 1) // 2, K // 2)``,
    exactly what ``F.conv2d(..., padding="same")`` pads."""
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"a kernel size must be ≥ 1, got {kernel_size}")
    return (k - 1) // 2, k // 2


def same_crop(
    full: torch.Tensor, size: tuple[int, int], kernel_size: tuple[int, int] | int
) -> torch.Tensor:
    """The "same" (H, W) maps inside full (H + K − 1, W + K − 1) correlations: rows/cols from K // 2 on."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    h, w = size
    top, left = kh // 2, kw // 2
    return full[..., top : top + h, left : left + w]


def correlate_same(x: torch.Tensor, weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, padding="same")`` for any kernel size, by explicit padding (no even-K warning)."""
    (th, bh), (lw, rw) = same_padding(weight.shape[-2]), same_padding(weight.shape[-1])
    return F.conv2d(F.pad(x, (lw, rw, th, bh)), weight, groups=groups)


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, mode: str = "same") -> torch.Tensor:
    """Cross-correlate ``x`` (B, C_in, H, W) with ``weight`` (C_out, C_in, K, K) through the FFT.

    ``mode="full"`` returns the (H+K−1)×(W+K−1) linear correlation; ``"same"`` crops it to H×W as
    ``F.conv2d(x, weight, padding="same")`` places it, for odd and even K (:func:`same_crop`).
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
        return same_crop(y, (h, w), (kh, kw))
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
            raise ValueError(
                f"KernelBank needs (C_out, C_in, K, K) weights, got {tuple(self.weights.shape)}"
            )

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
        """Signed digital reference output of the bank on ``x``: ``F.conv2d(x, w, padding="same")`` (the module's
        convention), or with ``mode="full"`` the whole (N + K − 1)² correlation."""
        w = self.weights.to(x.dtype)
        if mode == "full":
            return F.conv2d(x, w, padding=self.kernel_size - 1)
        if mode == "same":
            return correlate_same(x, w)
        raise ValueError(f"mode must be 'full' or 'same', got {mode!r}")

    def to_numpy(self) -> np.ndarray:
        return self.weights.numpy().copy()

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> KernelBank:
        return cls(torch.from_numpy(np.asarray(array, dtype=np.float64)))
