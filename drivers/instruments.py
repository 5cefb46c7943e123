"""Bench instruments (light source, shutter) over pyvisa: SCPI ones as short declarative classes.

:class:`VisaInstrument` is what every instrument shares: the VISA session, its identity, and the settings it last
accepted (``known()``, ``changed_at``), which a simulated camera reads every frame. :class:`ScpiInstrument` adds SCPI:
every set is validated (device range, then configured safety limit) before anything reaches the bus, and is followed
by an error-queue read-back (``SYST:ERR?``), so a refused command never passes silently and a queued error never
corrupts the next query. A shutter's position is read back after every move and waited for. Non-SCPI command sets
build on VisaInstrument (:mod:`lab4f.drivers.thorlabs_sc10`).

Simulated with pyvisa-sim: ``sim_instruments.yaml``. What its YAML cannot express (a device that echoes every command;
a command that toggles a state) is added from the device's ``lab4f:`` key by :func:`install_sim_behaviour`.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Self

import pyvisa
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pyvisa import constants, rname

from lab4f.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    SafetyLimitError,
)

logger = logging.getLogger(__name__)

#: ``visa_library`` value meaning "pyvisa-sim with lab4f's packaged sim_instruments.yaml".
SIM_VISA_LIBRARY = "@lab4f-sim"
_MAX_QUEUED_ERRORS = 32
_MISSING = object()
#: pause between two read-backs while a move completes (each read-back is a bus query as well)
_POLL_S = 0.005


def sim_instruments_path() -> str:
    """Filesystem path of the packaged pyvisa-sim device file."""
    return str(importlib.resources.files("lab4f.drivers") / "sim_instruments.yaml")


def sim_resource_manager() -> pyvisa.ResourceManager:
    """A pyvisa ResourceManager whose backend simulates lab4f's bench instruments."""
    return pyvisa.ResourceManager(f"{sim_instruments_path()}@sim")


def resolve_visa_library(visa_library: str) -> str:
    """Expand SIM_VISA_LIBRARY into the pyvisa-sim spec; other values pass through unchanged."""
    return f"{sim_instruments_path()}@sim" if visa_library == SIM_VISA_LIBRARY else visa_library


def is_simulated(visa_library: str) -> bool:
    return visa_library.endswith("@sim") or visa_library == SIM_VISA_LIBRARY


