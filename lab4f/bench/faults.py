"""Device faults at the command line: which bench role a failing device plays, and what a command that a device
stopped kept (:func:`device_fault_context`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lab4f.errors import DeviceError

ROLES = ("slm", "display", "camera", "light_source", "shutter")  # lab4f.bench.devices.ROLES


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
        where = f"the {role} ({exc.device})" if role and exc.device and role != exc.device else (role or exc.device)
        try:
            new = type(exc)(f"{exc} [{'device ' + where + ': ' if where else ''}{what_was_kept}]", device=exc.device)
        except TypeError:  # a subclass with another signature: keep it as it is
            exc.role = role  # type: ignore[attr-defined]
            raise exc from None
        new.role = role  # type: ignore[attr-defined]
        raise new from exc
