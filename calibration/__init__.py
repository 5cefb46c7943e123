"""Calibration of the 4f bench: each step a function (progress callback, cancellable, quality figures),
a runner that saves one record at the end, and the schema-versioned calibration record.

Steps in bench order: ``camera`` (exposure, dark, flat), ``display`` (the input display's intensity response →
the linearisation the bench applies to every image), ``fourier`` (slmsuite Fourier calibration,
validated), ``phase`` (slmsuite pixel calibration → SLM phase LUT), optional ``wavefront`` (slmsuite superpixel
aberration calibration → SLM phase correction, then a Fourier refit), ``registration`` (display fiducials →
plane-to-camera affine), ``tiles`` (per-tile shifts for a program), ``gains`` (per-channel gain/offset, R²).
The steps are described once, in the registry :mod:`lab4f.calibration.steps`.
"""

from importlib import import_module
from typing import Any

# Names are imported on first use (PEP 562): `lab4f --help` should not load slmsuite's calibrations.
_EXPORTS = {
    "Progress": "base",
    "StepControl": "base",
    "StepResult": "base",
    "DarkCorrectedCamera": "camera",
    "camera_step": "camera",
    "check_frame": "camera",
    "corrected": "camera",
    "grab": "camera",
    "DisplayLinearizer": "display",
    "display_step": "display",
    "fourier_step": "fourier",
    "calibration_images": "gains",
    "channel_gain_step": "gains",
    "fit_channels": "gains",
    "tile_features": "gains",
    "RECORD_SCHEMA": "record",
    "CalibrationRecord": "record",
    "latest_record": "record",
    "list_records": "record",
    "new_record_path": "record",
    "display_registration_step": "registration",
    "tile_registration_step": "registration",
    "BENCH_ORDER": "runner",
    "OPTIONAL_STEPS": "runner",
    "STEP_ORDER": "runner",
    "resolve_steps": "runner",
    "run_calibration": "runner",
    "STEPS": "steps",
    "Step": "steps",
    "StepSchema": "steps",
    "register": "steps",
    "cameraslm": "slm",
    "phase_response_step": "slm",
    "wavefront_step": "wavefront",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
