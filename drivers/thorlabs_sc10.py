"""Thorlabs SC10 shutter controller (for the SH05/SH1 shutters) over its serial port: a non-SCPI command set.

The SC10 speaks plain ASCII (SC10 manual, "Commands"): a command ends with CR; the controller echoes it, then sends
its reply (if any) and a ``> `` prompt — ``id?`` gets ``id?\\rTHORLABS SC10 VERSION 1.07\\r> ``. What lab4f uses:

- ``id?``: model and firmware; ``mode?`` / ``mode=n``: 1 is manual, the mode in which the enable state IS the
  shutter (2-5 are timed and triggered modes); connect puts the controller in manual mode;
- ``ens?``: the enable state, ``ens``: TOGGLES it. There is no "open" or "close" command, so a move reads ``ens?``
  and toggles only when it differs from what is wanted;
- ``closed?``: 1 while the shutter is closed — what ``is_open`` reads back, polled after every move until it follows
  (``move_timeout_s``, then DeviceError);
- ``interlock?``: 1 while the interlock is tripped; the controller then keeps the shutter shut, so opening is refused
  before anything is sent.

Errors are not queued (there is no ``SYST:ERR?``): they come back as the reply, ``CMD_NOT_DEFINED`` (unknown
command) or ``CMD_ARG_INVALID`` (bad argument), and become DeviceError at once.

Assumptions, from the manual and other drivers rather than a controller on this bench: the reply of a command with
no answer is its echo and the prompt; the echo may be missing (a terminal with echo off), which is accepted; a reply
may use LF as well as CR; the SC10 reports no serial number (the identity's ``serial`` is empty). Simulated in
``sim_instruments.yaml`` (ASRL3: a closed shutter; ASRL4: the interlock tripped, in repeat mode).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Literal

from pydantic import Field

from lab4f.drivers.instruments import InstrumentIdentity, VisaInstrument, VisaSettings, wait_until
from lab4f.errors import DeviceDisconnected, DeviceError

logger = logging.getLogger(__name__)

MANUAL_MODE = 1
#: the SC10's error replies and what they mean
_ERRORS = {
    "CMD_NOT_DEFINED": "an unknown command",
    "CMD_ARG_INVALID": "an argument the SC10 does not accept",
}


class SC10ShutterSettings(VisaSettings):
    """Where the SC10 is and how it talks (9600 baud by default; its ``baud=1`` setting makes it 115200)."""

    resource: str = "ASRL3::INSTR"
    baud_rate: Literal[9600, 115200] = Field(
        9600, description="serial rate: the SC10's baud? setting (0: 9600, 1: 115200)"
    )
    timeout_ms: int = Field(1000, gt=0, description="longest wait for one reply")
    read_termination: str = ">"  # every reply ends with the prompt
    write_termination: str = "\r"
    move_timeout_s: float = Field(
        1.0, gt=0, description="longest wait for closed? to follow a move"
    )


class SC10Shutter(VisaInstrument):
    """A beam shutter on a Thorlabs SC10: open, shut, read its position and its interlock."""

    settings: SC10ShutterSettings

    def __init__(self, settings: SC10ShutterSettings | None = None) -> None:
        super().__init__(settings or SC10ShutterSettings())

    # --- the exchange ------------------------------------------------------------------------------------

    def _open_options(self) -> dict[str, Any]:
        options = super()._open_options()
        if self.settings.resource.upper().startswith("ASRL"):
            options["baud_rate"] = self.settings.baud_rate
        return options

    def ask(self, message: str, *, changes: bool = False) -> str:
        """Send one message, read up to the prompt, and return the reply without its echo; an error reply raises
        DeviceError. ``changes``: the message changes the device (counted and transcribed as a command)."""
        with self._lock:
            session = self.session
            reply = session.write_read(message) if changes else session.query(message)
        lines = [line.strip() for line in re.split(r"[\r\n]+", reply) if line.strip()]
        if lines and lines[0] == message:
            lines = lines[1:]
        for line in lines:
            for code, meaning in _ERRORS.items():
                if code in line:
                    raise DeviceError(
                        f"{self.settings.resource} refused {message!r}: {code} ({meaning}); check the "
                        "command against the SC10 manual.",
                        device=type(self).__name__,
                    )
        return "\n".join(lines)

    def command(self, message: str) -> str:
        """Send a raw command (e.g. ``open=100``) and return its reply; what it changed is read again next time."""
        with self._lock:
            self._known.clear()
            return self.ask(message, changes=True)

    def _flag(self, query: str) -> bool:
        reply = self.ask(query)
        if reply not in ("0", "1"):
            raise DeviceError(
                f"{self.settings.resource}: cannot parse reply {reply!r} to {query!r} (0 or 1 expected);"
                " is this an SC10 at the configured baud rate?"
            )
        return reply == "1"

    def _handshake(self, listed: list[str]) -> InstrumentIdentity:
        """``id?`` (must name an SC10), then manual mode: the only one in which ``ens`` opens and shuts."""
        s = self.settings
        reply = self.ask("id?")
        match = re.match(r"\s*(\S+)\s+(SC10)\b(?:.*?VERSION\s+(\S+))?", reply, flags=re.IGNORECASE)
        if match is None:
            raise DeviceDisconnected(
                f"{s.resource} answered id? with {reply!r}, not as a Thorlabs SC10 does; backend "
                f"{s.visa_library!r} lists {listed}. Check the port and baud_rate "
                f"({s.baud_rate})."
            )
        mode = self.mode
        if mode != MANUAL_MODE:
            logger.warning(
                "%s: SC10 was in mode %d; switching to manual mode (mode=1) so that ens opens and shuts",
                s.resource,
                mode,
            )
            self.ask(f"mode={MANUAL_MODE}", changes=True)
            self._known["mode"] = MANUAL_MODE
        return InstrumentIdentity(match.group(1), match.group(2).upper(), "", match.group(3) or "")

    # --- state ----------------------------------------------------------------------------------------------

    @property
    def mode(self) -> int:
        """Operating mode: 1 manual, 2 auto, 3 single, 4 repeat, 5 external gate."""
        reply = self.ask("mode?")
        try:
            self._known["mode"] = int(reply)
        except ValueError as exc:
            raise DeviceError(
                f"{self.settings.resource}: cannot parse reply {reply!r} to 'mode?'"
            ) from exc
        return self._known["mode"]

    @property
    def enabled(self) -> bool:
        """The controller's enable state (``ens?``): in manual mode, whether it holds the shutter open."""
        self._known["enabled"] = value = self._flag("ens?")
        return value

    @property
    def interlock(self) -> bool:
        """True while the interlock is tripped (the loop is open and the SC10 keeps the shutter shut)."""
        self._known["interlock"] = value = self._flag("interlock?")
        return value

    @property
    def is_open(self) -> bool:
        """Whether the shutter is open, as the controller reports it (``closed?``)."""
        self._known["is_open"] = value = not self._flag("closed?")
        return value

    @is_open.setter
    def is_open(self, value: bool) -> None:
        self.move(bool(value))

    def move(self, open_: bool) -> None:
        """Open or shut, then read the position back until it follows (DeviceError after ``move_timeout_s``)."""
        s = self.settings
        with self._lock:
            if open_ and self.interlock:
                raise DeviceError(
                    f"{s.resource}: the SC10's interlock is tripped, so it keeps the shutter shut; "
                    "close the interlock loop (the INTERLOCK connector on its back) and open again. "
                    "Nothing was sent.",
                    device=type(self).__name__,
                )
            if self.enabled != open_:
                self.ask("ens", changes=True)
                self.changed_at["is_open"] = (
                    time.perf_counter()
                )  # when the move began (a simulated camera's timing)
                self._known["enabled"] = open_
            reached, now_open = wait_until(lambda: self.is_open, open_, s.move_timeout_s)
            if not reached:
                raise DeviceError(self._stuck_message(open_, now_open), device=type(self).__name__)

    def _stuck_message(self, wanted_open: bool, now_open: bool) -> str:
        s = self.settings
        head = (
            f"{s.resource}: the SC10 was told to {'open' if wanted_open else 'shut'} but closed? still reads "
            f"{int(not now_open)} after {s.move_timeout_s:g} s"
        )
        if not wanted_open:
            return (
                f"{head}: the shutter may not have closed, so light may still pass. Block the beam by hand, then "
                "check the shutter cable and the controller."
            )
        return f"{head}: check the shutter cable (SH05/SH1 on the controller's output), or raise move_timeout_s."

    def open_shutter(self) -> None:
        self.is_open = True

    def close_shutter(self) -> None:
        self.is_open = False

    @property
    def state(self) -> str:
        """``"open"`` or ``"closed"``, as read from the device."""
        return "open" if self.is_open else "closed"

    def settings_snapshot(self) -> dict[str, Any]:
        snap = super().settings_snapshot()
        if self._session is not None:
            snap.update(shutter_open=self.is_open, interlock_tripped=self.interlock, mode=self.mode)
        return snap
