"""Calibration panel: each step with a progress bar, Run and Cancel; the results drawn (registration
overlay, per-channel fits); records loaded and saved, with their history."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from lab4f.gui import calibration_steps as cs
from lab4f.gui.app_state import AppState
from lab4f.gui.views import image_view, show_image
from lab4f.gui.workers import BenchWorker

TITLES = {"dark": "Dark frame", "registration": "Display → camera registration",
          "channel_gain": "Per-channel gain and offset"}


class CalibrationPanel(QtWidgets.QWidget):
    """Steps run in the device thread on a copy of the current calibration; it replaces it when all succeed."""

    def __init__(self, state: AppState, worker: BenchWorker, folder: str = "calibrations", parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.worker, self.folder = state, worker, Path(folder)
        self.running = False
        layout = QtWidgets.QVBoxLayout(self)
        grid = QtWidgets.QGridLayout()
        self.bars: dict[str, QtWidgets.QProgressBar] = {}
        self.run_btns: dict[str, QtWidgets.QPushButton] = {}
        for i, step in enumerate(cs.STEPS):
            grid.addWidget(QtWidgets.QLabel(TITLES[step]), i, 0)
            self.bars[step] = QtWidgets.QProgressBar(maximum=1000, textVisible=True)
            grid.addWidget(self.bars[step], i, 1)
            self.run_btns[step] = QtWidgets.QPushButton("Run")
            self.run_btns[step].clicked.connect(lambda _=False, s=step: self.run([s]))
            grid.addWidget(self.run_btns[step], i, 2)
        layout.addLayout(grid)
        row = QtWidgets.QHBoxLayout()
        self.run_all_btn = QtWidgets.QPushButton("Run all")
        self.run_all_btn.clicked.connect(lambda: self.run(list(cs.STEPS)))
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        save_btn, load_btn = QtWidgets.QPushButton("Save record…"), QtWidgets.QPushButton("Load record…")
        save_btn.clicked.connect(self._choose_save)
        load_btn.clicked.connect(self._choose_load)
        for w in (self.run_all_btn, self.cancel_btn, save_btn, load_btn):
            row.addWidget(w)
        layout.addLayout(row)
        self.summary = QtWidgets.QLabel("not calibrated")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        plots = QtWidgets.QHBoxLayout()
        self.reg_plot, self.reg_image = image_view("registration: fiducials (o measured, + fitted)")
        self.reg_points = pg.ScatterPlotItem(symbol="o", pen=pg.mkPen("c"), brush=None, size=10)
        self.reg_fit = pg.ScatterPlotItem(symbol="+", pen=pg.mkPen("m"), size=10)
        self.reg_plot.addItem(self.reg_points)
        self.reg_plot.addItem(self.reg_fit)
        self.fit_plot = pg.PlotWidget(title="per-channel fit: digital vs captured feature")
        self.fit_plot.addLegend(offset=(5, 5))
        plots.addWidget(self.reg_plot)
        plots.addWidget(self.fit_plot)
        layout.addLayout(plots, 1)
        layout.addWidget(QtWidgets.QLabel("History (double-click to load):"))
        self.history = QtWidgets.QListWidget()
        self.history.setMaximumHeight(90)
        self.history.itemDoubleClicked.connect(lambda item: self.load(item.data(QtCore.Qt.ItemDataRole.UserRole)))
        layout.addWidget(self.history)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        self.refresh_history()

    # -- running -----------------------------------------------------------------------------------
    def run(self, steps: list[str]) -> None:
        st = self.state
        new = copy.copy(st.calibration)
        phase = st.program.frames[0].phase if st.program is not None else None
        funcs = {"dark": lambda b, p, c: cs.measure_dark(b, new, p, c),
                 "registration": lambda b, p, c: cs.measure_registration(b, new, p, c, restore_phase=phase)}
        if "channel_gain" in steps:
            if st.checkpoint is None or st.program is None:
                self.summary.setText("Per-channel gain needs a loaded checkpoint and an uploaded program: "
                                     "use the Kernels panel first.")
                return
            ck, program = st.checkpoint, st.program
            funcs["channel_gain"] = lambda b, p, c: cs.fit_channel_gain(b, new, p, c, ck.model, program,
                                                                        ck.images[:24])
        for s in steps:
            self.bars[s].setValue(0)
        self._set_running(True)
        w = self.worker

        def job() -> cs.CalibrationState:
            w.run_steps([(s, funcs[s]) for s in steps])
            new.bench = w.bench.info()
            return new

        w.submit(job, name="calibration", where="calibration")

    def cancel(self) -> None:
        self.worker.cancel.set()  # a threading.Event: safe to set from the GUI thread

    def _set_running(self, on: bool) -> None:
        self.running = on
        self.cancel_btn.setEnabled(on)
        for b in (*self.run_btns.values(), self.run_all_btn):
            b.setEnabled(not on)

    @QtCore.Slot(str, float, str)
    def _on_progress(self, step: str, fraction: float, message: str) -> None:
        if step in self.bars:
            self.bars[step].setValue(int(1000 * fraction))
            self.bars[step].setFormat(f"{message} (%p %)")
        else:
            self.summary.setText(message)

    @QtCore.Slot(str, object)
    def _on_done(self, name: str, result: Any) -> None:
        if name == "calibration":
            self._set_running(False)
            self.apply(result)

    @QtCore.Slot(str, str)
    def _on_failed(self, where: str, message: str) -> None:
        if where == "calibration":
            self._set_running(False)
            self.summary.setText(f"Calibration stopped: {message}")

    def apply(self, new: cs.CalibrationState) -> None:
        self.state.calibration = new
        self.state.calibration_changed.emit()
        self.draw()

    # -- drawing -----------------------------------------------------------------------------------
    def draw(self) -> None:
        c = self.state.calibration
        items = c.summary().items()
        text = ", ".join(f"{k} = {np.round(v, 4) if isinstance(v, (float, list)) else v}" for k, v in items)
        self.summary.setText(text or "not calibrated")
        frame, _ = self.worker.latest.get()
        if c.dark is not None or frame is not None:
            show_image(self.reg_image, frame if frame is not None else c.dark)
        if c.fiducials is not None and c.registration is not None:
            pts = c.fiducials
            self.reg_points.setData(pts[:, 2], pts[:, 3])
            fit = c.registration.apply(pts[:, :2])
            self.reg_fit.setData(fit[:, 0], fit[:, 1])
        self.fit_plot.clear()
        for ch, (x, y) in enumerate(c.fit_samples):
            r2 = c.channel_r2[ch] if c.channel_r2 is not None else float("nan")
            self.fit_plot.plot(x, y, pen=None, symbol="o", symbolSize=3, symbolPen=None,
                               symbolBrush=pg.intColor(ch, len(c.fit_samples)), name=f"ch {ch}: R² {r2:.4f}")

    # -- records -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = cs.save_state(self.state.calibration, path)
        self.state.calibration_path = str(path)
        self.state.status.emit(f"calibration saved to {path}")
        self.refresh_history()
        return path

    def load(self, path: str | Path) -> None:
        try:
            state = cs.load_state(path)
        except Exception as exc:  # a corrupt file must not take the window down
            self.summary.setText(f"Cannot load {path}: {exc}. The current calibration is unchanged.")
            return
        self.state.calibration_path = str(path)
        self.apply(state)

    def refresh_history(self) -> None:
        self.history.clear()
        for p in cs.history(self.folder):
            item = QtWidgets.QListWidgetItem(f"{p.name}  ({p.stat().st_size // 1024} kB)")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, str(p))
            self.history.addItem(item)

    def _choose_save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save calibration", str(self.folder / "calibration.h5"),
                                                        "Calibration (*.h5)")
        if path:
            self.save(path)

    def _choose_load(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load calibration", str(self.folder),
                                                        "Calibration (*.h5)")
        if path:
            self.load(path)
