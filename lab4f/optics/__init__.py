"""The optics of the 4f front end: geometry, forward model, tile layout and kernel compilation."""

from lab4f.optics.compile import compile_bank
from lab4f.optics.forward import amplitude_psf, fourf_output, intensity_psf, transmittance_for_psf
from lab4f.optics.geometry import FourfGeometry
from lab4f.optics.layout import Tile, TileLayout, extract_tiles, plan_layout, target_psf
from lab4f.optics.program import OpticalProgram, ProgramFrame

__all__ = [
    "FourfGeometry", "OpticalProgram", "ProgramFrame", "Tile", "TileLayout", "amplitude_psf", "compile_bank",
    "extract_tiles", "fourf_output", "intensity_psf", "plan_layout", "target_psf", "transmittance_for_psf",
]
