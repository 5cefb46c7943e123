"""Live panel: the camera stream with the tile layout drawn over it, frames/s, pause, snapshot to file.

Drawing costs the GUI thread ~1 ms per 512² frame (measured offscreen), so frames are drawn at full
resolution (no downsampling), without a copy, with fixed levels; what limits the displayed rate is when the
GUI thread gets the CPU. A 5 ms timer therefore checks for a new frame and draws the newest one when its
slot on a ``draw_hz`` schedule is due: a late tick still draws and the next slot stays on the schedule,
instead of the tick being lost as with a 30 ms timer (27.6 displayed frames/s on a loaded host).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.app_state import AppState
from lab4f.gui.views import image_view, show_image, status_label
from lab4f.gui.workers import BenchWorker
from lab4f.optics.registration import PlaneToCamera


def tile_rectangles(program, registration: PlaneToCamera) -> list[tuple[float, float, float, float]]:  # noqa: ANN001
    """(x, y, w, h) camera-pixel boxes of every tile of the program's first frame."""
    layout = program.frames[0].layout
    n = layout.input_size
    boxes = []
    for t in layout.tiles:
        dy, dx = t.offset
        corners = registration.apply(np.array([[dx - n / 2, dy - n / 2], [dx + n / 2, dy + n / 2]]))
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        boxes.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    return boxes


