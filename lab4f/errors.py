"""Typed errors. Every message should tell the user what to do next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: exit codes of the `lab4f` command: a usage or lab4f error (nothing new saved), and a device that failed (the
#: command says what it kept: a partial run file, the previous calibration record)
EXIT_ERROR = 2
EXIT_DEVICE = 3


@dataclass(frozen=True)
class Fix:
    """What the user should do next, in no front end's terms: each front end renders it as its own controls (the
    CLI as a command and its options, :func:`cli_advice`; the GUI as its buttons and panels, ``gui.messages``).

    ``action`` is one of :data:`ACTIONS`; ``params`` its details (``step``: a calibration step or ``"all"``;
    ``program``: True when the steps need the compiled program, or the names of those that do;
    ``path``: where to write a program; ``setting``, ``value``: a bench-config setting;
    ``options``: extra options)."""

    action: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fix action {self.action!r}; one of {', '.join(ACTIONS)}")


#: the actions a :class:`Fix` can ask for
ACTIONS = ("calibrate", "compile", "choose_layer", "set_setting", "connect")


def cli_advice(fix: Fix) -> str:
    """``fix`` in the command line's terms."""
    p = fix.params
    if fix.action == "calibrate":
        steps = [p["step"]] if isinstance(p["step"], str) else list(p["step"])
        program = p.get(
            "program", False
        )  # True: every step needs the program; or the names of those that do
        text = ", then ".join(
            f"`lab4f calibrate {step}"
            f"{' --program P' if program is True or step in (program or ()) else ''}`"
            for step in steps
        )
        return f"run {text}" + (" (or `lab4f calibrate all`)" if p.get("or_all") else "")
    if fix.action == "compile":
        out = f" --out {p['path']}" if p.get("path") else ""
        extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in p.get("options", {}).items())
        return f"compile the checkpoint again with `lab4f compile CHECKPOINT{extra}{out}`"
    if fix.action == "choose_layer":
        return "pass --layer NAME to choose one"
    if fix.action == "set_setting":
        return f"set {p['setting']} in the bench config" + (
            f" (to {p['value']})" if "value" in p else ""
        )
    return f"connect the {p.get('device', 'device')} and run the command again"


class Lab4fError(Exception):
    """Base class of every error lab4f raises on purpose.

    ``problem`` says what went wrong; ``fix`` (optional) what to do, which ``str()`` renders in the command line's
    terms (a front end of its own renders ``fix`` itself)."""

    def __init__(self, *args: object, fix: Fix | None = None) -> None:
        super().__init__(*args)
        self.fix = fix

    @property
    def problem(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        return self.problem if self.fix is None else f"{self.problem}; {cli_advice(self.fix)}"


class ConfigError(Lab4fError):
    """A bench or run configuration is invalid (names the field and the allowed values)."""


class DataError(Lab4fError):
    """A dataset file is missing, corrupt or of the wrong format."""


class CheckpointError(Lab4fError):
    """A checkpoint cannot be loaded, or does not fit the architecture it is loaded into."""


class CompileError(Lab4fError):
    """A kernel bank cannot be compiled into an optical program for this bench."""


class DeviceError(Lab4fError):
    """A device refused a command or reported an error.

    ``device`` names the device (its ``name``) when the raiser knows it, so an interface can say which device
    failed without reading the message."""

    def __init__(self, *args: object, device: str | None = None, fix: Fix | None = None) -> None:
        super().__init__(*args, fix=fix)
        self.device = device


class DeviceTimeout(DeviceError):
    """A device did not answer (no frame, no reply) within its timeout."""


class DeviceDisconnected(DeviceError):
    """A device is not connected (unplugged, closed, or never opened)."""


class SafetyLimitError(DeviceError):
    """A command would exceed a configured safety limit; nothing was sent."""


class CalibrationError(Lab4fError):
    """A calibration step failed or produced a result that must not be used."""


class CalibrationCancelled(CalibrationError):
    """A calibration step was cancelled by the user; the previous record is untouched."""


class MismatchError(Lab4fError):
    """Checkpoint, optical program and calibration record do not belong together."""
