"""Fault plans: arming now or after N frames, dropped-frame schedule, typed errors, disarming."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from lab4f.drivers.faults import FaultPlan, check_connected, check_frame_timeout, check_write
from lab4f.drivers.sim_display import SimulatedDisplay
from lab4f.errors import DeviceDisconnected, DeviceError, DeviceTimeout


def test_faults_arm_now_or_after_n() -> None:
    plan = FaultPlan(frame_timeout_after_n=3)
    assert [plan.active("frame_timeout", n) for n in range(5)] == [False, False, False, True, True]
    assert not plan.active("disconnect", 100)
    plan.disconnect = True
    assert plan.active("disconnect", 0)


def test_drop_schedule_and_validation() -> None:
    plan = FaultPlan(drop_every_n=4)
    assert [i for i in range(12) if plan.drops(i)] == [3, 7, 11]
    assert not any(FaultPlan().drops(i) for i in range(50))
    with pytest.raises(ValidationError):
        FaultPlan(drop_every_n=1)
    with pytest.raises(ValidationError):
        plan.drop_every_n = -2  # validated on assignment too
    with pytest.raises(ValidationError):
        FaultPlan(frame_timout=True)  # a typo is an error, not a silently ignored field


def test_each_fault_raises_its_typed_error_with_advice() -> None:
    plan = FaultPlan(
        disconnect=True, frame_timeout=True, slm_write_failure=True, timeout_wait_s=0.05
    )
    with pytest.raises(DeviceDisconnected, match="reconnect the device") as info:
        check_connected(plan, 0, "cam")
    assert info.value.device == "cam"  # the failing device travels with the error
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeout, match="within 1 s"):
        check_frame_timeout(plan, 0, "cam", timeout_s=1.0)
    assert time.perf_counter() - t0 >= 0.05
    with pytest.raises(DeviceError, match="Retry") as info:
        check_write(plan, 0, "slm")
    assert info.value.device == "slm"
    assert issubclass(DeviceTimeout, DeviceError) and issubclass(DeviceDisconnected, DeviceError)


def test_clear_disarms_everything() -> None:
    plan = FaultPlan(
        disconnect=True, drop_every_n=5, slm_write_failure_after_n=0, timeout_wait_s=1.0
    )
    plan.clear()
    assert plan == FaultPlan()


def test_display_disconnect() -> None:
    display = SimulatedDisplay()
    display.faults.disconnect_after_n = 1
    display.show_point()
    with pytest.raises(DeviceDisconnected):
        display.blank()
    assert display.version == 1
