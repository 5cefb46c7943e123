"""Detection models: what a camera behind the 4f front end reads out (DESIGN.md §2).

* ``ideal``      – the signed linear output (the paper's idealisation; no camera can measure it).
* ``incoherent`` – input shown as intensity; the kernel is split into k⁺ = max(k, 0) and k⁻ = max(−k, 0),
  each an intensity PSF; the camera sees I ⊛ k⁺ and I ⊛ k⁻ and the back end subtracts them.
  Without noise this equals ``ideal`` exactly.
* ``coherent``   – laser and amplitude input: the camera measures |a ⊛ h|² (square-law detection).

The student trains through the chosen model, so what is trained is what the optics compute.
"""

from __future__ import annotations

import torch

from lab4f.errors import ConfigError
from lab4f.spectral import correlate_same

DETECTION_MODELS = ("ideal", "incoherent", "coherent")


def _corr_same(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Cross-correlation with PyTorch's "same" placement for any K (:mod:`lab4f.spectral`'s convention)."""
    return correlate_same(x, w)


def detect(
    x: torch.Tensor,
    kernels: torch.Tensor,
    model: str = "ideal",
    noise_std: float = 0.0,
) -> torch.Tensor:
    """Front-end output for input ``x`` (B, C_in, H, W) and kernel bank (C_out, C_in, K, K): (B, C_out, H, W) for
    odd and even K, placed as ``F.conv2d(x, kernels, padding="same")`` (see :mod:`lab4f.spectral`).

    ``noise_std`` adds Gaussian read-out noise to each *measured* intensity (relative to its maximum),
    i.e. to both tiles in incoherent mode — useful for hardware-aware training.
    """
    if model not in DETECTION_MODELS:
        raise ConfigError(
            f"detection model {model!r} is unknown; choose one of {', '.join(DETECTION_MODELS)}"
        )

    def measure(y: torch.Tensor) -> torch.Tensor:
        if noise_std > 0 and torch.is_grad_enabled():
            scale = y.detach().abs().amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
            y = y + noise_std * scale * torch.randn_like(y)
        return y

    if model == "ideal":
        return measure(_corr_same(x, kernels))
    if model == "incoherent":
        pos = measure(_corr_same(x, kernels.clamp(min=0)))
        neg = measure(_corr_same(x, (-kernels).clamp(min=0)))
        return pos - neg
    field = _corr_same(
        x, kernels
    )  # real amplitude input, real (signed: 0/π phase) amplitude kernel
    return measure(field * field)
