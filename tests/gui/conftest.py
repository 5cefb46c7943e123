"""Headless Qt for the GUI tests, settings in a temporary folder, and a tiny trained SCLC checkpoint."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path

import pytest
from PySide6 import QtCore

# Screenshots go to $LAB4F_SCREENSHOTS (set it to docs/screenshots to refresh the README's pictures); by default to
# a temporary folder, so a test run leaves the work tree clean.
SCREENSHOTS_ENV = "LAB4F_SCREENSHOTS"


@pytest.fixture(autouse=True)
def temp_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """QSettings go to an INI file under tmp_path; the working folder too (calibrations/, runs)."""
    folder = tmp_path / "settings"
    for fmt in (QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Format.NativeFormat):
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.Scope.UserScope, str(folder))
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture(autouse=True)
def no_modal_dialogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A modal dialog would wait forever for a click headless: a test that opens one fails at once (patch the
    panel's question, e.g. `inference_panel.confirm_calibration`, instead)."""
    from PySide6 import QtWidgets

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a modal dialog was opened in a test; patch the question it asks")

    for name in ("exec", "question", "warning", "critical", "information", "about"):
        monkeypatch.setattr(QtWidgets.QMessageBox, name, refuse)
    for name in ("getOpenFileName", "getSaveFileName", "getExistingDirectory"):
        monkeypatch.setattr(QtWidgets.QFileDialog, name, refuse)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear SCLC (4 kernels 5×5) trained for 2 epochs on 1,000 mnist5k digits (~8 s on 2 cores)."""
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.data import load_dataset
    from lab4f.models import ModelConfig
    from lab4f.training import TrainConfig, train_model

    splits = load_dataset("mnist5k", limit=1000)
    cfg = ModelConfig(kind="linear", widths=(4,), kernel_size=5, hidden=(64,), dropout=0.0)
    result = train_model(cfg, splits, TrainConfig(epochs=2, batch_size=64), progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, result.model, make_metadata(cfg, dataset={"name": "mnist5k"}))
    return path


@pytest.fixture
def screenshot(tmp_path_factory):  # noqa: ANN001, ANN201
    """save(widget, name): a PNG of the widget (in $LAB4F_SCREENSHOTS, e.g. docs/screenshots, else a temp folder)."""
    import os

    wanted = os.environ.get(SCREENSHOTS_ENV)
    repo = (
        Path(__file__).resolve().parents[2]
    )  # tests chdir into tmp_path: relative paths mean the repository's
    folder = (repo / wanted) if wanted else tmp_path_factory.mktemp("screenshots")

    def save(widget, name: str) -> Path:  # noqa: ANN001
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        assert widget.grab().save(str(path))
        assert path.stat().st_size > 1000
        return path

    return save


@pytest.fixture
def connected_window(qtbot):  # noqa: ANN001, ANN201
    """open(config=None) → a shown MainWindow (settings not restored) with every device of the bench connected;
    ``config`` is a bench config file (default: the built-in simulated bench)."""
    from lab4f.gui.main_window import MainWindow

    opened: list[
        MainWindow
    ] = []  # held (qtbot keeps only a weak reference) and closed at the end: a window
    # collected with its worker threads still running would abort the process ("QThread: Destroyed while …")

    def open_(config: str | None = None) -> MainWindow:
        win = MainWindow(restore=False)
        qtbot.addWidget(win)
        opened.append(win)
        win.show()
        if config is not None:
            win.bench_panel.open_config(config)
        win.bench_panel.connect_all()
        devices = lambda: win.bench_panel.last_state.get("devices", {})  # noqa: E731
        qtbot.waitUntil(
            lambda: len(devices()) == 5 and all(d["connected"] for d in devices().values()),
            timeout=20_000,
        )
        return win

    yield open_
    for win in opened:
        win.close()
