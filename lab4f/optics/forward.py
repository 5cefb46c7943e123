"""The 4f forward model in ``torch.fft``: batched, differentiable.

Conventions (shared with slmsuite's holography): the far field of a Fourier-plane transmittance T is
``fftshift(fft2(fftshift(T), norm="forward"))`` on the SLM's own grid (so the PSF sums to the
fraction of light the pupil transmits), optical axis at index (M//2, M//2).
The amplitude PSF h is that far field, the intensity PSF is |h|². An input centred on the axis produces

* incoherent mode: I_out = I_in ⊛ |h|²  (intensity in, intensity out, linear in I_in),
* coherent mode:   I_out = |a_in ⊛ h|²  (amplitude in, square-law detection),

where ⊛ is a true convolution on the output grid. (A real 4f system also inverts the image; that 180°
rotation is part of the camera registration that calibration measures.)
"""

from __future__ import annotations

import torch

from lab4f.errors import ConfigError

MODES = ("incoherent", "coherent")


def amplitude_psf(transmittance: torch.Tensor) -> torch.Tensor:
    """Complex amplitude PSF of a Fourier-plane transmittance (..., M, M)."""
    shifted = torch.fft.fftshift(transmittance, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(shifted, norm="forward"), dim=(-2, -1))


def intensity_psf(transmittance: torch.Tensor) -> torch.Tensor:
    h = amplitude_psf(transmittance)
    return h.real**2 + h.imag**2


def transmittance_for_psf(amplitude: torch.Tensor) -> torch.Tensor:
    """The (complex, ideal-modulator) transmittance whose amplitude PSF is exactly ``amplitude``."""
    ff = torch.fft.ifftshift(amplitude.to(torch.complex128), dim=(-2, -1))
    return torch.fft.ifftshift(torch.fft.ifft2(ff, norm="forward"), dim=(-2, -1))


def place_on_grid(
    image: torch.Tensor, shape: tuple[int, int], centre: tuple[int, int] | None = None
) -> torch.Tensor:
    """Place (..., H, W) images on an output grid so that pixel (H//2, W//2) sits at ``centre`` (default axis)."""
    h, w = image.shape[-2:]
    gy, gx = shape
    cy, cx = centre if centre is not None else (gy // 2, gx // 2)
    top, left = cy - h // 2, cx - w // 2
    if top < 0 or left < 0 or top + h > gy or left + w > gx:
        raise ConfigError(
            f"an input of {h}×{w} centred at {centre} does not fit the {gy}×{gx} output grid"
        )
    out = image.new_zeros(*image.shape[:-2], gy, gx)
    out[..., top : top + h, left : left + w] = image
    return out


def _conv_same_grid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """True convolution of two centred fields on one M×M grid (circular; callers keep supports apart)."""
    fa = torch.fft.fft2(torch.fft.ifftshift(a, dim=(-2, -1)))
    fb = torch.fft.fft2(torch.fft.ifftshift(b, dim=(-2, -1)))
    return torch.fft.fftshift(torch.fft.ifft2(fa * fb), dim=(-2, -1))


def fourf_output(
    inputs: torch.Tensor,
    transmittance: torch.Tensor,
    mode: str = "incoherent",
    centre: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Camera-plane intensity (B, M, M) for inputs (B, H, W) through a Fourier-plane transmittance (M, M).

    ``inputs`` are intensities in incoherent mode and (real) amplitudes in coherent mode.
    """
    if mode not in MODES:
        raise ConfigError(f"optical mode {mode!r} is unknown; choose one of {', '.join(MODES)}")
    shape = tuple(transmittance.shape[-2:])
    field_in = place_on_grid(inputs, shape, centre)  # type: ignore[arg-type]
    if mode == "incoherent":
        psf = intensity_psf(transmittance)
        return _conv_same_grid(field_in.to(psf.dtype), psf).real
    h = amplitude_psf(transmittance)
    out = _conv_same_grid(field_in.to(h.dtype), h)
    return out.real**2 + out.imag**2
