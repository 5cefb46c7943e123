"""SCPI instruments against pyvisa-sim: exact message exchange, ranges, safety limit, error read-back, read-back of
a shutter's moves. The Thorlabs SC10 (not SCPI) is in test_instruments_sc10.py."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import pyvisa

from lab4f.drivers.instruments import (
    LightSource,
    LightSourceSettings,
    ScpiSession,
    Shutter,
    ShutterSettings,
    parse_scpi_error,
    sim_instruments_path,
    sim_resource_manager,
)
from lab4f.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    SafetyLimitError,
)

NO_ERROR = '0,"No error"'


@pytest.fixture
def sim_library(tmp_path: Path) -> str:
    """A private copy of the sim file: pyvisa caches one backend (and device state) per path."""
    copy = tmp_path / "sim_instruments.yaml"
    shutil.copy(sim_instruments_path(), copy)
    return f"{copy}@sim"


@pytest.fixture
def source(sim_library: str):
    with LightSource(LightSourceSettings(visa_library=sim_library, max_power_mw=5.0)) as ls:
        ls.session.exchanges.clear()
        yield ls


def test_sim_resource_manager_lists_the_simulated_instruments():
    rm = sim_resource_manager()  # source, SCPI shutter, SC10, SC10 with its interlock tripped
    assert set(rm.list_resources()) == {
        "ASRL1::INSTR",
        "ASRL2::INSTR",
        "ASRL3::INSTR",
        "ASRL4::INSTR",
    }


def test_connect_reads_identity_then_drains_error_queue(sim_library):
    ls = LightSource(LightSourceSettings(visa_library=sim_library)).connect()
    try:
        assert ls.session.exchanges == [
            ("*IDN?", "LAB4F-SIM,LS-450,SIM0001,1.2.0"),
            ("SYST:ERR?", NO_ERROR),
        ]
        assert ls.identity.model == "LS-450" and ls.identity.serial == "SIM0001"
    finally:
        ls.close()
    with pytest.raises(DeviceDisconnected, match="not connected"):
        _ = ls.power_mw


def test_set_power_exchange_is_pinned(source):
    source.power_mw = 3.25
    assert source.power_mw == pytest.approx(3.25, abs=1e-9)
    assert source.session.exchanges == [
        ("SOUR:POW 0.003250", None),  # SI units on the wire: watts
        ("SYST:ERR?", NO_ERROR),
        ("SOUR:POW?", "3.250000E-03"),
    ]


def test_output_on_checks_setpoints_against_limits_first(source):
    source.current_ma = 40.0
    source.session.exchanges.clear()
    source.on()
    assert source.session.exchanges == [
        ("SOUR:POW?", "1.000000E-03"),
        ("SOUR:CURR?", "4.000000E-02"),
        ("OUTP 1", None),
        ("SYST:ERR?", NO_ERROR),
    ]
    assert source.output_on is True
    source.off()
    assert source.output_on is False


@pytest.mark.parametrize("power_mw", [5.01, 20.0, 80.0])
def test_safety_limit_refused_before_anything_is_written(source, power_mw):
    before = source.power_mw
    writes = source.session.writes
    with pytest.raises(SafetyLimitError, match="max_power_mw=5"):
        source.power_mw = power_mw
    assert source.session.writes == writes
    assert source.power_mw == before


@pytest.mark.parametrize(
    "raw",
    [
        "SOUR:POW 0.0051",
        "source:power 0.02",
        ":SOUR1:POW:LEV:IMM:AMPL 0.01",
        "SOUR:POW MAX",
        "*CLS;SOUR:POW 1",
    ],
)
def test_safety_limit_covers_raw_commands_in_any_spelling(source, raw):
    with pytest.raises(SafetyLimitError, match="nothing was sent"):
        source.command(raw)
    assert source.session.writes == 0


def test_power_at_exactly_the_limit_is_allowed(source):
    source.power_mw = 5.0
    assert source.power_mw == pytest.approx(5.0, abs=1e-9)


def test_enabling_output_refused_when_device_setpoint_exceeds_limit(sim_library):
    with LightSource(LightSourceSettings(visa_library=sim_library, max_power_mw=40.0)) as ls:
        ls.power_mw = 30.0  # set earlier by a user with a looser limit
    with LightSource(LightSourceSettings(visa_library=sim_library, max_power_mw=5.0)) as ls:
        with pytest.raises(SafetyLimitError, match="on device"):
            ls.on()
        assert ls.output_on is False


@pytest.mark.parametrize(
    ("field", "limit", "numbers"),
    [("max_power_mw", 100.0, ("100 mW", "50 mW")), ("max_current_ma", 250.0, ("250 mA", "200 mA"))],
)
def test_a_limit_above_the_device_range_is_refused_at_construction(
    sim_library, field, limit, numbers
):
    with pytest.raises(
        ConfigError,
        match=rf"{field} = {numbers[0]} is above .*LightSource can deliver "
        rf"\({numbers[1]}\).*at most",
    ):
        LightSource(LightSourceSettings(visa_library=sim_library, **{field: limit}))
    LightSource(
        LightSourceSettings(visa_library=sim_library, **{field: limit / 2})
    )  # within range: accepted


def test_device_range_validated_before_writing(sim_library):
    # The limits cannot exceed the device range (above); below it, the device range (0-50 mW) is what refuses.
    with LightSource(LightSourceSettings(visa_library=sim_library, max_power_mw=50.0)) as ls:
        writes = ls.session.writes
        with pytest.raises(DeviceError, match=r"outside the device range \[0, 50\] mW"):
            ls.power_mw = -0.5
        with pytest.raises(DeviceError, match=r"\[0, 200\] mA"):
            ls.current_ma = -1.0
        assert ls.session.writes == writes


def test_device_error_is_read_back_and_next_query_is_clean(source):
    # Bypass the driver's range check: the device itself refuses a negative power.
    source.power_mw = 2.0
    with pytest.raises(DeviceError, match=r"refused 'SOUR:POW -0\.001': -222,Data out of range"):
        source.command("SOUR:POW -0.001")
    assert source.power_mw == pytest.approx(
        2.0, abs=1e-9
    )  # unchanged, and the query is not corrupted
    assert source.session.exchanges[-3:] == [
        ("SYST:ERR?", '-222,"Data out of range or undefined header"'),
        ("SYST:ERR?", NO_ERROR),
        ("SOUR:POW?", "2.000000E-03"),
    ]


def test_missing_resource_names_wanted_and_listed(sim_library):
    ls = LightSource(LightSourceSettings(resource="ASRL7::INSTR", visa_library=sim_library))
    with pytest.raises(DeviceDisconnected) as info:
        ls.connect()
    message = str(info.value)
    assert "'ASRL7::INSTR'" in message and "ASRL1::INSTR" in message and "ASRL2::INSTR" in message


def test_unanswered_query_becomes_device_timeout(sim_library):
    # A setter sent as a query: the device answers nothing, so the read must time out.
    rm = pyvisa.ResourceManager(sim_library)
    resource = rm.open_resource(
        "ASRL1::INSTR", timeout=50, read_termination="\n", write_termination="\n"
    )
    session = ScpiSession(resource, "ASRL1::INSTR")
    start = time.perf_counter()
    with pytest.raises(DeviceTimeout, match=r"ASRL1::INSTR did not answer 'OUTP 0' within 50 ms"):
        session.query("OUTP 0")
    assert time.perf_counter() - start < 1.0
    resource.close()


def test_shutter_open_close_state(sim_library):
    with Shutter(ShutterSettings(visa_library=sim_library)) as sh:
        assert sh.identity.model == "SH-25"
        sh.session.exchanges.clear()
        sh.open_shutter()
        assert sh.state == "open"
        sh.close_shutter()
        assert sh.state == "closed"
        assert sh.session.exchanges == [
            ("SHUT 1", None),
            ("SYST:ERR?", NO_ERROR),
            ("SHUT?", "1"),  # the move, its errors, its position
            ("SHUT?", "1"),  # state
            ("SHUT 0", None),
            ("SYST:ERR?", NO_ERROR),
            ("SHUT?", "0"),
            ("SHUT?", "0"),
        ]
        assert sh.settings_snapshot()["shutter_open"] is False
        assert sh.interlock is None  # this command set has none


# a shutter whose controller accepts every move and whose position never follows (jammed, or its blade unplugged)
JAMMED = """spec: "1.1"
devices:
  jammed:
    eom:
      ASRL INSTR: {q: "\\n", r: "\\n"}
    error:
      error_queue:
        - {q: "SYST:ERR?", default: '0,"No error"', command_error: '-222,"Data out of range"'}
    dialogues:
      - {q: "*IDN?", r: "LAB4F-SIM,SH-25,JAM0001,1.0.3"}
    properties:
      command:
        default: 0
        setter: {q: "SHUT {:d}"}
        specs: {valid: [0, 1], type: int}
      position:
        default: 1
        getter: {q: "SHUT?", r: "{:d}"}
        specs: {valid: [0, 1], type: int}
