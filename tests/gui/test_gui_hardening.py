"""GUI defects found by walking the window: closing during a long compile, jobs queued behind a calibration,
run files overwritten, stale or misleading text, faults blamed on the wrong device."""

from __future__ import annotations

import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest


def loaded(qtbot, win, checkpoint: Path, compile_: bool = True):  # noqa: ANN001, ANN201
    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(str(checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    if compile_:
        win.kernels_panel.iterations.setValue(5)
        win.kernels_panel.compile()
        qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)
    return win


# -- 1. a long compile: progress, Cancel, and closing the window cancels it ----------------------------------
def test_close_during_a_long_compile_cancels_it_and_returns(
    qtbot, connected_window, tiny_checkpoint
) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint, compile_=False)
    k = win.kernels_panel
    k.iterations.setValue(1000)  # ~25 s of phase retrieval
    k.compile()
    qtbot.waitUntil(lambda: 0 < k.progress.value() < 1000, timeout=20_000)  # per-iteration progress
    assert (
        "iteration" in k.progress.format()
        and k.cancel_btn.isEnabled()
        and not k.compile_btn.isEnabled()
    )
    t0 = time.perf_counter()
    win.close()
    assert time.perf_counter() - t0 < 5.0
    assert all(t.isFinished() for t in win.threads), win.notes
    assert not any("did not stop" in n for n in win.notes)


def test_cancel_stops_a_compile_and_uploads_nothing(
    qtbot, connected_window, tiny_checkpoint
) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint, compile_=False)
    k = win.kernels_panel
    k.iterations.setValue(1000)
    k.compile()
    qtbot.waitUntil(lambda: 0 < k.progress.value(), timeout=20_000)
    k.cancel_btn.click()
    qtbot.waitUntil(lambda: not k.compiling, timeout=5_000)
    assert "cancelled" in k.info.text() and "nothing was uploaded" in k.info.text()
    assert win.state.program is None and win.bench_worker.uploaded_phase is None
    assert k.compile_btn.isEnabled() and not k.cancel_btn.isEnabled()
    assert "⚠" not in win.status_line.text() and win.status_line.styleSheet() == ""
    k.iterations.setValue(5)  # the next compile runs (the cancel does not stick)
    k.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)


def test_cancel_discards_a_checkpoint_load(qtbot, connected_window, tiny_checkpoint) -> None:  # noqa: ANN001
    win = connected_window()
    k = win.kernels_panel
    finished: list[str] = []
    k.jobs.done.connect(lambda name, _result: finished.append(name))
    k.load_checkpoint(str(tiny_checkpoint))
    assert k.cancel_btn.isEnabled() and not k.load_btn.isEnabled()
    k.cancel_btn.click()
    assert (
        not k.loading
        and k.load_btn.isEnabled()
        and "Loading cancelled; no checkpoint loaded" in k.info.text()
    )
    qtbot.waitUntil(
        lambda: "checkpoint" in finished, timeout=30_000
    )  # the load ran to its end in its thread ...
    qtbot.wait(300)  # the panel's queued handler of that result has run
    assert (
        win.state.checkpoint is None and "cancelled" in k.info.text()
    )  # ... and its result was discarded
    k.load_checkpoint(str(tiny_checkpoint))  # a later load is applied
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)


def test_a_compile_blocks_calibration_until_it_ends(
    qtbot, connected_window, tiny_checkpoint
) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint, compile_=False)
    k, cal = win.kernels_panel, win.calibration_panel
    assert cal.run_all_btn.isEnabled()
    k.iterations.setValue(1000)
    k.compile()
    assert win.state.compiling
    assert not any(b.isEnabled() for b in (*cal.run_btns.values(), cal.run_all_btn))
    cal.run(["camera"])  # a script's call is refused too, not queued to measure the SLM mid-upload
    assert not cal.running and "compile is running" in cal.summary.toPlainText()
    qtbot.waitUntil(lambda: 0 < k.progress.value(), timeout=20_000)
    k.cancel_btn.click()
    qtbot.waitUntil(lambda: not k.compiling, timeout=5_000)
    assert not win.state.compiling and all(
        b.isEnabled() for b in (*cal.run_btns.values(), cal.run_all_btn)
    )


