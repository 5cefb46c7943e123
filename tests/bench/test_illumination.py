"""The simulated camera sees the bench's light source and shutter: power scales the signal, off/closed is dark."""

import json

import h5py
import numpy as np
import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig, load_bench_config
from lab4f.bench.devices import Bench
from lab4f.errors import DeviceError

OFFSET = 100.0  # the simulated camera's dark offset, ADU


def quiet_bench() -> Bench:
    """The suite's (instant-timing) simulated bench with a noise-free camera (exact ratios; an exposure far from
    saturation), a point on the display, the source at 1 mW and off, the shutter closed. The simulated instruments
    keep their state between connections within a process, as real ones do between sessions, so it is set here,
    not assumed."""
    cfg = load_bench_config().with_settings(
        camera={"noise": False, "max_fps": None, "exposure_s": 2e-4}
    )
    bench = Bench(cfg).connect()
    bench.display.show_point()
    bench.light_source.output_on, bench.light_source.power_mw, bench.shutter.is_open = (
        False,
        1.0,
        False,
    )
    return bench


def signal(bench: Bench) -> float:
    """The spot's peak above the dark offset, ADU (a sum over the frame would add FFT ringing quantised about 0)."""
    return float(np.asarray(bench.camera.get_image(), np.float64).max() - OFFSET)


def test_light_off_or_shutter_closed_is_dark_and_power_scales_the_signal() -> None:
    with quiet_bench() as bench:
        src, sh = bench.light_source, bench.shutter
        assert signal(bench) == 0.0  # nothing reaches the sensor: offset only (noise-free camera)
        bench.illuminate()
        assert src.output_on and sh.is_open
        at_1mw = signal(bench)
        assert 500 < at_1mw < 2000  # far from the 4095 ADU of saturation, so 2 mW must double it
        src.power_mw = 2.0
        assert signal(bench) == pytest.approx(2 * at_1mw, rel=2e-3)  # quantisation only
        sh.is_open = False
        assert signal(bench) == 0.0
        sh.is_open = True
        src.output_on = False
        assert signal(bench) == 0.0
        assert bench.camera.light_level() == 0.0


def test_the_source_safety_limit_still_applies_and_a_refused_setting_leaves_the_light_as_it_was() -> (
    None
):
    with quiet_bench() as bench:
        bench.illuminate()
        before = signal(bench)
        with pytest.raises(DeviceError, match="max_power_mw"):
            bench.light_source.power_mw = 6.0  # the built-in bench's limit is 5 mW
        assert bench.light_source.known("power_mw") == pytest.approx(1.0)
        assert signal(bench) == pytest.approx(before, rel=1e-6)


def test_a_raw_command_is_read_back_not_assumed() -> None:
    with quiet_bench() as bench:
        src = bench.light_source
        assert src.known("output_on") is False
        src.command("OUTP 1")  # bypasses the property: the cached state is dropped and read again
        assert src.known("output_on") is True
        assert bench.camera.light_level() == 0.0  # the shutter is still closed
        bench.shutter.command("SHUT 1")
        assert bench.camera.light_level() == pytest.approx(1.0)


def test_a_camera_without_source_or_shutter_sees_the_reference_flux() -> None:
    cfg = BenchConfig(
        light_source=None,
        shutter=None,
        camera=DeviceConfig(driver="Simulated4fCamera", settings={"noise": False}),
    )
    with Bench(cfg) as bench:
        bench.display.show_point()
        assert bench.camera.light_level() == 1.0 and signal(bench) > 500


def test_bench_snap_switches_the_light_for_its_frame_and_restores_it(tmp_path, capsys) -> None:
    from lab4f.cli import main

    lit, dark = tmp_path / "lit", tmp_path / "dark"
    assert main(["bench", "snap", "--out", str(lit), "--json"]) == 0
    assert main(["bench", "snap", "--out", str(dark), "--light", "off", "--json"]) == 0
    out = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    assert (
        out[0]["max"] > 1000 and out[1]["max"] < OFFSET + 50
    )  # a dark frame: offset and read noise only
    with h5py.File(dark.with_suffix(".h5")) as f:
        assert f.attrs["light"] == "off"


