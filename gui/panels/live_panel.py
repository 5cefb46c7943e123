"""Live panel, the window's central view and an alignment tool: the camera stream with levels and a histogram
(pyqtgraph's HistogramLUTWidget), saturated pixels in red, the pixel value under the cursor, a region with
statistics, optional averaging of the last N frames, the tile layout drawn over the image, and the camera's exposure
and gain beside it; frames/s, pause, snapshot to file.

Drawing costs the GUI thread ~1 ms per 512² frame (measured offscreen), so frames are drawn at full
resolution (no downsampling), without a copy; what limits the displayed rate is when the GUI thread gets the CPU.
A 5 ms timer therefore checks for a new frame and draws the newest one when its slot on a ``draw_hz`` schedule is
due: a late tick still draws and the next slot stays on the schedule, instead of the tick being lost as with a
30 ms timer (27.6 displayed frames/s on a loaded host). The histogram, the region's statistics and the levels are
recomputed a few times a second, not per frame.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.alignment import FrameAverager, region_stats, saturation_level
from lab4f.gui.app_state import AppState
from lab4f.gui.panels.bench_panel import EXPOSURE_TIP, GAIN_TIP, show_value
from lab4f.gui.views import image_view, status_label
from lab4f.gui.workers import BenchWorker, start_folder
from lab4f.optics.registration import PlaneToCamera

SLOW_UPDATE_S = 0.25  # histogram, region statistics and automatic levels: 4 times a second
LEVELS_EVERY = 30  # automatic levels follow the frames every this many drawn frames
SATURATED_LUT = np.array([[0, 0, 0, 0], [255, 0, 0, 255]], np.uint8)  # 0: transparent, 1: red


def tile_rectangles(
    program, registration: PlaneToCamera
) -> list[tuple[float, float, float, float]]:  # noqa: ANN001
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


def _tip(widget: QtWidgets.QWidget, text: str) -> QtWidgets.QWidget:
    widget.setToolTip(text)
    return widget


class LivePanel(QtWidgets.QWidget):
    """Draws only the newest frame the acquisition thread left in `worker.latest`, at most `draw_hz` times a second."""

    def __init__(
        self, state: AppState, worker: BenchWorker, parent=None, draw_hz: float = 34.0
    ) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.worker = state, worker
        self.drawn, self._seen, self._t0, self._n0 = 0, 0, time.perf_counter(), 0
        self.interval_s, self._due, self._slow_due = 1.0 / draw_hz, 0.0, 0.0
        self.display_fps = self.camera_fps = 0.0
        self.levels: tuple[float, float] | None = None
        self.saturation: float | None = None  # the camera's full-scale value (from its bit depth)
        self.saturated = 0  # pixels of the newest frame at full scale
        self.shown: np.ndarray | None = (
            None  # the image drawn (the mean of the last N frames when averaging)
        )
        self.raw: np.ndarray | None = None  # the newest camera frame
        self.roi_stats: dict[str, Any] = {}
        self.averager = FrameAverager()
        self._setting_levels = False
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._toolbar())
        body = QtWidgets.QHBoxLayout()
        self.plot, self.image = image_view()
        self.plot.setLabel("bottom", "x (camera px)")
        self.plot.setLabel("left", "y (camera px)")
        self.plot.setMinimumSize(240, 200)
        self.saturated_item = pg.ImageItem()
        self.saturated_item.setZValue(5)
        self.plot.addItem(self.saturated_item)
        self.roi = pg.RectROI([200, 200], [64, 64], pen=pg.mkPen("#ffd400", width=2))
        self.roi.setZValue(20)
        self.roi.hide()
        self.plot.addItem(self.roi)
        self.roi.sigRegionChanged.connect(self._update_roi)
        self.hist = pg.HistogramLUTWidget(image=self.image)
        self.hist.setToolTip(
            "Histogram of the image and the display levels: drag the bounds to set the levels "
            "(automatic levels turn off); the colour bar sets the colour map"
        )
        self.hist.setMinimumWidth(90)
        # the histogram of every frame (30/s) would cost the GUI thread for nothing: it is redrawn SLOW_UPDATE_S
        self.image.sigImageChanged.disconnect(self.hist.item.imageChanged)
        self.hist.item.sigLevelChangeFinished.connect(self._on_levels_dragged)
        body.addWidget(self.plot, 1)
        body.addWidget(self.hist)
        body.addWidget(self._side())
        layout.addLayout(body, 1)
        # over the view's corner: the frame shown is not live (camera disconnected, stream stopped by a fault)
        self.stale_label = QtWidgets.QLabel(self.plot)
        self.stale_label.setStyleSheet(
            "background: rgba(164, 0, 0, 210); color: white; padding: 4px; font-weight: bold"
        )
        self.stale_label.move(8, 8)
        self.stale_label.hide()
        self._frame_time = ""  # wall-clock time of the frame drawn last
        self.plot.scene().sigMouseMoved.connect(self._on_mouse)
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
        state.calibrating_changed.connect(lambda _on: self._enable_camera_controls())

    # -- layout ------------------------------------------------------------------------------------
    def _toolbar(self) -> QtWidgets.QHBoxLayout:
        row = QtWidgets.QHBoxLayout()
        self.start_btn = _tip(
            QtWidgets.QPushButton("Start"),
            "Start or stop the camera stream (F6); a live run is "
            "stopped and recorded if it was asked to be",
        )
        self.start_btn.setCheckable(True)
        self.start_btn.toggled.connect(self._start_pause)
        self.freeze = _tip(
            QtWidgets.QCheckBox("pause display"), "Keep the image still; the stream goes on"
        )
        self.snap_btn = _tip(
            QtWidgets.QPushButton("Snapshot…"),
            "Save the newest camera frame as a lossless 16-bit PNG (F8)",
        )
        self.snap_btn.clicked.connect(self._choose_snapshot)
        self.average = _tip(
            QtWidgets.QSpinBox(minimum=1, maximum=256, value=1),
            "Show the mean of the last N "
            "frames (less noise while aligning; 1 = every frame as it comes)",
        )
        self.average.setPrefix("average ")
        self.average.setSuffix(" frames")
        self.average.setSpecialValueText("no averaging")
        self.average.valueChanged.connect(self.averager.set_n)
        self.tiles_on = _tip(
            QtWidgets.QCheckBox("tiles"),
            "Draw the uploaded program's tiles (through the "
            "calibrated registration) over the image",
        )
        self.tiles_on.setChecked(True)
        self.tiles_on.toggled.connect(lambda on: [b.setVisible(on) for b in self.boxes])
        self.roi_on = _tip(
            QtWidgets.QCheckBox("region"), "Show a region (drag and resize it) and its statistics"
        )
        self.roi_on.toggled.connect(self._show_roi)
        self.fps_label = status_label("–")
        for w in (
            self.start_btn,
            self.freeze,
            self.snap_btn,
            self.average,
            self.tiles_on,
            self.roi_on,
        ):
            row.addWidget(w)
        row.addWidget(self.fps_label, 1)
        return row

    def _side(self) -> QtWidgets.QWidget:
        side = QtWidgets.QWidget()
        side.setFixedWidth(190)
        form = QtWidgets.QVBoxLayout(side)
        form.setContentsMargins(0, 0, 0, 0)
        form.addWidget(QtWidgets.QLabel("Exposure"))
        self.exposure_ms = _tip(
            QtWidgets.QDoubleSpinBox(decimals=3, minimum=0.001, maximum=10_000.0, suffix=" ms"),
            EXPOSURE_TIP,
        )
        self.exposure_ms.setKeyboardTracking(False)
        self.exposure_ms.editingFinished.connect(self._set_exposure)
        form.addWidget(self.exposure_ms)
        form.addWidget(QtWidgets.QLabel("Gain"))
        self.gain = _tip(
            QtWidgets.QDoubleSpinBox(decimals=3, minimum=0.001, maximum=100.0, suffix=" ADU/e⁻"),
            GAIN_TIP,
        )
        self.gain.setKeyboardTracking(False)
        self.gain.editingFinished.connect(self._set_gain)
        form.addWidget(self.gain)
        self.auto_levels = _tip(
            QtWidgets.QCheckBox("automatic levels"),
            "Levels follow the image (0.1 % darkest "
            "to 99.9 % brightest pixel); off once you drag the histogram's bounds",
        )
        self.auto_levels.setChecked(True)
        self.auto_levels.toggled.connect(lambda on: setattr(self, "levels", None) if on else None)
        form.addWidget(self.auto_levels)
        self.show_saturated = _tip(
            QtWidgets.QCheckBox("saturated in red"),
            "Paint pixels at the camera's full "
            "scale (2^bit depth − 1) red: lower the exposure or the power until none is",
        )
        self.show_saturated.setChecked(True)
        self.show_saturated.toggled.connect(lambda on: self.saturated_item.setVisible(on))
        form.addWidget(self.show_saturated)
        self.saturation_label = QtWidgets.QLabel("saturated: –")
        self.saturation_label.setWordWrap(True)
        form.addWidget(self.saturation_label)
        self.cursor_label = QtWidgets.QLabel("cursor: –")
        self.cursor_label.setWordWrap(True)
        form.addWidget(self.cursor_label)
        self.roi_label = QtWidgets.QLabel("")
        self.roi_label.setWordWrap(True)
        form.addWidget(self.roi_label)
        form.addStretch(1)
        self._enable_camera_controls()
        return side

    # -- the stream ----------------------------------------------------------------------------------
    def _start_pause(self, on: bool) -> None:
        """Start the camera stream (if nothing streams yet), or stop whatever streams (a run is recorded); the
        device thread answers with `streaming`, which sets the button (a failed start unchecks it)."""
        w = self.worker
        w.submit(lambda: w.set_streaming(on), where="camera")

    def toggle_stream(self) -> None:
        """The shortcut's Start/Stop: as the button."""
        self.start_btn.toggle()

    @QtCore.Slot(bool)
    def _on_streaming(self, on: bool) -> None:
        blocker = QtCore.QSignalBlocker(self.start_btn)
        self.start_btn.setChecked(on)
        self.start_btn.setText("Stop" if on else "Start")
        del blocker
        if on:
            self.averager.reset()

    def draw(self) -> None:
        """Draw the newest frame if there is one we have not drawn; update the rates once a second."""
        frame, count = self.worker.latest.get()
        now = time.perf_counter()
        if (
            frame is not None
            and count != self._seen
            and now >= self._due
            and not self.freeze.isChecked()
        ):
            # the next slot keeps the schedule after a late tick, but a long stall earns one extra frame only
            self._seen, self._due = count, max(self._due + self.interval_s, now - self.interval_s)
            self._draw_frame(frame, now)
        if now - self._t0 >= 1.0:
            self.display_fps = (self.drawn - self._n0) / (now - self._t0)
            self.camera_fps = (count - getattr(self, "_c0", count)) / (now - self._t0)
            self._t0, self._n0, self._c0 = now, self.drawn, count
            self.fps_label.setText(
                f"displayed {self.display_fps:.1f} frames/s · camera {self.camera_fps:.1f} frames/s"
            )

    def _draw_frame(self, frame: np.ndarray, now: float) -> None:
        self.raw, self.shown = frame, self.averager.add(frame)
        slow = now >= self._slow_due
        if self.auto_levels.isChecked() and (self.levels is None or self.drawn % LEVELS_EVERY == 0):
            lo, hi = (float(v) for v in np.percentile(self.shown[::8, ::8], (0.1, 99.9)))
            self.set_levels(lo, max(hi, lo + 1.0))
        self.image.setImage(self.shown, autoLevels=False)
        self._draw_saturated(frame)
        if slow:
            self._slow_due = now + SLOW_UPDATE_S
            self.hist.item.imageChanged()
            self._update_roi()
        self.drawn += 1
        self._frame_time = datetime.now().strftime("%H:%M:%S")
        # a frame acquired before the mark (still in flight when the camera went) does not clear it
        if not self.stale_label.isHidden() and self._seen > getattr(self, "_stale_at", -1):
            self.stale_label.hide()

    def set_levels(self, lo: float, hi: float) -> None:
        """Display levels (through the histogram, which shows them); not taken for a drag of its bounds."""
        self._setting_levels = True
        try:
            self.hist.setLevels(lo, hi)
        finally:
            self._setting_levels = False
        self.levels = (lo, hi)

    def _on_levels_dragged(self, *_: object) -> None:
        if not self._setting_levels and self.auto_levels.isChecked():
            self.auto_levels.setChecked(False)  # the user set the levels: they stay
        self.levels = tuple(self.hist.item.getLevels())

    def _draw_saturated(self, frame: np.ndarray) -> None:
        sat = self.saturation if self.saturation is not None else saturation_level(None, frame)
        if sat is None:
            self.saturated = 0
            self.saturated_item.clear()
            return
        mask = frame >= sat
        self.saturated = int(np.count_nonzero(mask))
        if self.saturated:
            self.saturated_item.setImage(
                mask.view(np.uint8), lut=SATURATED_LUT, levels=(0, 1), autoLevels=False
            )
        elif self.saturated_item.image is not None:
            self.saturated_item.clear()
        self.saturation_label.setText(
            f"saturated: {self.saturated} px\n(at {sat:g} ADU, full scale)"
        )
        self.saturation_label.setStyleSheet(
            "color: #c00000; font-weight: bold" if self.saturated else ""
        )

    # -- cursor and region ---------------------------------------------------------------------------------
    def pixel_at(self, x: float, y: float) -> tuple[int, int, float] | None:
        """(column, row, value) of the shown image at camera-pixel coordinates (x, y), or None outside it."""
        img = self.shown
        if img is None:
            return None
        col, row = int(np.floor(x)), int(np.floor(y))
        if 0 <= row < img.shape[0] and 0 <= col < img.shape[1]:
            return col, row, float(img[row, col])
        return None

    def _on_mouse(self, pos: QtCore.QPointF) -> None:
        point = self.plot.getPlotItem().vb.mapSceneToView(pos)
        hit = self.pixel_at(point.x(), point.y())
        self.cursor_label.setText(
            "cursor: –" if hit is None else f"cursor x {hit[0]}, y {hit[1]}: {hit[2]:.1f} ADU"
        )

    def _show_roi(self, on: bool) -> None:
        if (
            on and self.shown is not None
        ):  # start over the middle of the image, a quarter of its size
            h, w = self.shown.shape
            self.roi.setPos((w * 3 / 8, h * 3 / 8))
            self.roi.setSize((w / 4, h / 4))
        self.roi.setVisible(on)
        self.roi_label.setVisible(on)
        self._update_roi()

    def _update_roi(self, *_: object) -> None:
        if not self.roi_on.isChecked() or self.shown is None:
            self.roi_stats = {}
            return
        rows, cols = self._roi_slices()
        self.roi_stats = region_stats(
            self.shown[rows, cols],
            self.raw[rows, cols] if self.raw is not None else None,
            self.saturation if self.saturation is not None else saturation_level(None, self.raw),
        )
        s = self.roi_stats
        if not s.get("pixels"):
            self.roi_label.setText("region: outside the image")
            return
        avg = f" (mean of {self.averager.count} frames)" if self.averager.n > 1 else ""
        self.roi_label.setText(
            f"region {s['shape'][1]}×{s['shape'][0]} px{avg}\nmean {s['mean']:.1f} ± "
            f"{s['std']:.1f} ADU\nmin {s['min']:.0f}, max {s['max']:.0f}\nsum {s['sum']:.4g} "
            f"ADU\nsaturated {s.get('saturated', 0)} px"
        )

    def _roi_slices(self) -> tuple[slice, slice]:
        (x, y), (w, h) = self.roi.pos(), self.roi.size()
        rows, cols = self.shown.shape
        r0, c0 = max(0, int(round(y))), max(0, int(round(x)))
        return slice(r0, max(r0, min(rows, int(round(y + h))))), slice(
            c0, max(c0, min(cols, int(round(x + w))))
        )

    def plots(self) -> dict[str, pg.PlotWidget]:
        """The panel's plots by name (File ▸ Export plot)."""
        return {"live: camera": self.plot}

    # -- camera settings beside the image ------------------------------------------------------------
    def _set_exposure(self) -> None:
        s = self.exposure_ms.value() / 1e3
        self.worker.submit(lambda: self.worker.set_exposure(s), where="camera")

    def _set_gain(self) -> None:
        g = self.gain.value()
        self.worker.submit(lambda: self.worker.set_gain(g), where="camera")

    def _enable_camera_controls(self, camera: dict | None = None) -> None:
        camera = camera if camera is not None else getattr(self, "_camera", None)
        busy = self.state.calibrating  # a calibration sets the exposure itself
        self.exposure_ms.setEnabled(bool(camera) and not busy)
        self.gain.setEnabled(bool(camera) and camera.get("gain") is not None and not busy)

    @QtCore.Slot(dict)
    def _on_state(self, state: dict) -> None:
        camera = state.get("devices", {}).get("camera", {})
        if camera and not camera.get("connected"):
            self.mark_stale("camera disconnected")
        cam = state.get("camera")
        self._camera = cam
        if cam is not None:
            self.saturation = saturation_level(cam.get("bitdepth"))
        blockers = [QtCore.QSignalBlocker(w) for w in (self.exposure_ms, self.gain)]
        show_value(self.exposure_ms, cam["exposure_s"] * 1e3 if cam else None, 0.001)
        show_value(self.gain, cam["gain"] if cam else None, 0.001)
        del blockers
        self._enable_camera_controls(cam)

    def mark_stale(self, why: str) -> None:
        """Say over the image that it is the last frame, not a live one (until a new frame is drawn)."""
        if self.drawn == 0:
            return
        self._stale_at = self.worker.latest.get()[1]  # frames up to this count predate the mark
        self.stale_label.setText(f"STALE: {why} — last frame at {self._frame_time}")
        self.stale_label.adjustSize()
        self.stale_label.show()
        self.stale_label.raise_()

    # -- tiles and snapshots -------------------------------------------------------------------------
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
            box.setVisible(self.tiles_on.isChecked())
            self.plot.addItem(box)
            self.boxes.append(box)
        if rects:  # zoom onto the tiles (the feature maps); the mouse zooms back out
            corners = np.array([(x, y, x + w, y + h) for x, y, w, h in rects])
            (x0, y0), (x1, y1) = corners[:, :2].min(0), corners[:, 2:].max(0)
            m = 0.5 * max(x1 - x0, y1 - y0)
            self.plot.setRange(xRange=(x0 - m, x1 + m), yRange=(y0 - m, y1 + m))

    def _choose_snapshot(self) -> None:
        folder = Path(start_folder("snapshot", self.worker))
        name = f"snapshot-{datetime.now():%Y%m%d-%H%M%S}.png"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Snapshot", str(folder / name), "16-bit PNG (*.png)"
        )
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
            self.state.status.emit(
                f"could not write {path}: check the folder exists and is writable"
            )
            return None
        self.state.status.emit(f"snapshot saved to {path}")
        return Path(path)
