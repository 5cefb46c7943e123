"""Kernels panel: load a checkpoint, view its kernel bank, compile it for the bench (target and achieved
PSF, SLM phase) and upload the phase after confirming what changes."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from lab4f.gui.app_state import AppState, Loaded, load_for_gui
from lab4f.gui.messages import in_gui_terms
from lab4f.gui.views import image_view, montage, show_image
from lab4f.gui.workers import BenchWorker, Worker, start_folder


def upload_changes(new: Any, old: Any, uploaded_phase: np.ndarray | None) -> str:
    """A few lines saying what the upload changes: kernels, tiles, tile quality, phase difference."""
    s = new.summary()
    lines = [
        f"{s['channels']} kernels {s['kernel_size']}×{s['kernel_size']} in {s['frames']} frame(s), "
        f"{s['tiles']} tiles, min tile correlation {s['min_tile_correlation']:.4f}, "
        f"{100 * s['energy_in_tiles']:.1f} % of light in tiles"
    ]
    if old is None:
        lines.append("No program was uploaded before.")
    else:
        o = old.summary()
        diff = [
            f"{k}: {o[k]} → {s[k]}"
            for k in ("channels", "kernel_size", "tiles", "frames")
            if o[k] != s[k]
        ]
        lines.append("Changes: " + ("; ".join(diff) if diff else "same layout, new kernels"))
    if uploaded_phase is not None and new.frames[0].phase is not None:
        d = np.angle(np.exp(1j * (new.frames[0].phase - uploaded_phase)))
        lines.append(f"Phase change on the SLM: RMS {np.sqrt(np.mean(d**2)):.3f} rad")
    lines.append("Tile registration and channel gains must be recalibrated after a layout change.")
    return "\n".join(lines)


def frames_text(program: Any) -> str:
    """The compiled program's frames per input, and how many kernels each carries."""
    s = program.summary()
    per = program.source.get("kernels_per_frame")
    cap = f", at most {per} per frame" if per else ", as many per frame as fit"
    return f"frames per input: {s['frames']} ({s['channels']} kernels{cap})"


COMPILE_TIP = (
    "Compile the kernel bank for this bench (tile layout, target PSF, SLM phase), then confirm the upload "
    "to the SLM"
)