resources:
  ASRL9::INSTR: {device: jammed}
"""


def test_a_shutter_whose_position_does_not_follow_is_a_device_error(tmp_path):
    path = tmp_path / "jammed.yaml"
    path.write_text(JAMMED)
    settings = ShutterSettings(
        resource="ASRL9::INSTR", visa_library=f"{path}@sim", move_timeout_s=0.05
    )
    with Shutter(settings) as sh:
        start = time.perf_counter()
        with pytest.raises(
            DeviceError,
            match=r"accepted 'SHUT 0' but SHUT\? still reads True after 0\.05 s: the "
            r"shutter did not close, so light may still pass",
        ):
            sh.close_shutter()
        assert 0.05 <= time.perf_counter() - start < 1.0
        polls = [e for e in sh.session.exchanges if e[0] == "SHUT?"]
        assert len(polls) >= 3 and all(
            reply == "1" for _, reply in polls
        )  # polled until the timeout
        assert sh.known("is_open") is True  # what the device reports, not what was asked


def test_settings_snapshot_is_flat_with_units(source):
    source.power_mw = 1.5
    snap = source.settings_snapshot()
    assert snap["driver"] == "LightSource"
    assert snap["max_power_mw"] == 5.0 and snap["idn_serial"] == "SIM0001"
    assert snap["power_mw"] == pytest.approx(1.5, abs=1e-9)
    assert all(isinstance(v, str | int | float | bool) for v in snap.values())


def test_parse_scpi_error():
    assert parse_scpi_error('-222,"Data out of range"') == (-222, "Data out of range")
    assert parse_scpi_error("0,No error") == (0, "No error")
    with pytest.raises(DeviceError, match="SCPI"):
        parse_scpi_error("garbage")


def test_known_follows_what_the_device_accepted_rounded_as_sent(source):
    source.power_mw = 1.2345678  # sent as watts with 6 decimals: the device holds 1.235 mW
    assert source.known("power_mw") == pytest.approx(1.235)
    assert source.known("power_mw") == pytest.approx(source.power_mw)
    with pytest.raises(DeviceError):
        source.power_mw = 7.0  # above the 5 mW limit: refused, the known value stays
    assert source.known("power_mw") == pytest.approx(1.235)
    source.command("SOUR:POW 0.002")  # a raw command: read from the device again
    assert source.known("power_mw") == pytest.approx(2.0)


def test_settings_and_status_reads_from_two_threads_do_not_swap_replies(sim_library):
    """A GUI reads status while its worker thread sets: each command and its error read-back is one exchange."""
    import threading

    with Shutter(ShutterSettings(visa_library=sim_library)) as sh:
        errors: list[str] = []
        done = threading.Event()

        def setter() -> None:
            try:
                for i in range(600):
                    sh.is_open = bool(i % 2)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"setter: {exc}")
            finally:
                done.set()

        def poller() -> None:
            while not done.is_set():
                try:
                    _ = sh.is_open  # a status read: a query on the bus
                    sh.known("is_open")
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"poller: {exc}")
                    return

        threads = [threading.Thread(target=setter), threading.Thread(target=poller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors[:3]
        assert (
            sh.known("is_open") is True and sh.is_open is True
        )  # the last set (i = 599) opened it
