"""What every desktop application has: menus with shortcuts, a tooltip on every control, plot export, file dialogs
that start where the files are, the docs and the versions in use, recent files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.main_window import MainWindow
from lab4f.gui.menus import about_text, versions
from lab4f.gui.views import export_plot
from lab4f.gui.workers import start_folder

CONTROLS = (
    QtWidgets.QAbstractButton,
    QtWidgets.QComboBox,
    QtWidgets.QAbstractSpinBox,
    QtWidgets.QLineEdit,
    QtWidgets.QCheckBox,
)


@pytest.fixture
def window(qtbot):  # noqa: ANN001, ANN201
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    yield win
    win.close()


def controls_without_tooltip(win: QtWidgets.QWidget) -> list[str]:
    missing = []
    for w in win.findChildren(QtWidgets.QWidget):
        if not isinstance(w, CONTROLS) or w.window() is not win:  # dialogs have their own buttons
            continue
        if w.objectName().startswith("qt_") or isinstance(
            w.parent(), (QtWidgets.QAbstractSpinBox, QtWidgets.QTabBar)
        ):
            continue  # Qt's own parts: a dock's float/close buttons, a spin box's line edit, tab scroll arrows
        if not w.toolTip().strip():
            text = w.text() if hasattr(w, "text") else ""
            missing.append(f"{type(w).__name__} {text!r} in {type(w.parent()).__name__}")
    return missing


def test_every_control_has_a_tooltip(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    assert controls_without_tooltip(window) == []
    window.state.set_compiling(True)  # a waiting button says why, and still what it does
    tip = window.calibration_panel.run_all_btn.toolTip()
    assert tip.startswith("Waiting for the compile") and "Run every step" in tip
    window.state.set_compiling(False)
    assert controls_without_tooltip(window) == []


def test_menus_and_shortcuts(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == ["&File", "&Run", "&View", "&Help"]
    a = window.menus.actions
    shortcuts = {
        k: a[k].shortcut().toString()
        for k in ("start", "stop", "stream", "snapshot", "open_checkpoint")
    }
    assert shortcuts == {
        "start": "F5",
        "stop": "Shift+F5",
        "stream": "F6",
        "snapshot": "F8",
        "open_checkpoint": "Ctrl+O",
    }
    view = next(m for m in window.menuBar().findChildren(QtWidgets.QMenu) if m.title() == "&View")
    assert {act.text() for act in view.actions()} >= {
        "Bench",
        "Kernels",
        "Calibration",
        "Inference",
        "Log",
        "Reset layout",
    }
    # View ▸ Reset layout brings a closed and a floated panel back, the Kernels tab in front
    window.docks["Log"].close()
    window.docks["Calibration"].setFloating(True)
    a["reset_layout"].trigger()
    qtbot.wait(50)
    assert window.docks["Log"].isVisible() and not window.docks["Calibration"].isFloating()
    bar = next(t for t in window.findChildren(QtWidgets.QTabBar) if t.count() > 1)
    assert bar.tabText(bar.currentIndex()) == "Kernels"


def test_docs_and_about(qtbot, window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    opened: list[QtCore.QUrl] = []
    monkeypatch.setattr(QtGui.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    window.menus.actions["docs"].trigger()
    assert len(opened) == 1 and opened[0].toLocalFile().endswith("docs/index.md")
    v = versions()
    assert {"lab4f", "slmsuite", "torch", "Qt", "PySide6"} <= set(v) and v[
        "Qt"
    ] == QtCore.qVersion()
    shown: list[str] = []
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "about", lambda _parent, _title, text: shown.append(text)
    )
    window.menus.actions["about"].trigger()
    assert shown == [about_text()] and v["torch"] in shown[0] and v["slmsuite"] in shown[0]


def test_every_plot_exports(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    plots = window.menus.plots()
    assert {
        "live: camera",
        "calibration: timing",
        "inference: class probabilities",
        "kernels: SLM phase",
    } <= set(plots)
    window.calibration_panel.phase_curve.setData([0, 128, 255], [0.0, 0.5, 1.0])
    for k, (name, plot) in enumerate(plots.items()):
        path = export_plot(plot, tmp_path / f"plot{k}.png")
        assert path.stat().st_size > 500, name
    assert (
        "<svg" in export_plot(plots["calibration: timing"], tmp_path / "t.svg").read_text()[:2000]
    )
    csv = export_plot(
        plots["calibration: phase and display response"], tmp_path / "p.csv"
    ).read_text()
    assert "128" in csv and "0.5" in csv
    # File ▸ Export plot: the dialog starts in runs/ beside the calibration folder
    (tmp_path / "runs").mkdir()
    asked: list[str] = []

    def save_as(_parent, _title, start, _filters):  # noqa: ANN001, ANN202
        asked.append(start)
        return str(tmp_path / "runs" / "camera.png"), ""

    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", save_as)
    window.menus.export("live: camera", plots["live: camera"])
    assert (
        Path(asked[0]).parent == tmp_path / "runs" and (tmp_path / "runs" / "camera.png").exists()
    )
    assert "exported" in window.status_line.text()


def test_file_dialogs_start_where_the_files_are(
    qtbot,
    window: MainWindow,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = window.bench_worker
    assert start_folder("run", w) == str(tmp_path)  # nothing there yet: the working folder
    for folder in ("runs", "calibrations", ".lab4f_cache", "examples"):
        (tmp_path / folder).mkdir()
    assert start_folder("run", w) == str(tmp_path / "runs") == start_folder("snapshot", w)
    assert start_folder("record", w) == str(tmp_path / "calibrations")
    assert start_folder("checkpoint", w) == str(
        tmp_path / ".lab4f_cache"
    )  # where the demo caches them
    assert start_folder("config", w) == str(tmp_path / "examples")
    other = tmp_path / "mine"
    other.mkdir()
    assert start_folder("checkpoint", w, recent=other / "x.pt") == str(other)
    asked: list[str] = []
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getOpenFileName",
        lambda _p, _t, start, _f: asked.append(start) or ("", ""),
    )
    window.menus.actions["open_checkpoint"].trigger()
    window.menus.actions["open_record"].trigger()
    assert asked == [str(tmp_path / ".lab4f_cache"), str(tmp_path / "calibrations")]


def test_save_run_without_a_run_says_so(
    qtbot,
    window: MainWindow,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        QtWidgets.QFileDialog, "getSaveFileName", lambda *_a: (str(tmp_path / "run.h5"), "")
    )
    window.menus.actions["save_run"].trigger()
    qtbot.waitUntil(lambda: "no run to save" in window.status_line.text(), timeout=5_000)
    assert "Inference panel" in window.status_line.text() and not (tmp_path / "run.h5").exists()


def test_recent_files_are_remembered_and_reopened(
    qtbot, tiny_checkpoint: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.kernels_panel.load_checkpoint(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    assert win.menus.recent == [str(tiny_checkpoint)]
    win.close()
    again = MainWindow()  # restores the settings saved on close
    qtbot.addWidget(again)
    assert again.menus.recent == [str(tiny_checkpoint)]
    qtbot.waitUntil(
        lambda: again.state.checkpoint is not None, timeout=30_000
    )  # restored, as the last checkpoint
    again.state.checkpoint = None
    again.menus.open_recent(str(tiny_checkpoint))
    assert again.kernels_panel.loading
    qtbot.waitUntil(lambda: again.state.checkpoint is not None, timeout=30_000)
    gone = str(tmp_path / "gone.toml")
    again.menus.recent.append(gone)
    again.menus.open_recent(gone)
    assert gone not in again.menus.recent and "no longer exists" in again.status_line.text()
    again.close()


def test_stream_shortcut_starts_and_stops_the_camera(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    a = win.menus.actions
    a["stream"].trigger()
    qtbot.waitUntil(lambda: win.bench_worker.latest.count > 3, timeout=10_000)
    a["stop"].trigger()
    qtbot.waitUntil(lambda: not win.live_panel.start_btn.isChecked(), timeout=5_000)
    assert np.asarray(win.live_panel.image.image).shape == (512, 512)
