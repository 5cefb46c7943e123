"""Device faults at the command line: rehearsing them (``[faults.ROLE]`` in the bench config, ``LAB4F_FAULTS`` for
one run), which bench role a failing device plays, and what a command a device stopped kept.

Fault rehearsal arms the :class:`~lab4f.drivers.faults.FaultPlan` of a simulated device when the bench connects::

    [faults.camera]
    disconnect_after_n = 30          # the camera is unplugged after 30 frames
    [faults.slm]
    slm_write_failure_after_n = 2    # the third pattern write is refused

or, for one run, ``LAB4F_FAULTS="camera.disconnect_after_n=30,slm.slm_write_failure_after_n=2"`` (``role.field=value``,
comma-separated; it adds to the config's table). Counts are frames (camera) or writes (SLM, display) since the device
was opened. The SCPI instruments (``light_source``, ``shutter``) take the same fields, counted in SCPI exchanges
since the bench connected: ``disconnect*`` — it stops answering (:class:`DeviceDisconnected`), ``frame_timeout*`` —
a VISA timeout (:class:`DeviceTimeout`), ``slm_write_failure*`` — the instrument refuses the command with an SCPI
error (:class:`DeviceError`). Faults are for simulated devices and instruments only: a table for any other driver is
refused. A key that is not a FaultPlan field, or a value of the wrong type, is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from lab4f.drivers.faults import FaultPlan
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceTimeout

ROLES = ("slm", "display", "camera", "light_source", "shutter")  # lab4f.bench.devices.ROLES
INSTRUMENT_ROLES = ("light_source", "shutter")
#: the FaultPlan fields an SCPI instrument takes (see the module docstring)
INSTRUMENT_FIELDS = (
    "disconnect",
    "disconnect_after_n",
    "frame_timeout",
    "frame_timeout_after_n",
    "slm_write_failure",
    "slm_write_failure_after_n",
)
ENV = "LAB4F_FAULTS"


def validate_faults(
    faults: Mapping[str, Any], where: str = "[faults]"
) -> dict[str, dict[str, Any]]:
    """``{role: {FaultPlan field: value}}`` checked: known roles, FaultPlan fields and types (values as given, e.g.
    the strings of ``LAB4F_FAULTS``, are converted). Raises :class:`ConfigError` naming the role and field."""
    fields = sorted(FaultPlan.model_fields)
    out: dict[str, dict[str, Any]] = {}
    for role, table in faults.items():
        at = f"[faults.{role}]" if where == "[faults]" else f"{where} ({role})"
        if role not in ROLES:
            raise ConfigError(
                f"{where}: {role!r} is not a bench role; faults are armed per role: {', '.join(ROLES)}"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{at} must be a table of FaultPlan fields ({', '.join(fields)})")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(
                f"{at}: {', '.join(map(repr, unknown))} is not a fault; the FaultPlan fields "
                f"are {', '.join(fields)}"
            )
        if role in INSTRUMENT_ROLES and set(table) - set(INSTRUMENT_FIELDS):
            bad = sorted(set(table) - set(INSTRUMENT_FIELDS))
            raise ConfigError(
                f"{at}: {', '.join(bad)} do not apply to an SCPI instrument; it takes "
                f"{', '.join(INSTRUMENT_FIELDS)}"
            )
        try:
            plan = FaultPlan.model_validate(dict(table))
        except ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ConfigError(f"{at}: {errs}") from exc
        out[role] = {k: getattr(plan, k) for k in table}
    return out


def faults_from_env(value: str | None) -> dict[str, dict[str, Any]]:
    """Parse ``LAB4F_FAULTS`` (``role.field=value,...``) into validated tables; {} when unset or empty."""
    if not value or not value.strip():
        return {}
    tables: dict[str, dict[str, Any]] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, eq, raw = item.partition("=")
        role, dot, name = key.strip().partition(".")
        if not eq or not dot or not role or not name or not raw.strip():
            raise ConfigError(
                f'{ENV}: {item!r} is not role.field=value (e.g. {ENV}="camera.disconnect_after_n=30,'
                'slm.slm_write_failure_after_n=2")'
            )
        tables.setdefault(role, {})[name.strip()] = raw.strip()
    return validate_faults(tables, where=ENV)


def merge_faults(*tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later tables add to and override earlier ones, field by field."""
    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        for role, fields in table.items():
            out.setdefault(role, {}).update(fields)
    return out


def apply_faults(devices: dict[str, Any], faults: Mapping[str, Mapping[str, Any]]) -> None:
    """Arm each role's faults on its connected device (the bench calls it when it connects)."""
    for role, fields in faults.items():
        if not fields:
            continue
        device = devices.get(role)
        if device is None:
            raise ConfigError(
                f"[faults.{role}]: the bench has no {role} connected (not configured, or enabled = "
                "false); remove the table or enable the device"
            )
        plan = getattr(device, "faults", None)
        if isinstance(plan, FaultPlan):
            for name, value in fields.items():
                setattr(plan, name, value)
        elif role in INSTRUMENT_ROLES and getattr(device, "_session", None) is not None:
            _arm_instrument(device, role, FaultPlan.model_validate(dict(fields)))
        else:
            raise ConfigError(
                f"[faults.{role}]: {type(device).__name__} cannot inject faults (only lab4f's simulated "
                f"devices and SCPI instruments can); remove [faults.{role}] for real hardware"
            )


def _arm_instrument(device: Any, role: str, plan: FaultPlan) -> None:
    """Make an SCPI instrument's session fail as ``plan`` says, counting exchanges from now."""
    session = device._session
    inner = session._call
    count = [0]
    resource = getattr(session, "resource_name", role)

    def call(method: Any, message: str) -> Any:
        n = count[0]
        count[0] += 1
        if plan.active("disconnect", n):
            raise DeviceDisconnected(
                f"{resource} stopped answering {message!r} (simulated fault): check its cable "
                "and power, then reconnect it",
                device=role,
            )
        if plan.active("frame_timeout", n):
            raise DeviceTimeout(
                f"{resource} did not answer {message!r} (simulated fault): check that it is powered "
                "and cabled, or raise timeout_ms in its settings",
                device=role,
            )
        if plan.active("slm_write_failure", n):
            raise DeviceError(
                f'{resource} refused {message!r}: -200,"Execution error" (simulated fault); check '
                "the instrument's front panel and its interlock",
                device=role,
            )
        return inner(method, message)

    session._call = call


def role_of(devices: dict[str, Any], device: str | None) -> str | None:
    """The bench role of the device a :class:`DeviceError` names (a role, or a device's ``name``), or None."""
    if device in ROLES:
        return device
    for role, dev in devices.items():
        if device is not None and device == getattr(dev, "name", None):
            return role
    return None


@contextlib.contextmanager
def device_fault_context(devices: dict[str, Any], what_was_kept: str) -> Iterator[None]:
    """Re-raise a :class:`DeviceError` with the failing device's bench role (``exc.role``) and a sentence on what
    the command kept (``what_was_kept``), so the CLI's message and JSON (exit code 3) say both."""
    try:
        yield
    except DeviceError as exc:
        role = role_of(devices, exc.device)
        where = (
            f"{role} ({exc.device})"
            if role and exc.device and role != exc.device
            else (role or exc.device)
        )
        try:
            new = type(exc)(
                f"{exc} [{where + ': ' if where else ''}{what_was_kept}]", device=exc.device
            )
        except TypeError:  # a subclass with another signature: keep it as it is
            exc.role = role  # type: ignore[attr-defined]
            raise exc from None
        new.role = role  # type: ignore[attr-defined]
        raise new from exc
