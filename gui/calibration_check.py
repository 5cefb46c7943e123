"""Is the calibration in use fit for the program on the SLM? Program-dependent steps (tiles, gains) that are missing
or were measured for another program, and steps left stale by re-running a step they build on — said in the GUI's
words, with the steps that put it right. Qt-free; the Calibration and Inference panels show it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab4f.calibration import steps as registry
from lab4f.calibration.runner import stale_steps
from lab4f.storage import file_sha256

_HASHES: dict[
    tuple[str, int, int], str
] = {}  # (path, mtime_ns, size) → sha256: a program file is hashed once


def program_hash(path: str | Path) -> str | None:
    """The file's SHA-256 (cached while the file is unchanged), or None if it cannot be read."""
    try:
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
        if key not in _HASHES:
            _HASHES[key] = file_sha256(path)
        return _HASHES[key]
    except OSError:
        return None


@dataclass
class CalibrationCheck:
    """What is wrong with a record for the uploaded program (all empty: nothing)."""

    missing: list[str] = field(default_factory=list)  # program-dependent steps the record lacks
    foreign: list[str] = field(default_factory=list)  # steps measured for another program
    stale: dict[str, list[str]] = field(
        default_factory=dict
    )  # step → the re-run steps it was measured before
    present: tuple[str, ...] = ()  # the record's steps

    @property
    def ok(self) -> bool:
        return not (self.missing or self.foreign or self.stale)

    def steps_to_run(self) -> list[str]:
        """The steps that make the record whole again, in bench order (with what they need from the record)."""
        wanted = set(self.missing) | set(self.foreign) | set(self.stale)
        for step in list(wanted):
            wanted |= {p for p in registry.prerequisites(step) if p not in self.present}
        return registry.in_order(wanted)

    def text(self) -> str:
        """The warning, one line per problem, and what to press."""
        lines = []
        if self.missing:
            lines.append(
                f"Missing for the uploaded program: {', '.join(self.missing)} (the record was calibrated "
                "without a program, or before this one was uploaded)."
            )
        if self.foreign:
            lines.append(
                f"Measured for another program: {', '.join(self.foreign)} (the program on the SLM was "
                "compiled after them)."
            )
        for step, rerun in self.stale.items():
            lines.append(f"Stale: {step} was measured before {', '.join(rerun)} was re-run.")
        if lines:
            lines.append(
                f"A run would use nominal or wrong tiles and gains (expect poor accuracy). Run the steps "
                f"{', '.join(self.steps_to_run())} (Calibration panel), or start anyway."
            )
        return "\n".join(lines)


def check_calibration(
    record: Any,
    program_path: str | Path | None,
    stale: dict[str, list[str]] | None = None,
) -> CalibrationCheck:
    """The record's problems for the program at ``program_path`` (None: no program uploaded, so nothing program-
    dependent is expected). Stale steps are those the record's own per-step provenance shows measured before a step
    they build on was re-measured (`CalibrationRecord.stale_steps`: also for a record loaded from disk), plus
    ``stale``: what the GUI saw go stale in this record (`stale_after`; records from before per-step times)."""
    if record is None:
        return CalibrationCheck()
    steps = tuple(record.steps)
    merged = {k: list(v) for k, v in (stale or {}).items() if k in steps}
    own = record.stale_steps() if hasattr(record, "stale_steps") else {}
    for k, v in own.items():
        merged.setdefault(k, [])
        merged[k] += [n for n in v if n not in merged[k]]
    check = CalibrationCheck(present=steps, stale={k: merged[k] for k in registry.in_order(merged)})
    if program_path is None:
        return check
    program_steps = registry.needs_program()
    check.missing = [s for s in program_steps if s not in steps]
    want_record = getattr(record, "program_sha256", None)
    have = program_hash(program_path)
    for s in program_steps:
        if s not in steps:
            continue
        prov = getattr(record.steps[s], "provenance", None)
        want = prov.program_sha256 if prov is not None and prov.program_sha256 else want_record
        if (
            want and have != want
        ):  # the step's own program (records before per-step provenance: the record's)
            check.foreign.append(s)
    for s in check.foreign:
        check.stale.pop(s, None)  # re-measured for the new program anyway
    return check


def stale_after(
    base: Any, record: Any, stale_before: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Which steps of ``record`` (a partial calibration on top of ``base``) are stale: those of the base that build on a
    step that was re-run, and those already stale in the base that were not re-run. A re-run step is one whose result
    is not the base's (`CalibrationRecord.merged_with` keeps the base's results of the steps not run)."""
    if base is None:
        return {}
    rerun = [n for n, r in record.steps.items() if base.steps.get(n) is not r]
    out = {
        k: list(v) for k, v in (stale_before or {}).items() if k not in rerun and k in record.steps
    }
    depends = registry.depends_on_it()
    for step in stale_steps(rerun, base.steps):
        out.setdefault(step, [])
        out[step] += [n for n in rerun if step in depends.get(n, ()) and n not in out[step]]
    return {k: out[k] for k in registry.in_order(out)}