class KernelsPanel(QtWidgets.QWidget):
    """Checkpoint → kernel bank view → compile (device thread) → confirm → upload."""

    def __init__(self, state: AppState, bench: BenchWorker, jobs: Worker, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state, self.bench, self.jobs = state, bench, jobs
        self.pending: Any = None
        self.auto_confirm = False  # tests and scripts skip the confirmation dialog
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.load_btn = QtWidgets.QPushButton("Load checkpoint…")
        self.load_btn.setToolTip(
            "Load a student or linear (SCLC) checkpoint and its test images (File ▸ Open "
            "checkpoint, Ctrl+O)"
        )
        self.load_btn.clicked.connect(self._choose)
        self.iterations = QtWidgets.QSpinBox(
            minimum=1, maximum=1000, value=30, prefix="WGS iterations "
        )
        self.iterations.setToolTip(
            "Phase-retrieval (weighted Gerchberg–Saxton) iterations of the compile: more is "
            "slower and matches the target PSF better"
        )
        self.compile_btn = QtWidgets.QPushButton("Compile and upload")
        self.compile_btn.setToolTip(COMPILE_TIP)
        self.compile_btn.setEnabled(False)
        self.compile_btn.clicked.connect(self.compile)
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setToolTip(
            "Stop the load or compile (within one iteration); nothing is uploaded"
        )
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        for w in (self.load_btn, self.iterations, self.compile_btn, self.cancel_btn):
            row.addWidget(w)
        layout.addLayout(row)
        options = QtWidgets.QHBoxLayout()
        self.kernels_per_frame = QtWidgets.QSpinBox(
            minimum=0, maximum=4096, value=0, prefix="kernels per frame "
        )
        self.kernels_per_frame.setSpecialValueText("kernels per frame: auto")
        self.kernels_per_frame.setToolTip(
            "At most this many kernels (k⁺/k⁻ tile pairs) on one SLM frame, the rest time-multiplexed on further "
            "frames (`lab4f compile --kernels-per-frame N`). Fewer per frame: brighter tiles, more frames per "
            "input. auto (0): as many as fit on the camera"
        )
        self.frames_label = QtWidgets.QLabel("frames per input: not compiled")
        self.frames_label.setToolTip(
            "SLM frames each input is shown for by the compiled program (kernels ÷ kernels "
            "per frame, rounded up)"
        )
        options.addWidget(self.kernels_per_frame)
        options.addWidget(self.frames_label, 1)
        layout.addLayout(options)
        self.progress = QtWidgets.QProgressBar(maximum=1000, textVisible=True)
        self.progress.setFormat("–")
        layout.addWidget(self.progress)
        self.loading = False
        self._load_token: object | None = None
        self.info = QtWidgets.QLabel("no checkpoint loaded")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        grid = QtWidgets.QGridLayout()
        self.views = {}
        self.view_plots: dict[str, Any] = {}
        for k, name in enumerate(("kernel bank", "target PSF", "achieved PSF", "SLM phase")):
            plot, item = image_view(name)
            plot.setMinimumSize(160, 160)
            self.views[name] = item
            self.view_plots[name] = plot
            grid.addWidget(plot, k // 2, k % 2)
        layout.addLayout(grid, 1)
        jobs.done.connect(self._on_done)
        bench.done.connect(self._on_done)
        for w in (jobs, bench):
            w.failed.connect(self._on_failed)
            w.cancelled.connect(self._on_cancelled)
        bench.compile_progress.connect(self._on_progress)
        state.calibrating_changed.connect(lambda _on: self._update_buttons())

    def plots(self) -> dict[str, Any]:
        """The panel's plots by name (File ▸ Export plot)."""
        return {f"kernels: {name}": plot for name, plot in self.view_plots.items()}

    def _choose(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self,
            "Checkpoint",
            start_folder("checkpoint", self.bench, getattr(self.state.checkpoint, "path", None)),
            "Checkpoint (*.pt *.pth)",
        )
        if path:
            self.load_checkpoint(path)

    @property
    def compiling(self) -> bool:
        """A compile started here is running (the app-wide flag calibration waits on)."""
        return self.state.compiling

    def load_checkpoint(self, path: str) -> None:
        """Load in the job thread; Cancel discards the result (the checkpoint loaded before stays)."""
        self.info.setText(f"loading {path} …")
        self.loading = True
        self._update_buttons()
        token = self._load_token = (
            object()
        )  # the result of a cancelled (or superseded) load is not applied
        self.jobs.submit(lambda: (token, load_for_gui(path)), name="checkpoint", where="checkpoint")

    def compile(self) -> None:
        """Compile in the device thread (it reads the bench's geometry); Cancel stops it within an iteration."""
        if self.state.checkpoint is None or self.compiling or self.state.calibrating:
            return
        path, iters, bench = self.state.checkpoint.path, self.iterations.value(), self.bench
        per_frame = self.kernels_per_frame.value() or None  # 0: auto, as many as fit
        self.info.setText("compiling …")
        self.progress.setValue(0)
        self.progress.setFormat("compiling: starting (%p %)")
        self.state.set_compiling(
            True
        )  # a calibration would measure the SLM mid-upload: it waits for the compile
        self._update_buttons()
        bench.compile_cancel.clear()  # a threading.Event: set by Cancel or closing the window
        bench.submit(
            lambda: bench.compile(path, iters, per_frame), name="compiled", where="compile"
        )

    def cancel(self) -> None:
        if self.loading:
            self._load_token = None
            self.loading = False
            self._update_buttons()
            kept = (
                f"still loaded: {self.state.checkpoint.path}"
                if self.state.checkpoint
                else "no checkpoint loaded"
            )
            self.info.setText(f"Loading cancelled; {kept}.")
            return
        self.bench.compile_cancel.set()
        self.progress.setFormat("cancelling … (%p %)")

    def _update_buttons(self) -> None:
        """Compile waits for a checkpoint, for a running compile and for a running calibration."""
        calibrating = self.state.calibrating
        self.compile_btn.setEnabled(
            self.state.checkpoint is not None
            and not self.compiling
            and not calibrating
            and not self.loading
        )
        self.load_btn.setEnabled(not self.compiling and not self.loading)
        self.kernels_per_frame.setEnabled(not self.compiling)
        self.cancel_btn.setEnabled(self.compiling or self.loading)
        self.compile_btn.setToolTip(
            "Waiting for the calibration to finish. " + COMPILE_TIP if calibrating else COMPILE_TIP
        )

    @QtCore.Slot(int, int)
    def _on_progress(self, i: int, n: int) -> None:
        if self.compiling and n > 0:
            self.progress.setValue(int(1000 * min(i, n) / n))
            self.progress.setFormat(f"phase retrieval: iteration {i}/{n} (%p %)")

    def _end_compile(self, text: str) -> None:
        self.state.set_compiling(False)
        self._update_buttons()
        self.progress.setFormat(text)

    @QtCore.Slot(str, str)
    def _on_failed(self, where: str, message: str) -> None:
        if where == "checkpoint" and self.loading:
            self.loading = False
            self._update_buttons()
            kept = (
                f" Still loaded: {self.state.checkpoint.path}."
                if self.state.checkpoint is not None
                else ""
            )
            self.info.setText(f"Loading the checkpoint failed: {in_gui_terms(message)}{kept}")
        elif where == "compile" and self.compiling:
            self._end_compile("compile failed")
            self.info.setText(f"Compile failed: {in_gui_terms(message)}\n{self._on_slm()}")
        elif where == "slm" and self.pending is not None:
            self.pending = None
            self._revert_display()
            self.info.setText(
                f"NOT UPLOADED: the upload to the SLM failed ({message}).\n{self._on_slm()}"
            )

    @QtCore.Slot(str, str)
    def _on_cancelled(self, where: str, message: str) -> None:
        if where == "compile" and self.compiling:
            self._end_compile("cancelled (%p %)")
            self.info.setText(f"Compile cancelled: nothing was uploaded. {self._on_slm()}")

    def _on_slm(self) -> str:
        path = self.state.program_path
        return (
            f"The SLM keeps the program {path}." if path else "No program is uploaded to the SLM."
        )

    def _revert_display(self) -> None:
        """Show the program on the SLM (or nothing), not one that was compiled but not uploaded."""
        if self.state.program is not None:
            self._show_program(self.state.program)
        else:
            for name in ("target PSF", "achieved PSF", "SLM phase"):
                show_image(self.views[name], None)

    @QtCore.Slot(str, object)
    def _on_done(self, name: str, result: Any) -> None:
        if name == "checkpoint":
            token, loaded = result
            if token is self._load_token:
                self._show_checkpoint(loaded)
        elif name == "compiled":
            program, program_path, _report = result
            self._end_compile("compiled (%p %)")
            self.progress.setValue(1000)
            self._show_program(program)
            self.frames_label.setText(frames_text(program))
            text = upload_changes(program, self.state.program, self.bench.uploaded_phase)
            if self.auto_confirm or self._confirm(text):
                self.pending = (program, str(program_path))
                phase = program.frames[0].phase
                self.bench.submit(
                    lambda: self.bench.upload_phase(phase), name="uploaded", where="slm"
                )
                self.info.setText(f"uploading …\n{text}")
            else:  # declined: the views go back to what the SLM shows
                self.pending = None
                self._revert_display()
                self.info.setText(
                    f"NOT UPLOADED (declined): {program_path} was compiled and saved but is not on "
                    f"the SLM. {self._on_slm()}"
                )
        elif name == "uploaded" and self.pending is not None:
            self.state.program, self.state.program_path = self.pending
            self.pending = None
            self.info.setText(self.info.text().removeprefix("uploading …\n"))
            self.state.program_changed.emit()
            self.state.status.emit(f"program uploaded to the SLM ({self.state.program_path})")

    def _confirm(self, text: str) -> bool:
        answer = QtWidgets.QMessageBox.question(self, "Upload to the SLM?", text)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def _show_checkpoint(self, loaded: Loaded) -> None:
        self.state.checkpoint = loaded
        k = loaded.kernels
        show_image(
            self.views["kernel bank"], montage(k.reshape(-1, *k.shape[-2:])), levels=(-1.0, 1.0)
        )
        m = loaded.meta
        self.info.setText(
            f"{loaded.path}: {loaded.cfg.kind}, {k.shape[0]} kernels {k.shape[-1]}×{k.shape[-1]}, "
            f"dataset {(m.get('dataset') or {}).get('name', '?')}, created {m.get('created', '?')}; "
            f"{len(loaded.labels)} test images for the live run"
        )
        # a new checkpoint is not compiled yet: no "compiled (100 %)" left from the previous one
        self.progress.setValue(0)
        self.progress.setFormat("not compiled: press Compile and upload")
        if self.state.program is not None:
            self.info.setText(
                f"{self.info.text()}. The SLM still holds the program of the previous checkpoint "
                f"({self.state.program_path}): Compile and upload this one before a run."
            )
        self.loading = False
        self._update_buttons()
        self.state.model_changed.emit()

    def _show_program(self, program: Any) -> None:
        f = program.frames[0]
        show_image(self.views["target PSF"], np.sqrt(f.target_psf))
        show_image(self.views["achieved PSF"], np.sqrt(f.achieved_psf))
        if f.phase is not None:
            show_image(self.views["SLM phase"], f.phase, levels=(0.0, 2 * np.pi))
