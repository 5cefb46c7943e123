"""Inference panel: current input, class probabilities (optical beside digital) — or for a segmentation student
the optical and digital masks over the input — running accuracies (mean IoU), frames/s and latency over time,
drops; start/stop; record the run to a file. It reads the streaming pipeline's `stats()` and results through
:class:`lab4f.gui.live.LiveRun` ten times a second."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from lab4f.gui.app_state import AppState
from lab4f.gui.live import DEFAULT_RATE_HZ, LiveRun
from lab4f.gui.views import image_view, set_title, show_image, status_label
from lab4f.gui.workers import BenchWorker, default_run_path, unique_path
from lab4f.task import CLASSIFICATION, TASKS

HISTORY = 300  # points kept in the time plots


def _classification_counters(u: dict[str, Any], pct: Any) -> str:
    return (
        f"optical accuracy {pct(u['optical_accuracy'])} · digital {pct(u['digital_accuracy'])} · "
        f"agreement {pct(u['agreement'])} over {u['processed']} inputs"
    )


def _segmentation_counters(u: dict[str, Any], pct: Any) -> str:
    num = lambda v: "–" if v != v else f"{v:.3f}"  # noqa: E731 — NaN shows as a dash
    return (
        f"optical mean IoU {num(u['optical_mean_iou'])} · digital {num(u['digital_mean_iou'])} · "
        f"pixel agreement {pct(u['agreement'])} over {u['processed']} scenes"
    )


#: the counters line of a live run, by the task's view (lab4f.task.Task.view)
COUNTERS = {"probabilities": _classification_counters, "masks": _segmentation_counters}
START_TIP = (
    "Start live inference (F5): the test images are shown in turn and classified through the optics, beside "
    "the digital network"
)
log = logging.getLogger(__name__)


def calibration_warning_box(
    parent: QtWidgets.QWidget | None, text: str
) -> tuple[QtWidgets.QMessageBox, dict]:
    """The question asked at Start when the calibration does not fit the program: its buttons by answer."""
    box = QtWidgets.QMessageBox(
        QtWidgets.QMessageBox.Icon.Warning,
        "The calibration does not fit the program",
        text,
        parent=parent,
    )
    box.setInformativeText(
        "Run missing steps calibrates them now and then starts; Start anyway records this warning "
        "in the run file."
    )
    buttons = {
        "run": box.addButton("Run missing steps", QtWidgets.QMessageBox.ButtonRole.AcceptRole),
        "start": box.addButton("Start anyway", QtWidgets.QMessageBox.ButtonRole.DestructiveRole),
        "cancel": box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel),
    }
    box.setDefaultButton(buttons["run"])
    return box, buttons


def confirm_calibration(parent: QtWidgets.QWidget | None, text: str) -> str:
    """Ask (modal) whether to run the missing steps, start anyway or not start: "run", "start" or "cancel"."""
    box, buttons = calibration_warning_box(parent, text)
    box.exec()
    return next((answer for answer, b in buttons.items() if b is box.clickedButton()), "cancel")


class InferencePanel(QtWidgets.QWidget):
    """Start asks the device thread for a LiveRun (HybridSetup + Pipeline); a timer draws its counters."""

    run_steps_requested = QtCore.Signal(
        list
    )  # calibration steps to run before starting (the Calibration panel)

    def __init__(self, state: AppState, bench: BenchWorker, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.bench = state, bench
        self.latest: dict[str, Any] = {}
        self._drawn_last: dict[str, Any] | None = None  # the result the input and mask views show
        self.updates = 0
        self.series: dict[str, list[float]] = {"t": [], "fps": [], "p50": [], "p95": []}
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.start_btn = QtWidgets.QPushButton("Start")
        self.start_btn.setToolTip(START_TIP)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn = QtWidgets.QPushButton("Stop")
        self.stop_btn.setToolTip(
            "Stop the run (Shift+F5); it is recorded if 'record run to' was ticked at Start"
        )
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        self.rate_hz = QtWidgets.QSpinBox(
            minimum=0, maximum=2000, value=int(DEFAULT_RATE_HZ), suffix=" inputs/s"
        )
        self.rate_hz.setSpecialValueText("camera rate")  # 0: as fast as the camera delivers
        self.rate_hz.setToolTip(
            "Inputs shown per second (like a 60 Hz input monitor); 0: as fast as the camera "
            "delivers"
        )
        self.record = QtWidgets.QCheckBox("record run to")
        self.record.setToolTip(
            "Record the run to an HDF5 run file when it stops (File ▸ Save run saves the last run "
            "afterwards too)"
        )
        self.record_path = QtWidgets.QLineEdit(
            ""
        )  # empty: runs/run-<date>-<time>.h5 beside the calibrations
        self.record_path.setPlaceholderText("automatic: runs/run-<date>-<time>.h5")
        self.record_path.setToolTip(
            "Empty: a new time-stamped file in the runs/ folder beside the calibration "
            "folder. An existing file is never overwritten: -1, -2 … is added to the name."
        )
        for w in (self.start_btn, self.stop_btn, self.rate_hz, self.record, self.record_path):
            row.addWidget(w)
        layout.addLayout(row)
        self.calibration_label = status_label("")
        layout.addWidget(self.calibration_label)
        self.counters = status_label("not running")
        self.rates = status_label("")
        layout.addWidget(self.counters)
        layout.addWidget(self.rates)
        top = QtWidgets.QHBoxLayout()
        self.input_plot, self.input_image = image_view(
            "current input", "The input the display shows now"
        )
        self.input_plot.setMaximumWidth(220)
        self.probs = set_title(
            pg.PlotWidget(),
            "optical (blue) · digital (grey)",
            "Class probabilities of the newest input: through the optics (blue) and the digital "
            "network (grey)",
        )
        self.probs.setYRange(0, 1)
        self.probs.setLabel("bottom", "class")
        self.probs.setLabel("left", "probability")
        self.bars_opt = pg.BarGraphItem(
            x=np.arange(10) - 0.2, height=np.zeros(10), width=0.4, brush="#1f77b4"
        )
        self.bars_dig = pg.BarGraphItem(
            x=np.arange(10) + 0.2, height=np.zeros(10), width=0.4, brush="#999999"
        )
        self.probs.addItem(self.bars_opt)
        self.probs.addItem(self.bars_dig)
        self.masks_plot, self.masks_image = image_view(
            "optical | digital mask", "The optical and the digital masks drawn over the input"
        )
        self.masks_plot.hide()  # shown instead of the probabilities for a segmentation student
        top.addWidget(self.input_plot)
        top.addWidget(self.probs, 1)
        top.addWidget(self.masks_plot, 1)
        # one widget and one drawing per task view (lab4f.task.Task.view); the loaded task's is shown
        self._views = {"probabilities": self.probs, "masks": self.masks_plot}
        self._draw_last = {"probabilities": self._draw_probabilities, "masks": self._draw_masks}
        layout.addLayout(top, 1)
        self.rate_plot = set_title(
            pg.PlotWidget(),
            "frames/s (blue) · latency p50/p95 (orange/red)",
            "Frames per second through the pipeline and the latency percentiles over time",
        )
        self.rate_plot.setLabel("bottom", "time since Start", units="s")
        self.rate_plot.setLabel("left", "frames/s · latency (ms)")
        self.fps_curve = self.rate_plot.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.p50_curve = self.rate_plot.plot(pen=pg.mkPen("#ff7f0e"))
        self.p95_curve = self.rate_plot.plot(pen=pg.mkPen("#d62728"))
        layout.addWidget(self.rate_plot, 1)
        self.run: LiveRun | None = None
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.poll)
        bench.done.connect(self._on_done)
        bench.run_ended.connect(self._on_run_ended)
        state.model_changed.connect(self._on_model_changed)
        state.calibration_changed.connect(self._show_calibration)
        state.calibrating_changed.connect(self._on_calibrating)
        state.program_changed.connect(self._show_calibration)
        bench.failed.connect(self._on_failed)
        self.starting = False
        self._pending_start = (
            False  # missing calibration steps are running; Start follows when they made a record
        )
        self._record_before: object | None = None
        self._show_calibration()

    def plots(self) -> dict[str, pg.PlotWidget]:
        """The panel's plots by name (File ▸ Export plot)."""
        return {
            "inference: current input": self.input_plot,
            "inference: class probabilities": self.probs,
            "inference: masks": self.masks_plot,
            "inference: frames/s and latency": self.rate_plot,
        }

    @QtCore.Slot()
    def _show_calibration(self) -> None:
        """Which calibration record a run will use, or NOT CALIBRATED in a warning colour (always visible)."""
        rec = self.state.calibration
        if rec is None:
            self.calibration_label.setText(
                "NOT CALIBRATED: a run uses the nominal registration (expect poor "
                "accuracy); calibrate in the Calibration panel"
            )
            self.calibration_label.setStyleSheet("color: #b35900; font-weight: bold")
        else:
            name = rec.path.name if rec.path is not None else "(not saved)"
            check = self.state.calibration_check()
            warn = "" if check.ok else f" · ⚠ {check.text().splitlines()[0]}"
            self.calibration_label.setText(
                f"calibration in use: {name} · steps {', '.join(sorted(rec.steps))}{warn}"
            )
            self.calibration_label.setStyleSheet(
                "" if check.ok else "color: #b35900; font-weight: bold"
            )

    def _update_buttons(self) -> None:
        """Start waits for a running calibration (the run uses the record it produces) and for a running run."""
        busy = self.run is not None or self.starting
        self.start_btn.setEnabled(not busy and not self.state.calibrating)
        self.start_btn.setToolTip(
            "Waiting for the calibration to finish. " + START_TIP
            if self.state.calibrating
            else START_TIP
        )

    def recording_path(self) -> str:
        """The file this run will be recorded to: the typed one (or runs/run-<time>.h5 when empty), never an
        existing file (a free name -1, -2 … is chosen and said)."""
        typed, cal_dir = self.record_path.text().strip(), self.bench.bench.config.calibration_dir
        if not typed:
            return str(default_run_path(cal_dir))
        path = Path(typed).expanduser()
        if path.is_dir():  # a folder: a time-stamped file inside it
            return str(default_run_path(cal_dir, path))
        free = unique_path(path)
        if free != path:
            self.state.status.emit(
                f"{path} exists: this run will be recorded to {free.name} (nothing overwritten)"
            )
        return str(free)

    def start(self) -> None:
        """Build the run in the device thread (checkpoint, program and calibration checked to belong together)."""
        st = self.state
        if st.checkpoint is None or st.program is None:
            self.counters.setText(
                "Load a checkpoint, then compile and upload it (Kernels panel) before starting."
            )
            return
        if st.calibrating:  # the button is disabled meanwhile; a script calling start() is told so
            self.counters.setText("A calibration is running: start the run when it has finished.")
            return
        if st.calibration is None:
            self.state.status.emit(
                "not calibrated: the run uses the nominal registration; expect poor accuracy"
            )
        notes: dict[str, Any] = {}
        check = st.calibration_check()
        if not check.ok:  # never silently on a partial or stale calibration
            answer = confirm_calibration(self, check.text())
            if answer == "run":
                self.run_missing_then_start(check.steps_to_run())
                return
            if answer != "start":
                self.counters.setText(
                    "Not started: the calibration does not fit the program (see the Calibration "
                    "panel)."
                )
                return
            notes["calibration_warning_acknowledged"] = check.text()
            log.warning(
                "live run started on a calibration that does not fit the program (confirmed): %s",
                " ".join(check.text().split()),
            )
        ck, w = st.checkpoint, self.bench
        record_to = self.recording_path() if self.record.isChecked() else None
        # "current": the device thread uses the calibration in use when the run starts, not the one at the click
        args = (
            ck.path,
            st.program_path,
            "current",
            ck.images,
            ck.labels,
            record_to,
            float(self.rate_hz.value()),
            ck.class_names,
            notes,
        )
        self.run, self.latest, self.series = None, {}, {k: [] for k in self.series}
        w.submit(lambda: w.start_run(*args), name="run_started", where="inference")
        self.starting = True
        self._update_buttons()
        self.stop_btn.setEnabled(True)

    def run_missing_then_start(self, steps: list[str]) -> None:
        """Ask the Calibration panel to run ``steps``; Start again when they have made a new record."""
        self._pending_start, self._record_before = True, self.state.calibration
        self.run_steps_requested.emit(list(steps))
        if (
            not self.state.calibrating
        ):  # refused (a compile runs …): the panel says why; nothing waits
            self._pending_start = False
            self.counters.setText(
                "Not started: the missing calibration steps could not run (see the Calibration "
                "panel)."
            )

    @QtCore.Slot(bool)
    def _on_calibrating(self, on: bool) -> None:
        self._update_buttons()
        if on or not self._pending_start:
            return
        self._pending_start = False
        if (
            self.state.calibration is not self._record_before
        ):  # the steps ran and made the record in use
            self.start()
        else:
            self.counters.setText(
                "Not started: the calibration steps did not finish (see the Calibration panel)."
            )

    def stop(self) -> None:
        """Stop the run; the device thread records it to file if that was asked at the start."""
        self.bench.submit(self.bench.stop_stream, where="inference")
        self.stop_btn.setEnabled(False)

    def poll(self) -> None:
        """Read the pipeline's counters and the new results (10 times a second, GUI thread)."""
        if self.run is not None:
            self.on_update(self.run.poll() | {"t_s": time.perf_counter()})

    @QtCore.Slot(dict)
    def on_update(self, u: dict[str, Any]) -> None:
        self.latest, self.updates = u, self.updates + 1
        pct = lambda v: "–" if v != v else f"{100 * v:.1f} %"  # noqa: E731 — NaN shows as a dash
        view = TASKS[
            u.get("task", CLASSIFICATION.name)
        ].view  # the run's task (lab4f.task.Tally.metrics)
        self.counters.setText(COUNTERS[view](u, pct))
        ms = lambda v: "–" if v != v else f"{v:.1f} ms"  # noqa: E731 — no latency before the first result
        reason = u.get("stop_reason")
        stopped = (
            ""
            if u["running"]
            else " | stopped" + (f": {reason}" if reason and reason != "stopped" else "")
        )
        self.rates.setText(
            f"{u['fps']:.1f} frames/s · latency p50 {ms(u['latency_p50_ms'])}, p95 {ms(u['latency_p95_ms'])} | "
            f"acquired {u['acquired']}, processed {u['processed']}, dropped {u['dropped']} "
            f"(ring {u['dropped_overflow']}, camera {u['dropped_camera']}), queue {u['queue_depth']}"
            + stopped
        )
        last = u.get("last")
        if (
            last is self._drawn_last
        ):  # the same result as at the last poll (a stopped run keeps polling)
            last = None
        else:
            self._drawn_last = last
        if last:
            show_image(self.input_image, last["image"], levels=(0.0, 1.0))
            self._draw_last[view](last)
        s = self.series
        for key, value in (
            ("t", u["t_s"]),
            ("fps", u["fps"]),
            ("p50", u["latency_p50_ms"]),
            ("p95", u["latency_p95_ms"]),
        ):
            s[key] = (s[key] + [value])[-HISTORY:]
        t = np.asarray(s["t"]) - s["t"][0]
        self.fps_curve.setData(t, np.asarray(s["fps"]))
        self.p50_curve.setData(t, np.nan_to_num(np.asarray(s["p50"])))
        self.p95_curve.setData(t, np.nan_to_num(np.asarray(s["p95"])))

    def _draw_probabilities(self, last: dict[str, Any]) -> None:
        n = len(last["optical_probs"])
        self.bars_opt.setOpts(x=np.arange(n) - 0.2, height=last["optical_probs"])
        self.bars_dig.setOpts(x=np.arange(n) + 0.2, height=last["digital_probs"])

    def _draw_masks(self, last: dict[str, Any]) -> None:
        from lab4f.bench.segrun import overlay

        pair = overlay(
            np.stack([last["image"], last["image"]]),
            np.stack([last["optical_mask"], last["digital_mask"]]).astype(np.uint8),
            last["num_classes"],
        )
        gap = np.full((pair.shape[1], 2, 3), 255, np.uint8)
        show_image(
            self.masks_image, np.concatenate([pair[0], gap, pair[1]], axis=1), levels=(0.0, 255.0)
        )

    @QtCore.Slot()
    def _on_model_changed(self) -> None:
        """The loaded task's view: probabilities for a classifier, the mask overlays for a segmentation student."""
        view = (
            self.state.checkpoint.view if self.state.checkpoint is not None else CLASSIFICATION.view
        )
        for name, widget in self._views.items():
            widget.setVisible(name == view)

    @QtCore.Slot(str, object)
    def _on_done(self, name: str, result: Any) -> None:
        if name == "run_started":
            self.run, self.starting = result, False
            self._update_buttons()
            self.timer.start()

    @QtCore.Slot(dict)
    def _on_run_ended(self, ended: dict[str, Any]) -> None:
        """The run stopped (Stop, a device fault, or a new job on the bench): last counters, buttons back."""
        self.poll()
        self.timer.stop()
        self.run = None
        self._update_buttons()
        self.stop_btn.setEnabled(False)
        if ended.get("record"):
            self.state.status.emit(
                f"run recorded to {ended['record']} ({ended['processed']} frames)"
            )

    @QtCore.Slot(str, str)
    def _on_failed(self, where: str, _message: str) -> None:
        if where == "inference" and self.run is None:  # the run could not start
            self.starting = False
            self._update_buttons()
            self.stop_btn.setEnabled(False)
