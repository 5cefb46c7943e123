"""The real flow on the simulated bench, headless: connect → load → compile and upload → calibrate (the
real `run_calibration`, all seven steps) → live inference through the streaming Pipeline (predictions,
accuracy) → stop and record (`save_run`) → injected camera fault → reconnect → close."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PySide6 import QtCore


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
def test_full_flow_on_the_simulated_bench(
    qtbot,
    screenshot,
    connected_window,
    tiny_checkpoint: Path,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    from lab4f.drivers.sim_slm import true_phase_response

    win = connected_window()
    bench = win.bench_worker
    camera = bench.bench.camera

    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    win.kernels_panel.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)
    assert np.allclose(bench.uploaded_phase, win.state.program.frames[0].phase)

    # calibration (all seven steps, with the uploaded program) while the live view streams:
    # the event loop must keep answering within 50 ms
    win.live_panel.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: bench.latest.count > 5, timeout=10_000)
    ping = Ping().start()
    cal = win.calibration_panel
    cal.run("all")
    qtbot.waitUntil(
        lambda: 0 < cal.bars["phase"].value() < 1000, timeout=30_000
    )  # progress is shown per step
    qtbot.waitUntil(lambda: not cal.running, timeout=150_000)
    qtbot.wait(1000)  # the redraw of the results and a second of streaming count too
    gap_calibrating = ping.stop()
    rec = win.state.calibration
    assert rec is not None, cal.summary.toPlainText()
    assert sorted(rec.steps) == sorted(
        ["camera", "timing", "display", "fourier", "phase", "registration", "tiles", "gains"]
    )
    assert (
        rec.path is not None
        and rec.path.parent == tmp_path / "calibrations"
        and cal.history.count() == 1
    )
    assert all(
        b.value() == 1000 for name, b in cal.bars.items() if name != "wavefront"
    )  # optional, not run
    assert (
        bench.latest.count > 0 and bench.view is not None
    )  # the live view resumed after calibrating
    # the simulated camera's true misregistration: camera_xy = A plane_xy + b
    pts = np.array([[10.0, -7.0], [0.0, 0.0], [-60.0, 40.0]])
    truth = pts @ camera.A.T + camera.b.ravel()
    assert np.abs(rec.registration.apply(pts) - truth).max() < 0.5
    levels, gamma = rec.phase_response
    assert (
        np.max(np.abs(gamma - true_phase_response(bench.bench.slm.settings)[levels])) < 0.02
    )  # units of 2π
    gray, light = (
        cal.display_curve.getData()
    )  # the display's measured response is drawn, gray 0..255
    assert len(gray) == 17 and gray[-1] == 255 and light[-1] == pytest.approx(1.0)
    # held-out fit quality of the channel filters with the default sensor noise: the worst channel measured
    # 0.9830–0.9841 over 9 runs (unexplained variance 1.6–1.7 %); 0.97 allows nearly twice that
    assert rec.channel_r2 is not None and rec.channel_r2.min() > 0.97, rec.channel_r2
    # event-loop gaps are printed, not asserted: they depend on the machine's load (benchmarks/bench_gui_live.py
    # measures them against the 50 ms p99 target)
    dock = win.docks[
        "Calibration"
    ]  # floated and enlarged so the screenshot shows the plots readably
    dock.setFloating(True)
    dock.resize(900, 900)
    qtbot.wait(200)
    screenshot(cal, "calibration")
    dock.setFloating(False)
    screenshot(win.kernels_panel, "kernels")
    assert cal.save_copy(tmp_path / "copy.h5") is not None

    # live inference through the streaming pipeline, recorded with save_run
    panel = win.inference_panel
    panel.record.setChecked(True)
    panel.record_path.setText(str(tmp_path / "run.h5"))
    ping.start()
    panel.start()
    qtbot.waitUntil(lambda: panel.latest.get("processed", 0) >= 60, timeout=30_000)
    first = panel.latest
    qtbot.waitUntil(lambda: panel.latest["processed"] >= first["processed"] + 30, timeout=30_000)
    gap_streaming = ping.stop()
    u = panel.latest
    assert u["running"] and u["policy"] == "live" and u["fps"] > 5, u
    assert (
        u["acquired"] >= u["processed"] + u["dropped_overflow"] - u["queue_depth"] - u["in_flight"]
    )
    assert len(u["last"]["optical_probs"]) == 10
    assert math.isclose(float(np.sum(u["last"]["optical_probs"])), 1.0, rel_tol=1e-4)
    assert not math.isnan(u["optical_accuracy"]) and not math.isnan(u["digital_accuracy"])
    # the run switched the source on and opened the shutter, and the Bench panel shows it
    assert win.bench_panel.light_on.isChecked() and win.bench_panel.shutter_open.isChecked()
    # Calibrated optics agree with the digital network: measured 0.979–0.989 over 8 runs (1–2 of 90–95 inputs
    # differ, near-ties of a weak 2-epoch network). Measured defects on the same bench and checkpoint (150 inputs):
    # a one-pixel registration error 0.79–0.80, one of the 4 kernels dropped 0.50–0.79, one kernel's k⁺/k⁻
    # swapped 0.18–0.56. 0.92 allows ~7 disagreements of ~92 (Poisson tail < 1e-3 at the measured rate).
    assert u["agreement"] > 0.92, u
    # every input both paths classify alike counts for both accuracies or for neither: the accuracies can differ
    # by at most the disagreeing fraction (measured: equal in all 8 runs)
    assert abs(u["optical_accuracy"] - u["digital_accuracy"]) <= 1 - u["agreement"] + 1e-9, u
    print(
        f"event-loop ping gaps p99/max: calibrating {gap_calibrating}, streaming {gap_streaming} s; "
        f"R² {np.round(rec.channel_r2, 4)}; live {u['fps']:.1f} frames/s, agreement {u['agreement']:.3f}, "
        f"optical {u['optical_accuracy']:.3f} vs digital {u['digital_accuracy']:.3f} accuracy over "
        f"{u['processed']} frames"
    )
    assert win.live_panel.drawn > 5
    screenshot(win.inference_panel, "inference")
    screenshot(win.live_panel, "live")
    panel.stop()
    qtbot.waitUntil(
        lambda: (tmp_path / "run.h5").exists() and panel.start_btn.isEnabled(), timeout=10_000
    )
    with h5py.File(tmp_path / "run.h5") as f:
        n = len(f["labels"])
        probs, labels = f["optical_probs"][()], f["labels"][()]
        metrics = json.loads(f.attrs["metrics"])
        assert f.attrs["calibration"] == str(rec.path)
        assert (
            n >= u["processed"]
            and probs.shape == (n, 10)
            and f["sample_frames"].shape[1:] == (512, 512)
        )
    assert metrics["n"] == n and metrics["stop_reason"] == "stopped"
    assert metrics["optical_accuracy"] == pytest.approx(
        float((probs.argmax(1) == labels).mean()), abs=1e-6
    )

    # snapshot of the live frame
    assert win.live_panel.snapshot(tmp_path / "snap.png") is not None

    # injected camera fault mid-stream: the window survives, says what to do, and the camera reconnects
    panel.record.setChecked(False)
    panel.start()
    try:
        qtbot.waitUntil(
            lambda: panel.run is not None and panel.latest.get("processed", 0) >= 10, timeout=20_000
        )
    except Exception:
        raise AssertionError(f"{win.status_line.text()} | {panel.counters.text()}") from None
    bench.bench.camera.faults.frame_timeout = True
    qtbot.waitUntil(lambda: "DeviceTimeout" in win.status_line.text(), timeout=10_000)
    assert "Disconnect and Connect the camera again" in win.status_line.text()
    qtbot.waitUntil(
        lambda: panel.start_btn.isEnabled() and not panel.stop_btn.isEnabled(), timeout=5_000
    )
    assert panel.latest["stop_reason"] == "device_error"
    screenshot(win, "main_window_fault")
    bench.submit(lambda: bench.disconnect_device("camera"), where="camera")
    bench.submit(lambda: bench.connect_device("camera"), where="camera")
    qtbot.waitUntil(
        lambda: (
            win.bench_panel.last_state["devices"]["camera"]["connected"]
            and bench.bench.devices.get("camera") not in (None, camera)
        ),
        timeout=10_000,
    )
    # the new (simulated) camera sees the bench's source and shutter, as the old one did
    assert bench.bench.camera.light_level() > 0  # the run left the source on and the shutter open
    bench.submit(lambda: bench.set_shutter(False), where="shutter")
    qtbot.waitUntil(lambda: not bench.bench.shutter.known("is_open"), timeout=5_000)
    assert bench.bench.camera.light_level() == 0.0
    bench.submit(lambda: bench.set_shutter(True), where="shutter")
    qtbot.waitUntil(lambda: bench.bench.shutter.known("is_open"), timeout=5_000)
    before = bench.latest.count
    win.live_panel.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: bench.latest.count > before + 5, timeout=10_000)
    screenshot(win.bench_panel, "bench")

    win.close()
    assert all(t.isFinished() for t in win.threads)
    assert "camera" not in bench.bench.devices  # closing closed the devices
