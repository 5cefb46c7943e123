"""The main window: the camera view in the centre, the workflow's panels as dockable tabs beside it (each scrolls
when its dock is smaller), a status line, remembered layout and settings, clean shutdown."""

from __future__ import annotations

import gc
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.app_state import AppState
from lab4f.gui.log_dock import LogPanel
from lab4f.gui.menus import Menus
from lab4f.gui.messages import SAFETY_ADVICE, in_gui_terms
from lab4f.gui.panels.bench_panel import BenchPanel
from lab4f.gui.panels.calibration_panel import CalibrationPanel
from lab4f.gui.panels.inference_panel import InferencePanel
from lab4f.gui.panels.kernels_panel import KernelsPanel
from lab4f.gui.panels.live_panel import LivePanel
from lab4f.gui.views import scrolled, status_label
from lab4f.gui.workers import ADVICE, BenchWorker, Worker, start_in_thread

ORGANISATION, APPLICATION = "lab4f", "lab4f-gui"
SETTINGS_VERSION = 1
#: The version of the dock layout saveState writes: a layout saved by an earlier arrangement is not restored.
LAYOUT_VERSION = 2
DOCK_WIDTH = (
    540  # px of the workflow panels' tabs at the first start; the camera view takes the rest
)
LOG_HEIGHT = 120  # px of the Log under the camera view at the first start
#: Errors that stop a job get a dialog (others — a refused setting, a device read — the status line and the Log).
STOPPED = {
    "calibration": "The calibration stopped",
    "compile": "The compile stopped",
    "inference": "Live inference stopped",
    "checkpoint": "The checkpoint was not loaded",
}
#: How long closing waits for each worker thread after cancelling its jobs (a non-cancellable job — loading a big
#: checkpoint, a vendor call — may take this long).
CLOSE_WAIT_MS = 30_000
_UNFINISHED: list[
    QtCore.QThread
] = []  # threads still running after close (never destroyed while running)
KNOWN_KEYS = {
    "version",
    "geometry",
    "window_state",
    "bench/config",
    "kernels/checkpoint",
    "calibration/record",
    "recent/files",
}


def freeze_gc(*_: object) -> None:
    """Exempt every object alive now from the cyclic garbage collector (``gc.freeze``).

    With torch, pyqtgraph and the devices loaded, a full collection scans ~10⁶ objects and held the GIL for
    0.1–0.44 s (measured in the GUI flow test): the event loop froze. Called after each big, long-lived
    allocation (window, checkpoint, program, calibration, the end of a run — the Pipeline unfreezes at its end).
    """
    gc.freeze()


