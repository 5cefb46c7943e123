"""Typed errors. Every message should tell the user what to do next."""

from __future__ import annotations

#: exit codes of the `lab4f` command: a usage or lab4f error (nothing new saved), and a device that failed (the
#: command says what it kept: a partial run file, the previous calibration record)
EXIT_ERROR = 2
EXIT_DEVICE = 3


class Lab4fError(Exception):
    """Base class of every error lab4f raises on purpose."""


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

    def __init__(self, *args: object, device: str | None = None) -> None:
        super().__init__(*args)
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
