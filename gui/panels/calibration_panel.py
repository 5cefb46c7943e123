"""Calibration panel: each step of :func:`lab4f.calibration.run_calibration` with a progress bar, Run and
Cancel; the record drawn with pyqtgraph (phase response, registration overlay on the camera image,
per-channel fit R², residual maps); records loaded, copied and listed from the calibration folder."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from lab4f.calibration import CalibrationRecord, list_records
from lab4f.calibration import steps as registry
from lab4f.calibration.gains import fitted_features
from lab4f.gui.app_state import AppState
from lab4f.gui.calibration_check import stale_after
from lab4f.gui.messages import in_gui_terms
from lab4f.gui.views import image_view, montage, set_title, show_image
from lab4f.gui.workers import BenchWorker

RUN_TIP = "Run the {step} step on top of the record in use; a new record is saved when it succeeds"
RUN_ALL_TIP = (
    "Run every step in bench order into a new record (tiles and gains need a program uploaded in the "
    "Kernels panel)"
)
#: Each plot's least size (px): two columns fit a 1366×768 laptop's dock; the panel scrolls below that.
MIN_PLOT_W, MIN_PLOT_H = 200, 150
RESIDUAL_GAIN = 100.0  # registration residual vectors are drawn this many times longer


class CalibrationPanel(QtWidgets.QWidget):
    """Runs happen in the device thread; each successful run saves a new record, which becomes the one in use."""

    def __init__(
        self, state: AppState, worker: BenchWorker, folder: str | None = None, parent=None
    ) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.worker, self._folder = state, worker, folder
        self.running = False
        self._base: CalibrationRecord | None = (
            None  # the record a running partial calibration builds on
        )
        self._stale_base: dict[str, list[str]] = {}
        layout = QtWidgets.QVBoxLayout(self)
        grid = QtWidgets.QGridLayout()
        self.bars: dict[str, QtWidgets.QProgressBar] = {}
        self.run_btns: dict[str, QtWidgets.QPushButton] = {}
        for i, step in enumerate(registry.names()):  # one row per registered step, in bench order
            label = QtWidgets.QLabel(registry.title(step))
            label.setToolTip(registry.step(step).help or registry.title(step))
            grid.addWidget(label, i, 0)
            self.bars[step] = QtWidgets.QProgressBar(maximum=1000, textVisible=True)
            self.bars[step].setFormat("–")
            grid.addWidget(self.bars[step], i, 1)
            self.run_btns[step] = QtWidgets.QPushButton("Run")
            self.run_btns[step].setToolTip(RUN_TIP.format(step=step))
            self.run_btns[step].clicked.connect(lambda _=False, s=step: self.run([s]))
            grid.addWidget(self.run_btns[step], i, 2)
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)
        row = QtWidgets.QHBoxLayout()
        self.run_all_btn = QtWidgets.QPushButton("Run all")
        self.run_all_btn.setToolTip(RUN_ALL_TIP)
        self.run_all_btn.clicked.connect(lambda: self.run("all", self.with_wavefront.isChecked()))
        self.with_wavefront = QtWidgets.QCheckBox("with wavefront")
        self.with_wavefront.setToolTip(
            "Run all includes the optional wavefront correction of the SLM (~20 s)"
        )
        self.flat_frames = QtWidgets.QSpinBox()
        self.flat_frames.setRange(0, 256)
        self.flat_frames.setPrefix("flat field: ")
        self.flat_frames.setSuffix(" frames")
        self.flat_frames.setSpecialValueText("flat field: off")
        self.flat_frames.setToolTip(
            "camera step: measure the sensor's pixel response from N speckle frames "
            "(32 recommended; 0 = a unity flat)"
        )
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setToolTip(
            "Stop the running step at its next check; nothing is saved and the record in use stays"
        )
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        save_btn, load_btn = (
            QtWidgets.QPushButton("Save copy…"),
            QtWidgets.QPushButton("Load record…"),
        )
        save_btn.setToolTip(
            "Write the record in use to another file (records are never overwritten)"
        )
        load_btn.setToolTip(
            "Use a saved calibration record (File ▸ Open calibration record); it is applied to the "
            "bench when the camera and SLM are connected"
        )
        save_btn.clicked.connect(self._choose_save)
        load_btn.clicked.connect(self._choose_load)
        for w in (self.run_all_btn, self.with_wavefront, self.flat_frames, self.cancel_btn):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        records = (
            QtWidgets.QHBoxLayout()
        )  # a second row: one row of six buttons was wider than a laptop's dock
        for w in (save_btn, load_btn):
            records.addWidget(w)
        records.addStretch(1)
        layout.addLayout(records)
        layout.addWidget(self._step_settings())
        # the record does not fit the uploaded program (missing, foreign or stale steps): said here and at Start
        self.check_box = QtWidgets.QFrame()
        self.check_box.setStyleSheet(
            "QFrame { background: #fff1e0; border: 1px solid #b35900; }"
            " QLabel { border: none; color: #7a3d00; }"
        )
        check_row = QtWidgets.QHBoxLayout(self.check_box)
        self.check_label = QtWidgets.QLabel("")
        self.check_label.setWordWrap(True)
        self.fix_btn = QtWidgets.QPushButton("Run missing steps")
        self.fix_btn.setToolTip(
            "Run the steps the warning names, on top of the record in use (one new record)"
        )
        self.fix_btn.clicked.connect(self.run_missing)
        check_row.addWidget(self.check_label, 1)
        check_row.addWidget(self.fix_btn)
        self.check_box.hide()
        layout.addWidget(self.check_box)
        self.summary = QtWidgets.QPlainTextEdit("not calibrated")
        self.summary.setReadOnly(True)
        self.summary.setMaximumHeight(110)
        layout.addWidget(self.summary)
        plots = QtWidgets.QGridLayout()
        self.phase_plot = set_title(
            pg.PlotWidget(),
            "phase (blue), display (orange)",
            "The SLM's phase response (phase/2π, blue) and the input display's light (orange) "
            "against the gray level sent",
        )
        self.phase_plot.setLabel("bottom", "gray level")
        self.phase_plot.setLabel("left", "phase/2π · light")
        self.phase_curve = self.phase_plot.plot(
            pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=4
        )
        self.display_curve = self.phase_plot.plot(
            pen=pg.mkPen("#ff7f0e", width=2), symbol="s", symbolSize=4
        )
        self.reg_plot, self.reg_image = image_view(
            "registration (residuals ×100)",
            "Display → camera registration on the camera image: o measured "
            "fiducials, + the fit, lines: the residuals drawn 100× longer",
        )
        self.reg_points = pg.ScatterPlotItem(symbol="o", pen=pg.mkPen("c"), brush=None, size=10)
        self.reg_fit = pg.ScatterPlotItem(symbol="+", pen=pg.mkPen("m"), size=10)
        self.reg_resid = pg.PlotDataItem(pen=pg.mkPen("y", width=2), connect="pairs")
        for item in (self.reg_points, self.reg_fit, self.reg_resid):
            self.reg_plot.addItem(item)
        self.r2_plot = set_title(
            pg.PlotWidget(),
            "channel fit R² (held out)",
            "Per-channel fit quality (R²) of the channel filters on calibration images held out "
            "of the fit",
        )
        self.r2_plot.setLabel("bottom", "channel")
        self.r2_plot.setLabel("left", "R²")
        self.r2_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#2ca02c")
        self.r2_plot.addItem(self.r2_bars)
        self.resid_plot, self.resid_image = image_view(
            "residuals: fit − digital",
            "Residual maps of the channel fit (fitted − digital features) "
            "of the first calibration image, one tile per channel",
        )
        self.flat_plot, self.flat_image = image_view(
            "flat field (camera step)", "The sensor's relative pixel response from the camera step"
        )
        self.dark_plot, self.dark_image = image_view(
            "dark frame (camera step)", "The dark frame (light off) subtracted from every frame"
        )
        self.timing_plot = set_title(pg.PlotWidget(), "timing: not measured")
        self.timing_plot.setLabel("bottom", "time after show()", units="s")
        self.timing_plot.setLabel("left", "fraction of the new image")
        self.timing_plot.setToolTip(
            "The timing step's step responses (light after a display change; red: the SLM): "
            "each dot is one camera frame, at the middle of its exposure; the sync policy "
            "waits the latency plus the response."
        )
        self.timing_curves = [
            self.timing_plot.plot(pen=None, symbol="o", symbolSize=4, symbolBrush=pg.mkBrush(c))
            for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
        ]
        for k, w in enumerate(
            (
                self.phase_plot,
                self.reg_plot,
                self.r2_plot,
                self.resid_plot,
                self.flat_plot,
                self.dark_plot,
                self.timing_plot,
            )
        ):
            w.setMinimumSize(MIN_PLOT_W, MIN_PLOT_H)
            plots.addWidget(w, k // 2, k % 2)
        layout.addLayout(plots, 1)
        layout.addWidget(
            QtWidgets.QLabel("History of this bench's records (double-click to use one):")
        )
        self.history = QtWidgets.QListWidget()
        self.history.setMaximumHeight(90)
        self.history.itemDoubleClicked.connect(
            lambda item: self.load(item.data(QtCore.Qt.ItemDataRole.UserRole))
        )
        layout.addWidget(self.history)
        worker.progress.connect(self._on_progress)
        state.compiling_changed.connect(lambda _on: self._update_buttons())
        state.program_changed.connect(self.show_check)
        state.calibration_changed.connect(self.show_check)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self.refresh_history()

    def plots(self) -> dict[str, pg.PlotWidget]:
        """The panel's plots by name (File ▸ Export plot)."""
        return {
            "calibration: phase and display response": self.phase_plot,
            "calibration: registration": self.reg_plot,
            "calibration: channel R²": self.r2_plot,
            "calibration: residual maps": self.resid_plot,
            "calibration: flat field": self.flat_plot,
            "calibration: dark frame": self.dark_plot,
            "calibration: timing": self.timing_plot,
        }

    @property
    def folder(self) -> Path:
        """Where runs save their records: the bench config's ``calibration_dir`` unless given."""
        return Path(self._folder or self.worker.bench.config.calibration_dir).absolute()

    @folder.setter
    def folder(self, path: str | Path | None) -> None:
        self._folder = None if path is None else str(path)
        self.refresh_history()

    # -- running -----------------------------------------------------------------------------------
    def run(self, steps: str | list[str], wavefront: bool = False) -> None:
        """Run ``steps`` ('all', with the optional wavefront step if asked, or names) in the device thread;
        tiles/gains use the uploaded program."""
        st = self.state
        names = registry.all_steps(optional=wavefront) if steps == "all" else list(steps)
        program, program_path = st.program, st.program_path
        if st.compiling:  # its upload would change the SLM under the calibration
            self.summary.setPlainText(
                "A compile is running: calibrate when it has finished (or cancel it in the "
                "Kernels panel)."
            )
            return
        if (
            program is None
            and steps != "all"
            and any(registry.step(s).needs_program for s in names)
        ):
            self.summary.setPlainText(
                "Tile registration and channel fits need a compiled program: load a checkpoint "
                "and Compile and upload it (Kernels panel) first."
            )
            return
        for s in names:
            self.bars[s].setValue(0)
            needs = registry.step(s).needs_program and program is None
            self.bars[s].setFormat("skipped: no program uploaded" if needs else "waiting")
        self._set_running(True)
        # a partial run builds on the record in use; 'all' starts afresh (no stale tiles/gains of another program)
        w, base, out = self.worker, None if steps == "all" else st.calibration, str(self.folder)
        self._base, self._stale_base = base, dict(st.stale_steps)
        options = self.step_options() or None
        w.submit(
            lambda: w.calibrate(steps, program, program_path, base, out, wavefront, options),
            name="calibration",
            where="calibration",
        )

    def _step_settings(self) -> QtWidgets.QGroupBox:
        """The Fourier step's spot grid and the gains step's averaging and filter size (as `lab4f calibrate`'s
        --array-* and --gains-* options); their defaults are the step functions' own."""
        from lab4f.calibration.fourier import fourier_step
        from lab4f.calibration.gains import channel_gain_step

        fd = {k: v.default for k, v in inspect.signature(fourier_step).parameters.items()}
        gd = {k: v.default for k, v in inspect.signature(channel_gain_step).parameters.items()}
        self._defaults = {
            "fourier": {
                "array_shape": fd["array_shape"],
                "array_pitch": fd["array_pitch"],
                "retry": fd["retry"],
            },
            "gains": {"frames": gd["frames"], "filter_size": gd["filter_size"]},
        }
        box = QtWidgets.QGroupBox("Step settings")
        box.setToolTip(
            "Settings of the Fourier and gains steps, used by Run and Run all (the defaults suit most "
            "benches)"
        )
        grid = QtWidgets.QGridLayout(box)

        def spin(
            lo: int, hi: int, value: int, suffix: str, tip: str, step: int = 1
        ) -> QtWidgets.QSpinBox:
            w = QtWidgets.QSpinBox()
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setValue(value)
            w.setSuffix(suffix)
            w.setToolTip(tip)
            return w

        self.array_shape = spin(
            2,
            25,
            fd["array_shape"],
            "² spots",
            f"Fourier step: the spot grid is N × N spots (default {fd['array_shape']}²)",
        )
        self.array_pitch = spin(
            1,
            200,
            fd["array_pitch"],
            " knm",
            "Fourier step: spot spacing in SLM k-space pixels (knm; default "
            f"{fd['array_pitch']}); smaller keeps a large grid on the camera",
        )
        self.array_center = []
        for axis in ("x", "y"):
            w = QtWidgets.QDoubleSpinBox()
            w.setRange(-500.0, 500.0)
            w.setDecimals(1)
            w.setPrefix(f"{axis} ")
            w.setSuffix(" knm")
            w.setToolTip(
                f"Fourier step: the grid centre's {axis} offset from the optical axis in SLM k-space pixels "
                "(knm; 0, 0: on the axis, the default)"
            )
            self.array_center.append(w)
        self.fourier_retry = QtWidgets.QCheckBox("retry")
        self.fourier_retry.setChecked(bool(fd["retry"]))
        self.fourier_retry.setToolTip(
            "Fourier step: a refused grid is retried once with an adapted one (finer pitch, "
            "on the axis) before the step refuses"
        )
        self.gains_frames = spin(
            1,
            256,
            gd["frames"],
            " frames",
            "Gains step: camera frames averaged per calibration image (default "
            f"{gd['frames']}); more frames, less noise in the fitted filters, longer step",
        )
        self.gains_filter = spin(
            1,
            15,
            gd["filter_size"],
            " px filter",
            "Gains step: each channel's FIR filter is K × K camera-plane cells, K odd (default "
            f"{gd['filter_size']}; 1: a scalar gain)",
            step=2,
        )
        self.gains_filter.setMinimum(1)
        # three short rows: the panel must fit a 1366×768 laptop's dock
        rows = (
            ("Fourier grid", (self.array_shape, self.array_pitch, self.fourier_retry)),
            ("grid centre", tuple(self.array_center)),
            ("Gains", (self.gains_frames, self.gains_filter)),
        )
        for r, (text, widgets) in enumerate(rows):
            label = QtWidgets.QLabel(text)
            label.setToolTip(widgets[0].toolTip())
            grid.addWidget(label, r, 0)
            for c, w in enumerate(widgets):
                grid.addWidget(w, r, c + 1)
        grid.setColumnStretch(4, 1)
        return box

    def step_options(self) -> dict[str, dict[str, Any]]:
        """Per-step keyword options for the runner from the panel's settings (only those off their default)."""
        options: dict[str, dict[str, Any]] = {}
        if self.flat_frames.value():
            options["camera"] = {"flat_frames": self.flat_frames.value()}
        fourier = {
            "array_shape": self.array_shape.value(),
            "array_pitch": self.array_pitch.value(),
            "retry": self.fourier_retry.isChecked(),
        }
        fourier = {k: v for k, v in fourier.items() if v != self._defaults["fourier"][k]}
        centre = tuple(w.value() for w in self.array_center)
        if any(centre):
            fourier["array_center"] = centre
        if fourier:
            options["fourier"] = fourier
        k = self.gains_filter.value()
        gains = {"frames": self.gains_frames.value(), "filter_size": k if k % 2 else k + 1}
        gains = {k: v for k, v in gains.items() if v != self._defaults["gains"][k]}
        if gains:
            options["gains"] = gains
        return options

    def run_missing(self) -> None:
        """Run what the warning names (missing, foreign and stale steps) on top of the record in use."""
        steps = self.state.calibration_check().steps_to_run()
        if steps:
            self.run(steps)

    @QtCore.Slot()
    def show_check(self) -> None:
        """The warning box and the step bars: what the record in use lacks for the uploaded program, or has stale."""
        check = self.state.calibration_check()
        self.check_box.setVisible(not check.ok)
        self.check_label.setText("⚠ " + check.text() if not check.ok else "")
        if self.running or self.state.calibration is None:
            return
        for name in check.missing:
            self.bars[name].setValue(0)
            self.bars[name].setFormat("missing")
            self.bars[name].setToolTip(
                "Not measured for the uploaded program: press Run missing steps"
            )
        for name in check.foreign:
            self.bars[name].setFormat("other program")
            self.bars[name].setToolTip(
                "Measured for another program than the one on the SLM: run it again"
            )
        for name, rerun in check.stale.items():
            self.bars[name].setFormat("stale")
            self.bars[name].setToolTip(
                f"Measured before {', '.join(rerun)} was re-run: run it again"
            )

    def cancel(self) -> None:
        self.worker.cancel.set()  # a threading.Event: safe to set from the GUI thread

    def _set_running(self, on: bool) -> None:
        self.running = on
        self.cancel_btn.setEnabled(on)
        self._update_buttons()
        self.state.set_calibrating(on)  # Start, Compile and the bench settings wait meanwhile

    def _update_buttons(self) -> None:
        """Run waits for a running calibration and for a running compile."""
        compiling = self.state.compiling
        for step, b in (*self.run_btns.items(), ("all", self.run_all_btn)):
            b.setEnabled(not self.running and not compiling)
            tip = RUN_ALL_TIP if step == "all" else RUN_TIP.format(step=step)
            b.setToolTip("Waiting for the compile to finish. " + tip if compiling else tip)

    @QtCore.Slot(str, float, str)
    def _on_progress(self, step: str, fraction: float, message: str) -> None:
        if step in self.bars:
            self.bars[step].setValue(int(1000 * fraction))
            self.bars[step].setFormat(f"{message[len(step) + 2 :]} (%p %)")
        else:
            self.summary.setPlainText(message)

    @QtCore.Slot(str, object)
    def _on_done(self, name: str, result: Any) -> None:
        if name == "calibration":
            # the record is in use before calibrating ends: what waits for the end (a Start) sees it
            self.use(
                result,
                f"calibration saved to {result.path}",
                stale_after(self._base, result, self._stale_base),
            )
            self._set_running(False)
            self.show_check()  # the bars of missing or stale steps, now that none is running
            self.refresh_history()
        elif name == "record_applied" and result is self.state.calibration:
            where = result.path.name if result.path is not None else "the calibration in use"
            self.state.status.emit(
                f"calibration {where} applied to the bench (exposure, phase LUT, corrections)"
            )
        elif (
            name == "record_loaded"
        ):  # its stale steps come from its steps' provenance (CalibrationRecord.stale_steps)
            record, note = result
            self.use(record, f"calibration record {record.path} in use. {note}".strip())

    @QtCore.Slot(str, str)
    def _on_failed(self, where: str, message: str) -> None:
        if where == "calibration":
            self._set_running(False)
            for bar in self.bars.values():
                if bar.value() < 1000 and bar.format() not in ("–",):
                    bar.setFormat("stopped (%p %)")
            self.summary.setPlainText(f"Calibration stopped: {in_gui_terms(message)}")
        elif where == "record":
            self.summary.setPlainText(
                f"{in_gui_terms(message)} The calibration in use is unchanged."
            )

    @QtCore.Slot(str, str)
    def _on_cancelled(self, where: str, message: str) -> None:
        """Cancel was pressed: a neutral note (not an error); the record in use is unchanged."""
        if where != "calibration":
            return
        self._set_running(False)
        for bar in self.bars.values():
            if bar.value() < 1000 and bar.format() not in ("–",):
                bar.setFormat("stopped: cancelled (%p %)")
        note = (
            ""
            if "nothing was saved" in message
            else " Nothing was saved; the calibration in use is unchanged."
        )
        self.summary.setPlainText(f"Calibration cancelled: {message}{note}")

    def use(
        self, record: CalibrationRecord, status: str, stale: dict[str, list[str]] | None = None
    ) -> None:
        """Make ``record`` the calibration in use and draw it (and tell the device thread, whose runs use it);
        ``stale``: its steps measured before a step they build on was re-run."""
        w = self.worker
        w.submit(lambda: w.set_record(record), where="calibration")
        self.state.calibration, self.state.stale_steps = record, dict(stale or {})
        self.state.calibration_changed.emit()
        self.state.status.emit(status)
        self.draw()

    # -- drawing -----------------------------------------------------------------------------------
    def draw(self) -> None:
        rec = self.state.calibration
        if rec is None:
            return
        lines = [f"{rec.path.name if rec.path else '(not saved)'} · created {rec.created}"]
        for name in registry.names():
            self.bars[name].setToolTip("")
            if name in rec.steps:
                r = rec.steps[name]
                self.bars[name].setValue(1000)
                self.bars[name].setFormat(f"done in {r.duration_s:.1f} s")
                lines.append(f"{name}: {r.message}")
            else:  # not in this record: no bar left full from the previous one
                self.bars[name].setValue(0)
                needs = registry.step(name).needs_program and self.state.program is None
                self.bars[name].setFormat(
                    "not run: needs an uploaded program" if needs else "not run"
                )
        self.summary.setPlainText("\n".join(lines))
        if rec.phase_response is not None:
            levels, gamma = rec.phase_response
            self.phase_curve.setData(np.asarray(levels, float), np.asarray(gamma, float))
        else:  # a record without the step: no stale curve from the previous one
            self.phase_curve.setData([], [])
        lin = rec.display_linearizer
        if lin is not None:
            display = rec.bench_info.get("devices", {}).get("display", {})
            top = 2 ** int(display.get("settings", {}).get("bitdepth", 8)) - 1
            self.display_curve.setData(lin.drive * top, lin.response)
        else:
            self.display_curve.setData([], [])
        self.phase_plot.getPlotItem().enableAutoRange()  # both curves in view (the view kept the first one's range)
        self._draw_camera(rec)
        self._draw_timing(rec)
        self._draw_registration(rec)
        gains = rec.steps.get("gains")
        if gains is not None and rec.channel_r2 is not None:
            r2 = np.nan_to_num(np.asarray(rec.channel_r2, float))
            self.r2_bars.setOpts(x=np.arange(len(r2)), height=r2, width=0.6)
            step = max(
                1, int(np.ceil(len(r2) / 16))
            )  # ≤ 16 labels: 32 channels' numbers ran together
            self.r2_plot.getAxis("bottom").setTicks(
                [[(i, str(i)) for i in range(0, len(r2), step)]]
            )
            self.r2_plot.setYRange(min(0.8, float(r2.min()) - 0.02), 1.0)
            cap, dig = gains.arrays.get("captured_sample"), gains.arrays.get("digital_sample")
            if cap is not None and dig is not None and len(cap):
                resid = fitted_features(rec, cap[:1])[0] - dig[0]
                show_image(self.resid_image, montage(resid), levels=(-1.0, 1.0))
            else:
                show_image(self.resid_image, None)
        else:  # a record without the gains step: no R² bars or residuals of the previous record
            self.r2_bars.setOpts(x=[], height=[], width=0.6)
            self.r2_plot.getAxis("bottom").setTicks(None)
            show_image(self.resid_image, None)
        self.show_check()

    def _draw_timing(self, rec: CalibrationRecord) -> None:
        """The timing step's step responses (display: three repetitions; SLM: one), or nothing without the step."""
        step = rec.steps.get("timing")
        keys = ["display_curve/0", "display_curve/1", "display_curve/2", "slm_curve/0"]
        for curve, key in zip(self.timing_curves, keys, strict=True):
            data = None if step is None else step.arrays.get(key)
            if data is None:
                curve.setData([], [])
            else:
                start, exposure, signal = np.asarray(data, float)
                curve.setData(start + exposure / 2, signal)
        if step is not None:
            v = step.values
            set_title(
                self.timing_plot,
                f"display {1e3 * v['display_latency_min_s']:.0f}–"
                f"{1e3 * v['display_latency_max_s']:.0f} ms + "
                f"{1e3 * v['display_response_s']:.0f} ms, SLM {1e3 * v['slm_settle_s']:.0f} ms",
            )
        else:
            set_title(self.timing_plot, "timing: not measured (nominal delays)")

    def _draw_camera(self, rec: CalibrationRecord) -> None:
        """The camera step's flat (relative pixel response, shown ±4 RMS around 1; a unity flat says so) and dark."""
        cam = rec.steps.get("camera")
        quality = cam.quality if cam is not None else {}
        frames, rms = (
            int(quality.get("flat_frames", 0) or 0),
            float(quality.get("flat_rms", 0.0) or 0.0),
        )
        flat = rec.flat
        if flat is None or frames == 0:
            set_title(self.flat_plot, "flat field: unity (not measured)")
            show_image(self.flat_image, None)
        else:
            spread = max(4 * rms, 1e-3)
            set_title(
                self.flat_plot,
                f"flat: {frames} frames, RMS {100 * rms:.2f} %",
                f"The sensor's relative pixel response from {frames} speckle frames, shown 1 ± "
                f"{100 * spread:.1f} %",
            )
            show_image(self.flat_image, flat, levels=(1 - spread, 1 + spread))
        dark = rec.dark
        if dark is None:
            set_title(self.dark_plot, "dark frame (camera step)")
            show_image(self.dark_image, None)
        else:
            set_title(
                self.dark_plot,
                f"dark: mean {float(np.mean(dark)):.1f}, RMS {float(np.std(dark)):.2f} ADU",
            )
            show_image(self.dark_image, dark)

    def _draw_registration(self, rec: CalibrationRecord) -> None:
        frame, _ = self.worker.latest.get()
        background = frame if frame is not None else rec.flat if rec.flat is not None else rec.dark
        if background is not None:
            show_image(self.reg_image, background)
        reg = rec.steps.get("registration")
        if reg is None or rec.registration is None:
            return
        plane, cam = reg.arrays["fiducial_plane_xy"], reg.arrays["fiducial_camera_xy"]
        fit = rec.registration.apply(plane)
        self.reg_points.setData(cam[:, 0], cam[:, 1])
        self.reg_fit.setData(fit[:, 0], fit[:, 1])
        tips = fit + RESIDUAL_GAIN * (cam - fit)
        pairs = np.stack([fit, tips], axis=1).reshape(-1, 2)
        self.reg_resid.setData(pairs[:, 0], pairs[:, 1])
        lo, hi = np.minimum(cam.min(0), tips.min(0)), np.maximum(cam.max(0), tips.max(0))
        margin = (
            0.2 * float(max(hi - lo)) + 5.0
        )  # zoom onto the fiducials: they span the display's image
        self.reg_plot.setRange(
            xRange=(lo[0] - margin, hi[0] + margin), yRange=(lo[1] - margin, hi[1] + margin)
        )

    # -- records -----------------------------------------------------------------------------------
    def save_copy(self, path: str | Path) -> Path | None:
        """Write the record in use to another file (records are never overwritten)."""
        rec = self.state.calibration
        if rec is None:
            self.summary.setPlainText("nothing to save: run or load a calibration first")
            return None
        copy = CalibrationRecord(
            rec.bench_info, rec.steps, rec.created, rec.program_path, rec.program_sha256
        )
        try:
            saved = copy.save(path)
        except Exception as exc:  # an existing file, a read-only folder: say so, keep the window
            self.summary.setPlainText(f"Cannot save {path}: {exc}")
            return None
        self.state.status.emit(f"calibration copied to {saved}")
        return saved

    def load(self, path: str | Path) -> None:
        """Read a record in the device thread and apply it to the bench (exposure, phase LUT)."""
        w, p = self.worker, str(path)
        w.submit(lambda: w.load_record(p), name="record_loaded", where="record")

    def refresh_history(self) -> None:
        self.history.clear()
        for p in reversed(list_records(self.folder)):
            item = QtWidgets.QListWidgetItem(f"{p.name}  ({p.stat().st_size // 1024} kB)")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, str(p))
            self.history.addItem(item)

    def _choose_save(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Save a copy of the calibration",
            str(self.folder / "calibration-copy.h5"),
            "Calibration (*.h5)",
        )
        if path:
            self.save_copy(path)

    def _choose_load(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load calibration", str(self.folder), "Calibration (*.h5)"
        )
        if path:
            self.load(path)