# -- 2. a calibration blocks Start, Compile and the bench controls; a run uses the record in use at its start --
def test_calibration_disables_start_compile_and_bench_controls(
    qtbot,
    connected_window,
    tiny_checkpoint,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lab4f.gui.panels import inference_panel

    # the record below has no tiles and gains for the uploaded program: Start asks, and is told to start anyway
    monkeypatch.setattr(inference_panel, "confirm_calibration", lambda _parent, _text: "start")
    win = loaded(qtbot, connected_window(), tiny_checkpoint)
    cal, inf, k, bench = (
        win.calibration_panel,
        win.inference_panel,
        win.kernels_panel,
        win.bench_panel,
    )
    assert inf.start_btn.isEnabled() and k.compile_btn.isEnabled() and bench.exposure_ms.isEnabled()
    cal.run(["camera", "fourier", "registration"])
    assert win.state.calibrating
    controls = (
        inf.start_btn,
        k.compile_btn,
        bench.exposure_ms,
        bench.power_mw,
        bench.power_btn,
        bench.light_on,
        bench.connect_all_btn,
        *bench.toggle.values(),
    )
    assert not any(w.isEnabled() for w in controls)
    inf.start()  # a script's call is refused too, not queued behind the calibration
    assert inf.run is None and "calibration is running" in inf.counters.text()
    qtbot.waitUntil(lambda: not cal.running, timeout=60_000)
    assert win.state.calibration is not None
    assert all(w.isEnabled() for w in controls)
    inf.start()
    qtbot.waitUntil(lambda: inf.run is not None, timeout=20_000)
    assert inf.run.setup.calibration_path == win.state.calibration.path
    inf.stop()
    qtbot.waitUntil(lambda: inf.start_btn.isEnabled(), timeout=10_000)


def test_a_run_queued_behind_a_calibration_uses_the_new_record(
    qtbot, connected_window, tiny_checkpoint
) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint)
    w, st, inf = win.bench_worker, win.state, win.inference_panel
    assert st.calibration is None
    win.calibration_panel.run(["camera", "fourier", "registration"])
    ck = (
        st.checkpoint
    )  # a start request queued behind the calibration (the device thread runs one job at a time)
    w.submit(
        lambda: w.start_run(ck.path, st.program_path, "current", ck.images, ck.labels),
        name="run_started",
        where="inference",
    )
    qtbot.waitUntil(lambda: inf.run is not None, timeout=60_000)
    assert st.calibration is not None and inf.run.setup.calibration_path == st.calibration.path
    inf.stop()
    qtbot.waitUntil(lambda: inf.run is None, timeout=10_000)