class MainWindow(QtWidgets.QMainWindow):
    """Owns the worker threads; every panel is a dock whose place is saved in QSettings."""

    def __init__(self, config_path: str | None = None, restore: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("lab4f — hybrid optical-electronic CNN bench")
        self.setDockNestingEnabled(True)
        self.setTabPosition(
            QtCore.Qt.DockWidgetArea.AllDockWidgetAreas, QtWidgets.QTabWidget.TabPosition.North
        )
        self.notes: list[str] = []
        self.state = AppState()
        self.bench_worker = BenchWorker(None)
        self.jobs = Worker()
        self.threads = [
            start_in_thread(self.bench_worker, "lab4f-devices"),
            start_in_thread(self.jobs, "lab4f-jobs"),
        ]
        self.bench_panel = BenchPanel(self.bench_worker)
        self.calibration_panel = CalibrationPanel(self.state, self.bench_worker)
        self.kernels_panel = KernelsPanel(self.state, self.bench_worker, self.jobs)
        self.live_panel = LivePanel(self.state, self.bench_worker)
        self.inference_panel = InferencePanel(self.state, self.bench_worker)
        # the camera view is the central widget (it takes what the docks leave); the workflow's panels are tabs
        # of one dock area beside it, each in a scroll area so that the window fits a 1366×768 laptop screen
        self.setCentralWidget(self.live_panel)
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        for name, panel in (
            ("Bench", self.bench_panel),
            ("Kernels", self.kernels_panel),
            ("Calibration", self.calibration_panel),
            ("Inference", self.inference_panel),
        ):
            self._add_dock(name, scrolled(panel), QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        first = self.docks["Bench"]
        for name in ("Kernels", "Calibration", "Inference"):
            self.tabifyDockWidget(first, self.docks[name])
        self.docks["Kernels"].raise_()  # the next step after connecting the bench
        self.log_panel = LogPanel()
        self.setCorner(
            QtCore.Qt.Corner.BottomLeftCorner, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self._add_dock("Log", self.log_panel, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_panel.counts_changed.connect(self._on_log_counts)
        self.log_panel.attach()  # the core's warnings (lab4f.*), from any thread, queued to this one
        self.resizeDocks([first], [DOCK_WIDTH], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["Log"]], [LOG_HEIGHT], QtCore.Qt.Orientation.Vertical)
        self.error_box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Critical, "lab4f", "", parent=self
        )
        self.error_box.setWindowModality(
            QtCore.Qt.WindowModality.NonModal
        )  # the window stays usable
        self.menus = Menus(self)
        self._recent_config: str | None = None
        self.status_line = status_label("ready")
        self.statusBar().addWidget(self.status_line, 1)
        self.error_where: str | None = None  # the kind of request whose error the status line shows
        for w in (self.bench_worker, self.jobs):
            w.failed.connect(self.on_failed)
            w.cancelled.connect(self.on_cancelled)
            w.succeeded.connect(self.on_succeeded)
        self.state.calibrating_changed.connect(self.bench_panel.set_busy)
        self.inference_panel.run_steps_requested.connect(self.run_calibration_steps)
        self.bench_worker.state.connect(self._on_bench_state)
        self.bench_worker.stream_failed.connect(self.on_stream_failed)
        self.bench_worker.done.connect(self._on_bench_done)
        self.state.model_changed.connect(
            lambda: self.menus.add_recent(getattr(self.state.checkpoint, "path", None))
        )
        self.state.status.connect(self.show_status)
        for signal in (
            self.state.model_changed,
            self.state.program_changed,
            self.state.calibration_changed,
            self.bench_worker.run_ended,
        ):
            signal.connect(freeze_gc)
        self.resize(1400, 900)
        self.default_layout = self.saveState(LAYOUT_VERSION)  # View ▸ Reset layout goes back to it
        if restore:
            config_path = self.restore_settings(config_path)
        if config_path:
            self.bench_panel.open_config(config_path)
        self.config_path = config_path
        self.bench_worker.submit(self.bench_worker.emit_state, where="bench")
        freeze_gc()

    def _add_dock(
        self, name: str, widget: QtWidgets.QWidget, where: QtCore.Qt.DockWidgetArea
    ) -> None:
        dock = QtWidgets.QDockWidget(name, self)
        dock.setObjectName(f"dock_{name.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(where, dock)
        self.docks[name] = dock

    @QtCore.Slot(list)
    def run_calibration_steps(self, steps: list[str]) -> None:
        """Run ``steps`` in the Calibration panel (brought to the front, where their progress shows)."""
        self.docks["Calibration"].raise_()
        self.calibration_panel.run(steps)

    # -- messages ----------------------------------------------------------------------------------
    @QtCore.Slot(str)
    def show_status(self, text: str) -> None:
        self._clear_error()
        self.status_line.setText(text)

    @QtCore.Slot(str, str)
    def on_failed(self, where: str, message: str) -> None:
        """Device or job errors: a status line that says what happened and what to do (in the GUI's terms), an entry
        in the Log, and a dialog when the error stopped a job; the window stays."""
        shown = in_gui_terms(message)
        advice = SAFETY_ADVICE if "SafetyLimitError" in message else ADVICE.get(where, "")
        self.error_where = where
        self.status_line.setText(
            f"⚠ {where}: {shown} {advice if advice not in shown else ''}".strip()
        )
        self.status_line.setStyleSheet("color: #a40000")
        self.log_panel.add("ERROR", where, message)
        if where in STOPPED:
            self.show_error(STOPPED[where], shown, advice)

    @QtCore.Slot(str, str)
    def on_stream_failed(self, where: str, message: str) -> None:
        """A device fault ended the camera stream or the run: the last frame is marked and the user told."""
        self.live_panel.mark_stale(f"the stream stopped ({where} fault)")
        if where not in STOPPED:  # a job's own failure has its dialog from on_failed
            self.show_error(
                f"The stream stopped: the {where.replace('_', ' ')} failed",
                in_gui_terms(message),
                ADVICE.get(where, ""),
            )

    def show_error(self, title: str, message: str, advice: str = "") -> None:
        """A (non-modal) dialog for an error that stopped something: what happened and what to press."""
        box = self.error_box
        box.setWindowTitle(f"lab4f — {title}")
        box.setText(f"<b>{title}</b>")
        box.setInformativeText(f"{message}\n\n{advice}".strip())
        box.show()
        box.raise_()

    def _on_log_counts(self, warnings: int, errors: int) -> None:
        n = warnings + errors
        self.docks["Log"].setWindowTitle(f"Log ({n})" if n else "Log")

    @QtCore.Slot(str, str)
    def on_cancelled(self, where: str, message: str) -> None:
        """A job the user (or closing) cancelled: said plainly, not as an error."""
        self._clear_error()
        self.status_line.setText(
            f"{where} cancelled: {message}" if where not in message else message
        )

    @QtCore.Slot(str)
    def on_succeeded(self, where: str) -> None:
        """The next success of the kind of request that failed clears the red error text."""
        if where == self.error_where:
            self._clear_error()
            self.status_line.setText("ready")

    def _clear_error(self) -> None:
        self.error_where = None
        self.status_line.setStyleSheet("")

    def _on_bench_state(self, st: dict) -> None:
        if "camera" in st:
            self.state.camera_shape = tuple(st["camera"]["shape"])
        if (
            self.bench_worker.config_path != self._recent_config
        ):  # a config opened: to the top of the recent files
            self._recent_config = self.bench_worker.config_path
            self.menus.add_recent(self._recent_config)

    def _on_bench_done(self, name: str, result: object) -> None:
        if name == "record_loaded":
            self.menus.add_recent(str(result[0].path))
        elif name == "run_saved":
            self.show_status(f"run saved to {result}")

    def reset_layout(self) -> None:
        """View ▸ Reset layout: every panel where it is at the first start (the Kernels tab in front)."""
        self.restoreState(self.default_layout, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.docks["Kernels"].raise_()

    # -- settings ----------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.status_line.setText(text)

    def restore_settings(self, config_path: str | None) -> str | None:
        """Restore layout and last paths; anything missing, stale or unknown is ignored with a note."""
        s = QtCore.QSettings(ORGANISATION, APPLICATION)
        version = s.value("version")
        if version is None:
            return config_path
        if str(version) != str(SETTINGS_VERSION):
            self._note(
                f"saved settings are version {version}, this lab4f writes {SETTINGS_VERSION}: ignored"
            )
            return config_path
        unknown = sorted(set(s.allKeys()) - KNOWN_KEYS)
        if unknown:
            self._note(f"ignored unknown saved settings: {', '.join(unknown)}")
        for key, restore in (
            ("geometry", self.restoreGeometry),
            ("window_state", lambda v: self.restoreState(v, LAYOUT_VERSION)),
        ):
            value = s.value(key)
            if value is not None and not (isinstance(value, QtCore.QByteArray) and restore(value)):
                self._note(
                    f"saved window {key} could not be restored (stale): using the default layout"
                )
        saved = s.value("bench/config")
        if config_path is None and saved:
            if Path(str(saved)).is_file():
                config_path = str(saved)
            else:
                self._note(
                    f"saved bench config {saved} no longer exists: using the simulated bench"
                )
        checkpoint = s.value("kernels/checkpoint")
        if checkpoint:
            if Path(str(checkpoint)).is_file():
                self.kernels_panel.load_checkpoint(str(checkpoint))
            else:
                self._note(f"saved checkpoint {checkpoint} no longer exists: not loaded")
        recent = s.value("recent/files") or []  # an INI file gives one entry back as a string
        recent = [recent] if isinstance(recent, str) else recent
        self.menus.recent = [str(p) for p in recent if Path(str(p)).is_file()]
        record = s.value("calibration/record")
        if record:
            if Path(str(record)).is_file():
                self.calibration_panel.load(str(record))
            else:
                self._note(f"saved calibration record {record} no longer exists: not loaded")
        return config_path

    def save_settings(self) -> None:
        s = QtCore.QSettings(ORGANISATION, APPLICATION)
        s.clear()
        s.setValue("version", SETTINGS_VERSION)
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState(LAYOUT_VERSION))
        if self.bench_worker.config_path:
            s.setValue("bench/config", self.bench_worker.config_path)
        if self.state.checkpoint is not None:
            s.setValue("kernels/checkpoint", self.state.checkpoint.path)
        record = self.state.calibration
        if record is not None and record.path is not None:
            s.setValue("calibration/record", str(record.path))
        if self.menus.recent:
            s.setValue("recent/files", list(self.menus.recent))
        s.sync()

    # -- shutdown ----------------------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 — Qt's name
        self.save_settings()
        self.live_panel.timer.stop()
        self.inference_panel.timer.stop()
        # cancel running jobs first: a calibration step stops at its next check, a compile at its next
        # phase-retrieval iteration; then the queued shutdown stops the streams and closes the devices
        self.bench_worker.cancel.set()
        self.bench_worker.compile_cancel.set()
        self.bench_worker.finish(self.bench_worker.shutdown)
        self.jobs.finish(lambda: None)
        for thread in self.threads:
            if not thread.wait(CLOSE_WAIT_MS):
                # a QThread destroyed while running aborts the process: keep it (and its worker) referenced
                self.notes.append(
                    f"thread {thread.objectName()} did not stop within {CLOSE_WAIT_MS / 1000:g} s; "
                    "waiting for it in the background"
                )
                _UNFINISHED.append(thread)
        self.log_panel.detach()
        self.error_box.close()
        super().closeEvent(event)
