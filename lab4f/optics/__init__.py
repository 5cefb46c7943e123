"""The optics of the 4f front end: geometry, forward model, tile layout and kernel compilation.

Names are imported on first use (PEP 562), so importing ``lab4f.optics.geometry`` — e.g. for a bench config —
does not pull in torch and the compiler.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "compile_bank": "compile",
    "amplitude_psf": "forward",
    "fourf_output": "forward",
    "intensity_psf": "forward",
    "transmittance_for_psf": "forward",
    "FourfGeometry": "geometry",
    "Tile": "layout",
    "TileLayout": "layout",
    "extract_tiles": "layout",
    "plan_layout": "layout",
    "target_psf": "layout",
    "OpticalProgram": "program",
    "ProgramFrame": "program",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
