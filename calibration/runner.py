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

from lab4f.calibration import steps as registry
from lab4f.calibration.base import Progress, Provenance, StepResult, now_measured
from lab4f.calibration.record import CalibrationRecord, latest_record
from lab4f.calibration.steps import StepContext, builds_on
from lab4f.calibration.wavefront import clear_correction
from lab4f.errors import CalibrationError
from lab4f.storage import file_sha256

log = logging.getLogger(__name__)


def __getattr__(attr: str) -> Any:
    """``BENCH_ORDER``, ``STEP_ORDER``, ``OPTIONAL_STEPS``, ``NEEDS_PROGRAM``, ``DEPENDS_ON_IT``: views of the step
    registry (:mod:`lab4f.calibration.steps`), computed when read."""
    return getattr(registry, attr)


def stale_steps(running: list[str], recorded: Any) -> list[str]:
    """Steps of the base record that build on a step being re-run but are not re-run themselves."""
    depends = registry.depends_on_it()
    stale = {d for n in running for d in depends.get(n, ()) if d in recorded and d not in running}
    return registry.in_order(stale)


def _run_step(
    name: str,
    bench: Any,
    rec: CalibrationRecord,
    program: Any,
    progress: Progress | None,
    cancel: threading.Event | None,
    options: dict[str, Any] | None = None,
) -> StepResult:
    return registry.step(name).run(
        StepContext(bench, rec, program, progress, cancel, dict(options or {}))
    )


def provenance(name: str, rec: CalibrationRecord, for_program: bool) -> Provenance:
    """``name`` measured now, through the versions of the steps it builds on that ``rec`` holds now."""
    upstream: dict[str, str | None] = {}
    for up in builds_on(name):
        dep = rec.steps.get(up)
        upstream[up] = (
            None if dep is None else "" if dep.provenance is None else dep.provenance.measured
        )
    return Provenance(now_measured(), upstream, rec.program_sha256 if for_program else None)


def resolve_steps(steps: str | list[str], program: Any, wavefront: bool = False) -> list[str]:
    """'all' → every step (program-dependent ones only with a program, optional ones (wavefront) only if asked);
    else the named steps in bench order."""
    if steps == "all":
        return registry.all_steps(optional=wavefront, program=program is not None)
    names = [steps] if isinstance(steps, str) else list(steps)
    unknown = [s for s in names if s not in registry.STEPS]
    if unknown:
        raise CalibrationError(
            f"unknown calibration step(s) {unknown}; choose from "
            f"{', '.join(registry.names())} or all"
        )
    need = [s for s in names if registry.step(s).needs_program]
    if program is None and need:
        quoted = [repr(s) for s in registry.needs_program()]
        listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        raise CalibrationError(
            f"steps {listed} need a compiled optical program: pass --program FILE (make one with "
            "`lab4f compile`)"
        )
    return registry.in_order(names)


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
        rec.program_path, rec.program_sha256 = (
            str(Path(program_path).resolve()),
            file_sha256(program_path),
        )
    for name in list(
        names
    ):  # steps whose re-run re-runs what was measured through them (display → gains)
        step = registry.step(name)
        if not step.rerun_invalidated or base is None:
            continue
        again = [d for d in step.invalidates if d in base.steps and d not in names]
        if again and program is None and any(registry.step(d).needs_program for d in again):
            # the channel filters were fitted on images shown through the previous display response
            raise CalibrationError(
                f"re-measuring the {name} makes this record's {', '.join(again)} stale (measured through the previous "
                f"{name} result); run `lab4f calibrate {name} --program P` (the {', '.join(again)} step then runs "
                "again) or `lab4f calibrate all --program P`; the previous record is unchanged"
            )
        names = registry.in_order([*names, *again])
    if base is not None:
        stale = stale_steps(names, base.steps)
        if stale:
            depends = registry.depends_on_it()
            rerun = ", ".join(n for n in names if n in depends)
            log.warning(
                "re-running %s leaves this record's %s as measured before (they build on it); re-run them "
                "too, e.g. `lab4f calibrate all --program P`",
                rerun,
                ", ".join(stale),
            )
        # steps the base record itself holds stale (from its steps' provenance, also for a record loaded from disk)
        # and that this run does not re-measure
        already = {k: v for k, v in base.stale_steps().items() if k not in names and k not in stale}
        if already:
            log.warning(
                "the record this calibration builds on already has stale steps, left as they are: %s; "
                "re-run them, e.g. `lab4f calibrate all --program P`",
                "; ".join(
                    f"{k} (measured before {', '.join(v)} was re-run)" for k, v in already.items()
                ),
            )
        rec = base.merged_with(rec)
        base.apply(
            bench
        )  # the earlier steps' exposure, phase LUT and correction are what later steps assume
    else:
        clear_correction(
            bench.slm
        )  # a fresh record starts from an uncorrected SLM, as it will be applied
        bench.display_correction = None
    names = registry.with_refits(
        names
    )  # e.g. a Fourier refit after the wavefront: its correction moved the spots
    try:
        for i, name in enumerate(names):

            def step_progress(fraction: float, message: str, i: int = i) -> None:
                if progress is not None:
                    progress((i + fraction) / len(names), message)

            result = _run_step(
                name, bench, rec, program, step_progress, cancel, (step_options or {}).get(name)
            )
            result.provenance = provenance(
                name, rec, program_path is not None and registry.step(name).needs_program
            )
            rec.steps[name] = result
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
