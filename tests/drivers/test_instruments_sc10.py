"""Thorlabs SC10 shutter controller against pyvisa-sim: its echoed, prompted command set pinned exchange by exchange,
moves read back until the shutter follows, the interlock, and errors that come back as replies (no SYST:ERR?)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.devices import DRIVERS, Bench, build_device
from lab4f.bench.preflight import check_device
from lab4f.drivers.instruments import sim_instruments_path
from lab4f.drivers.thorlabs_sc10 import SC10Shutter, SC10ShutterSettings
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceTimeout

SC10, INTERLOCKED = "ASRL3::INSTR", "ASRL4::INSTR"


def _library(
    tmp_path: Path, edit: dict[str, str] | None = None, name: str = "sim_instruments.yaml"
) -> str:
    """A private copy of the sim file (pyvisa keeps one backend, and its device state, per path), optionally edited."""
    text = Path(sim_instruments_path()).read_text()
    for old, new in (edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return f"{path}@sim"


@pytest.fixture
def sim_library(tmp_path: Path) -> str:
    return _library(tmp_path)


@pytest.fixture
def sc10(sim_library: str):
    with SC10Shutter(SC10ShutterSettings(visa_library=sim_library)) as sh:
        sh.session.exchanges.clear()
        yield sh


def test_connect_reads_id_and_keeps_manual_mode(sim_library):
    with SC10Shutter(SC10ShutterSettings(visa_library=sim_library)) as sh:
        # the controller echoes each command before its reply; the "> " prompt ends the read
        assert sh.session.exchanges == [
            ("id?", "id?\rTHORLABS SC10 VERSION 1.07"),
            ("mode?", "mode?\r1"),
        ]
        assert sh.identity == ("THORLABS", "SC10", "", "1.07")
        assert sh.session.writes == 0 and sh.mode == 1


def test_open_toggles_enable_and_waits_for_closed_to_follow(sc10):
    before = time.perf_counter()
    sc10.open_shutter()
    assert sc10.session.exchanges == [
        (
            "interlock?",
            "interlock?\r0",
        ),  # a tripped interlock would keep it shut: refused before anything is sent
        ("ens?", "ens?\r0"),  # ens TOGGLES, so it is sent only when the state differs
        ("ens", "ens"),  # the echo and the prompt are the whole reply
        ("closed?", "closed?\r1"),
        ("closed?", "closed?\r1"),  # the simulated shutter is still moving
        ("closed?", "closed?\r0"),  # open: the move is done
    ]
    assert before < sc10.changed_at["is_open"] < time.perf_counter()
    assert sc10.known("is_open") is True and sc10.state == "open"
    sc10.session.exchanges.clear()
    sc10.open_shutter()  # already open: nothing is toggled
    assert sc10.session.exchanges == [
        ("interlock?", "interlock?\r0"),
        ("ens?", "ens?\r1"),
        ("closed?", "closed?\r0"),
    ]
    sc10.close_shutter()
    assert sc10.session.exchanges[3:] == [
        ("ens?", "ens?\r1"),
        ("ens", "ens"),
        ("closed?", "closed?\r0"),
        ("closed?", "closed?\r0"),
        ("closed?", "closed?\r1"),
    ]
    assert sc10.known("is_open") is False and sc10.session.writes == 2


def test_known_is_read_without_bus_traffic(sc10):
    """A simulated camera reads known("is_open") every frame: after the first read it costs no exchange."""
    assert sc10.known("is_open") is False
    n = len(sc10.session.exchanges)
    assert all(sc10.known("is_open") is False for _ in range(100))
    assert len(sc10.session.exchanges) == n
    sc10.command(
        "ens"
    )  # a raw command: read from the device again (still moving: the old position)
    assert sc10.known("is_open") is False and len(sc10.session.exchanges) == n + 2


def test_tripped_interlock_refuses_to_open_and_still_closes(sim_library):
    with SC10Shutter(SC10ShutterSettings(resource=INTERLOCKED, visa_library=sim_library)) as sh:
        # left in repeat mode: connect puts it in manual mode, the one in which ens opens and shuts
        assert sh.session.exchanges == [
            ("id?", "id?\rTHORLABS SC10 VERSION 1.07"),
            ("mode?", "mode?\r4"),
            ("mode=1", "mode=1"),
        ]
        assert sh.mode == 1 and sh.interlock is True
        writes = sh.session.writes
        with pytest.raises(
            DeviceError,
            match=r"ASRL4::INSTR: the SC10's interlock is tripped.*close the interlock "
            r"loop.*Nothing was sent",
        ):
            sh.open_shutter()
        assert sh.session.writes == writes and sh.is_open is False
        sh.close_shutter()  # closing is never refused
        snap = sh.settings_snapshot()
        assert (
            snap["interlock_tripped"] is True
            and snap["shutter_open"] is False
            and snap["mode"] == 1
        )


@pytest.mark.parametrize(
    ("message", "code"), [("xyz", "CMD_NOT_DEFINED"), ("mode=9", "CMD_ARG_INVALID")]
)
def test_error_replies_are_device_errors_and_the_next_exchange_is_clean(sc10, message, code):
    with pytest.raises(DeviceError, match=rf"ASRL3::INSTR refused '{message}': {code}"):
        sc10.command(message)
    assert sc10.session.exchanges[-1] == (message, f"{message}\r{code}")
    assert sc10.mode == 1 and sc10.session.exchanges[-1] == ("mode?", "mode?\r1")


def test_a_shutter_that_does_not_follow_is_a_device_error(tmp_path):
    # a blade stuck open: the controller is disabled, but closed? says open whatever ens does
    closed = "closed: &sc10_closed\n        default: "
    library = _library(
        tmp_path, {"flip: [enable, closed]": "flip: [enable]", closed + "1": closed + "0"}
    )
    with SC10Shutter(SC10ShutterSettings(visa_library=library, move_timeout_s=0.05)) as sh:
        start = time.perf_counter()
        with pytest.raises(
            DeviceError,
            match=r"told to shut but closed\? still reads 0 after 0\.05 s: the shutter "
            r"may not have closed, so light may still pass",
        ):
            sh.close_shutter()
        assert 0.05 <= time.perf_counter() - start < 1.0
        assert (
            sum(1 for q, _ in sh.session.exchanges if q == "closed?") >= 3
        )  # polled until the deadline
        assert sh.known("is_open") is True  # what it reports, not what was asked


def test_a_slow_shutter_times_out_opening(tmp_path):
    library = _library(tmp_path, {"lag_reads: {closed: 2}": "lag_reads: {closed: 100000}"})
    with SC10Shutter(SC10ShutterSettings(visa_library=library, move_timeout_s=0.03)) as sh:
        with pytest.raises(
            DeviceError,
            match=r"told to open but closed\? still reads 1 after 0\.03 s: check the "
            r"shutter cable",
        ):
            sh.open_shutter()
        assert sh.known("is_open") is False


def test_another_instrument_on_the_port_is_refused(sim_library, tmp_path):
    sh = SC10Shutter(
        SC10ShutterSettings(resource="ASRL1::INSTR", visa_library=sim_library, timeout_ms=100)
    )
    with pytest.raises(DeviceTimeout, match=r"ASRL1::INSTR did not answer 'id\?' within 100 ms"):
        sh.connect()  # the SCPI source waits for LF, the SC10's commands end with CR
    assert sh._session is None
    other = _library(
        tmp_path, {"THORLABS SC10 VERSION 1.07": "THORLABS FW102C VERSION 1.01"}, "wheel.yaml"
    )
    with pytest.raises(
        DeviceDisconnected,
        match=r"answered id\? with 'THORLABS FW102C VERSION 1.01', not as a "
        r"Thorlabs SC10 does.*baud_rate \(9600\)",
    ):
        SC10Shutter(SC10ShutterSettings(visa_library=other)).connect()


def test_settings_baud_rate_and_the_registry(sim_library):
    with SC10Shutter(SC10ShutterSettings(visa_library=sim_library, baud_rate=115200)) as sh:
        assert sh.session._resource.baud_rate == 115200
    bad = DeviceConfig(driver="SC10Shutter", settings={"baud_rate": 4800})
    with pytest.raises(ConfigError, match="baud_rate"):
        build_device("shutter", bad, {})
    assert [f.level for f in check_device("shutter", bad, DRIVERS)] == ["error"]
    good = DeviceConfig(driver="SC10Shutter", settings={"visa_library": sim_library})
    assert check_device("shutter", good, DRIVERS) == []
    sh = build_device(
        "shutter", DeviceConfig(driver="SC10Shutter", settings={"visa_library": sim_library}), {}
    )
    try:
        assert isinstance(sh, SC10Shutter) and sh.identity.model == "SC10"  # built and connected
    finally:
        sh.close()


def test_transcript_records_the_commands_sent(sc10, tmp_path, monkeypatch):
    transcript = tmp_path / "visa.log"
    monkeypatch.setenv("LAB4F_VISA_TRANSCRIPT", str(transcript))
    sc10.open_shutter()
    sc10.close_shutter()
    assert transcript.read_text().splitlines() == [
        "ASRL3::INSTR\tens",
        "ASRL3::INSTR\tens",
    ]  # queries are not


def test_a_simulated_bench_with_an_sc10_is_dark_until_it_opens_and_shut_on_exit(tmp_path):
    library = _library(tmp_path)
    cfg = BenchConfig(
        shutter=DeviceConfig(driver="SC10Shutter", settings={"visa_library": library}),
        camera=DeviceConfig(
            driver="Simulated4fCamera",
            settings={"noise": False, "max_fps": None, "exposure_s": 2e-4},
        ),
    )
    with Bench(cfg) as bench:
        bench.display.show_point()
        bench.light_source.output_on, bench.light_source.power_mw = False, 1.0
        dark = float(np.asarray(bench.camera.get_image(), np.float64).max())
        bench.illuminate()
        assert bench.shutter.known(
            "is_open"
        ) is True and bench.camera.light_level() == pytest.approx(1.0)
        assert float(np.asarray(bench.camera.get_image(), np.float64).max()) > dark + 500
        bench.shutter.close_shutter()
        assert bench.camera.light_level() == 0.0
        bench.shutter.open_shutter()
        shutter = bench.shutter
    assert shutter._session is None  # closed by the bench, after shutting (on_exit = "safe")
    with SC10Shutter(SC10ShutterSettings(visa_library=library)) as sh:
        assert sh.is_open is False