def wait_until(read: Callable[[], Any], expected: Any, timeout_s: float) -> tuple[bool, Any]:
    """Read until ``read()`` gives ``expected`` or ``timeout_s`` passed (read at least once, and once more at the
    deadline): (reached, last value read)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        value = read()
        if value == expected:
            return True, value
        if time.perf_counter() >= deadline:
            return False, value
        time.sleep(min(_POLL_S, max(deadline - time.perf_counter(), 0.0)))


# --- what pyvisa-sim's YAML cannot express ------------------------------------------------------------


class _SimBehaviour:
    """Replaces a pyvisa-sim device's ``_match`` (query -> reply bytes) to add the ``lab4f:`` key's behaviour:

    - ``echo: SEP``: the device repeats every message, then SEP, before its reply (also before an error reply and
      for a command that has none) — Thorlabs' serial convention;
    - ``toggles``: ``[{q: CMD, flip: [prop, ...], blocked_by: prop, lag_reads: {prop: n}}]``: CMD (no argument)
      flips 0/1 properties, unless ``blocked_by`` is non-zero; a flipped property's getter reports the old value for
      ``n`` more reads (a mechanism still moving).
    """

    def __init__(self, device: Any, spec: dict[str, Any]) -> None:
        self.device, self.inner = device, device._match
        echo = spec.get("echo")
        self.echo = None if echo is None else str(echo).encode()
        self.toggles = {str(t["q"]).encode(): t for t in spec.get("toggles", ())}
        self.pending: dict[
            str, list[Any]
        ] = {}  # property -> [new value, reads left that report the old one]

    def __call__(self, query: bytes) -> Any:
        from pyvisa_sim.component import NoResponse

        toggle = self.toggles.get(query)
        if toggle is not None:
            self._toggle(toggle)
            response: Any = b""
        else:
            self._age(query)
            response = self.inner(query)
        if self.echo is None:
            return response
        if response is None:
            response = self.device.error_response("command_error")
        return query + self.echo + (b"" if response in (None, NoResponse) else response)

    def _toggle(self, toggle: dict[str, Any]) -> None:
        props = self.device._properties
        blocker = toggle.get("blocked_by")
        if blocker is not None and int(props[blocker].get_value()):
            return
        lags = {k: int(v) for k, v in (toggle.get("lag_reads") or {}).items()}
        for name in toggle.get("flip", ()):
            current = self.pending.pop(name, [props[name].get_value()])[0]
            new = str(1 - int(current))
            if lags.get(name, 0) > 0:
                self.pending[name] = [new, lags[name]]
            else:
                props[name].set_value(new)

    def _age(self, query: bytes) -> None:
        getter = self.device._getters.get(query)
        if getter is None or getter[0] not in self.pending:
            return
        entry = self.pending[getter[0]]
        if entry[1] > 0:
            entry[1] -= 1  # this read still sees the old value
        else:
            self.device._properties[getter[0]].set_value(entry[0])
            del self.pending[getter[0]]


def install_sim_behaviour(rm: pyvisa.ResourceManager, visa_library: str) -> None:
    """Give the pyvisa-sim devices of ``rm`` the behaviour their YAML file declares under ``lab4f:`` (pyvisa-sim
    ignores that key; see :class:`_SimBehaviour`). Idempotent: pyvisa keeps one backend, and its devices, per file."""
    path = resolve_visa_library(visa_library).rpartition("@")[0]
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    devices = getattr(rm.visalib, "devices", None)
    for resource, entry in (spec.get("resources") or {}).items():
        extra = (spec.get("devices") or {}).get(entry.get("device"), {}).get("lab4f")
        if not extra or devices is None:
            continue
        try:
            device = devices[resource]
        except KeyError:
            continue
        if not isinstance(device._match, _SimBehaviour):
            device._match = _SimBehaviour(device, extra)


# --- declarative SCPI properties (after pymeasure's Instrument.control) ---------------------------------


def strict_range(low: float, high: float) -> Callable[[float], None]:
    """Validator: the value must lie in [low, high]."""

    def check(value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside the device range [{low:g}, {high:g}]")

    return check


class scpi_property:  # noqa: N801 - lower case, like the built-in property it extends
    """A device setting read with ``get_cmd`` and written with ``set_cmd.format(to_device(value))``."""

    def __init__(
        self,
        get_cmd: str,
        set_cmd: str | None = None,
        doc: str = "",
        *,
        validator: Callable[[Any], None] | None = None,
        unit: str = "",
        to_device: Callable[[Any], Any] = lambda v: v,
        from_device: Callable[[str], Any] = float,
        confirm: bool = False,
    ) -> None:
        """``confirm``: after a set, read the setting back until the device reports the value sent (a mechanism
        that moves), at most the settings' ``move_timeout_s``; DeviceError if it does not."""
        self.get_cmd, self.set_cmd, self.unit, self.confirm = get_cmd, set_cmd, unit, confirm
        self.validator, self.to_device, self.from_device = validator, to_device, from_device
        self.__doc__ = f"{doc} [{unit}]" if unit else doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"{owner.__name__}.{name}"
        self.attr = name

    def __get__(self, inst: ScpiInstrument | None, owner: type) -> Any:
        if inst is None:
            return self
        reply = inst.query(self.get_cmd)
        try:
            value = self.from_device(reply)
        except ValueError as exc:
            raise DeviceError(
                f"{self.name}: cannot parse reply {reply!r} to {self.get_cmd!r}"
            ) from exc
        inst._known[self.attr] = value
        return value

    def __set__(self, inst: ScpiInstrument, value: Any) -> None:
        if self.set_cmd is None:
            raise AttributeError(f"{self.name} is read-only")
        command = self.set_cmd.format(self.to_device(value))
        inst.check_safety(command)  # safety first: its message is the one the user must see
        if self.validator is not None:
            try:
                self.validator(value)
            except ValueError as exc:
                raise DeviceError(
                    f"{self.name} = {value} {self.unit}: {exc} {self.unit}; nothing was sent."
                ) from exc
        with (
            inst._lock
        ):  # the command and its error read-back are one exchange; known() waits for it
            try:
                inst._send_checked(command)
            except BaseException:
                inst._known.pop(
                    self.attr, None
                )  # refused or lost: read it from the device next time
                raise
            # what the device now holds: the argument as sent (formatted, so rounded as the device sees it)
            sent = inst._known[self.attr] = self.from_device(command.partition(" ")[2])
            inst.changed_at[self.attr] = (
                time.perf_counter()
            )  # when it changed (a simulated camera's light timing)
            if self.confirm:
                timeout = float(getattr(inst.settings, "move_timeout_s", 1.0))
                reached, got = wait_until(lambda: self.__get__(inst, type(inst)), sent, timeout)
                if not reached:
                    raise DeviceError(
                        f"{inst.settings.resource} accepted {command!r} but {self.get_cmd} still reads "
                        f"{got} after {timeout:g} s: {inst.stuck_advice(self.attr, sent)}"
                    )


