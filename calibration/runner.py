"""Run calibration steps in bench order and save ONE new record at the end.

Nothing is written until every requested step succeeded, so a refused, cancelled or killed run leaves the
previous record as the latest. A partial run (one step) starts from the latest record's other steps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab4f.calibration.base import Progress, StepResult
from lab4f.calibration.camera import camera_step
from lab4f.calibration.fourier import fourier_step
from lab4f.calibration.gains import channel_gain_step
from lab4f.calibration.record import CalibrationRecord, file_sha256, latest_record, new_record_path
from lab4f.calibration.registration import display_registration_step, tile_registration_step
from lab4f.calibration.slm import phase_response_step
from lab4f.errors import CalibrationError

log = logging.getLogger(__name__)

#: Bench order. The Fourier calibration precedes the phase response: slmsuite's pixel calibration needs it.
#: Wavefront (aberration) calibration is not part of this release (see the module docs of calibration).
STEP_ORDER = ("camera", "fourier", "phase", "registration", "tiles", "gains")
NEEDS_PROGRAM = ("tiles", "gains")


def _require(record: CalibrationRecord, what: str, value: Any, step: str) -> Any:
    if value is None:
        raise CalibrationError(f"step {step!r} needs the {what} from an earlier step; run `lab4f calibrate {what}` "
                               "or `lab4f calibrate all` first")
    return value


def _run_step(name: str, bench: Any, rec: CalibrationRecord, program: Any, progress: Progress | None,
              cancel: threading.Event | None) -> StepResult:
    kw = {"progress": progress, "cancel": cancel}
    if name == "camera":
        return camera_step(bench, program=program, **kw)
    if name == "fourier":
        return fourier_step(bench, dark=rec.dark, **kw)
    if name == "phase":
        return phase_response_step(bench, _require(rec, "fourier", rec.fourier, name), dark=rec.dark, **kw)
    if name == "registration":
        return display_registration_step(bench, dark=rec.dark, **kw)
    reg = _require(rec, "registration", rec.registration, name)
    if name == "tiles":
        return tile_registration_step(bench, program, reg, dark=rec.dark, **kw)
    if name == "gains":
        shifts = [rec.tile_shifts(i) for i in range(len(program.frames))]
        return channel_gain_step(bench, program, reg, None if any(s is None for s in shifts) else shifts,
                                 dark=rec.dark, flat=rec.flat, **kw)
    raise CalibrationError(f"unknown calibration step {name!r}; choose one of {', '.join(STEP_ORDER)} or 'all'")


def resolve_steps(steps: str | list[str], program: Any) -> list[str]:
    """'all' → every step (the program-dependent ones only with a program); else the named steps in bench order."""
    if steps == "all":
        return [s for s in STEP_ORDER if program is not None or s not in NEEDS_PROGRAM]
    names = [steps] if isinstance(steps, str) else list(steps)
    unknown = [s for s in names if s not in STEP_ORDER]
    if unknown:
        raise CalibrationError(f"unknown calibration step(s) {unknown}; choose from {', '.join(STEP_ORDER)} or all")
    if program is None and any(s in NEEDS_PROGRAM for s in names):
        raise CalibrationError("steps 'tiles' and 'gains' need a compiled optical program: pass --program FILE "
                               "(make one with `lab4f compile`)")
    return [s for s in STEP_ORDER if s in names]


def run_calibration(
    bench: Any,
    steps: str | list[str] = "all",
    program: Any | None = None,
    program_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    base: CalibrationRecord | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    save: bool = True,
    on_step: Callable[[StepResult], None] | None = None,
) -> CalibrationRecord:
    """Run ``steps`` on ``bench`` and save a new record in ``out_dir`` (default: the bench config's folder).

    A partial run starts from ``base`` (default: the latest record in ``out_dir``) for the steps not run.
    """
    names = resolve_steps(steps, program)
    folder = Path(out_dir if out_dir is not None else bench.config.calibration_dir)
    if base is None and steps != "all":
        base = latest_record(folder, bench)
    rec = CalibrationRecord(bench_info=bench.info())
    if program_path is not None:
        rec.program_path, rec.program_sha256 = str(program_path), file_sha256(program_path)
    if base is not None:
        rec = base.merged_with(rec)
        base.apply(bench)  # the earlier steps' exposure and phase LUT are the state later steps assume
    for i, name in enumerate(names):
        def step_progress(fraction: float, message: str, i: int = i) -> None:
            if progress is not None:
                progress((i + fraction) / len(names), message)

        result = _run_step(name, bench, rec, program, step_progress, cancel)
        rec.steps[name] = result
        log.info("calibration %s: %s", name, result.message)
        if on_step is not None:
            on_step(result)
    rec.bench_info = bench.info()  # after the steps: exposure and LUT as calibrated
    if save:
        rec.save(new_record_path(folder))
    return rec
