"""Calibration panel on the real `run_calibration`: a cancelled step saves nothing and keeps the record in
use; records load back (and are applied to the bench); a damaged record is refused with the current kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab4f.calibration import list_records
from lab4f.gui.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path: Path):  # noqa: ANN001, ANN201
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.calibration_panel.folder = tmp_path / "records"
    yield win
    win.close()
    assert all(t.isFinished() for t in win.threads)


def test_cancel_saves_nothing_and_a_saved_record_loads_back(qtbot, window: MainWindow, tmp_path: Path) -> None:  # noqa: ANN001
    panel, bench = window.calibration_panel, window.bench_worker
    window.bench_panel.connect_all()
    qtbot.waitUntil(lambda: window.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
                    timeout=20_000)
    panel.run(["camera", "fourier", "registration"])
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    first = window.state.calibration
    assert first is not None, panel.summary.toPlainText()
    assert sorted(first.steps) == ["camera", "fourier", "registration"]
    assert list_records(panel.folder) == [first.path] and panel.history.count() == 1

    panel.run(["phase"])  # ~12 s when left to finish
    qtbot.waitUntil(lambda: panel.bars["phase"].value() > 0, timeout=20_000)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert "cancelled" in panel.summary.toPlainText() and "nothing was saved" in panel.summary.toPlainText()
    assert 0 < panel.bars["phase"].value() < 1000 and panel.bars["phase"].format().startswith("stopped")
    assert window.state.calibration is first and list_records(panel.folder) == [first.path]

    bench.submit(lambda: bench.set_exposure(0.002), where="camera")
    qtbot.waitUntil(lambda: abs(window.bench_panel.last_state["camera"]["exposure_s"] - 0.002) < 1e-9, timeout=5_000)
    window.state.calibration = None
    panel.load(first.path)
    qtbot.waitUntil(lambda: window.state.calibration is not None, timeout=10_000)
    assert window.state.calibration.path == first.path
    # loading applies the record: the camera is back at the calibrated exposure
    qtbot.waitUntil(lambda: abs(window.bench_panel.last_state["camera"]["exposure_s"] - first.exposure_s) < 1e-9,
                    timeout=5_000)


def test_damaged_record_is_refused_and_the_current_one_kept(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    panel = window.calibration_panel
    panel.folder.mkdir(parents=True)
    bad = panel.folder / "cal-20000101-000000.h5"
    bad.write_bytes(b"not an HDF5 file")
    panel.refresh_history()
    assert panel.history.count() == 1
    panel.load(bad)
    qtbot.waitUntil(lambda: "unchanged" in panel.summary.toPlainText(), timeout=10_000)
    assert "CalibrationError" in panel.summary.toPlainText() and window.state.calibration is None
    assert "record" in window.status_line.text()


def test_flat_frames_reach_the_camera_step(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    panel = window.calibration_panel
    window.bench_panel.connect_all()
    qtbot.waitUntil(lambda: window.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
                    timeout=20_000)
    panel.flat_frames.setValue(8)
    panel.run(["camera"])
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    rec = window.state.calibration
    assert rec is not None, panel.summary.toPlainText()
    q = rec.steps["camera"].quality
    assert q["flat_frames"] == 8 and q["flat_pixels"] > 0  # measured, not the unity flat
    # the flat and dark are drawn, with what they measured in the titles
    title = panel.flat_plot.getPlotItem().titleLabel.text
    assert "8 frames" in title and f"{100 * q['flat_rms']:.2f} %" in title
    shown = panel.flat_image.image
    assert shown is not None and shown.shape == rec.flat.shape and np.array_equal(shown, rec.flat)
    assert "dark: mean" in panel.dark_plot.getPlotItem().titleLabel.text
    assert panel.dark_image.image is not None
    panel.flat_frames.setValue(0)
    panel.run(["camera"])
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert window.state.calibration.steps["camera"].quality.get("flat_frames", 0) == 0
    assert "unity" in panel.flat_plot.getPlotItem().titleLabel.text and panel.flat_image.image is None
