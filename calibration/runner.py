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

from lab4f.calibration.base import Progress, Provenance, StepResult, now_measured
from lab4f.calibration.camera import camera_step
from lab4f.calibration.display import DisplayLinearizer, display_step
from lab4f.calibration.fourier import fourier_step
from lab4f.calibration.gains import channel_gain_step
from lab4f.calibration.record import CalibrationRecord, latest_record
from lab4f.calibration.registration import display_registration_step, tile_registration_step
from lab4f.calibration.slm import phase_response_step
from lab4f.calibration.steps import DEPENDS_ON_IT, builds_on
from lab4f.calibration.timing import timing_step
from lab4f.calibration.wavefront import clear_correction, wavefront_step
from lab4f.errors import CalibrationError
from lab4f.storage import file_sha256

log = logging.getLogger(__name__)


def stale_steps(running: list[str], recorded: Any) -> list[str]:
    """Steps of the base record that build on a step being re-run but are not re-run themselves."""
    stale = {d for n in running for d in DEPENDS_ON_IT.get(n, ()) if d in recorded and d not in running}
    return [n for n in BENCH_ORDER if n in stale]


#: The steps ``all`` runs, in bench order. The display is linearised before anything shows images through it;
#: the Fourier calibration precedes the phase response: slmsuite's pixel calibration needs it.
STEP_ORDER = ("camera", "timing", "display", "fourier", "phase", "registration", "tiles", "gains")
#: Every step in bench order, with the optional wavefront step after the phase LUT; a Fourier refit follows it
#: (its correction moves spot centres; see :mod:`lab4f.calibration.wavefront`). ``all`` runs it only if asked.
BENCH_ORDER = ("camera", "timing", "display", "fourier", "phase", "wavefront", "registration", "tiles", "gains")
OPTIONAL_STEPS = ("wavefront",)
NEEDS_PROGRAM = ("tiles", "gains")


def _require(record: CalibrationRecord, what: str, value: Any, step: str) -> Any:
    if value is None:
        raise CalibrationError(f"step {step!r} needs the {what} from an earlier step; run `lab4f calibrate {what}` "
                               "or `lab4f calibrate all` first")
    return value


def _run_step(name: str, bench: Any, rec: CalibrationRecord, program: Any, progress: Progress | None,
              cancel: threading.Event | None, options: dict[str, Any] | None = None) -> StepResult:
    kw = {"progress": progress, "cancel": cancel, **(options or {})}
    if name == "camera":
        return camera_step(bench, program=program, **kw)
    if name == "timing":  # right after the camera: every later step's frames are paired by what it measures
        result = timing_step(bench, **kw)
        bench.measured_timing = dict(result.values)
        return result
    if name == "display":
        return display_step(bench, dark=rec.dark, **kw)
    if name == "fourier":
        return fourier_step(bench, dark=rec.dark, **kw)
    if name == "phase":
        return phase_response_step(bench, _require(rec, "fourier", rec.fourier, name), dark=rec.dark, **kw)
    if name == "wavefront":
        return wavefront_step(bench, _require(rec, "fourier", rec.fourier, name), dark=rec.dark, **kw)
    if name == "registration":
        return display_registration_step(bench, dark=rec.dark, fourier=rec.fourier, **kw)
    reg = _require(rec, "registration", rec.registration, name)
    if name == "tiles":
        return tile_registration_step(bench, program, reg, dark=rec.dark, **kw)
    if name == "gains":
        shifts = [rec.tile_shifts(i) for i in range(len(program.frames))]
        return channel_gain_step(bench, program, reg, None if any(s is None for s in shifts) else shifts,
                                 dark=rec.dark, flat=rec.flat, **kw)
    raise CalibrationError(f"unknown calibration step {name!r}; choose one of {', '.join(BENCH_ORDER)} or 'all'")


def provenance(name: str, rec: CalibrationRecord, for_program: bool) -> Provenance:
    """``name`` measured now, through the versions of the steps it builds on that ``rec`` holds now."""
    upstream: dict[str, str | None] = {}
    for up in builds_on(name):
        dep = rec.steps.get(up)
        upstream[up] = None if dep is None else "" if dep.provenance is None else dep.provenance.measured
    return Provenance(now_measured(), upstream, rec.program_sha256 if for_program else None)


