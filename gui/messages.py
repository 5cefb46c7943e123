"""The core's messages in the GUI's own terms. An error with a structured fix (:class:`lab4f.errors.Fix`) is
rendered here as the buttons and panels that do it (:func:`gui_advice`); advice still written for the command
line in a plain message ("pass --program", "`lab4f calibrate tiles`") is rewritten by :data:`RULES`. Qt-free."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from lab4f.errors import Fix, Lab4fError


class _StepRows(Mapping[str, str]):
    """Each calibration step's row in the Calibration panel, read from the step registry
    (:mod:`lab4f.calibration.steps`) at every look-up, so a step registered later is named too: the lead of its
    title, before a colon, a parenthesis or an "and" ("Per-channel filter and offset (program)" → "Per-channel
    filter"), which is how the panel's row label begins."""

    def __getitem__(self, step: str) -> str:
        from lab4f.calibration import steps as registry

        if step not in registry.names():
            raise KeyError(step)
        return re.split(r":| \(| and ", registry.title(step), maxsplit=1)[0].strip()

    def __iter__(self) -> Iterator[str]:
        from lab4f.calibration import steps as registry

        return iter(registry.names())

    def __len__(self) -> int:
        from lab4f.calibration import steps as registry

        return len(registry.names())


#: The Calibration panel's row of each step (as its title begins), from the step registry.
STEP_ROWS: Mapping[str, str] = _StepRows()
UPLOADED = "with a program uploaded (Kernels panel: Compile and upload)"


def _calibrate(match: re.Match[str]) -> str:
    step, program, verb = match.group("step"), match.group("program"), match.group("verb")
    press = (
        f"{'P' if verb[0] == 'R' else 'p'}ress " if verb else ""
    )  # "run `lab4f calibrate x`": press Run …
    if step == "all":
        return f"{press}Run all in the Calibration panel{' ' + UPLOADED if program else ''}"
    row = STEP_ROWS.get(step, step)
    return (
        f"{press}Run on the {row} row of the Calibration panel{' ' + UPLOADED if program else ''}"
    )


#: (pattern, replacement), applied in order: the specific phrasings before the general ones.
RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(p), r)
    for p, r in (
        (
            r"recalibrate with --program \(lab4f calibrate tiles/gains\)",
            "run Tile registration and Per-channel filter in the Calibration panel " + UPLOADED,
        ),
        (
            r"Recompile the checkpoint \(lab4f compile\)",
            "Compile and upload the checkpoint (Kernels panel)",
        ),
        (
            r"pass --program FILE \(make one with `lab4f compile`\)",
            "upload a program in the Kernels tab (Load checkpoint, then Compile and upload)",
        ),
        (
            r"pass that program with --program",
            "compile and upload that checkpoint again (Kernels panel)",
        ),
        (r"pass --program \(from `lab4f compile[^`]*`\)", "upload a program in the Kernels tab"),
        (
            r"then `(\w+)` and `(\w+)` with --program",
            lambda m: (
                f"then the {STEP_ROWS.get(m[1], m[1])} and {STEP_ROWS.get(m[2], m[2])} rows {UPLOADED}"
            ),
        ),
        (
            r"(?P<verb>[Rr]un )?`lab4f calibrate (?P<step>\w+)(?P<program> --program \w+)?`",
            _calibrate,
        ),
        (r"`lab4f compile[^`]*`", "Compile and upload in the Kernels panel"),
        (r"\(lab4f compile\)", "(Compile and upload in the Kernels panel)"),
        (r"pass --program", "upload a program in the Kernels tab"),
        (r"with --program", UPLOADED),
        (r"--sync (\w+)", r"the Sync box (Bench panel) set to \1"),
        (r"`lab4f bench info`", "the Bench panel"),
    )
]

#: Advice for a refusal that is deliberate (a safety limit), not a device fault: no "check the cable".
SAFETY_ADVICE = (
    "The bench config's safety limit refused it and nothing was sent: choose a value within the limit "
    "shown in the Bench panel (the limit itself is set in the bench config file)."
)


def gui_advice(fix: Fix) -> str:
    """``fix`` in the GUI's terms: the panel and button that do it."""
    p = fix.params
    if fix.action == "calibrate":
        steps = [p["step"]] if isinstance(p["step"], str) else list(p["step"])
        rows = [STEP_ROWS.get(step, step) for step in steps]
        where = (
            "Run all in the Calibration panel"
            if rows == ["all"]
            else "press Run on the "
            + ", then the ".join(rows)
            + f" row{'s' if len(rows) > 1 else ''} of the "
            "Calibration panel"
        )
        return (
            where
            + (f" {UPLOADED}" if p.get("program") else "")
            + (" (or Run all)" if p.get("or_all") else "")
        )
    if fix.action == "compile":
        options = "".join(f", {k.replace('_', ' ')} {v}" for k, v in p.get("options", {}).items())
        return (
            f"load the checkpoint in the Kernels panel and press Compile and upload again{options}"
        )
    if fix.action == "choose_layer":
        return "choose the layer in the Kernels panel's layer box"
    if fix.action == "set_setting":
        return (
            f"set {p['setting']}"
            + (f" to {p['value']}" if "value" in p else "")
            + " in the bench config file, then reconnect in the Bench panel"
        )
    return f"connect the {p.get('device', 'device')} and press Connect in the Bench panel"


def in_gui_terms(message: str | BaseException) -> str:
    """``message`` with its advice in the GUI's buttons and panels: an error's structured fix rendered here, or
    command-line advice in a plain message replaced."""
    if isinstance(message, Lab4fError) and message.fix is not None:
        return f"{in_gui_terms(message.problem)}; {gui_advice(message.fix)}"
    message = str(message)
    for pattern, replacement in RULES:
        message = pattern.sub(replacement, message)
    return message