def test_a_source_connected_anew_drives_the_camera() -> None:
    """The GUI reconnects one device at a time: the camera must follow the new source object, not the closed one."""
    from lab4f.bench.devices import build_device

    with quiet_bench() as bench:
        bench.illuminate()
        at_1mw = signal(bench)
        old = bench.devices.pop("light_source")
        old.close()
        assert signal(bench) == pytest.approx(at_1mw)  # disconnected: the light stays as it was
        new = bench.devices["light_source"] = build_device(
            "light_source", bench.config.light_source, bench.devices
        )
        bench.couple_light()
        new.power_mw = 2.0
        assert signal(bench) == pytest.approx(2 * at_1mw, rel=2e-3)
        new.output_on = False
        assert signal(bench) == 0.0


def test_closing_the_bench_puts_the_light_back_as_it_was_before_a_run() -> None:
    """on_exit = "as_found": the light goes back to what it was before lab4f switched it."""
    from lab4f.drivers.instruments import LightSource, LightSourceSettings, Shutter, ShutterSettings

    bench = quiet_bench()  # off and closed
    bench.config = bench.config.model_copy(update={"on_exit": "as_found"})
    bench.illuminate()
    bench.illuminate()  # twice: the state to restore is the one before the first
    assert bench.light_source.output_on and bench.shutter.is_open
    bench.close()
    with (
        LightSource(LightSourceSettings(visa_library="@lab4f-sim")) as src,
        Shutter(ShutterSettings(visa_library="@lab4f-sim")) as sh,
    ):
        assert not src.output_on and not sh.is_open
        src.output_on, sh.is_open = True, True  # a source that was on before stays on
    with Bench(BenchConfig(on_exit="as_found")) as bench:
        bench.illuminate()
    with LightSource(LightSourceSettings(visa_library="@lab4f-sim")) as src:
        assert src.output_on


def test_closing_the_bench_makes_the_light_safe_by_default() -> None:
    """on_exit = "safe" (the default): shutter shut and source off on close, even if they were on before."""
    from lab4f.drivers.instruments import LightSource, LightSourceSettings, Shutter, ShutterSettings

    with (
        LightSource(LightSourceSettings(visa_library="@lab4f-sim")) as src,
        Shutter(ShutterSettings(visa_library="@lab4f-sim")) as sh,
    ):
        src.output_on, sh.is_open = True, True
    with Bench(BenchConfig()) as bench:
        bench.illuminate()
    with (
        LightSource(LightSourceSettings(visa_library="@lab4f-sim")) as src,
        Shutter(ShutterSettings(visa_library="@lab4f-sim")) as sh,
    ):
        assert not src.output_on and not sh.is_open


def test_sigterm_mid_run_leaves_the_light_safe(tmp_path) -> None:
    """A process sent SIGTERM while its bench is lit closes the shutter, then switches the source off (read from
    the commands the instruments received: pyvisa-sim keeps no state across processes)."""
    import os
    import signal
    import subprocess
    import sys

    transcript = tmp_path / "visa.log"
    script = (
        "import sys, time\n"
        "from lab4f.bench.devices import Bench\n"
        "from lab4f.bench.safety import install_exit_handlers\n"
        "install_exit_handlers()\n"
        "with Bench() as bench:\n"
        "    bench.illuminate()\n"
        "    print('lit', flush=True)\n"
        "    while True:\n"
        "        bench.camera.get_image()\n"
    )
    env = dict(os.environ, LAB4F_VISA_TRANSCRIPT=str(transcript))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "lit"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    sent = [line.split("\t")[1].strip() for line in transcript.read_text().splitlines()]
    lit = max(i for i, m in enumerate(sent) if m == "OUTP 1")
    after = sent[lit + 1 :]
    assert "SHUT 0" in after and "OUTP 0" in after
    assert after.index("SHUT 0") < after.index("OUTP 0")  # the shutter closes first


def test_dark_frames_close_the_shutter_and_leave_the_source_on() -> None:
    """Calibration darkness closes the shutter and leaves a source that is on as it is (no warm-up drift from
    switching a laser off and on for every dark frame); a bench without a shutter switches the source off."""
    from lab4f.calibration.camera import light_blocked

    with Bench(BenchConfig()) as bench:
        bench.illuminate()
        writes = len(bench.light_source.session.exchanges)
        with light_blocked(bench):
            assert not bench.shutter.is_open and bench.light_source.output_on
        assert bench.shutter.is_open
        sent = [m for m, r in bench.light_source.session.exchanges[writes:] if r is None]
        assert not any(m.startswith("OUTP") for m in sent)  # the source was never switched
    with Bench(BenchConfig(shutter=None)) as bench:
        bench.illuminate()
        with light_blocked(bench):
            assert not bench.light_source.output_on
        assert bench.light_source.output_on
