"""Warnings and errors have a place: the Log dock shows the core's warnings (Python logging, from any thread), an error
that stops a job opens a dialog with advice in the GUI's terms, and the status line is elided with a tooltip."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from lab4f.gui.messages import in_gui_terms

REPO = Path(__file__).resolve().parents[2]


def test_core_advice_is_said_in_gui_terms() -> None:
    runner = (
        "steps 'tiles' and 'gains' need a compiled optical program: pass --program FILE (make one with "
        "`lab4f compile`)"
    )
    assert in_gui_terms(runner).endswith(
        "upload a program in the Kernels tab (Load checkpoint, then Compile and upload)"
    )
    hybrid = (
        "checkpoint, optical program and calibration do not belong together: kernel values. Recompile the "
        "checkpoint (lab4f compile) and recalibrate with --program (lab4f calibrate tiles/gains)."
    )
    text = in_gui_terms(hybrid)
    assert "--program" not in text and "lab4f" not in text
    assert (
        "Compile and upload the checkpoint (Kernels panel)" in text and "Tile registration" in text
    )
    sync = (
        "sync: the display delays are the devices' nominal values, not measured; run `lab4f calibrate timing` so "
        "frames are paired by what the bench really does"
    )
    assert "; press Run on the Timing row of the Calibration panel so frames" in in_gui_terms(sync)
    drift = "it: `lab4f calibrate registration`, then `tiles` and `gains` with --program (or `lab4f calibrate all`)"
    text = in_gui_terms(drift)
    assert (
        "`" not in text
        and "--program" not in text
        and "(or Run all in the Calibration panel)" in text
    )
    assert in_gui_terms("re-run them too, e.g. `lab4f calibrate all --program P`").endswith(
        "Run all in the Calibration panel with a program uploaded (Kernels panel: Compile and upload)"
    )


def test_log_dock_shows_a_core_warning_from_the_acquisition_thread(qtbot, connected_window) -> None:  # noqa: ANN001
    """The sync module warns (once, from the live view's acquisition thread) that its delays are nominal."""
    win = connected_window(str(REPO / "examples" / "realistic_timing.toml"))
    log = win.log_panel
    assert log.entries() == [] and win.docks["Log"].windowTitle() == "Log"
    win.live_panel.start_btn.setChecked(True)
    qtbot.waitUntil(
        lambda: any("nominal values, not measured" in e for e in log.entries()), timeout=20_000
    )
    entry = next(e for e in log.entries() if "nominal values" in e)
    assert "warning  sync:" in entry and "Run on the Timing row of the Calibration panel" in entry
    assert (
        "`lab4f calibrate timing`" in log.list.item(log.entries().index(entry)).toolTip()
    )  # the original
    assert win.docks["Log"].windowTitle().startswith("Log (") and "1 warning" in log.summary.text()
    win.live_panel.start_btn.setChecked(False)


def test_log_handler_is_thread_safe_and_detached_on_close(qtbot) -> None:  # noqa: ANN001
    from lab4f.gui.main_window import MainWindow

    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    core = logging.getLogger("lab4f.calibration.runner")
    threads = [
        threading.Thread(
            target=lambda i=i: [core.warning("warning %d.%d", i, k) for k in range(25)]
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    qtbot.waitUntil(lambda: len(win.log_panel.entries()) == 100, timeout=5_000)
    win.log_panel.errors_only.setChecked(True)
    assert all(win.log_panel.list.item(i).isHidden() for i in range(100))
    handler = win.log_panel.handler
    win.close()
    assert handler not in logging.getLogger("lab4f").handlers


def test_an_error_that_stops_a_job_opens_a_dialog_in_gui_terms(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    w = win.bench_worker
    # the core refuses program-dependent steps without a program, in command-line words
    w.submit(lambda: w.calibrate(["gains"]), name="calibration", where="calibration")
    qtbot.waitUntil(lambda: win.error_box.isVisible(), timeout=10_000)
    box = win.error_box
    assert "calibration stopped" in box.text().lower()
    assert "upload a program in the Kernels tab" in box.informativeText()
    assert "--program" not in box.informativeText() and "--program" not in win.status_line.text()
    assert "Calibration stopped" in win.calibration_panel.summary.toPlainText()
    assert any("error  calibration:" in e for e in win.log_panel.entries())
    assert not box.isModal()  # the window stays usable
    box.close()


def test_a_safety_refusal_gets_no_device_fault_advice(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    top = win.bench_panel.last_state["light_source"]["max_power_mw"]
    win.bench_panel.set_power(top * 2)
    qtbot.waitUntil(lambda: "SafetyLimitError" in win.status_line.text(), timeout=5_000)
    text = win.status_line.text()
    assert "powered" not in text and "safety limit" in text and not win.error_box.isVisible()


def test_status_line_is_elided_with_the_whole_text_as_tooltip(qtbot) -> None:  # noqa: ANN001
    from lab4f.gui.main_window import MainWindow

    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    long = "calibration record /a/very/long/folder/" * 20 + "cal-20250101-000000.h5 in use"
    win.show_status(long)
    assert win.status_line.text() == long and win.status_line.toolTip() == long
    assert win.status_line.width() < win.status_line.fontMetrics().horizontalAdvance(long)
    assert not win.status_line.grab().isNull()  # painted elided
    win.close()
