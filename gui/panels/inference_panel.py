"""Inference panel: current input, class probabilities (optical beside digital), running accuracies,
frames/s and latency over time, drops; start/stop; record the run to a file."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from lab4f.bench.extract import FeatureExtractor
from lab4f.gui.app_state import AppState
from lab4f.gui.live import FrameQueue, LiveInference
from lab4f.gui.views import image_view, show_image, status_label
from lab4f.gui.workers import BenchWorker, InferenceWorker
from lab4f.optics.registration import PlaneToCamera

HISTORY = 300  # points kept in the time plots


class InferencePanel(QtWidgets.QWidget):
    """Start builds the extractor from program + calibration, then starts acquisition and inference threads."""

    def __init__(self, state: AppState, bench: BenchWorker, inference: InferenceWorker, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.bench, self.inference = state, bench, inference
        self.latest: dict[str, Any] = {}
        self.updates = 0
        self.series: dict[str, list[float]] = {"t": [], "fps": [], "p50": [], "p95": []}
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.start_btn = QtWidgets.QPushButton("Start")
        self.start_btn.clicked.connect(self.start)
        self.stop_btn = QtWidgets.QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        self.record = QtWidgets.QCheckBox("record run to")
        self.record_path = QtWidgets.QLineEdit("live_run.h5")
        for w in (self.start_btn, self.stop_btn, self.record, self.record_path):
            row.addWidget(w)
        layout.addLayout(row)
        self.counters = status_label("not running")
        layout.addWidget(self.counters)
        top = QtWidgets.QHBoxLayout()
        self.input_plot, self.input_image = image_view("current input")
        self.input_plot.setMaximumWidth(220)
        self.probs = pg.PlotWidget(title="class probabilities (blue optical, grey digital)")
        self.probs.setYRange(0, 1)
        self.bars_opt = pg.BarGraphItem(x=np.arange(10) - 0.2, height=np.zeros(10), width=0.4, brush="#1f77b4")
        self.bars_dig = pg.BarGraphItem(x=np.arange(10) + 0.2, height=np.zeros(10), width=0.4, brush="#999999")
        self.probs.addItem(self.bars_opt)
        self.probs.addItem(self.bars_dig)
        top.addWidget(self.input_plot)
        top.addWidget(self.probs, 1)
        layout.addLayout(top, 1)
        self.rate_plot = pg.PlotWidget(title="frames/s (blue) · latency p50/p95 ms (orange/red)")
        self.fps_curve = self.rate_plot.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.p50_curve = self.rate_plot.plot(pen=pg.mkPen("#ff7f0e"))
        self.p95_curve = self.rate_plot.plot(pen=pg.mkPen("#d62728"))
        layout.addWidget(self.rate_plot, 1)
        inference.update.connect(self.on_update)
        inference.done.connect(self._on_done)
        bench.failed.connect(self._on_failed)

    def _extractor(self) -> FeatureExtractor:
        st, cal = self.state, self.state.calibration
        shape = tuple(self.bench.latest.get()[0].shape) if self.bench.latest.get()[0] is not None else \
            tuple(st.camera_shape or (512, 512))
        reg = cal.registration
        if reg is None:
            self.state.status.emit("not calibrated: using the nominal registration (identity); expect poor accuracy")
            reg = PlaneToCamera.identity(shape)
        return FeatureExtractor.for_program(st.program, reg, shape, dark=cal.dark, channel_gain=cal.channel_gain,
                                            channel_offset=cal.channel_offset)

    def start(self) -> None:
        st = self.state
        if st.checkpoint is None or st.program is None:
            self.counters.setText("Load a checkpoint, then compile and upload it (Kernels panel) before starting.")
            return
        engine = LiveInference(st.checkpoint.model, self._extractor(), FrameQueue(capacity=8))
        feed = (st.checkpoint.images, st.checkpoint.labels)
        self.series = {k: [] for k in self.series}
        self.inference.submit(lambda: self.inference.start(engine), where="inference")
        self.bench.submit(lambda: self.bench.start_stream(engine.queue, feed), where="camera")
        self.start_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)

    def stop(self) -> None:
        path = self.record_path.text() if self.record.isChecked() else None
        context = {"checkpoint": getattr(self.state.checkpoint, "path", None), "program": self.state.program_path,
                   "calibration": self.state.calibration_path}
        self.bench.submit(self.bench.stop_stream, where="camera")
        self.inference.submit(lambda: self.inference.stop(path, context), name="inference_stopped",
                              where="inference")
        self.start_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)

    @QtCore.Slot(dict)
    def on_update(self, u: dict[str, Any]) -> None:
        self.latest, self.updates = u, self.updates + 1
        pct = lambda v: "–" if v != v else f"{100 * v:.1f} %"  # noqa: E731 — NaN shows as a dash
        self.counters.setText(
            f"optical accuracy {pct(u['optical_accuracy'])} · digital {pct(u['digital_accuracy'])} · "
            f"agreement {pct(u['agreement'])} | {u['fps']:.1f} frames/s · latency p50 {u['latency_p50_ms']:.1f} ms, "
            f"p95 {u['latency_p95_ms']:.1f} ms | acquired {u['acquired']}, processed {u['processed']}, "
            f"dropped {u['dropped']}, queue {u['queue_depth']}")
        last = u.get("last")
        if last:
            show_image(self.input_image, last["image"], levels=(0.0, 1.0))
            n = len(last["optical_probs"])
            self.bars_opt.setOpts(x=np.arange(n) - 0.2, height=last["optical_probs"])
            self.bars_dig.setOpts(x=np.arange(n) + 0.2, height=last["digital_probs"])
        s = self.series
        for key, value in (("t", u["t_s"]), ("fps", u["fps"]), ("p50", u["latency_p50_ms"]),
                           ("p95", u["latency_p95_ms"])):
            s[key] = (s[key] + [value])[-HISTORY:]
        t = np.asarray(s["t"]) - s["t"][0]
        self.fps_curve.setData(t, np.asarray(s["fps"]))
        self.p50_curve.setData(t, np.nan_to_num(np.asarray(s["p50"])))
        self.p95_curve.setData(t, np.nan_to_num(np.asarray(s["p95"])))

    @QtCore.Slot(str, object)
    def _on_done(self, name: str, result: Any) -> None:
        if name == "inference_stopped" and result.get("record"):
            self.state.status.emit(f"run recorded to {result['record']}")

    @QtCore.Slot(str, str)
    def _on_failed(self, where: str, _message: str) -> None:
        if where == "camera" and self.stop_btn.isEnabled():
            self.stop()  # the acquisition stopped on a device error: stop inference too, keep what was done
