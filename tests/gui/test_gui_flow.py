"""The real flow on the simulated bench, headless: connect → load → compile and upload → calibrate →
live inference (predictions, accuracy) → stop and record → injected camera fault → reconnect → close."""

from __future__ import annotations

import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PySide6 import QtCore

from lab4f.gui.main_window import MainWindow


class Ping:
    """A 10 ms timer in the GUI thread; the largest gap between its ticks is how long the loop was busy."""

    def __init__(self) -> None:
        self.timer = QtCore.QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last: float | None = None
        self.gaps_s: list[float] = []

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.gaps_s.append(now - self.last)
        self.last = now

    def start(self) -> Ping:
        self.last, self.gaps_s = None, []
        self.timer.start()
        return self

    def stop(self) -> tuple[float, float]:
        """(99th-percentile gap, max gap) in seconds."""
        self.timer.stop()
        return float(np.percentile(self.gaps_s, 99)), max(self.gaps_s)


@pytest.mark.slow
def test_full_flow_on_the_simulated_bench(qtbot, screenshot, tiny_checkpoint: Path, tmp_path: Path) -> None:  # noqa: ANN001
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.show()
    bench = win.bench_worker

    win.bench_panel.connect_all()
    devices = lambda: win.bench_panel.last_state.get("devices", {})  # noqa: E731
    qtbot.waitUntil(lambda: len(devices()) == 5 and all(d["connected"] for d in devices().values()), timeout=20_000)
    camera = bench.bench.camera

    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    win.kernels_panel.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)
    assert np.allclose(bench.uploaded_phase, win.state.program.frames[0].phase)

    # calibration while the live view streams: the event loop must keep answering within 50 ms
    win.live_panel.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: bench.latest.count > 5, timeout=10_000)
    ping = Ping().start()
    win.calibration_panel.run(["dark", "registration", "channel_gain"])
    qtbot.waitUntil(lambda: not win.calibration_panel.running, timeout=120_000)
    qtbot.wait(1000)  # the redraw of the results and a second of streaming count too
    gap_calibrating = ping.stop()
    cal = win.state.calibration
    assert cal.registration is not None, win.calibration_panel.summary.text()
    # the simulated camera's true misregistration: camera_xy = A plane_xy + b
    truth = camera.A @ np.array([[10.0, -7.0], [0.0, 0.0]]).T + camera.b
    got = cal.registration.apply(np.array([[10.0, -7.0], [0.0, 0.0]])).T
    assert np.abs(got - truth).max() < 0.5, (got, truth)
    # with the default sensor noise (12-bit, read + shot noise) measured R² 0.91–0.95 per channel
    assert cal.channel_r2 is not None and cal.channel_r2.min() > 0.85, cal.channel_r2
    # 99 % of 10 ms pings answered within 50 ms; the max is bounded loosely because a loaded CI host
    # (other jobs on the 2 cores) can deschedule the GUI thread now and then
    assert gap_calibrating[0] < 0.05 and gap_calibrating[1] < 0.25, f"ping gaps p99/max {gap_calibrating} s"
    screenshot(win.calibration_panel, "calibration")
    screenshot(win.kernels_panel, "kernels")
    win.calibration_panel.save(tmp_path / "cal.h5")

    # live inference
    panel = win.inference_panel
    panel.record.setChecked(True)
    panel.record_path.setText(str(tmp_path / "run.h5"))
    ping.start()
    panel.start()
    qtbot.waitUntil(lambda: panel.latest.get("processed", 0) >= 60, timeout=30_000)
    qtbot.wait(600)
    gap_streaming = ping.stop()
    u = panel.latest
    assert u["last"] is not None and len(u["last"]["optical_probs"]) == 10
    assert math.isclose(float(np.sum(u["last"]["optical_probs"])), 1.0, rel_tol=1e-4)
    assert not math.isnan(u["optical_accuracy"]) and not math.isnan(u["digital_accuracy"])
    # calibrated optics agree with the digital student on most inputs (measured: ≥ 0.9)
    assert u["agreement"] > 0.8, u
    assert u["optical_accuracy"] > u["digital_accuracy"] - 0.15, u
    assert gap_streaming[0] < 0.05 and gap_streaming[1] < 0.25, f"ping gaps p99/max {gap_streaming} s"
    print(f"event-loop ping gaps p99/max: calibrating {gap_calibrating}, streaming {gap_streaming} s")
    assert win.live_panel.drawn > 5
    screenshot(win.inference_panel, "inference")
    screenshot(win.live_panel, "live")
    panel.stop()
    qtbot.waitUntil(lambda: (tmp_path / "run.h5").exists(), timeout=10_000)
    with h5py.File(tmp_path / "run.h5") as f:
        n = len(f["labels"])
        assert n >= 60 and len(f["optical_predictions"]) == n

    # snapshot of the live frame
    assert win.live_panel.snapshot(tmp_path / "snap.png") is not None

    # injected camera fault mid-stream: the window survives, says what to do, and the camera reconnects
    panel.start()
    qtbot.waitUntil(lambda: panel.latest.get("processed", 0) >= 10, timeout=20_000)
    bench.bench.camera.faults.frame_timeout = True
    qtbot.waitUntil(lambda: "DeviceTimeout" in win.status_line.text(), timeout=10_000)
    assert "Disconnect and Connect the camera again" in win.status_line.text()
    qtbot.waitUntil(lambda: not panel.stop_btn.isEnabled(), timeout=5_000)
    screenshot(win, "main_window_fault")
    bench.submit(lambda: bench.disconnect_device("camera"), where="camera")
    bench.submit(lambda: bench.connect_device("camera"), where="camera")
    qtbot.waitUntil(lambda: win.bench_panel.last_state["devices"]["camera"]["connected"]
                    and bench.bench.devices.get("camera") is not camera, timeout=10_000)
    before = bench.latest.count
    win.live_panel.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: bench.latest.count > before + 5, timeout=10_000)
    screenshot(win.bench_panel, "bench")

    win.close()
    assert all(t.isFinished() for t in win.threads)
    assert "camera" not in bench.bench.devices  # closing closed the devices
