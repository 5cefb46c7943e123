"""The core's messages in the GUI's own terms: advice written for the command line ("pass --program", "`lab4f
calibrate tiles`") becomes the button and panel that do the same here. Qt-free."""

from __future__ import annotations

import re
from collections.abc import Callable

#: The Calibration panel's row of each step (as its title begins).
STEP_ROWS = {"camera": "Camera", "timing": "Timing", "display": "Input display", "fourier": "Fourier calibration",
             "phase": "SLM phase response", "wavefront": "Wavefront correction",
             "registration": "Display → camera registration", "tiles": "Tile registration",
             "gains": "Per-channel filter"}
UPLOADED = "with a program uploaded (Kernels panel: Compile and upload)"


def _calibrate(match: re.Match[str]) -> str:
    step, program, verb = match.group("step"), match.group("program"), match.group("verb")
    press = f"{'P' if verb[0] == 'R' else 'p'}ress " if verb else ""  # "run `lab4f calibrate x`": press Run …
    if step == "all":
        return f"{press}Run all in the Calibration panel{' ' + UPLOADED if program else ''}"
    row = STEP_ROWS.get(step, step)
    return f"{press}Run on the {row} row of the Calibration panel{' ' + UPLOADED if program else ''}"


#: (pattern, replacement), applied in order: the specific phrasings before the general ones.
RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [(re.compile(p), r) for p, r in (
    (r"recalibrate with --program \(lab4f calibrate tiles/gains\)",
     "run Tile registration and Per-channel filter in the Calibration panel " + UPLOADED),
    (r"Recompile the checkpoint \(lab4f compile\)", "Compile and upload the checkpoint (Kernels panel)"),
    (r"pass --program FILE \(make one with `lab4f compile`\)",
     "upload a program in the Kernels tab (Load checkpoint, then Compile and upload)"),
    (r"pass that program with --program", "compile and upload that checkpoint again (Kernels panel)"),
    (r"pass --program \(from `lab4f compile[^`]*`\)", "upload a program in the Kernels tab"),
    (r"then `(\w+)` and `(\w+)` with --program",
     lambda m: f"then the {STEP_ROWS.get(m[1], m[1])} and {STEP_ROWS.get(m[2], m[2])} rows {UPLOADED}"),
    (r"(?P<verb>[Rr]un )?`lab4f calibrate (?P<step>\w+)(?P<program> --program \w+)?`", _calibrate),
    (r"`lab4f compile[^`]*`", "Compile and upload in the Kernels panel"),
    (r"\(lab4f compile\)", "(Compile and upload in the Kernels panel)"),
    (r"pass --program", "upload a program in the Kernels tab"),
    (r"with --program", UPLOADED),
    (r"--sync (\w+)", r"the Sync box (Bench panel) set to \1"),
    (r"`lab4f bench info`", "the Bench panel"),
)]

#: Advice for a refusal that is deliberate (a safety limit), not a device fault: no "check the cable".
SAFETY_ADVICE = ("The bench config's safety limit refused it and nothing was sent: choose a value within the limit "
                 "shown in the Bench panel (the limit itself is set in the bench config file).")


def in_gui_terms(message: str) -> str:
    """``message`` with command-line advice replaced by the GUI's buttons and panels."""
    for pattern, replacement in RULES:
        message = pattern.sub(replacement, message)
    return message