def resolve_steps(steps: str | list[str], program: Any, wavefront: bool = False) -> list[str]:
    """'all' → every step (program-dependent ones only with a program, wavefront only if asked); else the named
    steps in bench order."""
    if steps == "all":
        return [s for s in BENCH_ORDER if (program is not None or s not in NEEDS_PROGRAM)
                and (wavefront or s not in OPTIONAL_STEPS)]
    names = [steps] if isinstance(steps, str) else list(steps)
    unknown = [s for s in names if s not in BENCH_ORDER]
    if unknown:
        raise CalibrationError(f"unknown calibration step(s) {unknown}; choose from {', '.join(BENCH_ORDER)} or all")
    if program is None and any(s in NEEDS_PROGRAM for s in names):
        raise CalibrationError("steps 'tiles' and 'gains' need a compiled optical program: pass --program FILE "
                               "(make one with `lab4f compile`)")
    return [s for s in BENCH_ORDER if s in names]


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
    wavefront: bool = False,
    step_options: dict[str, dict[str, Any]] | None = None,
) -> CalibrationRecord:
    """Run ``steps`` on ``bench`` and save a new record in ``out_dir`` (default: the bench config's folder).

    A partial run starts from ``base`` (default: the latest record in ``out_dir``) for the steps not run.
    ``wavefront``: ``all`` includes the (slow, optional) wavefront step. After a wavefront step the Fourier
    step runs again, as the correction makes the earlier Fourier calibration stale. ``step_options``: keyword
    arguments per step name (e.g. ``{"wavefront": {"superpixel_size": 128}}``).
    """
    names = resolve_steps(steps, program, wavefront)
    previous_display_correction = getattr(bench, "display_correction", None)
    folder = Path(out_dir if out_dir is not None else bench.config.calibration_dir)
    if base is None and steps != "all":
        base = latest_record(folder, bench)
    rec = CalibrationRecord(bench_info=bench.info())
    if program_path is not None:
        rec.program_path, rec.program_sha256 = str(Path(program_path).resolve()), file_sha256(program_path)
    if "display" in names and "gains" not in names and base is not None and "gains" in base.steps:
        # the channel filters were fitted on images shown through the previous display response
        if program is None:
            raise CalibrationError(
                "re-measuring the display makes this record's channel filters stale (they were fitted through the "
                "previous display response); run `lab4f calibrate display --program P` (the gains step then runs "
                "again) or `lab4f calibrate all --program P`; the previous record is unchanged")
        names.append("gains")
    if base is not None:
        stale = stale_steps(names, base.steps)
        if stale:
            rerun = ", ".join(n for n in names if n in DEPENDS_ON_IT)
            log.warning("re-running %s leaves this record's %s as measured before (they build on it); re-run them "
                        "too, e.g. `lab4f calibrate all --program P`", rerun, ", ".join(stale))
        # steps the base record itself holds stale (from its steps' provenance, also for a record loaded from disk)
        # and that this run does not re-measure
        already = {k: v for k, v in base.stale_steps().items() if k not in names and k not in stale}
        if already:
            log.warning("the record this calibration builds on already has stale steps, left as they are: %s; "
                        "re-run them, e.g. `lab4f calibrate all --program P`",
                        "; ".join(f"{k} (measured before {', '.join(v)} was re-run)" for k, v in already.items()))
        rec = base.merged_with(rec)
        base.apply(bench)  # the earlier steps' exposure, phase LUT and correction are what later steps assume
    else:
        clear_correction(bench.slm)  # a fresh record starts from an uncorrected SLM, as it will be applied
        bench.display_correction = None
    if "wavefront" in names:
        names.insert(names.index("wavefront") + 1, "fourier")  # refit: the correction moved the spots
    try:
        for i, name in enumerate(names):
            def step_progress(fraction: float, message: str, i: int = i) -> None:
                if progress is not None:
                    progress((i + fraction) / len(names), message)

            result = _run_step(name, bench, rec, program, step_progress, cancel, (step_options or {}).get(name))
            result.provenance = provenance(name, rec, program_path is not None and name in NEEDS_PROGRAM)
            rec.steps[name] = result
            if name == "display":  # the later steps show their images linearised, as the pipeline will
                bench.display_correction = DisplayLinearizer.from_step(result)
            log.info("calibration %s: %s", name, result.message)
            if on_step is not None:
                on_step(result)
    except BaseException:
        # nothing is saved: the display goes back to the correction of the record still in use
        bench.display_correction = previous_display_correction
        raise
    rec.bench_info = bench.info()  # after the steps: exposure and LUT as calibrated
    if save:
        rec.save_new(folder)
    return rec