# --- bus session and instrument base ------------------------------------------------------------------


class ScpiSession:
    """A pyvisa resource that records every exchange, so tests can pin the exact protocol."""

    def __init__(self, resource: Any, resource_name: str) -> None:
        self._resource = resource
        self.resource_name = resource_name
        #: (message sent, reply or None for a write), in order.
        self.exchanges: list[tuple[str, str | None]] = []
        self.writes = 0

    def write(self, message: str) -> None:
        """Send one message that expects no reply."""
        self.exchanges.append((message, None))
        self.writes += 1
        self._call(self._resource.write, message)
        _transcribe(self.resource_name, message)

    def query(self, message: str) -> str:
        """Send one message and return its reply, stripped."""
        reply = str(self._call(self._resource.query, message)).strip()
        self.exchanges.append((message, reply))
        return reply

    def write_read(self, message: str) -> str:
        """Send a command whose device answers it (an echo, a prompt): counted and transcribed like ``write``."""
        self.writes += 1
        reply = self.query(message)
        _transcribe(self.resource_name, message)
        return reply

    def close(self) -> None:
        self._resource.close()

    def _call(self, method: Callable[[str], Any], message: str) -> Any:
        try:
            return method(message)
        except pyvisa.errors.InvalidSession as exc:
            raise DeviceDisconnected(
                f"{self.resource_name}: session closed; call connect() again."
            ) from exc
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == constants.StatusCode.error_timeout:
                raise DeviceTimeout(
                    f"{self.resource_name} did not answer {message!r} within {self._resource.timeout} ms: "
                    "check that it is powered and cabled, or raise timeout_ms in its settings."
                ) from exc
            raise DeviceError(f"{self.resource_name}: VISA error on {message!r}: {exc}") from exc


def _transcribe(resource: str, message: str) -> None:
    """With ``LAB4F_VISA_TRANSCRIPT=FILE``, append every command sent (after it was sent) to FILE: what a bench
    really received, readable after the process is gone (a test that kills a run reads it)."""
    path = os.environ.get("LAB4F_VISA_TRANSCRIPT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{resource}\t{message}\n")
            f.flush()


class InstrumentIdentity(NamedTuple):
    """The four fields of an ``*IDN?`` reply."""

    vendor: str
    model: str
    serial: str
    firmware: str

    @classmethod
    def parse(cls, reply: str) -> InstrumentIdentity:
        fields = [f.strip() for f in reply.split(",")] + ["", "", "", ""]
        return cls(*fields[:4])


class VisaSettings(BaseModel):
    """Where and how to reach a VISA instrument."""

    model_config = ConfigDict(extra="forbid")

    resource: str = Field(
        description="VISA resource string, e.g. 'ASRL1::INSTR' or 'USB0::...::INSTR'"
    )
    visa_library: str = Field(
        SIM_VISA_LIBRARY,
        description=f"pyvisa backend: '@py', '@ivi', 'file.yaml@sim' or {SIM_VISA_LIBRARY!r}",
    )
    timeout_ms: int = Field(2000, gt=0)
    read_termination: str = "\n"
    write_termination: str = "\n"


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """Split a ``SYST:ERR?`` reply such as ``-222,"Data out of range"`` into (code, message)."""
    code, _, message = reply.partition(",")
    try:
        return int(code.strip()), message.strip().strip('"')
    except ValueError as exc:
        raise DeviceError(
            f"Unexpected SYST:ERR? reply {reply!r}; is this a SCPI instrument?"
        ) from exc