class LivePanel(QtWidgets.QWidget):
    """Draws only the newest frame the acquisition thread left in `worker.latest`, at most `draw_hz` times a second."""

    def __init__(self, state: AppState, worker: BenchWorker, parent=None, draw_hz: float = 34.0) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.worker = state, worker
        self.drawn, self._seen, self._t0, self._n0 = 0, 0, time.perf_counter(), 0
        self.interval_s, self._due = 1.0 / draw_hz, 0.0
        self.display_fps = self.camera_fps = 0.0
        self.levels: tuple[float, float] | None = None
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.start_btn = QtWidgets.QPushButton("Start")
        self.start_btn.setCheckable(True)
        self.start_btn.toggled.connect(self._start_pause)
        self.snap_btn = QtWidgets.QPushButton("Snapshot…")
        self.snap_btn.clicked.connect(self._choose_snapshot)
        self.freeze = QtWidgets.QCheckBox("pause display")
        self.fps_label = status_label("–")
        for w in (self.start_btn, self.freeze, self.snap_btn):
            row.addWidget(w)
        row.addWidget(self.fps_label, 1)
        layout.addLayout(row)
        self.plot, self.image = image_view()
        layout.addWidget(self.plot, 1)
        # over the view's corner: the frame shown is not live (camera disconnected, stream stopped by a fault)
        self.stale_label = QtWidgets.QLabel(self.plot)
        self.stale_label.setStyleSheet("background: rgba(164, 0, 0, 210); color: white; padding: 4px; "
                                       "font-weight: bold")
        self.stale_label.move(8, 8)
        self.stale_label.hide()
        self._frame_time = ""  # wall-clock time of the frame drawn last
        self.boxes: list[QtWidgets.QGraphicsRectItem] = []
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.draw)
        self.timer.start()
        worker.streaming.connect(self._on_streaming)
        worker.state.connect(self._on_state)
        state.program_changed.connect(self.draw_tiles)
        state.calibration_changed.connect(self.draw_tiles)

    def _start_pause(self, on: bool) -> None:
        """Start the camera stream (if nothing streams yet), or stop whatever streams (a run is recorded); the
        device thread answers with `streaming`, which sets the button (a failed start unchecks it)."""
        w = self.worker
        w.submit(lambda: w.set_streaming(on), where="camera")

    @QtCore.Slot(bool)
    def _on_streaming(self, on: bool) -> None:
        blocker = QtCore.QSignalBlocker(self.start_btn)
        self.start_btn.setChecked(on)
        self.start_btn.setText("Stop" if on else "Start")
        del blocker

    def draw(self) -> None:
        """Draw the newest frame if there is one we have not drawn; update the rates once a second."""
        frame, count = self.worker.latest.get()
        now = time.perf_counter()
        if frame is not None and count != self._seen and now >= self._due and not self.freeze.isChecked():
            # the next slot keeps the schedule after a late tick, but a long stall earns one extra frame only
            self._seen, self._due = count, max(self._due + self.interval_s, now - self.interval_s)
            if self.levels is None or self.drawn % 30 == 0:
                lo, hi = float(frame.min()), float(np.percentile(frame[::8, ::8], 99.9))
                self.levels = (lo, max(hi, lo + 1.0))
            show_image(self.image, frame, self.levels)
            self.drawn += 1
            self._frame_time = datetime.now().strftime("%H:%M:%S")
            if not self.stale_label.isHidden():
                self.stale_label.hide()
        if now - self._t0 >= 1.0:
            self.display_fps = (self.drawn - self._n0) / (now - self._t0)
            self.camera_fps = (count - getattr(self, "_c0", count)) / (now - self._t0)
            self._t0, self._n0, self._c0 = now, self.drawn, count
            self.fps_label.setText(f"displayed {self.display_fps:.1f} frames/s · camera {self.camera_fps:.1f} frames/s")

    def mark_stale(self, why: str) -> None:
        """Say over the image that it is the last frame, not a live one (until a new frame is drawn)."""
        if self.drawn == 0:
            return
        self.stale_label.setText(f"STALE: {why} — last frame at {self._frame_time}")
        self.stale_label.adjustSize()
        self.stale_label.show()
        self.stale_label.raise_()

    @QtCore.Slot(dict)
    def _on_state(self, state: dict) -> None:
        camera = state.get("devices", {}).get("camera", {})
        if camera and not camera.get("connected"):
            self.mark_stale("camera disconnected")

    def draw_tiles(self) -> None:
        for box in self.boxes:
            self.plot.removeItem(box)
        self.boxes = []
        program = self.state.program
        if program is None:
            return
        rec = self.state.calibration
        reg = rec.registration if rec is not None else None
        if reg is None:
            shape = self.state.camera_shape or (512, 512)
            reg = PlaneToCamera.identity(shape)
        pen = pg.mkPen((0, 200, 255), width=1)
        rects = tile_rectangles(program, reg)
        for x, y, w, h in rects:
            box = QtWidgets.QGraphicsRectItem(x, y, w, h)
            box.setPen(pen)
            self.plot.addItem(box)
            self.boxes.append(box)
        if rects:  # zoom onto the tiles (the feature maps); the mouse zooms back out
            corners = np.array([(x, y, x + w, y + h) for x, y, w, h in rects])
            (x0, y0), (x1, y1) = corners[:, :2].min(0), corners[:, 2:].max(0)
            m = 0.5 * max(x1 - x0, y1 - y0)
            self.plot.setRange(xRange=(x0 - m, x1 + m), yRange=(y0 - m, y1 + m))

    def _choose_snapshot(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Snapshot", "snapshot.png", "16-bit PNG (*.png)")
        if path:
            self.snapshot(path)

    def snapshot(self, path: str | Path) -> Path | None:
        """Save the newest frame losslessly as a 16-bit grayscale PNG."""
        frame, _ = self.worker.latest.get()
        if frame is None:
            self.state.status.emit("no frame yet: start the camera first")
            return None
        data = np.ascontiguousarray(frame, dtype=np.uint16)
        h, w = data.shape
        qimg = QtGui.QImage(data.data, w, h, 2 * w, QtGui.QImage.Format.Format_Grayscale16)
        if not qimg.save(str(path)):
            self.state.status.emit(f"could not write {path}: check the folder exists and is writable")
            return None
        self.state.status.emit(f"snapshot saved to {path}")
        return Path(path)
