"""Physical geometry of the 4f system: which spatial frequency each Fourier-plane pixel passes and how
big an output-plane cell is.

Lens 1 (focal length f1) maps spatial frequency ν of the input onto the Fourier plane at u = λ·f1·ν, where
the SLM (M pixels of pitch p) sits. The discrete Fourier transform over the SLM therefore links it to an
input grid of pitch ``λ·f1 / (M·p)``; lens 2 maps the Fourier plane onto the camera with output cells of
``λ·f2 / (M·p)``. lab4f samples the input display, the PSF and the output plane on these grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FourfGeometry:
    """Lenses, SLM and aperture of the 4f system (defaults: a 512² 8 µm LCoS SLM, HeNe, f1 = 100 mm and a demagnifying
    f2 = 36.3 mm, so that one output cell (5.61 µm) covers 1.02 pixels of a 5.5 µm camera)."""

    slm_shape: tuple[int, int] = (512, 512)
    slm_pitch_um: float = 8.0
    wavelength_nm: float = 633.0
    focal_length_1_mm: float = 100.0
    focal_length_2_mm: float = 36.3
    # radius of a Fourier-plane iris as a fraction of the SLM half-width; None = the SLM's own square edge
    aperture_radius: float | None = None

    @property
    def input_pitch_um(self) -> float:
        """Input-plane sampling matched to the SLM's DFT grid."""
        return (
            self.wavelength_nm
            * 1e-3
            * self.focal_length_1_mm
            * 1e3
            / (self.slm_shape[1] * self.slm_pitch_um)
        )

    @property
    def output_pitch_um(self) -> float:
        """Size of one output-plane cell (one PSF grid cell) at the camera."""
        return (
            self.wavelength_nm
            * 1e-3
            * self.focal_length_2_mm
            * 1e3
            / (self.slm_shape[1] * self.slm_pitch_um)
        )

    @property
    def magnification(self) -> float:
        return self.focal_length_2_mm / self.focal_length_1_mm

    def frequencies_per_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Spatial frequency (cycles/mm, input side) passed by each SLM row and column (centre = DC)."""
        ny, nx = self.slm_shape
        scale = 1.0 / (
            self.wavelength_nm * 1e-6 * self.focal_length_1_mm
        )  # cycles/mm per mm in Fourier plane
        fy = (np.arange(ny) - ny // 2) * self.slm_pitch_um * 1e-3 * scale
        fx = (np.arange(nx) - nx // 2) * self.slm_pitch_um * 1e-3 * scale
        return fy, fx

    def aperture(self) -> np.ndarray:
        """Binary Fourier-plane iris (1 inside): the finite aperture cuts the highest frequencies."""
        ny, nx = self.slm_shape
        if self.aperture_radius is None:
            return np.ones((ny, nx), dtype=np.float32)
        y = (np.arange(ny) - ny // 2) / (ny / 2)
        x = (np.arange(nx) - nx // 2) / (nx / 2)
        return (y[:, None] ** 2 + x[None, :] ** 2 <= self.aperture_radius**2 + 1e-12).astype(
            np.float32
        )
