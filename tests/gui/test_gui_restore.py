"""A restart restores the work: the saved checkpoint is loaded again, and the saved calibration record — read before
any device is connected — is applied to the bench by Connect all (and again after its camera or SLM reconnects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6 import QtCore

from lab4f.calibration import CalibrationRecord
from lab4f.calibration.base import StepResult
from lab4f.gui.main_window import APPLICATION, ORGANISATION, MainWindow

EXPOSURE_S = 0.00123  # the record's exposure, not the simulated camera's default


@pytest.fixture
def saved(tmp_path: Path, tiny_checkpoint: Path) -> tuple[Path, Path]:
    record = CalibrationRecord(
        steps={"camera": StepResult("camera", values={"exposure_s": EXPOSURE_S})}
    )
    path = record.save(tmp_path / "calibrations" / "cal-20250101-000000.h5")
    s = QtCore.QSettings(ORGANISATION, APPLICATION)
    s.setValue("version", 1)
    s.setValue("kernels/checkpoint", str(tiny_checkpoint))
    s.setValue("calibration/record", str(path))
    s.sync()
    return tiny_checkpoint, path


def test_checkpoint_and_calibration_are_restored_and_applied(
    qtbot, saved: tuple[Path, Path]
) -> None:  # noqa: ANN001
    checkpoint, record = saved
    win = MainWindow()
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    assert win.state.checkpoint.path == str(checkpoint)
    assert str(checkpoint) in win.kernels_panel.info.text()
    qtbot.waitUntil(lambda: win.state.calibration is not None, timeout=10_000)
    assert win.state.calibration.path == record
    assert not win.bench_worker.record_applied  # nothing connected yet
    win.bench_panel.connect_all()
    qtbot.waitUntil(lambda: win.bench_panel.last_state.get("camera") is not None, timeout=20_000)
    qtbot.waitUntil(
        lambda: abs(win.bench_panel.last_state["camera"]["exposure_s"] - EXPOSURE_S) < 1e-9,
        timeout=5_000,
    )
    assert win.bench_worker.record_applied and "applied to the bench" in win.status_line.text()
    # a reconnected camera starts from its defaults: the record is applied to it again
    w = win.bench_worker
    w.submit(lambda: w.set_exposure(0.002), where="camera")
    w.submit(lambda: w.disconnect_device("camera"), where="camera")
    w.submit(lambda: w.connect_device("camera"), where="camera")
    qtbot.waitUntil(
        lambda: (
            win.bench_panel.last_state["devices"]["camera"]["connected"]
            and abs(win.bench_panel.last_state["camera"]["exposure_s"] - EXPOSURE_S) < 1e-9
        ),
        timeout=10_000,
    )
    win.close()
    # what the window saved on close names them again
    s = QtCore.QSettings(ORGANISATION, APPLICATION)
    assert s.value("kernels/checkpoint") == str(checkpoint) and s.value(
        "calibration/record"
    ) == str(record)


def test_a_missing_saved_checkpoint_is_noted(
    qtbot, saved: tuple[Path, Path], tmp_path: Path
) -> None:  # noqa: ANN001
    s = QtCore.QSettings(ORGANISATION, APPLICATION)
    s.setValue("kernels/checkpoint", str(tmp_path / "gone.pt"))
    s.sync()
    win = MainWindow()
    qtbot.addWidget(win)
    assert any("gone.pt no longer exists" in n for n in win.notes) and not win.kernels_panel.loading
    win.close()