class VisaInstrument:
    """A VISA instrument: its session (every exchange recorded), identity, and the settings it last accepted."""

    def __init__(self, settings: VisaSettings) -> None:
        self.settings = settings
        self._rm: pyvisa.ResourceManager | None = None
        self._session: ScpiSession | None = None
        self._identity: InstrumentIdentity | None = None
        self._known: dict[str, Any] = {}  # settings as last read from or accepted by the device
        self.changed_at: dict[
            str, float
        ] = {}  # host time (perf_counter) each setting was last changed by us
        # one exchange at a time on the session (a GUI reads status while a worker sets; VISA replies must not swap)
        self._lock = threading.RLock()

    def known(self, name: str) -> Any:
        """A setting as last read from or accepted by the device, queried only when not known yet: what a simulator
        coupled to this instrument reads every frame without bus traffic. It assumes this object is the device's
        only writer (a change made through another connection is not seen until the setting is read again)."""
        value = self._known.get(name, _MISSING)
        if value is _MISSING:
            with self._lock:
                value = getattr(self, name)
        return value

    def connect(self) -> Self:
        """Open the VISA session and greet the device (:meth:`_handshake`: identity, stale errors)."""
        if self._session is not None:
            return self
        self._known.clear()
        s = self.settings
        self._rm = pyvisa.ResourceManager(resolve_visa_library(s.visa_library))
        listed = self._list_resources()
        # pyvisa-sim opens unknown names without complaint; only its listing is authoritative.
        if is_simulated(s.visa_library):
            if not any(_same_resource(s.resource, r) for r in listed):
                self._release()
                raise DeviceDisconnected(
                    f"VISA resource {s.resource!r} not found; backend {s.visa_library!r} lists {listed}. "
                    "Fix 'resource' in the bench config."
                )
            install_sim_behaviour(self._rm, s.visa_library)
        try:
            resource = self._rm.open_resource(s.resource, **self._open_options())
        except (pyvisa.errors.VisaIOError, ValueError) as exc:
            self._release()
            raise DeviceDisconnected(
                f"Cannot open VISA resource {s.resource!r} ({exc}); backend {s.visa_library!r} lists {listed}. "
                "Check the cable and power, or fix 'resource' in the bench config."
            ) from exc
        self._session = ScpiSession(resource, s.resource)
        try:
            self._identity = self._handshake(listed)
        except DeviceError:
            self.close()
            raise
        logger.info("Connected %s at %s: %s", type(self).__name__, s.resource, self._identity)
        return self

    def _open_options(self) -> dict[str, Any]:
        """Keyword arguments of ``open_resource`` (a serial device adds its baud rate)."""
        s = self.settings
        return {
            "timeout": s.timeout_ms,
            "read_termination": s.read_termination,
            "write_termination": s.write_termination,
        }

    def _handshake(self, listed: list[str]) -> InstrumentIdentity:
        """First exchange on a new session: who the device is (``listed``: what the backend offers, for messages)."""
        raise NotImplementedError

    def stuck_advice(self, name: str, wanted: Any) -> str:
        """What to tell the user when ``name`` does not reach ``wanted`` after a move."""
        return "check the device, its cable and that it is in a mode that follows remote commands."

    def close(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None:
            try:
                self._session.close()
            finally:
                self._session = None
        self._release()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session(self) -> ScpiSession:
        if self._session is None:
            raise DeviceDisconnected(
                f"{type(self).__name__} at {self.settings.resource} is not connected; "
                "call connect() or use it as a context manager."
            )
        return self._session

    @property
    def identity(self) -> InstrumentIdentity:
        """Vendor, model, serial and firmware from ``*IDN?`` (read at connect)."""
        if self._identity is None:
            raise DeviceDisconnected(f"{type(self).__name__} is not connected; identity unknown.")
        return self._identity

    def query(self, message: str) -> str:
        with self._lock:
            return self.session.query(message)

    def settings_snapshot(self) -> dict[str, Any]:
        """Configuration and identity as flat scalars (for HDF5 attributes)."""
        snap: dict[str, Any] = {"driver": type(self).__name__, **self.settings.model_dump()}
        if self._identity is not None:
            snap.update({f"idn_{k}": v for k, v in self._identity._asdict().items()})
        return snap

    def _list_resources(self) -> list[str]:
        try:
            return list(self._rm.list_resources()) if self._rm is not None else []
        except pyvisa.errors.VisaIOError:  # raised when nothing is attached
            return []

    def _release(self) -> None:
        self._rm = None


class ScpiInstrument(VisaInstrument):
    """Error read-back (``SYST:ERR?``) and safety checking shared by lab4f's SCPI instruments."""

    #: SCPI header (short form) -> (settings field holding the limit, factor from wire unit to limit unit).
    safety_limits: ClassVar[dict[str, tuple[str, float]]] = {}

    def _handshake(self, listed: list[str]) -> InstrumentIdentity:
        """``*IDN?``, then drain the errors a previous session left queued."""
        s = self.settings
        idn = self.session.query("*IDN?")
        if not idn:
            raise DeviceDisconnected(
                f"{s.resource} gave an empty *IDN? reply; backend {s.visa_library!r} lists {listed}. "
                "Check that the right instrument is on this port and powered."
            )
        identity = InstrumentIdentity.parse(idn)
        stale = self.read_errors()
        if stale:
            logger.warning("%s: cleared stale errors on connect: %s", s.resource, stale)
        return identity

    def command(self, message: str) -> None:
        """Write one command (after the safety check) and raise DeviceError if the device queued an error."""
        self.check_safety(message)
        with self._lock:
            self._known.clear()  # a raw command may change any setting
            self._send_checked(message)

    def _send_checked(self, message: str) -> None:
        """Write a command that already passed check_safety, then read back the error queue."""
        with self._lock:
            self.session.write(message)
            errors = self.read_errors()
        if errors:
            text = "; ".join(f"{code},{msg}" for code, msg in errors)
            raise DeviceError(
                f"{self.settings.resource} refused {message!r}: {text}. Check the value and units."
            )

    def read_errors(self) -> list[tuple[int, str]]:
        """Drain the instrument's error queue (``SYST:ERR?`` until code 0)."""
        errors = []
        for _ in range(_MAX_QUEUED_ERRORS):
            code, message = parse_scpi_error(self.session.query("SYST:ERR?"))
            if code == 0:
                return errors
            errors.append((code, message))
        raise DeviceError(
            f"{self.settings.resource}: error queue does not empty ({errors[-3:]}); power-cycle it."
        )

    def check_safety(self, message: str) -> None:
        """Raise SafetyLimitError if any command in ``message`` would exceed a configured limit."""
        for part in message.split(";"):
            header, _, argument = part.strip().partition(" ")
            if header.endswith("?"):
                continue
            for pattern, (field, factor) in self.safety_limits.items():
                if _header_matches(header, pattern):
                    self._check_limit(part.strip(), argument.strip(), field, factor)

    def _check_limit(self, command: str, argument: str, field: str, factor: float) -> None:
        limit = float(getattr(self.settings, field))
        try:
            value = float(argument) * factor
        except ValueError:
            raise SafetyLimitError(
                f"{command!r}: only a plain number can be checked against {field}={limit:g}; nothing was sent."
            ) from None
        if value > limit:
            raise SafetyLimitError(
                f"{command!r} asks for {value:g}, above the safety limit {field}={limit:g}; nothing was sent. "
                f"Raise {field} in the bench config only if the optics can take it."
            )


def _header_matches(header: str, pattern: str) -> bool:
    """SCPI header match: long or short forms, any case, numeric suffixes ignored, sub-nodes included."""
    parts = [p.rstrip("0123456789") for p in header.upper().lstrip(":").split(":")]
    wanted = pattern.upper().split(":")
    return len(parts) >= len(wanted) and all(
        p.startswith(w) for p, w in zip(parts, wanted, strict=False)
    )


def _same_resource(a: str, b: str) -> bool:
    try:
        return rname.to_canonical_name(a) == rname.to_canonical_name(b)
    except rname.InvalidResourceName:
        return a == b


def _to_bool(reply: str) -> bool:
    return bool(int(float(reply)))


# --- the instruments ----------------------------------------------------------------------------------


class LightSourceSettings(VisaSettings):
    """A laser/LED source: where it is, and the most light the optics may receive."""

    resource: str = "ASRL1::INSTR"
    max_power_mw: float = Field(5.0, gt=0, description="safety limit on the optical power setpoint")
    max_current_ma: float = Field(
        100.0, gt=0, description="safety limit on the drive current setpoint"
    )


class LightSource(ScpiInstrument):
    """Laser or LED source: emission on/off and a power or current setpoint, never above the safety limits."""

    POWER_RANGE_MW: ClassVar[tuple[float, float]] = (0.0, 50.0)
    CURRENT_RANGE_MA: ClassVar[tuple[float, float]] = (0.0, 200.0)
    safety_limits = {"SOUR:POW": ("max_power_mw", 1e3), "SOUR:CURR": ("max_current_ma", 1e3)}

    settings: LightSourceSettings

    def __init__(self, settings: LightSourceSettings | None = None) -> None:
        super().__init__(settings or LightSourceSettings())
        for field, (_, high), unit in (
            ("max_power_mw", self.POWER_RANGE_MW, "mW"),
            ("max_current_ma", self.CURRENT_RANGE_MA, "mA"),
        ):
            limit = float(getattr(self.settings, field))
            if limit > high:
                raise ConfigError(
                    f"{field} = {limit:g} {unit} is above the most this {type(self).__name__} can deliver ({high:g} "
                    f"{unit}): a limit the device cannot reach protects nothing, and usually means the config was "
                    f"written for another source or in other units. Set {field} to at most {high:g} {unit}, the "
                    "most the optics may receive."
                )

    power_mw = scpi_property(
        "SOUR:POW?",
        "SOUR:POW {:.6f}",
        "Optical power setpoint",
        validator=strict_range(*POWER_RANGE_MW),
        unit="mW",
        to_device=lambda mw: mw * 1e-3,
        from_device=lambda s: float(s) * 1e3,
    )
    current_ma = scpi_property(
        "SOUR:CURR?",
        "SOUR:CURR {:.6f}",
        "Drive current setpoint",
        validator=strict_range(*CURRENT_RANGE_MA),
        unit="mA",
        to_device=lambda ma: ma * 1e-3,
        from_device=lambda s: float(s) * 1e3,
    )
    output_on = scpi_property(
        "OUTP?", "OUTP {:d}", "Emission enabled", to_device=int, from_device=_to_bool
    )

    def check_safety(self, message: str) -> None:
        """Also refuse to enable emission while a setpoint already on the device exceeds a limit."""
        super().check_safety(message)
        for part in message.split(";"):
            header, _, argument = part.strip().partition(" ")
            enabling = argument.strip().upper() in {"1", "ON"}
            state_header = header.count(":") == 0 or _header_matches(header, "OUTP:STAT")
            if _header_matches(header, "OUTP") and state_header and enabling:
                self._check_limit(
                    "SOUR:POW (on device)", self.query("SOUR:POW?"), "max_power_mw", 1e3
                )
                self._check_limit(
                    "SOUR:CURR (on device)", self.query("SOUR:CURR?"), "max_current_ma", 1e3
                )

    def on(self) -> None:
        self.output_on = True

    def off(self) -> None:
        self.output_on = False

    def settings_snapshot(self) -> dict[str, Any]:
        snap = super().settings_snapshot()
        if self._session is not None:
            snap.update(
                power_mw=self.power_mw, current_ma=self.current_ma, output_on=self.output_on
            )
        return snap


class ShutterSettings(VisaSettings):
    """A beam shutter."""

    resource: str = "ASRL2::INSTR"
    move_timeout_s: float = Field(
        1.0, gt=0, description="longest wait for the position read back to follow a move"
    )


class Shutter(ScpiInstrument):
    """Beam shutter: open, shut and read its state; every move is read back (``SHUT?``) until it is done."""

    settings: ShutterSettings

    def __init__(self, settings: ShutterSettings | None = None) -> None:
        super().__init__(settings or ShutterSettings())

    is_open = scpi_property(
        "SHUT?", "SHUT {:d}", "Shutter open", to_device=int, from_device=_to_bool, confirm=True
    )

    @property
    def interlock(self) -> bool | None:
        """Whether an interlock holds the shutter shut: None, this command set has no interlock to read."""
        return None

    def stuck_advice(self, name: str, wanted: Any) -> str:
        if wanted:
            return "check that nothing blocks the shutter and its cable, or raise move_timeout_s."
        return (
            "the shutter did not close, so light may still pass: block the beam by hand, then check the shutter "
            "and its cable."
        )

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
            snap["shutter_open"] = self.is_open
        return snap
