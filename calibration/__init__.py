"""Calibration of the 4f bench: each step a function (progress callback, cancellable, quality figures),
a runner that saves one record at the end, and the schema-versioned calibration record.

Steps in bench order: ``camera`` (exposure, dark, flat), ``fourier`` (slmsuite Fourier calibration,
validated), ``phase`` (slmsuite pixel calibration → SLM phase LUT), optional ``wavefront`` (slmsuite superpixel
aberration calibration → SLM phase correction, then a Fourier refit), ``registration`` (display fiducials →
plane-to-camera affine), ``tiles`` (per-tile shifts for a program), ``gains`` (per-channel gain/offset, R²).
"""

from lab4f.calibration.base import Progress, StepControl, StepResult
from lab4f.calibration.camera import DarkCorrectedCamera, camera_step, check_frame, corrected, grab
from lab4f.calibration.fourier import fourier_step
from lab4f.calibration.gains import calibration_images, channel_gain_step, fit_channels, tile_features
from lab4f.calibration.record import (
    RECORD_SCHEMA,
    CalibrationRecord,
    latest_record,
    list_records,
    new_record_path,
)
from lab4f.calibration.registration import display_registration_step, tile_registration_step
from lab4f.calibration.runner import BENCH_ORDER, OPTIONAL_STEPS, STEP_ORDER, resolve_steps, run_calibration
from lab4f.calibration.slm import cameraslm, phase_response_step
from lab4f.calibration.wavefront import wavefront_step

__all__ = [
    "BENCH_ORDER", "OPTIONAL_STEPS", "RECORD_SCHEMA", "STEP_ORDER", "CalibrationRecord", "DarkCorrectedCamera",
    "Progress", "StepControl", "StepResult", "calibration_images", "camera_step", "cameraslm",
    "channel_gain_step", "check_frame", "corrected", "display_registration_step", "fit_channels",
    "fourier_step", "grab", "latest_record", "list_records", "new_record_path", "phase_response_step",
    "resolve_steps", "run_calibration", "tile_features", "tile_registration_step", "wavefront_step",
]
