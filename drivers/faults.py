"""Fault injection for the simulated bench: what can go wrong with real devices, armable at run time.

A `FaultPlan` is held by each simulated device (`device.faults`). Arm a fault now
(`camera.faults.frame_timeout = True`) or after a number of frames / writes
(`camera.faults.disconnect_after_n = 100`); the device turns it into the typed error that real
hardware adapters raise (`DeviceDisconnected`, `DeviceTimeout`, `DeviceError`), so the pipeline's
error handling is exercised without hardware.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lab4f.errors import DeviceDisconnected, DeviceError, DeviceTimeout

FaultName = Literal["disconnect", "frame_timeout", "slm_write_failure"]


class FaultPlan(BaseModel):
    """Which faults a simulated device injects. Counts are frames (camera) or writes (SLM, display)."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    disconnect: bool = False
    frame_timeout: bool = False
    slm_write_failure: bool = False
    drop_every_n: int = Field(
        0, ge=0, description="drop every n-th hardware frame (0: never; n >= 2)"
    )
    disconnect_after_n: int | None = Field(None, ge=0)
    frame_timeout_after_n: int | None = Field(None, ge=0)
    slm_write_failure_after_n: int | None = Field(None, ge=0)
    timeout_wait_s: float = Field(
        0.0, ge=0.0, description="time a simulated timeout blocks before raising"
    )

    @field_validator("drop_every_n")
    @classmethod
    def _drop_at_least_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("drop_every_n=1 would drop every frame; use 0 (off) or >= 2")
        return value

    def active(self, fault: FaultName, count: int) -> bool:
        """True if `fault` is armed now, or scheduled and `count` frames/writes have passed."""
        after_n = getattr(self, f"{fault}_after_n")
        return bool(getattr(self, fault)) or (after_n is not None and count >= after_n)

    def drops(self, hw_frame_index: int) -> bool:
        """True if the hardware frame with this index is lost (every `drop_every_n`-th frame)."""
        return self.drop_every_n > 0 and (hw_frame_index + 1) % self.drop_every_n == 0

    def clear(self) -> None:
        """Disarm every fault (a replugged, healthy device)."""
        for name, field in type(self).model_fields.items():
            setattr(self, name, field.default)


def check_connected(plan: FaultPlan, count: int, device: str) -> None:
    """Raise `DeviceDisconnected` if the plan says the device is unplugged."""
    if plan.active("disconnect", count):
        raise DeviceDisconnected(
            f"{device} is disconnected (simulated fault). Clear the fault, then reconnect the device.",
            device=device,
        )


def check_frame_timeout(plan: FaultPlan, count: int, device: str, timeout_s: float) -> None:
    """Block `plan.timeout_wait_s`, then raise `DeviceTimeout`, if a frame timeout is armed."""
    if plan.active("frame_timeout", count):
        time.sleep(plan.timeout_wait_s)
        raise DeviceTimeout(
            f"{device} delivered no frame within {timeout_s:.3g} s (simulated fault). "
            "Check the trigger and the exposure, then retry.",
            device=device,
        )


def check_write(plan: FaultPlan, count: int, device: str) -> None:
    """Raise `DeviceError` if a write failure is armed."""
    if plan.active("slm_write_failure", count):
        raise DeviceError(
            f"{device} rejected the pattern write (simulated fault); the previous pattern is still shown. "
            "Retry the write; if it persists, power-cycle the SLM controller.",
            device=device,
        )