# -- 3. recording: a time-stamped default in runs/, never an overwrite ----------------------------------------
def test_recording_defaults_to_runs_folder_and_never_overwrites(
    qtbot,
    connected_window,
    tiny_checkpoint,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    win = loaded(qtbot, connected_window(), tiny_checkpoint)
    inf = win.inference_panel
    inf.record.setChecked(True)
    assert inf.record_path.text() == ""  # nothing in the working folder by default

    def record_once() -> str:
        before = win.status_line.text()
        inf.start()
        qtbot.waitUntil(
            lambda: inf.latest.get("processed", 0) >= 5 and inf.run is not None, timeout=30_000
        )
        inf.stop()
        qtbot.waitUntil(
            lambda: (
                inf.run is None
                and win.status_line.text() != before
                and "recorded to" in win.status_line.text()
            ),
            timeout=15_000,
        )
        return win.status_line.text().split("recorded to ", 1)[1].split(" (", 1)[0]

    first = Path(record_once())
    assert (
        first.parent == tmp_path / "runs"
        and first.name.startswith("run-")
        and first.suffix == ".h5"
    )
    target = tmp_path / "mine.h5"
    target.write_bytes(b"precious")
    inf.record_path.setText(str(target))
    second = Path(record_once())
    assert target.read_bytes() == b"precious"  # untouched
    assert second == tmp_path / "mine-1.h5"
    with h5py.File(second) as f:
        assert len(f["labels"]) >= 5


# -- 4. misleading state and text ------------------------------------------------------------------------
def test_failed_checkpoint_load_and_failed_compile_are_shown(
    qtbot,
    connected_window,
    tiny_checkpoint,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    win = connected_window()
    k = win.kernels_panel
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    k.load_checkpoint(str(bad))
    qtbot.waitUntil(
        lambda: k.info.text().startswith("Loading the checkpoint failed"), timeout=10_000
    )
    assert k.load_btn.isEnabled() and not k.loading
    loaded(qtbot, win, tiny_checkpoint, compile_=False)
    from lab4f.bench import compile as compile_cmd
    from lab4f.errors import CompileError

    def broken(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise CompileError("the kernels do not fit")

    monkeypatch.setattr(compile_cmd, "compile_checkpoint", broken)
    k.compile()
    qtbot.waitUntil(lambda: not k.compiling, timeout=10_000)
    assert k.info.text().startswith("Compile failed") and "do not fit" in k.info.text()
    assert "No program is uploaded" in k.info.text() and k.compile_btn.isEnabled()


def test_declined_upload_shows_what_is_on_the_slm(qtbot, connected_window, tiny_checkpoint) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint)
    k = win.kernels_panel
    on_slm = win.state.program
    shown = k.views["SLM phase"].image.copy()
    k.auto_confirm = False
    k._confirm = lambda _text: False  # the user answers No
    k.iterations.setValue(7)  # another seed of phase retrieval: another phase
    k.compile()
    qtbot.waitUntil(lambda: not k.compiling, timeout=60_000)
    assert "NOT UPLOADED" in k.info.text() and "Changes" not in k.info.text()
    assert win.state.program is on_slm
    assert np.array_equal(
        k.views["SLM phase"].image, shown
    )  # the views show the SLM's program again
    assert np.allclose(win.bench_worker.uploaded_phase, on_slm.frames[0].phase)


def test_errors_clear_after_a_later_success(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    bench = win.bench_panel
    top = bench.last_state["light_source"]["max_power_mw"]
    bench.set_power(top * 2)
    qtbot.waitUntil(lambda: "Refused" in bench.message.text(), timeout=5_000)
    assert "⚠" in win.status_line.text()
    bench.set_power(top / 2)
    qtbot.waitUntil(lambda: bench.message.text() == "", timeout=5_000)
    assert "⚠" not in win.status_line.text() and win.status_line.styleSheet() == ""


def test_cancelled_calibration_is_not_an_error(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    cal = win.calibration_panel
    cal.run(["camera", "fourier"])
    qtbot.waitUntil(lambda: cal.bars["camera"].value() > 0, timeout=20_000)
    cal.cancel()
    qtbot.waitUntil(lambda: not cal.running, timeout=10_000)
    assert "cancelled" in win.status_line.text() and "⚠" not in win.status_line.text()
    assert win.status_line.styleSheet() == ""
    assert (
        "nothing was saved" in cal.summary.toPlainText()
        and "Calibration stopped" not in cal.summary.toPlainText()
    )
    assert not win.state.calibrating


def test_live_start_button_follows_a_failed_start(qtbot) -> None:  # noqa: ANN001
    from lab4f.gui.main_window import MainWindow

    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    live = win.live_panel
    live.start_btn.click()  # no camera connected: the start fails
    qtbot.waitUntil(lambda: "camera" in win.status_line.text(), timeout=5_000)
    qtbot.waitUntil(lambda: not live.start_btn.isChecked(), timeout=5_000)
    assert live.start_btn.text() == "Start"
    win.bench_panel.connect_all()
    qtbot.waitUntil(
        lambda: win.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
        timeout=20_000,
    )
    live.start_btn.click()  # the first click after connecting starts the stream
    qtbot.waitUntil(lambda: win.bench_worker.latest.count > 2, timeout=10_000)
    assert live.start_btn.isChecked() and live.start_btn.text() == "Stop"
    live.start_btn.click()
    qtbot.waitUntil(lambda: not live.start_btn.isChecked(), timeout=5_000)
    win.close()


def test_counters_show_dashes_not_nan_or_stopped_twice(qtbot) -> None:  # noqa: ANN001
    from lab4f.gui.main_window import MainWindow

    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    nan = math.nan
    u = {
        "optical_accuracy": nan,
        "digital_accuracy": nan,
        "agreement": nan,
        "processed": 0,
        "fps": 0.0,
        "latency_p50_ms": nan,
        "latency_p95_ms": nan,
        "acquired": 0,
        "dropped": 0,
        "dropped_overflow": 0,
        "dropped_camera": 0,
        "queue_depth": 0,
        "running": False,
        "stop_reason": "stopped",
        "t_s": 0.0,
    }
    win.inference_panel.on_update(u)
    text = win.inference_panel.rates.text()
    assert (
        "nan" not in text
        and "p50 –" in text
        and "stopped: stopped" not in text
        and text.endswith("| stopped")
    )
    win.inference_panel.on_update(u | {"stop_reason": "device_error"})
    assert win.inference_panel.rates.text().endswith("| stopped: device_error")
    win.close()


def test_disconnected_fields_are_blank_and_calibration_state_is_visible(
    qtbot, connected_window
) -> None:  # noqa: ANN001
    from lab4f.gui.main_window import MainWindow

    fresh = MainWindow(restore=False)
    qtbot.addWidget(fresh)
    qtbot.wait(200)
    b = fresh.bench_panel
    assert b.exposure_ms.text() == "–" and b.gain.text() == "–" and b.power_mw.text() == "–"
    label = fresh.inference_panel.calibration_label
    assert "NOT CALIBRATED" in label.text() and label.styleSheet() != ""
    fresh.close()
    win = connected_window()
    assert win.bench_panel.exposure_ms.text() != "–" and "ms" in win.bench_panel.exposure_ms.text()
    cal = win.calibration_panel
    cal.run(["camera"])
    qtbot.waitUntil(lambda: not cal.running, timeout=60_000)
    label = win.inference_panel.calibration_label
    assert win.state.calibration.path.name in label.text() and label.styleSheet() == ""


# -- 5. faults name the device that failed, with the button to press ------------------------------------
def test_display_fault_during_a_run_blames_the_display(
    qtbot, connected_window, tiny_checkpoint
) -> None:  # noqa: ANN001
    win = loaded(qtbot, connected_window(), tiny_checkpoint)
    inf = win.inference_panel
    inf.start()
    qtbot.waitUntil(
        lambda: inf.run is not None and inf.latest.get("processed", 0) >= 5, timeout=30_000
    )
    win.bench_worker.bench.display.faults.disconnect = True
    qtbot.waitUntil(lambda: "DeviceDisconnected" in win.status_line.text(), timeout=10_000)
    text = win.status_line.text()
    assert text.startswith("⚠ display:") and "faults.clear()" not in text
    assert "Disconnect and Connect the display in the Bench panel" in text
    assert "Disconnect and Connect the camera again" not in text
    qtbot.waitUntil(lambda: inf.start_btn.isEnabled(), timeout=5_000)


def test_a_fault_is_attributed_by_the_device_the_error_carries_not_its_text(
    qtbot, connected_window
) -> None:  # noqa: ANN001
    from lab4f.errors import DeviceTimeout

    win = connected_window()
    worker = win.bench_worker
    display_name = worker.bench.display.name
    # the message names the camera, the error carries the display: the display is blamed
    assert (
        worker.faulty_role(DeviceTimeout("camera-like text", device=display_name).device)
        == "display"
    )
    assert worker.faulty_role("slm") == "slm"  # a role (the bench's own refusals) works too
    worker.disconnect_device("shutter")
    assert worker.faulty_role("shutter") == "shutter"  # ... also for a device that is not connected
    assert worker.faulty_role(None) == "camera"  # nothing carried: the acquisition thread's device


def test_bench_panel_switches_the_sync_policy(qtbot) -> None:
    """The bench panel's Sync box sets the bench's policy (lab4f.bench.sync) and shows the counters."""
    from lab4f.gui.panels.bench_panel import BenchPanel
    from lab4f.gui.workers import BenchWorker

    worker = BenchWorker()
    panel = BenchPanel(worker)
    qtbot.addWidget(panel)
    worker.emit_state()
    assert panel.sync.currentText() == "settle" and panel.sync.toolTip()
    worker.set_sync("none")
    assert worker.bench.sync.policy == "none" and panel.sync.currentText() == "none"
    assert "paired" in panel.sync_counters.text()
    worker.bench.close()
