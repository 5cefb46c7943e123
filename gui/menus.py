"""The main window's menus and shortcuts: File (open bench config, checkpoint, calibration record; save the last run;
recent files; export a plot), Run (start/stop live inference, the camera stream, a snapshot), View (the panels, reset
layout), Help (the docs, About with the versions in use)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.views import export_plot
from lab4f.gui.workers import start_folder

if TYPE_CHECKING:
    from lab4f.gui.main_window import MainWindow

RECENT_MAX = 8
#: What a recent file is, by its name: how it is opened again.
CONFIG_SUFFIXES, CHECKPOINT_SUFFIXES = (".toml", ".yaml", ".yml"), (".pt", ".pth")
PLOT_FILTERS = "PNG image (*.png);;SVG vector image (*.svg);;CSV data (*.csv)"


def versions() -> dict[str, str]:
    """The versions of what this window runs on (Help ▸ About)."""
    import PySide6

    out = {}
    for dist in ("lab4f", "slmsuite", "torch", "numpy", "pyqtgraph"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["PySide6"] = PySide6.__version__
    out["Qt"] = QtCore.qVersion()
    out["Python"] = f"{platform.python_version()} ({sys.platform})"
    return out


def about_text() -> str:
    rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in versions().items())
    return (
        "<b>lab4f</b> — lab control for a hybrid optical-electronic CNN on a 4f bench.<br>"
        f"<table>{rows}</table>"
    )


def docs_index() -> Path | None:
    """docs/index.md of the source tree lab4f runs from (None for an installed wheel, which has no docs)."""
    import lab4f

    index = Path(lab4f.__file__).resolve().parents[1] / "docs" / "index.md"
    return index if index.is_file() else None


def _action(
    menu: QtWidgets.QMenu, text: str, slot, shortcut: str | None = None, tip: str = ""
) -> QtGui.QAction:  # noqa: ANN001
    act = menu.addAction(text)
    act.triggered.connect(lambda _checked=False: slot())
    if shortcut:
        act.setShortcut(QtGui.QKeySequence(shortcut))
        act.setShortcutContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
    act.setToolTip(tip or text)
    act.setStatusTip(tip or text)
    return act


class Menus:
    """Builds the menu bar of ``win`` and keeps what its dynamic menus (recent files, plots) need."""

    def __init__(self, win: MainWindow) -> None:
        self.win = win
        self.recent: list[str] = []
        self.actions: dict[str, QtGui.QAction] = {}
        bar = win.menuBar()
        file = bar.addMenu("&File")
        a = self.actions
        a["open_config"] = _action(
            file, "Open bench config…", win.bench_panel._choose_config, "Ctrl+Shift+O"
        )
        a["open_checkpoint"] = _action(
            file, "Open checkpoint…", win.kernels_panel._choose, "Ctrl+O"
        )
        a["open_record"] = _action(
            file, "Open calibration record…", win.calibration_panel._choose_load, "Ctrl+Shift+R"
        )
        self.recent_menu = file.addMenu("Recent files")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file.addSeparator()
        a["save_run"] = _action(
            file, "Save run…", self.save_run, "Ctrl+S", "Record the run stopped last to a file"
        )
        self.export_menu = file.addMenu("Export plot")
        self.export_menu.aboutToShow.connect(self._fill_export)
        file.addSeparator()
        a["quit"] = _action(file, "Quit", win.close, "Ctrl+Q")
        run = bar.addMenu("&Run")
        a["start"] = _action(run, "Start live inference", self.start, "F5")
        a["stop"] = _action(
            run, "Stop", self.stop, "Shift+F5", "Stop live inference or the camera stream"
        )
        a["stream"] = _action(run, "Camera stream on/off", win.live_panel.toggle_stream, "F6")
        a["snapshot"] = _action(
            run,
            "Snapshot…",
            win.live_panel._choose_snapshot,
            "F8",
            "Save the newest camera frame as a 16-bit PNG",
        )
        view = bar.addMenu("&View")
        for dock in win.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        a["reset_layout"] = _action(
            view,
            "Reset layout",
            win.reset_layout,
            tip="Put every panel back where it is at the first start",
        )
        helpm = bar.addMenu("&Help")
        a["docs"] = _action(helpm, "Documentation", self.open_docs, "F1")
        a["about"] = _action(helpm, "About lab4f", self.about)

    # -- recent files ----------------------------------------------------------------------------
    def add_recent(self, path: str | None) -> None:
        if not path:
            return
        path = str(Path(path).absolute())
        self.recent = [path, *[p for p in self.recent if p != path]][:RECENT_MAX]

    def open_recent(self, path: str) -> None:
        win, suffix = self.win, Path(path).suffix.lower()
        if not Path(path).is_file():
            self.recent.remove(path)
            win.show_status(f"{path} no longer exists: removed from the recent files")
        elif suffix in CONFIG_SUFFIXES:
            win.bench_panel.open_config(path)
        elif suffix in CHECKPOINT_SUFFIXES:
            win.kernels_panel.load_checkpoint(path)
        else:
            win.calibration_panel.load(path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent:
            act = self.recent_menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.triggered.connect(lambda _c=False, p=path: self.open_recent(p))
        if not self.recent:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    # -- plots -----------------------------------------------------------------------------------------
    def plots(self) -> dict:
        w = self.win
        return (
            w.live_panel.plots()
            | w.calibration_panel.plots()
            | w.kernels_panel.plots()
            | w.inference_panel.plots()
        )

    def _fill_export(self) -> None:
        self.export_menu.clear()
        for name, plot in self.plots().items():
            act = self.export_menu.addAction(name)
            act.triggered.connect(lambda _c=False, n=name, p=plot: self.export(n, p))

    def export(self, name: str, plot) -> None:  # noqa: ANN001
        stem = name.replace(": ", "-").replace(" ", "_").replace("/", "_")
        folder = Path(start_folder("run", self.win.bench_worker))
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self.win, f"Export {name}", str(folder / f"{stem}.png"), PLOT_FILTERS
        )
        if path:
            try:
                self.win.show_status(f"{name} exported to {export_plot(plot, path)}")
            except (
                Exception
            ) as exc:  # an unwritable folder, an exporter's limit: said, the window stays
                self.win.on_failed("export", f"exporting {name} to {path} failed: {exc}")

    # -- run -------------------------------------------------------------------------------------------
    def start(self) -> None:
        panel = self.win.inference_panel
        if panel.start_btn.isEnabled():
            self.win.docks["Inference"].raise_()
            panel.start()

    def stop(self) -> None:
        w = self.win.bench_worker
        w.submit(w.stop_stream, where="inference")

    def save_run(self) -> None:
        w = self.win.bench_worker
        folder = Path(start_folder("run", w))
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self.win, "Save run", str(folder / "run.h5"), "Run file (*.h5)"
        )
        if path:
            w.submit(lambda: w.save_run(path), name="run_saved", where="save run")

    # -- help ------------------------------------------------------------------------------------------
    def open_docs(self) -> bool:
        index = docs_index()
        if index is None:
            self.win.show_status(
                "the documentation is in the docs/ folder of lab4f's source repository (not "
                "installed with the package)"
            )
            return False
        return QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(index)))

    def about(self) -> None:
        QtWidgets.QMessageBox.about(self.win, "About lab4f", about_text())
